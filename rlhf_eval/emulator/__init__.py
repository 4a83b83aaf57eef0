"""A local emulator of the Gemini REST ``generateContent`` API (Developer API and Vertex AI
paths) and of an OpenAI-compatible server (vLLM / SGLang / llama.cpp style), for tests and
offline recording. Test support and a user tool: nothing in rlhf-eval itself imports it.

    from rlhf_eval.emulator import Emulator
    with Emulator(port=0, latency_ms=0) as emu:     # server thread on 127.0.0.1; port 0 = any free port
        ...                                         # point an SDK at emu.base_url

or ``python -m rlhf_eval.emulator --port 8765`` (also installed as ``rlhf-eval-emulator``).
README.md in this package (rlhf_eval/emulator/README.md, installed with it) describes every
endpoint, answer, fault marker and knob.
"""
from __future__ import annotations

import threading
from typing import Any

from .bank import Bank, load_bank
from .openai_api import openai_quirks, openai_server, reasoning_style
from .server import EmulatorHTTPServer, EmulatorState, is_thinking_model, model_family

__all__ = ["Emulator", "is_thinking_model", "load_bank", "model_family", "openai_quirks", "openai_server",
           "reasoning_style"]


class Emulator:
    """The emulator server, run in a background thread.

    ``Emulator(port=0)`` binds at construction (so ``port``/``base_url`` are known at once)
    and serves from :meth:`start` (or ``with``) until :meth:`stop`.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        latency_ms: float = 0,
        *,
        bank: Bank | None = None,
        record_requests: bool = True,
        fail_rate: float = 0.0,
        fail_status: int = 503,
        fault_seed: int | str = 0,
        rate_limit_rpm: float = 0.0,
        rate_limit_burst: float | None = None,
        pad_to_tokens: int = 0,
    ):
        self.state = EmulatorState(
            bank=bank, latency_ms=latency_ms, record_requests=record_requests,
            fail_rate=fail_rate, fail_status=fail_status, fault_seed=fault_seed,
            rate_limit_rpm=rate_limit_rpm, rate_limit_burst=rate_limit_burst, pad_to_tokens=pad_to_tokens,
        )
        self._server = EmulatorHTTPServer((host, port), self.state)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Requests received so far: dicts with method, path, query (the ``key`` value
        redacted), model, body (parsed JSON, as sent) and status (the HTTP status answered)."""
        return self.state.requests

    @property
    def batch(self):
        """The batch endpoints' jobs, files and knobs (`delay_polls`, `fail_every`, `creates`):
        see rlhf_eval/emulator/batch_api.py."""
        from .batch_api import batch_state

        return batch_state(self.state)

    @property
    def latency_ms(self) -> float:
        return self.state.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self.state.latency_ms = float(value)

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the server's counters (see "Server-wide knobs"): ``requests``,
        ``failures_injected``, ``rate_limited``, ``marker_errors``, ``by_status``."""
        return self.state.stats()

    # server-wide knobs (settable while serving; see "Server-wide knobs")
    @property
    def fail_rate(self) -> float:
        return self.state.fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        self.state.configure(fail_rate=value)

    @property
    def fail_status(self) -> int:
        return self.state.fail_status

    @fail_status.setter
    def fail_status(self, value: int) -> None:
        self.state.configure(fail_status=value)

    @property
    def fault_seed(self) -> int | str:
        return self.state.fault_seed

    @fault_seed.setter
    def fault_seed(self, value: int | str) -> None:
        self.state.configure(fault_seed=value)

    @property
    def rate_limit_rpm(self) -> float:
        return self.state.rate_limit_rpm

    @rate_limit_rpm.setter
    def rate_limit_rpm(self, value: float) -> None:
        self.state.configure(rate_limit_rpm=value)

    @property
    def rate_limit_burst(self) -> float | None:
        return self.state.rate_limit_burst

    @rate_limit_burst.setter
    def rate_limit_burst(self, value: float | None) -> None:
        self.state.configure(rate_limit_burst=value)

    @property
    def pad_to_tokens(self) -> int:
        return self.state.pad_to_tokens

    @pad_to_tokens.setter
    def pad_to_tokens(self, value: int) -> None:
        self.state.configure(pad_to_tokens=value)

    def reset(self) -> None:
        """Forget recorded requests, the ``[[emulator:CODExN]]`` counters, the implicit-seed
        counters (so requests without a seed get seeds 0, 1, 2, ... again), the ``fail_rate``
        attempt counters and :attr:`stats`; refill the rate-limit bucket."""
        self.state.reset()

    def start(self) -> "Emulator":
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"rlhf-eval-emulator:{self.port}", daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (used by ``python -m``)."""
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    close = stop

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Emulator({self.base_url})"
