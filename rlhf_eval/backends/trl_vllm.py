"""TRL's vLLM server as a `Sampler` (`provider: trl_vllm`): sample the policy a trainer is training.

`trl vllm-serve --model <checkpoint>` (TRL 1.16: `trl/scripts/vllm_serve.py`) runs vLLM's own
OpenAI-compatible server, with `--logprobs-mode processed_logprobs` and the weight-transfer
endpoints through which `GRPOTrainer(use_vllm=True, vllm_mode="server")` pushes the live weights.
This sampler asks it what TRL's own client asks (`trl/generation/vllm_client.py`,
`VLLMClient.generate` / `.chat`): `POST /v1/completions` (a text prompt) or
`POST /v1/chat/completions` (a chat; the server renders the chat template) with `n = k`, `seed`,
`logprobs` for the sampled tokens and `return_token_ids`. vLLM's V1 engine seeds completion i of
an `n > 1` request `seed + i`, so trace i has seed `seed + i` as with every other provider.

The request is plain HTTP through httpx: recorded in the question's cassette and matched on its
canonical JSON body like any provider's, so replay needs no server (and a changed setting is a
stale cassette). The body holds only the suite's text — no token ids — and the response holds the
answer text and each token's text, so neither recording nor replay needs the tokenizer.

`logp` is the sum of the answer's sampled-token logprobs as the server reports them. TRL's server
reports *processed* logprobs (after temperature and top-k/top-p): at temperature 1 without top_p or
top_k they are the raw model's (the `hf` scorer's), otherwise the sampling distribution's — sample
at temperature 1 for DPO margins comparable with an `hf` reference. The stop token vLLM includes in
`token_ids` is left out of the answer's text, `logp` and `token_count`, as the `hf` sampler does.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

from ..credentials import redact_url
from ..sampling import (Prompt, SamplingError, json_list, json_object, ordered, reads_body, sample_in_units)
from ..suite import ModelConfig
from ..throttle import SERIAL, RequestPolicy
from ..types import Trace
from .hf_sampler import _trace
from .openai_compat import _content

BASE_URL_ENV = "VLLM_SERVER_BASE_URL"  # as TRL's GRPOConfig.vllm_server_base_url
DEFAULT_URL = "http://localhost:8000"  # `trl vllm-serve`'s default port, as TRL's client assumes
# Cassettes match on path, not host: a replay needs no server.
REPLAY_URL = "http://trl-vllm-server.invalid"
LOGP_SOURCE = "trl vllm-serve logprobs (processed: after temperature, top-k, top-p)"
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS"}


def request_seed(body: Any) -> int | None:
    """The seed of a completions or chat request body (its top-level `seed`); the provider's hook."""
    seed = body.get("seed") if isinstance(body, dict) else None
    return seed if type(seed) is int else None


def trainer_server_url(args: Any) -> str | None:
    """The vLLM server a TRL trainer's `args` (a `GRPOConfig`, or any config with TRL's `use_vllm`,
    `vllm_mode`, `vllm_server_*` fields) generates with, as TRL builds it: `vllm_server_base_url`,
    else `http://{vllm_server_host}:{vllm_server_port}`; None when it uses no server (no vLLM, or
    `vllm_mode="colocate"`, TRL 1.16's default). For a callback sampling the live policy through
    the same server."""
    if not getattr(args, "use_vllm", False) or getattr(args, "vllm_mode", "colocate") != "server":
        return None
    base = getattr(args, "vllm_server_base_url", None)
    if base:
        return str(base)
    return f"http://{getattr(args, 'vllm_server_host', '0.0.0.0')}:{getattr(args, 'vllm_server_port', 8000)}"


@functools.lru_cache(maxsize=8)
def _client(base_url: str):
    import httpx

    # No retries of its own (httpx has none): the cassette keeps exactly the exchanges that happened.
    return httpx.Client(base_url=base_url, timeout=600.0)


class TRLVLLMSampler:
    """Samples `model.name` (the name the server serves: the `--model` it was started with) from the
    server at `model.base_url` (else $VLLM_SERVER_BASE_URL, else http://localhost:8000; a trailing
    `/v1` is allowed), the k traces of a question in one request. Needs `model.max_output_tokens`
    (vLLM's completions default to 16 tokens)."""

    def __init__(self, config: ModelConfig, *, replay: bool = False, policy: RequestPolicy = SERIAL) -> None:
        from . import server_url

        self.config = config
        self.policy = policy
        url = REPLAY_URL if replay else (server_url(config.base_url, BASE_URL_ENV) or DEFAULT_URL)
        self._url = url.rstrip("/").removesuffix("/v1")
        self.base_url = redact_url(self._url)  # for messages: without credentials

    def _body(self, prompt: Prompt, seed: int, n: int) -> tuple[str, dict[str, Any]]:
        """(path, JSON body) of the request for `n` traces from `seed`."""
        c = self.config
        body: dict[str, Any] = {"model": c.name, "n": n, "seed": seed, "temperature": c.temperature,
                                "max_tokens": c.max_output_tokens, "return_token_ids": True,
                                # the text is every generated token's but the stop token, as the hf
                                # sampler's: a special token the model emits is in logp, so in the text
                                "skip_special_tokens": False}
        if c.top_p is not None:
            body["top_p"] = c.top_p
        if c.top_k is not None:
            body["top_k"] = c.top_k
        if isinstance(prompt, list):
            return "/v1/chat/completions", {**body, "messages": prompt, "logprobs": True, "top_logprobs": 0}
        text = f"{c.system_instruction}\n\n{prompt}" if c.system_instruction else prompt
        return "/v1/completions", {**body, "prompt": text, "logprobs": 0}

    def _request(self, prompt: Prompt, seed: int, n: int) -> list[Trace]:
        import httpx

        path, body = self._body(prompt, seed, n)
        try:
            response = _client(self._url).post(path, json=body)
        except Exception as exc:
            # httpx maps httpcore's network errors to its own; one from another httpcore import than
            # the one the recording patch's httpx maps (a process that re-imported httpx) escapes as is.
            if not (isinstance(exc, httpx.TransportError) or type(exc).__module__.startswith("httpcore")):
                raise
            raise SamplingError(f"could not reach TRL's vLLM server at {self.base_url} ({type(exc).__name__}: {exc}); "
                                "is `trl vllm-serve` running? (set model.base_url or $" + BASE_URL_ENV + ")",
                                transient=True) from None
        if response.status_code >= 400:
            raise SamplingError(f"TRL's vLLM server at {self.base_url} answered {response.status_code}: "
                                f"{_message(response)}", status=response.status_code)
        return traces_from_vllm_server(response.content, seed=seed, expected=n, tags=self.config.reasoning_tags)

    def sample(self, prompt: Prompt, k: int, seed: int) -> list[Trace]:
        return sample_in_units(lambda s, n, _lp: self._request(prompt, s, n), k=k, seed=seed, per_request=k,
                               logprobs=True, policy=self.policy)


def _message(response) -> str:
    """The error text of a vLLM error body (`{"error": {"message": ...}}` or `{"message": ...}`), clipped."""
    try:
        body = response.json()
        detail = body.get("error", body) if isinstance(body, dict) else body
        text = str(detail.get("message", detail)) if isinstance(detail, dict) else str(detail)
    except ValueError:
        text = response.text
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:300] + "…"


@reads_body
def traces_from_vllm_server(body: dict, *, seed: int, expected: int, tags) -> list[Trace]:
    """The traces of one `/v1/completions` or `/v1/chat/completions` body of vLLM's server asked
    with `return_token_ids` and sampled-token logprobs: choice j is trace j, seed `seed + j`.
    Raises SamplingError (MalformedBody) for a body of another shape."""
    version = body.get("model")
    choices = [choice for _, choice in ordered(json_list(body, "choices"))]
    if len(choices) != expected:
        raise SamplingError(f"TRL's vLLM server returned {len(choices)} choices for n={expected}")
    shared_prompt = body.get("prompt_token_ids")  # chat: once per response; completions: per choice
    traces = []
    for j, choice in enumerate(choices):
        result = _result(choice, version, shared_prompt)
        trace = _trace(result, seed + j, tags)
        traces.append(trace if trace.logp is None else dataclasses.replace(trace, logp_source=LOGP_SOURCE))
    return traces


def _result(choice: dict, version: Any, shared_prompt: Any) -> dict[str, Any]:
    """One choice as the hf sampler's result (`rlhf_eval.backends.hf_sampler._trace` reads it)."""
    # vLLM's reasoning parser (`--reasoning-parser`) sends the reasoning beside the answer, while
    # token_ids and logprobs cover both: the answer's share is cut where the token texts prove it.
    text, beside = _content(json_object(choice, "message")) if "message" in choice else (choice.get("text"), None)
    ids = choice.get("token_ids")
    if not isinstance(ids, list):
        raise SamplingError("TRL's vLLM server sent no token_ids; it needs vLLM ≥ 0.10.2 (return_token_ids), "
                            "as TRL's own client does")
    logprobs = json_object(choice, "logprobs")
    if isinstance(logprobs.get("content"), list):  # chat
        tokens = [entry.get("token") for entry in logprobs["content"]]
        values = [entry.get("logprob") for entry in logprobs["content"]]
    else:
        tokens, values = json_list(logprobs, "tokens"), json_list(logprobs, "token_logprobs")
    if not (len(tokens) == len(values) == len(ids)):
        raise SamplingError(f"TRL's vLLM server sent {len(ids)} token ids, {len(tokens)} tokens and {len(values)} "
                            "logprobs; expected one of each per generated token")
    raw_finish = choice.get("finish_reason")
    if raw_finish not in _FINISH:
        raise SamplingError(f"TRL's vLLM server ended a completion with finish_reason {raw_finish!r}")
    stop = None
    if raw_finish == "stop" and not isinstance(choice.get("stop_reason"), str) and ids:
        # EOS (stop_reason null) or a stop token id: the last token, not the answer's
        stop, ids, tokens, values = ids[-1], ids[:-1], tokens[:-1], values[:-1]
    prompt_ids = choice.get("prompt_token_ids", shared_prompt)
    return {"model_version": version, "text": text or "", "reasoning": beside, "token_ids": ids, "tokens": tokens,
            "logprobs": values,
            "finish_reason": "STOP" if stop is not None else _FINISH[raw_finish], "stop_token_id": stop,
            "prompt_tokens": len(prompt_ids) if isinstance(prompt_ids, list) else None}

