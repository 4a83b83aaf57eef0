"""A local emulator of the Gemini REST ``generateContent`` API, for tests and offline recording.

Usage::

    from rlhf_eval.emulator import Emulator
    with Emulator(port=0, latency_ms=0) as emu:     # server thread on 127.0.0.1; port 0 = any free port
        client = genai.Client(api_key="any", http_options=types.HttpOptions(
            base_url=emu.base_url, api_version="v1beta"))
        ...
        emu.requests        # one dict per request received: method, path, query, model, body, status

or from a shell: ``python -m rlhf_eval.emulator --port 8765 [--host 127.0.0.1] [--latency-ms 0]``
(also installed as ``rlhf-eval-emulator``).

Every response says ``"modelVersion": "<model>-emulator"``: nothing it returns comes from a
real model. It needs no network and no file outside this package.

Endpoints
---------
``POST /v1beta/models/{model}:generateContent`` and ``POST /v1/models/{model}:generateContent``.
``:streamGenerateContent`` answers 501 UNIMPLEMENTED; any other path or method answers 404.
Every error body is a ``google.rpc.Status`` JSON object (``{"error": {code, message, status[, details]}}``).

* **Auth**: the key is read from the ``x-goog-api-key`` header or the ``?key=`` query
  parameter. Any non-empty key is accepted; a missing or empty one gives the real 400
  ``API_KEY_INVALID`` body (ErrorInfo + LocalizedMessage details).
* **Parsing** is tolerant: keys are normalised from snake_case to camelCase at every level;
  numbers may be floats (``topK: 40.0``) or numeric strings; enums may be ints or names.
  ``?$alt=json;enum-encoding=int`` (sent by the legacy google-generativeai SDK) makes the
  response encode ``finishReason``, ``blockReason`` and safety enums as integers, as Google does.
* **Prompt** = every text part of the user turns (role ``user`` or none), joined with
  ``"\\n"``. The ``systemInstruction`` text only counts towards ``promptTokenCount``.
  Fault markers (below) are removed and whitespace is collapsed before the answer is chosen.

Answers (deterministic from model, prompt, seed and candidate index)
---------------------------------------------------------------------
* **Trace bank** (``data/bank.json.gz``, built by ``build_bank.py``): the 400 questions of
  GSM8K's ``example_model_solutions.jsonl`` (MIT licence, (c) 2021 OpenAI, ``data/LICENSE``),
  each with the text of its four GPT-3-written solutions (6B/175B, finetuning/verification;
  some right, some wrong). The bank holds no correctness labels and no ground truth: the
  emulator never consults an answer key.
* If the prompt contains a bank question (whitespace-insensitive substring; if several
  occur, the one starting last), candidate ``j`` of a request with ``seed`` ``s`` (default 0)
  is solution ``blake2b(model, prompt, s, j) mod 4``. With ``temperature: 0`` the choice is
  ``blake2b(model, prompt) mod 4``: every candidate and every seed get the same text
  (greedy decoding).
* Otherwise, if the prompt has multiple-choice options (at least two distinct letters A-J
  on lines like ``A) ...``, ``(B) ...``, ``C. ...``), the answer is one reasoning sentence and
  ``The answer is (X).`` with X picked by the same hash among the options found; otherwise a
  short generic reasoning and ``The answer is N.`` with N one of the numbers in the prompt
  (picked by the hash), or ``The answer is unknown.`` if the prompt has no number.
* ``stopSequences``: the text is cut before the first occurrence of any of them (``STOP``).
  ``maxOutputTokens``: a longer text is truncated to that many tokens and gets
  ``finishReason: "MAX_TOKENS"``; otherwise ``"STOP"``.

Tokenizer and log-probabilities
-------------------------------
* Tokens: ``re.findall(r"\\s*\\w+|\\s*[^\\w\\s]|\\s+", text)`` -- optional leading whitespace
  plus a word or one punctuation character; trailing whitespace is a token of its own, so
  the tokens join back to the text exactly. Token id = ``zlib.crc32(token.encode()) % 2**18``.
* Log-probability of a token: an add-one smoothed **unigram** model over all tokens of all
  bank solutions (questions excluded), counted once when the bank is loaded:
  ``logp(t) = log((count(t) + 1) / (N + V))`` with N the number of tokens and V the number
  of distinct tokens. A sequence's logp is the sum over its tokens, in order. It is a
  function of the text alone -- it knows nothing about correctness.
  (``rlhf_eval.emulator.load_bank().model.text_logp(text)`` computes it.)
* ``topCandidates`` (``logprobs: K``): K entries per step sorted by logProbability desc,
  always including the chosen token; the other K-1 come from the 64 most frequent bank
  tokens at an offset derived from (chosen token id, step).

Model families (by model-name prefix; a leading ``models/`` is ignored)
-----------------------------------------------------------------------
* ``gemini-2.0*``, ``gemini-1.5*`` -- the "logprobs family": ``responseLogprobs: true`` returns
  ``logprobsResult`` with ``chosenCandidates`` (token, tokenId, logProbability per token) and
  ``logProbabilitySum``; ``logprobs: K`` (1..20) adds ``topCandidates``. Every candidate
  carries ``avgLogprobs`` (= logProbabilitySum / tokens), even without ``responseLogprobs``.
  ``candidateCount`` 1..8.
* ``gemini-2.5*`` -- ``responseLogprobs: true`` gives 400 INVALID_ARGUMENT
  "Logprobs is not enabled for models/<model>". ``candidateCount`` 1..8. No ``avgLogprobs``.
* ``gemini-3*`` and any other name -- ``responseLogprobs: true`` gives 400 "Logprobs is not
  supported for this model."; ``candidateCount`` > 1 gives 400 INVALID_ARGUMENT "Multiple
  candidates is not enabled for this model". No ``avgLogprobs``.

For every model: ``candidateCount`` > 8 (or < 0) gives 400 INVALID_ARGUMENT
(``candidateCount: 0`` means 1); ``logprobs`` outside [0, 20], or set without
``responseLogprobs: true``, gives 400.

Response
--------
``candidates`` (each ``content: {role: "model", parts: [{text}]}``, ``finishReason``, ``index``),
``usageMetadata`` (``promptTokenCount`` = tokens of user text + system instruction,
``candidatesTokenCount`` = sum over candidates (omitted when 0, as proto3 JSON does),
``totalTokenCount``, ``promptTokensDetails``), ``modelVersion: "<model>-emulator"`` and a
deterministic ``responseId`` (hash of model and request body).

Fault injection (markers in the prompt text, case-insensitive, removed before answering)
-----------------------------------------------------------------------------------------
``[[emulator:block]]``       prompt blocked: no candidates, ``promptFeedback: {blockReason: "SAFETY", safetyRatings}``
``[[emulator:safety]]``      every candidate has ``finishReason: "SAFETY"``, safety ratings and no content
``[[emulator:max_tokens]]``  every candidate is ``{content: {role: "model"}, finishReason: "MAX_TOKENS"}``
                             (a thinking model that spent its budget; ``thoughtsTokenCount`` is set)
``[[emulator:429]]``         429 RESOURCE_EXHAUSTED with QuotaFailure, Help and ``RetryInfo {"retryDelay": "2s"}``
``[[emulator:500]]``         500 INTERNAL
``[[emulator:503]]``         503 UNAVAILABLE "The model is overloaded. Please try again later."
                             (also 400, 403, 404, 504)
``[[emulator:503x2]]``       fails the first 2 times this exact (model, request body) is seen, then
                             answers normally (any code, any count: ``429x1``, ``500x3``...)
``[[emulator:latency=200]]`` sleep 200 ms before answering (adds to the server-wide ``latency_ms``)

An unknown marker gives 400 naming it. Markers are read from the user turns only.

Server
------
``http.server.ThreadingHTTPServer`` with HTTP/1.1 keep-alive; thread-safe (the bank is
read-only, the request log and the ``xN`` counters are behind a lock); silent (no request
log on stderr); the bank is loaded once per process (~0.15 s) and each solution is
pre-tokenised with its logps, so a request costs well under a millisecond of CPU.
"""
from __future__ import annotations

import threading
from typing import Any

from .bank import Bank, load_bank
from .server import EmulatorHTTPServer, EmulatorState, model_family

__all__ = ["Emulator", "load_bank", "model_family"]


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
    ):
        self.state = EmulatorState(bank=bank, latency_ms=latency_ms, record_requests=record_requests)
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
    def latency_ms(self) -> float:
        return self.state.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self.state.latency_ms = float(value)

    def reset(self) -> None:
        """Forget recorded requests and the ``[[emulator:CODExN]]`` counters."""
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
