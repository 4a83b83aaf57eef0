"""``python -m rlhf_eval.emulator``: serve the emulator (Gemini + OpenAI-compatible) until Ctrl-C."""
from __future__ import annotations

import argparse
import sys

from . import Emulator
from .server import ERROR_CODES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="rlhf-eval-emulator",
        description="Serve a local emulator of the Gemini generateContent REST API (Developer API and "
        "Vertex AI paths) and of an OpenAI-compatible server (/v1/chat/completions, /v1/completions, "
        "/v1/models; vLLM/llama.cpp style) "
        "; every endpoint, answer, fault marker and knob is described in README.md in the installed "
        "package (python -c 'import rlhf_eval.emulator as e, pathlib; print(pathlib.Path(e.__file__).parent "
        "/ \"README.md\")').",
    )
    ap.add_argument("--port", type=int, default=8765, help="port to listen on (0 = any free port; default 8765)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every response (default 0)")
    ap.add_argument("--fail-rate", type=float, default=0.0, metavar="P",
                    help="fraction of generation requests that fail with --fail-status, decided by a hash of "
                    "the request, its attempt number and --fault-seed (default 0)")
    ap.add_argument("--fail-status", type=int, default=503, choices=sorted(ERROR_CODES), metavar="CODE",
                    help="HTTP status of the --fail-rate failures: one of %(choices)s (default 503)")
    ap.add_argument("--fault-seed", default="0", metavar="SEED", help="seed of the --fail-rate draws (default 0)")
    ap.add_argument("--rate-limit-rpm", type=float, default=0.0, metavar="RPM",
                    help="server-wide rate limit in requests per minute: a token bucket refilled at RPM/60 "
                    "per second; over it, 429 with the real quota body (default 0 = no limit)")
    ap.add_argument("--rate-limit-burst", type=float, default=None, metavar="N",
                    help="capacity of the rate-limit bucket (default max(1, RPM/60))")
    ap.add_argument("--pad-to-tokens", type=int, default=0, metavar="N",
                    help="lengthen shorter answers to about N tokens with more reasoning lines before the "
                    "final answer line (default 0 = off)")
    args = ap.parse_args(argv)
    if not 0.0 <= args.fail_rate <= 1.0:
        ap.error(f"--fail-rate must be between 0 and 1, got {args.fail_rate}")
    if args.rate_limit_rpm < 0:
        ap.error(f"--rate-limit-rpm must be >= 0, got {args.rate_limit_rpm}")
    if args.rate_limit_burst is not None and args.rate_limit_burst < 1:
        ap.error(f"--rate-limit-burst must be >= 1, got {args.rate_limit_burst}")
    if args.pad_to_tokens < 0:
        ap.error(f"--pad-to-tokens must be >= 0, got {args.pad_to_tokens}")
    try:
        emu = Emulator(port=args.port, host=args.host, latency_ms=args.latency_ms, record_requests=False,
                       fail_rate=args.fail_rate, fail_status=args.fail_status, fault_seed=args.fault_seed,
                       rate_limit_rpm=args.rate_limit_rpm, rate_limit_burst=args.rate_limit_burst,
                       pad_to_tokens=args.pad_to_tokens)
    except OSError as e:
        print(f"rlhf-eval emulator: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    try:  # a Ctrl-C right after the line is printed is still a clean stop
        print(f"rlhf-eval emulator serving {emu.base_url}", flush=True)
        emu.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
