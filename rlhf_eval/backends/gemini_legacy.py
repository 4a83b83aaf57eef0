"""The Gemini sampler through the legacy `google-generativeai` SDK (0.8.x, protos pinned at 0.6.15).

Use it only where that SDK is required; `provider: gemini` (google-genai) can send a seed and a
thinking budget, this one cannot. What the adapter does about the SDK's limits:

* **REST, not gRPC**: vcrpy can only record HTTP, so the client is built with `transport="rest"`.
* **Its own client**: `genai.configure` is process-wide; each sampler builds a dedicated
  `GenerativeServiceClient` (key, endpoint) and hands it to its `GenerativeModel`, so two samplers
  (or the user's own `genai.configure`) never overwrite each other.
* **Raw JSON**: the pinned protos silently drop newer response fields (`logProbabilitySum`,
  `responseId`, `thought` flags), so the HTTP body is read from a `requests` response hook and parsed by
  `gemini.traces_from_response`. The SDK asks for `$alt=json;enum-encoding=int`, so enums arrive as ints.
* **No seed**: `GenerationConfig` has no `seed` field in these protos. Every trace has `seed=None`, and a
  `LegacySeedWarning` is emitted once per process. The k requests of a question have identical bodies;
  a cassette replays them in recorded order, so replays are still deterministic.
* **No retries**: `request_options={"retry": None}`, so a 503 is an error at once and every
  HTTP exchange reaches the cassette (the SDK's default retries 503s for up to 600 s).
"""
from __future__ import annotations

import json
import re
import threading
import warnings
from typing import Any

from ..credentials import redact_urls
from ..sampling import Prompt, SamplingError, sample_in_units, split_system
from ..suite import ModelConfig
from ..throttle import SERIAL, RequestPolicy
from ..types import Trace
from .gemini import BASE_URL_ENV, DEFAULT_BASE_URL, REPLAY_KEY, api_error, logprobs_supported, traces_from_response

PROVIDER = "gemini-legacy"
REQUEST_TIMEOUT_S = 60.0


class LegacySeedWarning(UserWarning):
    """google-generativeai cannot send a seed.

    Filter it with `-W ignore::rlhf_eval.backends.gemini_legacy.LegacySeedWarning`.
    """


SEED_WARNING = (
    "provider gemini-legacy: the google-generativeai SDK cannot send a seed (its pinned protos have no "
    "GenerationConfig.seed), so samples are not reproducible against a real API and every trace has "
    "seed None; cassettes still replay deterministically (identical requests replay in recorded order). "
    "Use provider: gemini for seeded sampling."
)
_seed_warning_given = False


def _warn_no_seed() -> None:
    global _seed_warning_given
    if not _seed_warning_given:
        _seed_warning_given = True
        warnings.warn(SEED_WARNING, LegacySeedWarning, stacklevel=3)


def _import_genai():
    """`google.generativeai` and its low-level package, without their import-time FutureWarnings
    (end of support; google.api_core's Python-version notice), so `-W error` runs still work."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import google.generativeai as genai
        from google.ai import generativelanguage as glm
    return genai, glm


def _wire(model: Any, client: Any, on_response) -> bool:
    """Make `model` (a `genai.GenerativeModel`) send through `client`, and call `on_response` with each
    `requests.Response` that client receives. Returns False if the hook could not be attached.

    The only place that touches private attributes (google-generativeai 0.8.6 is final, so they will
    not move): `GenerativeModel._client` is the client it calls, otherwise taken lazily from the
    process-wide `genai.configure` state; `client._transport._session` is the REST transport's
    `AuthorizedSession` (a `requests.Session`), the one place where the unparsed body is visible.
    """
    model._client = client
    session = getattr(getattr(client, "_transport", None), "_session", None)
    hooks = getattr(session, "hooks", None)
    if not isinstance(hooks, dict) or not isinstance(hooks.get("response"), list):
        return False
    hooks["response"].append(lambda response, *args, **kwargs: on_response(response))
    return True


class LegacyGeminiSampler:
    """Samples through google-generativeai over REST, one request per trace unless the suite asks for
    `candidates_per_request` > 1 (falling back to single requests if the model refuses). Traces carry
    `seed=None`: this SDK cannot send one. Log-probabilities are requested only where the model gives
    them; for a model not in `logprobs_supported`, a refusal is answered by asking again without them."""

    def __init__(self, model: ModelConfig, *, replay: bool = False, api_key: str | None = None,
                 base_url: str | None = None, policy: RequestPolicy = SERIAL):
        genai, glm = _import_genai()  # first: it imports google.api_core without its warnings
        from google.api_core.client_options import ClientOptions
        from google.api_core.gapic_v1.client_info import ClientInfo

        from . import api_key as key_from_env, server_url

        self.model = model
        self.policy = policy
        self._lock = threading.Lock()
        # (without a scheme, which server_url refuses, the transport would silently assume https)
        self.base_url = (server_url(base_url or model.base_url, BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        self.ask_logprobs = model.logprobs and logprobs_supported(model.name, vertex=False) is not False
        key = api_key or (REPLAY_KEY if replay else None) or key_from_env(PROVIDER, model.api_key_env)
        # No key while recording: send the placeholder and let the API's 400 say which variable to set
        # (as the google-genai sampler does); a cassette may still answer in record mode "once".
        self._client = glm.GenerativeServiceClient(
            transport="rest",
            client_options=ClientOptions(api_key=key or REPLAY_KEY, api_endpoint=self.base_url),
            client_info=ClientInfo(user_agent=f"genai-py/{genai.__version__}"),  # what genai.configure sends
        )
        self._genai = genai
        self._generative_model = genai.GenerativeModel(model.name, system_instruction=model.system_instruction)
        self._chat_models: dict[str | None, Any] = {}  # a chat's own system message -> its GenerativeModel
        self._responses: list[Any] = []
        self._raw = _wire(self._generative_model, self._client, self._responses.append)

    def _generation_config(self, candidates: int, logprobs: bool) -> dict[str, Any]:
        # A dict: the `genai.GenerationConfig` dataclass has no logprob fields.
        m = self.model
        config = {
            "temperature": m.temperature,
            "top_p": m.top_p,
            "top_k": m.top_k,
            "max_output_tokens": m.max_output_tokens,
            "candidate_count": candidates if candidates > 1 else None,
            "response_logprobs": True if logprobs else None,
            "logprobs": m.top_logprobs if logprobs else None,
        }
        return {k: v for k, v in config.items() if v is not None}

    def _sent(self, prompt: Prompt) -> tuple[Any, Any]:
        """(the GenerativeModel, the contents) that send `prompt`: text as it is; a chat as its turns
        (role `user`, or `model` for an assistant message), its system message as the model's
        system_instruction (the SDK binds one to each GenerativeModel, so one is kept per system text)."""
        if not isinstance(prompt, list):
            return self._generative_model, prompt
        system, turns = split_system(prompt)
        contents = [{"role": "model" if m["role"] == "assistant" else "user", "parts": [m["content"]]}
                    for m in turns]
        if system == self.model.system_instruction:
            return self._generative_model, contents
        model = self._chat_models.get(system)
        if model is None:
            model = self._genai.GenerativeModel(self.model.name, system_instruction=system)
            model._client = self._client  # the wired client (its response hook is already in place)
            self._chat_models[system] = model
        return model, contents

    def _request(self, prompt: Prompt, candidates: int, logprobs: bool) -> list[Trace]:
        # The response hook's list is per sampler: one request at a time, even when questions are
        # recorded concurrently.
        with self._lock:
            return self._request_locked(prompt, candidates, logprobs)

    def _request_locked(self, prompt: Prompt, candidates: int, logprobs: bool) -> list[Trace]:
        import requests
        from google.api_core import exceptions as core_exceptions

        self._responses.clear()
        model, contents = self._sent(prompt)
        try:
            response = model.generate_content(
                contents, generation_config=self._generation_config(candidates, logprobs),
                request_options={"retry": None, "timeout": REQUEST_TIMEOUT_S})
        except core_exceptions.GoogleAPICallError as exc:
            code = exc.code if isinstance(exc.code, int) else None
            raise api_error(code, _api_message(exc), list(getattr(exc, "details", None) or ()),
                            self.model.name) from exc
        except requests.exceptions.RequestException as exc:  # not vcrpy's refusal: that is no RequestException
            raise SamplingError(redact_urls(f"could not reach {self.base_url} ({type(exc).__name__}: "
                                            f"{_one_line(str(exc))}); check the network, or {BASE_URL_ENV} / "
                                            "model.base_url if you set it"), transient=True) from exc
        return traces_from_response(self._body(response), seed=None, expected=candidates,
                                    tags=self.model.reasoning_tags)

    def _body(self, response: Any) -> dict:
        """The generateContent JSON as received; the parsed proto (minus the fields it drops) as a fallback."""
        for raw in reversed(self._responses):
            if raw.status_code == 200 and ":generateContent" in raw.url:
                try:
                    return json.loads(raw.content or b"{}")
                except ValueError:
                    break
        # `to_dict()` gives snake_case names and int enums; the parser reads the wire's camelCase.
        return _camel_keys(response.to_dict())

    def sample(self, prompt: Prompt, k: int, seed: int) -> list[Trace]:
        """k traces for `prompt` (text, or a chat sent as turns); `seed` cannot be sent (see
        `LegacySeedWarning`) and is not recorded."""
        _warn_no_seed()
        # One at a time: the requests of a question are identical (no seed), so they must replay
        # in the order they were recorded.
        return sample_in_units(lambda s, n, lp: self._request(prompt, n, lp), k=k, seed=seed,
                               per_request=self.model.candidates_per_request, logprobs=self.ask_logprobs,
                               policy=self.policy, parallel=False)


def _camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), k): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _api_message(exc: Any) -> str:
    response: Any = getattr(exc, "response", None)
    try:
        message = response.json()["error"]["message"]
    except Exception:
        # api_core prefixes "POST https://…?$alt=…: "; the URL adds nothing to a one-line error.
        message = re.sub(r"^[A-Z]+ \S+: ", "", getattr(exc, "message", None) or str(exc))
    return _one_line(str(message))
