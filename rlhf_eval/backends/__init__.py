"""Backends: build the `Sampler`/`Scorer` a suite names, and say what each needs to record.

Each backend module is imported only when a suite uses it, so an optional SDK (openai,
google-generativeai, transformers) is needed only by the suites that ask for it.
"""
from __future__ import annotations

import importlib.util
import os

from ..credentials import redact_url, url_problem, watch_key_env, watch_url
from ..sampling import Sampler, SamplingError, Scorer
from ..suite import ModelConfig, ScorerConfig
from ..throttle import SERIAL, RequestPolicy

_DEFAULT_KEY_ENVS = {"gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "gemini-legacy": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
                     "openai": ("OPENAI_API_KEY",)}
_EXTRAS = {"openai": "openai", "gemini-legacy": "legacy", "hf": "hf"}


def key_envs(provider: str, api_key_env: str | None = None) -> tuple[str, ...]:
    return (api_key_env,) if api_key_env else _DEFAULT_KEY_ENVS.get(provider, ())


def api_key(provider: str, api_key_env: str | None = None) -> str | None:
    for name in key_envs(provider, api_key_env):
        if os.environ.get(name):
            return os.environ[name]
    return None


def server_url(configured: str | None, env: str) -> str | None:
    """The server's base URL: `configured` (the suite's, or the caller's), else the variable `env`,
    else None. Raises SamplingError (one line, the URL without its credentials) when it cannot be
    one: a suite's own base_url is checked when it loads, a variable's only here."""
    url = configured or os.environ.get(env) or None
    problem = url_problem(url) if url else None
    if problem:
        raise SamplingError(f"base URL {redact_url(url)!r} (the suite's base_url, else ${env}) is not a server URL "
                            f"({problem}); write e.g. http://localhost:8000/v1")
    return url


def watch_credentials(config: ModelConfig | ScorerConfig) -> None:
    """Make sure nothing the run writes contains the key or base-URL credentials `config` uses."""
    for name in key_envs(config.provider, config.api_key_env):
        watch_key_env(name)
    watch_url(config.base_url)


def _require(module: str, provider: str) -> None:
    try:  # find_spec imports nothing (google.generativeai warns on import)
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if not found:
        raise SamplingError(f"provider {provider!r} needs the {module!r} package: "
                            f"pip install 'rlhf-eval[{_EXTRAS[provider]}]'") from None


def make_sampler(model: ModelConfig, *, replay: bool = False, policy: RequestPolicy = SERIAL) -> Sampler:
    """The sampler for `model`; with `replay`, placeholder credentials (a cassette answers every request)."""
    watch_credentials(model)
    if model.provider == "gemini":
        from .gemini import GeminiSampler
        return GeminiSampler(model, replay=replay, policy=policy)
    if model.provider == "openai":
        _require("openai", "openai")
        from .openai_compat import OpenAISampler
        return OpenAISampler(model, replay=replay, policy=policy)
    if model.provider == "gemini-legacy":
        _require("google.generativeai", "gemini-legacy")
        from .gemini_legacy import LegacyGeminiSampler
        return LegacyGeminiSampler(model, replay=replay, policy=policy)
    raise SamplingError(f"unknown provider {model.provider!r}")  # pragma: no cover - the schema forbids it


def make_scorer(config: ScorerConfig, *, replay: bool = False, policy: RequestPolicy = SERIAL) -> Scorer:
    watch_credentials(config)
    if config.provider == "openai":
        _require("openai", "openai")
        from .openai_compat import OpenAIScorer
        return OpenAIScorer(config, replay=replay, policy=policy)
    if config.provider == "hf":
        _require("transformers", "hf")
        from .hf import HFScorer
        return HFScorer(config)
    raise SamplingError(f"unknown scorer provider {config.provider!r}")  # pragma: no cover


def credentials_problem(model: ModelConfig) -> str | None:
    """Why recording with `model` cannot work from this environment, or None."""
    if model.provider in ("gemini", "gemini-legacy") and model.vertex is None and not api_key(model.provider, model.api_key_env):
        names = " (or ".join(key_envs(model.provider, model.api_key_env)) + ")" * (len(key_envs(model.provider, model.api_key_env)) - 1)
        return (f"recording needs an API key: set {names}; "
                "replaying (--rlhf-record-mode=none) needs none")
    return None


def record_env_hint(model: ModelConfig) -> str:
    """What to put before the re-record command, e.g. `GEMINI_API_KEY=<your key> `."""
    if model.provider in ("gemini", "gemini-legacy") and model.vertex is None and not api_key(model.provider, model.api_key_env):
        return f"{key_envs(model.provider, model.api_key_env)[0]}=<your key> "
    return ""


def logprobs_note(model: ModelConfig) -> str | None:
    """Why this model will return no log-probabilities, when that is known before asking."""
    if not model.logprobs:
        return f"{model.name} was not asked for log-probabilities (the suite has model.logprobs: false)"
    if model.provider == "gemini":
        from .gemini import logprobs_supported
        if logprobs_supported(model.name, vertex=model.vertex is not None) is False:
            where = "Vertex AI" if model.vertex else "the Gemini Developer API"
            return (f"{model.name} returns no log-probabilities on {where}, so none were requested"
                    + (" (gemini-2.5 models return them on Vertex AI: set model.vertex)"
                       if not model.vertex and model.name.removeprefix("models/").startswith("gemini-2.5") else ""))
    return None
