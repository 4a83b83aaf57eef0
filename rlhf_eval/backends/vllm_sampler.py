"""vLLM's offline engine as a `Sampler` (`provider: vllm`; `pip install 'rlhf-eval[vllm]'`, a GPU).

The k traces of a question are one `LLM.generate` (text prompt) or `LLM.chat` (chat prompt: vLLM
renders the tokenizer's chat template with the generation prompt) call with
`SamplingParams(n=k, seed=seed, logprobs=0, …)`. vLLM's V1 engine (the only one since 0.11) runs
n > 1 as n child requests, child i seeded `seed + i` (`vllm/v1/engine/parallel_sampling.py`), so
trace i is drawn as `n=1, seed=seed+i` draws it: the per-trace seeding of every other provider,
and what lets a partly recorded question draw just its missing traces. (vLLM does not promise
bitwise reproducibility across runs — batching changes float rounding — so the cassette, not a
re-run, is the record.)

`logprobs=0` returns each sampled token's log-probability; with vLLM's default `logprobs_mode`
(`raw_logprobs`) that is the raw model's log-softmax, before temperature and top-k/top-p — the
quantity the `hf` sampler and scorer compute. An engine handed in may say otherwise (TRL's
colocated one uses `processed_logprobs`): the mode is recorded with each result and named by the
trace's `logp_source`. A trace's text, `logp` and `token_count` are the
answer's (reasoning split off as for every provider, `rlhf_eval.reasoning`); the stop token
vLLM includes in `token_ids` is left out of all three, as the `hf` sampler does.

Every trace is one entry of the question's cassette (`POST local://vllm/generate`, see
`rlhf_eval.recording.local`) holding what the suite says — prompt, seed, temperature, top_p, top_k,
max_output_tokens and dtype — and, as its answer, the same result the `hf` sampler records. Replay
needs neither vLLM nor a GPU; a changed setting is a stale cassette. The engine settings
(`model.vllm`) are not in the request: for a given dtype and seed they change speed and memory,
not what is sampled (beyond float rounding, as batching does).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import threading
from typing import Any

from ..recording.local import local_request, record, replayed
from ..registry import exception_line
from ..sampling import Prompt, SamplingError, checking_replay
from ..suite import ModelConfig, VLLMConfig
from ..throttle import SERIAL, RequestPolicy
from ..types import Trace
from .hf_sampler import _result, _trace, model_version

# What `logp` is, by the engine's `logprobs_mode` (recorded with each result): vLLM's default, or
# the processed logprobs TRL's colocated engine asks for, handed in as `llm`.
LOGP_SOURCES = {"raw_logprobs": "vllm generate (raw_logprobs: the raw model's log-softmax)",
                "processed_logprobs": "vllm generate (processed_logprobs: after temperature, top-k, top-p)"}
LOGP_SOURCE = LOGP_SOURCES["raw_logprobs"]
INSTALL = "pip install 'rlhf-eval[vllm]'"
NOT_INSTALLED = (f"provider vllm: recording needs vLLM, which is not installed here: {INSTALL} (Linux, a CUDA GPU); "
                 "replaying (--rlhf-record-mode=none) needs neither vLLM nor a GPU")

# One engine per process: it takes a GPU's memory (gpu_memory_utilization) for as long as it lives,
# so a second suite of the same model and settings shares it, and one of other settings replaces it.
_ENGINE: dict[str, Any] = {}
_ENGINE_LOCK = threading.Lock()
# An engine is not thread-safe, and suites share it: questions sampled concurrently
# (--rlhf-concurrency) take turns; vLLM batches within a call.
_GENERATING = threading.Lock()


def request_seed(body: Any) -> int | None:
    """The seed of a `local://vllm/generate` body (its top-level `seed`); the provider's hook."""
    seed = body.get("seed") if isinstance(body, dict) else None
    return seed if type(seed) is int else None


def engine_settings(config: ModelConfig) -> dict[str, Any]:
    """The `vllm.LLM(...)` keyword arguments of `config`: its name, dtype (default auto) and `model.vllm`."""
    engine = config.vllm or VLLMConfig()
    settings: dict[str, Any] = {"model": os.path.expanduser(config.name), "dtype": config.dtype or "auto",
                                **engine.model_dump()}
    if settings["max_model_len"] is None:
        del settings["max_model_len"]  # vLLM's default: the model's own context
    return settings


def _start_engine(settings: dict[str, Any]):
    """The process's `vllm.LLM` for `settings`, built on first use; SamplingError (one line) when
    vLLM is not installed, finds no device to run on, or cannot load the model."""
    key = repr(sorted(settings.items()))
    with _ENGINE_LOCK:
        if _ENGINE.get("key") == key:
            return _ENGINE["llm"]
        try:
            found = importlib.util.find_spec("vllm") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise SamplingError(NOT_INSTALLED, permanent=True)
        try:
            import vllm
            from vllm.platforms import current_platform
        except Exception as exc:  # noqa: BLE001 - a broken install (CUDA libraries) is one line too
            raise SamplingError(f"provider vllm: vLLM is installed but does not import ({exception_line(exc)}); "
                                f"reinstall it: {INSTALL}", permanent=True) from None
        if not getattr(current_platform, "device_type", ""):
            raise SamplingError("provider vllm: recording needs a GPU vLLM can run on, and vLLM finds none here "
                                "(no CUDA/ROCm device); record on a GPU machine — replaying "
                                "(--rlhf-record-mode=none) needs no GPU", permanent=True)
        _ENGINE.clear()  # the old engine's memory goes before the new one takes its share
        try:
            llm = vllm.LLM(**settings)
        except Exception as exc:  # noqa: BLE001 - out of memory, a missing checkpoint, an unknown dtype
            raise SamplingError(f"provider vllm: could not start vLLM for {settings['model']}: "
                                f"{exception_line(exc)}", permanent=True) from None
        _ENGINE.update(key=key, llm=llm)
        return llm


class VLLMSampler:
    """Draws traces with vLLM's offline engine (`model.name`: a checkpoint directory or hub id, as
    `vllm.LLM(model=...)` takes it; `model.dtype` and `model.vllm` are the engine's settings).

    `llm` may be given: anything with `vllm.LLM`'s `generate`, `chat` and `get_tokenizer` (an
    engine a caller already holds). Otherwise the engine starts on the first trace a cassette does
    not answer — never in a replay. The suite's `temperature`, `top_p`, `top_k`, `max_output_tokens`
    apply; without `max_output_tokens` a trace runs until EOS or the context is full."""

    def __init__(self, config: ModelConfig, *, replay: bool = False, policy: RequestPolicy = SERIAL,
                 llm: Any = None) -> None:
        self.config = config
        self.policy = policy
        self._llm = llm
        self._version: str | None = config.name if llm is not None else None

    def _engine(self):
        if self._llm is None:
            self._llm = _start_engine(engine_settings(self.config))
        if self._version is None:
            self._version = model_version(self.config.name)
        return self._llm

    def _body(self, prompt: Prompt, seed: int) -> dict[str, Any]:
        """The canonical request of one trace: what the suite says, nothing read from the engine."""
        c = self.config
        return {"model": c.name, "prompt": prompt, "seed": seed, "temperature": c.temperature, "top_p": c.top_p,
                "top_k": c.top_k, "max_output_tokens": c.max_output_tokens, "dtype": c.dtype or "auto"}

    def sample(self, prompt: Prompt, k: int, seed: int) -> list[Trace]:
        if isinstance(prompt, str) and self.config.system_instruction:
            prompt = f"{self.config.system_instruction}\n\n{prompt}"  # as the hf sampler: no system turn in text
        seeds = [seed + i for i in range(k)]
        requests = [local_request("vllm", "generate", self._body(prompt, s)) for s in seeds]
        tags = self.config.reasoning_tags
        traces: list[Trace | None] = [None] * k
        for i, request in enumerate(requests):
            def play(i=i, request=request):
                found = replayed(request)
                return None if found is None else _vllm_trace(found, seeds[i], tags)
            traces[i] = checking_replay(play)
        missing = [i for i in range(k) if traces[i] is None]
        if missing:
            for i, result in zip(missing, self._generate(prompt, [seeds[i] for i in missing])):
                record(requests[i], result)
                traces[i] = _vllm_trace(result, seeds[i], tags)
        return traces  # type: ignore[return-value]

    def _generate(self, prompt: Prompt, seeds: list[int]) -> list[dict[str, Any]]:
        """One result (the cassette's response body, the hf sampler's shape) per seed, in order."""
        with _GENERATING:
            llm = self._engine()
            from vllm import SamplingParams  # only reached with an engine, so vLLM is installed

            c = self.config
            common: dict[str, Any] = {"temperature": c.temperature, "max_tokens": c.max_output_tokens, "logprobs": 0}
            # unset: vLLM's own default, no truncation (its "off" value for top_k changed across versions)
            common.update({key: value for key, value in (("top_p", c.top_p), ("top_k", c.top_k)) if value is not None})
            if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
                params = [SamplingParams(n=len(seeds), seed=seeds[0], **common)]  # child i: seed + i
            else:
                params = [SamplingParams(n=1, seed=s, **common) for s in seeds]
            try:
                if isinstance(prompt, list):
                    outputs = llm.chat([prompt] * len(params), params, use_tqdm=False)
                else:
                    outputs = llm.generate([prompt] * len(params), params, use_tqdm=False)
            except Exception as exc:  # noqa: BLE001 - the engine's error (a prompt too long, say) is one line
                raise SamplingError(f"vllm:{c.name}: {exception_line(exc)}", permanent=True) from None
            tokenizer = llm.get_tokenizer()
            mode = logprobs_mode(llm)
            results = []
            for request_output in outputs:
                prompt_tokens = len(request_output.prompt_token_ids or ())
                for completion in sorted(request_output.outputs, key=lambda o: o.index):
                    result = completion_result(completion, tokenizer, prompt_tokens, self._version or c.name)
                    results.append({**result, "logprobs_mode": mode})
        if len(results) != len(seeds):
            raise SamplingError(f"vllm:{self.config.name}: asked for {len(seeds)} completions, vLLM returned "
                                f"{len(results)}")
        return results


def logprobs_mode(llm: Any) -> str:
    """The engine's `logprobs_mode` (`llm.llm_engine.model_config`, vLLM ≥ 0.10.2), else vLLM's
    default `raw_logprobs` (an engine without the setting, as the test's stand-in)."""
    config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    mode = getattr(config, "logprobs_mode", None)
    mode = getattr(mode, "value", mode)
    return mode if isinstance(mode, str) else "raw_logprobs"


def completion_result(completion: Any, tokenizer: Any, prompt_tokens: int, version: str) -> dict[str, Any]:
    """The recorded result of one `vllm.CompletionOutput` (`token_ids`, `logprobs` — a sequence of
    {token id: Logprob} per position —, `finish_reason`, `stop_reason`): the hf sampler's result
    shape, its text decoded from the answer's token ids by `tokenizer` as the hf sampler does."""
    ids = [int(t) for t in completion.token_ids]
    if completion.logprobs is None or len(completion.logprobs) != len(ids):
        raise SamplingError(f"vLLM returned {0 if completion.logprobs is None else len(completion.logprobs)} "
                            f"logprobs for {len(ids)} tokens (asked with logprobs=0)")
    values = [float(position[token].logprob) for token, position in zip(ids, completion.logprobs)]
    if completion.finish_reason not in ("stop", "length"):
        raise SamplingError(f"vLLM ended a completion with finish_reason {completion.finish_reason!r}")
    stop = None
    # Stopped on EOS (stop_reason None) or a stop token id (an int, e.g. the generation config's
    # <|im_end|>): that token is the last of token_ids, not part of the answer. A stop *string*
    # (never set by this sampler) would leave its tokens in the text.
    if completion.finish_reason == "stop" and not isinstance(completion.stop_reason, str) and ids:
        stop = ids.pop()
        values.pop()
    result = _result(tokenizer, ids, values, stop, prompt_tokens, version)
    return {**result, "finish_reason": "STOP"} if completion.finish_reason == "stop" else result


def _vllm_trace(result: Any, seed: int, tags) -> Trace:
    trace = _trace(result, seed, tags)
    if trace.logp is None:
        return trace
    mode = result.get("logprobs_mode", "raw_logprobs")
    return dataclasses.replace(trace, logp_source=LOGP_SOURCES.get(mode, f"vllm generate ({mode})"))
