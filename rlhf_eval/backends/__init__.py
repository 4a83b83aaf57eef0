"""Backends: build the `Sampler`/`Scorer` a suite names (from `rlhf_eval.providers`), and say
what each needs to record. A provider's class is imported only when a suite uses it, so an
optional SDK (openai, google-generativeai, transformers) is needed only by the suites that ask
for it.
"""
from __future__ import annotations

import importlib.util
import os

from ..credentials import redact_url, url_problem, watch_key_env, watch_url
from ..providers import BUILT_IN, PROVIDERS
from ..recording import CassetteProblem, find_cassette_mismatch
from ..registry import RegistryError, exception_line
from ..sampling import Prompt, Sampler, SamplingError, Score, Scorer
from ..types import Trace
from ..suite import ModelConfig, ScorerConfig
from ..throttle import SERIAL, RequestPolicy


def key_envs(provider: str, api_key_env: str | None = None) -> tuple[str, ...]:
    if api_key_env:
        return (api_key_env,)
    try:
        return PROVIDERS.get(provider).key_envs
    except RegistryError:  # a provider that does not load says so where it is built
        return ()


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


def _class(config: ModelConfig | ScorerConfig, role: str) -> type:
    """The class provider `config.provider` gives for `role` ("sampler" or "scorer"); SamplingError
    (one line) when it gives none, cannot load, or its module is not installed."""
    try:
        entry = PROVIDERS.get(config.provider)
    except RegistryError as exc:
        raise SamplingError(str(exc)) from None
    load = getattr(entry, role)
    if load is None:
        roles = [r for r in ("sampler", "scorer") if getattr(entry, r) is not None]
        raise SamplingError(f"provider {entry.name!r} has no {role} (it is a {' and '.join(roles) or 'nothing'})")
    if entry.needs:
        try:  # find_spec imports nothing (google.generativeai warns on import)
            found = importlib.util.find_spec(entry.needs) is not None
        except ImportError:
            found = False
        if not found:
            raise SamplingError(f"provider {entry.name!r} needs the {entry.needs!r} package: "
                                f"pip install '{entry.install or entry.needs}'") from None
    cls = guard(f"provider {entry.name!r}", "could not load its class:", load)
    method = "sample" if role == "sampler" else "score"
    if not (isinstance(cls, type) and callable(getattr(cls, method, None))):
        raise SamplingError(f"provider {entry.name!r} gave {cls!r} as its {role}, not a class with a {method}() "
                            "method (@provider decorates a function that imports and returns the class)")
    return cls


def make_sampler(model: ModelConfig, *, replay: bool = False, policy: RequestPolicy = SERIAL) -> Sampler:
    """The sampler for `model`; with `replay`, placeholder credentials (a cassette answers every request)."""
    watch_credentials(model)
    cls = _class(model, "sampler")
    sampler = guard(f"provider {model.provider!r}", "raised", lambda: cls(model, replay=replay, policy=policy))
    return sampler if model.provider in BUILT_IN else CheckedSampler(f"provider {model.provider!r}", sampler)


def make_scorer(config: ScorerConfig, *, replay: bool = False, policy: RequestPolicy = SERIAL) -> Scorer:
    watch_credentials(config)
    cls = _class(config, "scorer")
    scorer = guard(f"provider {config.provider!r}", "raised", lambda: cls(config, replay=replay, policy=policy))
    return scorer if config.provider in BUILT_IN else CheckedScorer(f"provider {config.provider!r}", scorer,
                                                                               config.provider)


def guard(who: str, what: str, call):
    """`call()`, a team's code (`who`: e.g. "provider 'mine'"): what it raises but our own errors
    (a SamplingError, a cassette's problem, vcrpy refusing a request the cassette does not hold,
    which the cassette then explains as stale) and Ctrl-C becomes one line naming it."""
    try:
        return call()
    except (SamplingError, CassetteProblem, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a team's code is still its one line
        if find_cassette_mismatch(exc) is not None:
            raise
        raise SamplingError(f"{who} {what} {exception_line(exc)}") from None


class CheckedSampler:
    """A team's sampler (`who`: how messages name it), held to the Sampler contract: k `Trace`s,
    its exceptions one line each."""

    def __init__(self, who: str, inner: Sampler) -> None:
        self.who, self.inner = who, inner

    def sample(self, prompt: Prompt, k: int, seed: int) -> list[Trace]:
        traces = guard(self.who, "raised", lambda: self.inner.sample(prompt, k, seed))
        if not isinstance(traces, list) or not all(isinstance(t, Trace) for t in traces):
            shown = type(traces).__name__ if not isinstance(traces, list) else \
                next(type(t).__name__ for t in traces if not isinstance(t, Trace))
            raise SamplingError(f"{self.who} returned {shown}, not a list of rlhf_eval.Trace")
        if len(traces) != k:
            raise SamplingError(f"{self.who} returned {len(traces)} traces for samples: {k}")
        return traces


class CheckedScorer:
    """A team's scorer (`who`: how messages name it), held to the Scorer contract: one `Score`
    per completion."""

    def __init__(self, who: str, inner: Scorer, name: str | None = None) -> None:
        self.who, self.inner = who, inner
        self.name = str(getattr(inner, "name", name or who))

    def score(self, prompt: Prompt, completions) -> list[Score]:
        scores = guard(self.who, "raised", lambda: self.inner.score(prompt, completions))
        if (not isinstance(scores, list) or len(scores) != len(completions)
                or not all(isinstance(s, Score) for s in scores)):
            raise SamplingError(f"{self.who} returned {type(scores).__name__} from score(); "
                                f"expected a list of {len(completions)} rlhf_eval.Score")
        return scores


def credentials_problem(model: ModelConfig) -> str | None:
    """Why recording with `model` cannot work from this environment, or None."""
    if (model.provider in ("gemini", "gemini-legacy") and model.vertex is None
            and not api_key(model.provider, model.api_key_env)):
        names = (" (or ".join(key_envs(model.provider, model.api_key_env))
                 + ")" * (len(key_envs(model.provider, model.api_key_env)) - 1))
        return (f"recording needs an API key: set {names}; "
                "replaying (--rlhf-record-mode=none) needs none")
    return None


def record_env_hint(model: ModelConfig) -> str:
    """What to put before the re-record command, e.g. `GEMINI_API_KEY=<your key> `."""
    if (model.provider in ("gemini", "gemini-legacy") and model.vertex is None
            and not api_key(model.provider, model.api_key_env)):
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
