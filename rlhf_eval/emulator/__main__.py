"""``python -m rlhf_eval.emulator``: serve the emulator (Gemini + OpenAI-compatible) until Ctrl-C."""
from __future__ import annotations

import argparse
import sys

from . import Emulator


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="rlhf-eval-emulator",
        description="Serve a local emulator of the Gemini generateContent REST API (Developer API and "
        "Vertex AI paths) and of an OpenAI-compatible server (/v1/chat/completions, /v1/completions, "
        "/v1/models; vLLM/llama.cpp style) "
        "(see `python -c 'import rlhf_eval.emulator; help(rlhf_eval.emulator)'`).",
    )
    ap.add_argument("--port", type=int, default=8765, help="port to listen on (0 = any free port; default 8765)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every response (default 0)")
    args = ap.parse_args(argv)
    try:
        emu = Emulator(port=args.port, host=args.host, latency_ms=args.latency_ms, record_requests=False)
    except OSError as e:
        print(f"rlhf-eval emulator: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"rlhf-eval emulator serving {emu.base_url}", flush=True)
    try:
        emu.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
