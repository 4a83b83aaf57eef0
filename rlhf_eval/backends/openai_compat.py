"""OpenAI-compatible servers (vLLM, SGLang, llama.cpp's server, OpenAI): a sampler and a scorer.

Both go through the official `openai` SDK (so vcrpy records the real HTTP) with retries off, and
read the raw JSON body, which keeps server extensions and treats every logprob field as optional.

The scorer asks `/v1/completions` to echo `context + completion` with `logprobs` and keeps only
the tokens whose character offset falls inside the completion. It checks that the server really
scored the given text — one logprob per completion token, each token where its offset says, together
spelling the completion exactly — because some servers (llama.cpp's, late 2026) ignore `echo` and
return logprobs for generated tokens only, and others report offsets that drift from the text;
either would otherwise turn into plausible-looking, meaningless numbers.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

from ..credentials import redact_url, redact_urls
from ..sampling import (Prompt, SamplingError, Score, ScoringError, checking_replay, json_list, json_object,
                        ordered, reads_body, sample_in_units)
from ..throttle import SERIAL, RequestPolicy
from ..suite import ModelConfig, ScorerConfig
from ..finish import withheld
from ..reasoning import DEFAULT_TAGS, answer_logprobs, split_reasoning
from ..types import Trace, charge_request

BASE_URL_ENV = "OPENAI_BASE_URL"
REPLAY_KEY = "replay-without-a-key"
# Local servers (vLLM, llama.cpp) usually want no key, but the SDK insists on one.
NO_KEY = "EMPTY"
# Cassettes match on path, not host: a replay needs no server, only the usual /v1 prefix.
REPLAY_URL = "http://openai-compatible.invalid/v1"
# OpenAI's values, and those vLLM, SGLang, TGI, llama.cpp and Mistral add; any other is kept in upper case
# and reads as an error that names it.
_FINISH = {"stop": "STOP", "eos": "STOP", "eos_token": "STOP", "stop_sequence": "STOP", "": "STOP", None: "STOP",
           "length": "MAX_TOKENS", "model_length": "MAX_TOKENS", "content_filter": "SAFETY",
           "tool_calls": "UNEXPECTED_TOOL_CALL", "function_call": "UNEXPECTED_TOOL_CALL", "abort": "ABORTED"}


def request_seed(body: Any) -> int | None:
    """The seed of a chat or completions request body (parsed JSON): its top-level `seed`, or
    None. The `openai` provider's `request_seed` hook (`rlhf_eval.providers`)."""
    seed = body.get("seed") if isinstance(body, dict) else None
    return seed if type(seed) is int else None


def _client(base_url: str | None, api_key_env: str | None, replay: bool):
    from . import api_key, server_url

    url = server_url(base_url, BASE_URL_ENV) or (REPLAY_URL if replay else None)
    if not url:
        raise SamplingError("no server URL for the openai provider: set base_url in the suite "
                            f"(e.g. http://localhost:8000/v1) or {BASE_URL_ENV}")
    key = REPLAY_KEY if replay else (api_key("openai", api_key_env) or NO_KEY)
    # The URL returned is for messages: without its credentials.
    return _sdk_client(url, key), redact_url(url)


@functools.lru_cache(maxsize=32)
def _sdk_client(base_url: str, api_key: str):
    """One SDK client per server and key, shared by every suite of the process (its clients are
    thread-safe): building one loads the CA bundle, ~0.05 s of CPU."""
    import openai

    # Retries off: vcrpy must see (and a cassette keep) exactly the exchanges that happened.
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300.0)


def _error(exc, model: str, url: str) -> SamplingError:
    """A SamplingError with the status and the delay the server asked for (Retry-After)."""
    import openai

    status = getattr(exc, "status_code", None)
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    retry_after = None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            retry_after = float(headers[name]) * scale
            break
        except (KeyError, TypeError, ValueError):
            continue
    return SamplingError(redact_urls(_describe(exc, model, url)), status=status, retry_after=retry_after,
                         transient=isinstance(exc, openai.APIConnectionError))


def _describe(exc, model: str, url: str) -> str:
    import openai

    if isinstance(exc, openai.APIConnectionError):
        return f"could not reach {url} ({type(exc).__name__}: {exc}); is the server running?"
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    detail = body.get("message") if isinstance(body, dict) else None
    # str(): a server's body may hold any JSON value there, and `.lower()` below needs text
    message = str(detail or getattr(exc, "message", None) or exc)
    if status == 400 and "logprob" in message.lower():
        return f"{model} refuses log-probabilities ({message}); set model.logprobs: false in the suite"
    if status == 401:
        return f"the server rejected the key ({message}); set the key's environment variable"
    if status == 404:
        return f"model {model!r} not found at {url} ({message}); check the name the server serves"
    if status == 429:
        return f"rate limited by {url} ({message}); wait, or record fewer questions at a time"
    return f"{url} answered {status}: {message}"


class OpenAISampler:
    """Samples from `/v1/chat/completions` (default) or `/v1/completions`, one request per trace
    (or `candidates_per_request` choices per request via `n`), with seed `seed + i`."""

    def __init__(self, model: ModelConfig, *, replay: bool = False, policy: RequestPolicy = SERIAL):
        self.model = model
        self.policy = policy
        self._client, self.base_url = _client(model.base_url, model.api_key_env, replay)

    def _request(self, prompt: Prompt, seed: int, n: int, logprobs: bool) -> list[Trace]:
        import openai

        m = self.model
        common: dict[str, Any] = {"model": m.name, "temperature": m.temperature, "seed": seed}
        if n > 1:
            common["n"] = n
        if m.top_p is not None:
            common["top_p"] = m.top_p
        if m.max_output_tokens is not None:
            common["max_tokens"] = m.max_output_tokens
        if m.top_k is not None:
            common["extra_body"] = {"top_k": m.top_k}  # a vLLM/SGLang extension
        try:
            if m.endpoint == "chat":
                if isinstance(prompt, list):  # a chat: the whole conversation, its system message included
                    messages = prompt
                else:
                    messages = [{"role": "system", "content": m.system_instruction}] if m.system_instruction else []
                    messages.append({"role": "user", "content": prompt})
                if logprobs:
                    common["logprobs"] = True
                    if m.top_logprobs:
                        common["top_logprobs"] = m.top_logprobs
                raw = self._client.chat.completions.with_raw_response.create(messages=messages, **common)
            else:
                if isinstance(prompt, list):  # a suite that loaded cannot get here (it is refused there)
                    raise SamplingError(f"{m.name}: model.endpoint completions sends text, not messages; use "
                                        "endpoint: chat for a chat prompt", permanent=True)
                text = f"{m.system_instruction}\n\n{prompt}" if m.system_instruction else prompt
                if logprobs:
                    common["logprobs"] = m.top_logprobs or 0
                raw = self._client.completions.with_raw_response.create(prompt=text, **common)
        except openai.APIError as exc:
            raise _error(exc, m.name, self.base_url) from exc
        return traces_from_openai(raw.http_response.content, seed=seed, expected=n, tags=m.reasoning_tags)

    def sample(self, prompt: Prompt, k: int, seed: int) -> list[Trace]:
        """k traces for `prompt`: text (one user message after `model.system_instruction`), or a
        chat, sent as its `messages`."""
        return sample_in_units(lambda s, n, lp: self._request(prompt, s, n, lp), k=k, seed=seed,
                               per_request=self.model.candidates_per_request, logprobs=self.model.logprobs,
                               policy=self.policy)


@reads_body
def traces_from_openai(body: dict, *, seed: int | None, expected: int,
                       tags: Sequence[str] | None = DEFAULT_TAGS) -> list[Trace]:
    """Traces from one chat.completion or text_completion JSON body.

    Reasoning is `message.reasoning_content` or `message.reasoning` (vLLM, SGLang, DeepSeek),
    `thinking` chunks of a list `content` (Mistral), or an inline `tags` span in the text; `logp`
    and `token_count` are the answer's (logprobs that cover the reasoning too are cut to the answer
    only where the token texts prove the boundary). `model_version` is the `model` the server
    names; `system_fingerprint` (a build or cache id) is kept apart. Raises SamplingError for a
    body of another shape."""
    version, fingerprint = body.get("model"), body.get("system_fingerprint")
    choices = json_list(body, "choices")
    billed = request_usage(json_object(body, "usage"))
    usage = json_object(body, "usage") if len(choices) == 1 else {}
    traces = [_trace(choice, j, usage, seed, version, fingerprint, tags) for j, choice in ordered(choices)]
    for j in range(len(traces), expected):
        traces.append(Trace(text="", finish_reason="MISSING_CANDIDATE", token_count=0, logp=None, seed=seed,
                            model_version=version, candidate_index=j, system_fingerprint=fingerprint))
    return charge_request(traces, *billed)


def request_usage(usage: dict) -> tuple[int | None, int | None]:
    """(prompt tokens, output tokens) one request was billed, from its `usage`: `prompt_tokens` and
    `completion_tokens` (which include `reasoning_tokens`, O04, O05); each None when absent (vLLM's
    completions excerpt O02 has no usage). With `n` > 1 the prompt is counted once per request."""
    def count(key: str) -> int | None:
        value = usage.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise TypeError(f"usage.{key} is {value!r}, not a token count")
        return value
    return count("prompt_tokens"), count("completion_tokens")


def _token_logprobs(logprobs: dict) -> tuple[list, list, str | None]:
    """(token texts, logprobs, source) in either shape: chat's and llama.cpp's `content` list, or
    the legacy completions `tokens`/`token_logprobs`."""
    if isinstance(logprobs.get("content"), list):
        content = logprobs["content"]
        return [t.get("token", "") for t in content], [t.get("logprob") for t in content], "logprobs.content"
    values = logprobs.get("token_logprobs")
    if isinstance(values, list):
        return list(logprobs.get("tokens") or []), values, "logprobs.token_logprobs"
    return [], [], None


def _content(message: dict) -> tuple[str, str | None]:
    """(answer text, reasoning beside it or None) of a chat message. `content` may be a list of
    chunks: Mistral's reasoning models send `{"type": "thinking", "thinking": [...]}` before the text."""
    content = message.get("content") or ""
    beside = next((message[k] for k in ("reasoning_content", "reasoning") if message.get(k) is not None), None)
    if isinstance(content, list):
        texts = [c.get("text") or "" for c in content if c.get("type") == "text"]
        thinking = [t.get("text") or "" for c in content if c.get("type") == "thinking"
                    for t in c.get("thinking") or ()]
        content = "".join(texts)
        if thinking:
            beside = "\n\n".join(filter(None, [beside, *thinking]))
    if not isinstance(content, str) or not (beside is None or isinstance(beside, str)):
        raise TypeError(f"message content of type {type(content).__name__}, reasoning {type(beside).__name__}")
    return content, beside


def _trace(choice: dict, j: int, usage: dict, seed, version, fingerprint, tags) -> Trace:
    """One choice; `usage` is the body's when it describes this choice alone."""
    message = choice.get("message")
    if message is not None:
        shown, beside = _content(message)
    else:
        shown, beside = choice.get("text") or "", None
    details = json_object(usage, "completion_tokens_details")
    reasoning_tokens = details.get("reasoning_tokens")
    split = split_reasoning(shown, tags, beside=beside, reasoned=bool(reasoning_tokens))
    raw_finish = choice.get("finish_reason")
    finish = _FINISH.get(raw_finish) or str(raw_finish).upper()

    tokens, values, source = _token_logprobs(json_object(choice, "logprobs"))
    logp = count = note = None
    if withheld(finish):
        note = f"the server withheld the answer (finish_reason {raw_finish})"
    elif values:
        logp, count, note = answer_logprobs(tokens, values, shown, split.answer_start, has_reasoning=split.reasoned)
    # answer_logprobs sets count with logp: the answer's tokens were found among the logprob tokens
    if reasoning_tokens is None and count is not None and split.tagged:
        reasoning_tokens = len(values) - count  # the tokens before the answer spell the inline reasoning
    if count is None and usage.get("completion_tokens") is not None:
        if reasoning_tokens is not None:  # completion_tokens includes reasoning_tokens
            count = max(0, int(usage["completion_tokens"]) - int(reasoning_tokens))
        elif not split.reasoned:
            count = int(usage["completion_tokens"])
    return Trace(
        text=split.answer, finish_reason=finish, token_count=count, logp=logp, seed=seed, model_version=version,
        candidate_index=j, logp_source=source if logp is not None else None,
        reasoning=split.reasoning,
        reasoning_tokens=int(reasoning_tokens) if reasoning_tokens is not None else None, logp_note=note,
        answer_missing=split.answer_missing,
        system_fingerprint=fingerprint,
    )


class OpenAIScorer:
    """Teacher-forced log-probabilities from `/v1/completions` with `echo` (vLLM, SGLang)."""

    def __init__(self, config: ScorerConfig, *, replay: bool = False, policy: RequestPolicy = SERIAL):
        self.config = config
        self.policy = policy
        self.name = f"openai:{config.name}"
        self._client, self.base_url = _client(config.base_url, config.api_key_env, replay)

    def score(self, prompt: Prompt, completions: Sequence[str]) -> list[Score]:
        import openai

        if not completions:
            return []
        if isinstance(prompt, list):  # a suite that loaded cannot get here (it is refused there)
            raise ScoringError(f"scorer {self.name} scores text through /v1/completions, which cannot apply a chat "
                               "template; score a chat prompt with provider hf", permanent=True)
        context = self.config.template.replace("{prompt}", prompt)
        texts = [context + c for c in completions]
        def send():
            try:
                # One request for the whole group; max_tokens 1 because some servers refuse 0 with echo.
                return self._client.completions.with_raw_response.create(
                    model=self.config.name, prompt=texts, echo=True, logprobs=0, max_tokens=1, temperature=0.0)
            except openai.APIError as exc:
                err = _error(exc, self.config.name, self.base_url)
                message = str(err)
                if "echo" in message.lower():
                    message += ("; this server cannot score given text (llama.cpp's server rejects `echo`): "
                                "score with vLLM or SGLang, or provider: hf")
                raise ScoringError(f"scorer {self.name}: {message}", status=err.status, retry_after=err.retry_after,
                                   transient=err.transient) from exc

        raw = self.policy.call(lambda: checking_replay(send))
        return checking_replay(lambda: _echo_scores(raw.http_response.content, scorer=self, start=len(context),
                                                    texts=texts), fresh=False)

    def _completion_score(self, choice: dict, start: int, text: str) -> Score:
        lp = json_object(choice, "logprobs")
        tokens, values, offsets = json_list(lp, "tokens"), json_list(lp, "token_logprobs"), json_list(lp, "text_offset")
        where = f"scorer {self.name} at {self.base_url}"
        if not (len(tokens) == len(values) == len(offsets)):
            raise ScoringError(f"{where}: logprobs has {len(tokens)} tokens, {len(values)} logprobs and "
                               f"{len(offsets)} offsets; expected one of each per token")
        echoed = choice.get("text") or ""
        if not echoed.startswith(text) or not offsets or offsets[0] != 0:
            raise ScoringError(
                f"{where}: the server did not score the given text — it returned {len(values)} logprobs for a "
                f"{len(text)}-character text{' and did not echo it' if not echoed.startswith(text) else ''}. "
                "It ignores `echo` and reports generated tokens only (llama.cpp's server does this); "
                "score with vLLM or SGLang, or provider: hf")
        inside = [i for i, off in enumerate(offsets) if start <= off < len(text)]
        if not text[start:]:
            return Score(0.0, 0)
        if not inside or offsets[inside[0]] != start:
            raise ScoringError(f"{where}: no token starts where the completion starts (character {start}); "
                               "a token straddles the context and the completion — end the scorer template "
                               "with a newline")
        missing = [i for i in inside if values[i] is None]
        if missing:
            raise ScoringError(f"{where}: {len(missing)} of {len(inside)} completion tokens have no logprob "
                               "(the first token of a text has none: give the scorer a non-empty template)")
        # Each completion token must sit in the echoed text where its offset says, and they must end
        # where the completion ends: servers that decode tokens one by one (SentencePiece spaces,
        # byte-fallback pieces) report offsets that drift, and a drifted sum would look plausible.
        if any(echoed[offsets[i]:offsets[i] + len(tokens[i])] != tokens[i] for i in inside) or \
                any(offsets[b] != offsets[a] + len(tokens[a]) for a, b in zip(inside, inside[1:])) or \
                offsets[inside[-1]] + len(tokens[inside[-1]]) != len(text):
            raise ScoringError(f"{where}: token offsets do not tile the text (the server's token texts and offsets "
                               "disagree, e.g. for non-ASCII text); "
                               "cannot tell which logprobs belong to the completion")
        return Score(float(sum(values[i] for i in inside)), len(inside))


@reads_body
def _echo_scores(body: dict, *, scorer: OpenAIScorer, start: int, texts: list[str]) -> list[Score]:
    """The scores of `texts` (each the context, `start` characters, then a completion) from the
    body of one echoed /v1/completions request; raises ScoringError when the server did not score them."""
    choices = [choice for _, choice in ordered(json_list(body, "choices"))]
    if len(choices) != len(texts):
        raise ScoringError(f"scorer {scorer.name}: asked to score {len(texts)} texts, the server answered "
                           f"{len(choices)} choices")
    return [scorer._completion_score(choice, start, text) for choice, text in zip(choices, texts)]
