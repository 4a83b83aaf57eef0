"""Providers: where a suite's traces (a Sampler) and scores (a Scorer) come from.

One registry (`PROVIDERS`, see `rlhf_eval.registry`): the built-ins register here as a team's own
do, with `@provider`; an installed package offers one through the `rlhf_eval.providers` entry
point; a suite may name one as ``module:attribute``. Light on purpose: a suite is checked against
it when it loads, and no provider's module (nor its SDK) is imported until a suite samples.
`rlhf_eval.backends` builds the sampler or scorer.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from .registry import Registry, RegistryError, check_name, origin_of, suggest


@dataclass(frozen=True)
class Provider:
    """A registered provider: `sampler()` / `scorer()` return the class that draws traces / scores
    texts (None when it does not), built as ``cls(config, replay=..., policy=...)`` from the suite's
    `model` / scorer settings (`config.options` holds the settings only it knows). `key_envs` are
    the variables its key is read from by default (never written anywhere); `needs` a module it
    imports, with `install` what to pip install when it is missing. `request_seed(body)` reads the
    seed from one of its request bodies (the parsed JSON; None when it holds none): recording
    orders a cassette's interactions by it and tells a changed `samples`/`seed` from a changed
    suite with it (`request_seed` below), never reading a provider's body format itself."""

    name: str
    sampler: Callable[[], type] | None = None
    scorer: Callable[[], type] | None = None
    key_envs: tuple[str, ...] = ()
    needs: str | None = None
    install: str | None = None
    request_seed: Callable[[Any], int | None] | None = None


def _as_provider(name: str, obj: Any) -> Provider:
    """The registry's adapter: a `Provider` (renamed), or a class with `sample` and/or `score`
    (and, optionally, a static `request_seed(body)`)."""
    if isinstance(obj, Provider):
        return obj if obj.name == name else replace(obj, name=name)
    if isinstance(obj, type) and (callable(getattr(obj, "sample", None)) or callable(getattr(obj, "score", None))):
        return Provider(name, sampler=(lambda: obj) if callable(getattr(obj, "sample", None)) else None,
                        scorer=(lambda: obj) if callable(getattr(obj, "score", None)) else None,
                        request_seed=getattr(obj, "request_seed", None) if callable(getattr(obj, "request_seed", None))
                        else None)
    raise RegistryError(f"provider {name!r}: {obj!r} is not a class with a sample() or score() method "
                        "(see rlhf_eval.sampling.Sampler / Scorer)")


PROVIDERS: Registry[Provider] = Registry("provider", "rlhf_eval.providers", _as_provider)


def provider(name: str, *, role: str = "sampler", key_envs: tuple[str, ...] = (), needs: str | None = None,
             install: str | None = None, request_seed: Callable[[Any], int | None] | None = None
             ) -> Callable[[Callable[[], type]], Callable[[], type]]:
    """Register the decorated function, which imports and returns a Sampler class (or, with
    ``role="scorer"``, a Scorer class), as provider `name`; the other settings are `Provider`'s.
    As inspect_ai's ``@modelapi``, the import happens inside the function, on first use::

        @provider("my-server", key_envs=("MY_SERVER_KEY",), request_seed=lambda body: body.get("seed"))
        def my_server():
            from my_evals.sampler import MyServerSampler
            return MyServerSampler
    """
    check_name(name, "provider")
    if role not in ("sampler", "scorer"):
        raise RegistryError(f"provider {name!r}: role must be 'sampler' or 'scorer', got {role!r}")

    def register(load: Callable[[], type]) -> Callable[[], type]:
        if isinstance(load, type):
            raise RegistryError(f"provider {name!r}: @provider decorates a function that imports and returns the "
                                f"class, not the class {load.__name__} itself")
        PROVIDERS.register(name, Provider(name, **{role: load}, key_envs=tuple(key_envs), needs=needs,
                                          install=install, request_seed=request_seed), origin=origin_of(load))
        return load
    return register


def _gemini():
    from .backends.gemini import GeminiSampler
    return GeminiSampler


def _openai_sampler():
    from .backends.openai_compat import OpenAISampler
    return OpenAISampler


def _openai_scorer():
    from .backends.openai_compat import OpenAIScorer
    return OpenAIScorer


def _gemini_legacy():
    from .backends.gemini_legacy import LegacyGeminiSampler
    return LegacyGeminiSampler


def _hf():
    from .backends.hf import HFScorer
    return HFScorer


def _hf_sampler():
    from .backends.hf_sampler import HFSampler
    return HFSampler


def _hf_seed(body: Any) -> int | None:
    from .backends.hf_sampler import request_seed
    return request_seed(body)


def _vllm_sampler():
    from .backends.vllm_sampler import VLLMSampler
    return VLLMSampler


def _vllm_seed(body: Any) -> int | None:
    from .backends.vllm_sampler import request_seed
    return request_seed(body)


def _trl_vllm_sampler():
    from .backends.trl_vllm import TRLVLLMSampler
    return TRLVLLMSampler


def _trl_vllm_seed(body: Any) -> int | None:
    from .backends.trl_vllm import request_seed
    return request_seed(body)


def _gemini_seed(body: Any) -> int | None:
    from .backends.gemini import request_seed  # the backend builds the body, so it knows where the seed is
    return request_seed(body)


def _openai_seed(body: Any) -> int | None:
    from .backends.openai_compat import request_seed
    return request_seed(body)


_GOOGLE_KEYS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
provider("gemini", key_envs=_GOOGLE_KEYS, request_seed=_gemini_seed)(_gemini)
provider("gemini-legacy", key_envs=_GOOGLE_KEYS, needs="google.generativeai",
         install="rlhf-eval[legacy]")(_gemini_legacy)
PROVIDERS.register("openai", Provider("openai", sampler=_openai_sampler, scorer=_openai_scorer,
                                      key_envs=("OPENAI_API_KEY",), needs="openai", install="rlhf-eval[openai]",
                                      request_seed=_openai_seed))
# No `needs` either: a replay reads the cassette without transformers or torch; recording without
# them is one line (`rlhf_eval.backends.hf.NOT_INSTALLED`).
PROVIDERS.register("hf", Provider("hf", sampler=_hf_sampler, scorer=_hf, request_seed=_hf_seed))
# No `needs`: a replay reads the cassette without vLLM (or the server); recording without vLLM is
# the sampler's one line (`rlhf_eval.backends.vllm_sampler.NOT_INSTALLED`).
provider("vllm", request_seed=_vllm_seed)(_vllm_sampler)
provider("trl_vllm", request_seed=_trl_vllm_seed)(_trl_vllm_sampler)
BUILT_IN = frozenset(PROVIDERS.registered())  # registered before any team's code can run


def provider_problem(name: str, role: str) -> str | None:
    """Why provider `name` cannot be the suite's `role` ("sampler" or "scorer"), or None."""
    if name not in PROVIDERS and ":" not in str(name):
        return f"unknown {role} provider {name!r}{suggest(str(name), _with(role) + PROVIDERS.installed_names())}"
    try:
        entry = PROVIDERS.get(name)
    except RegistryError as exc:  # an installed provider or a module:Class that does not load
        return str(exc)
    if getattr(entry, role) is None:
        return f"provider {name!r} has no {role}; {role}s: {', '.join(_with(role))}"
    return None


def _with(role: str) -> list[str]:
    return sorted(n for n, entry in PROVIDERS.registered().items() if getattr(entry, role) is not None)


def request_seed(body: Any) -> int | None:
    """The seed of request `body` (parsed JSON), as the provider that sent it reads it; None when
    no registered provider finds one. A cassette is written and explained without knowing which
    provider recorded it, so every registered provider's `request_seed` is asked, built-ins first,
    and the first integer wins. A hook that raises counts as finding none: the seed only orders a
    cassette's lines and words an explanation, which must not stop a recording."""
    for entry in PROVIDERS.registered().values():
        if entry.request_seed is None:
            continue
        try:
            seed = entry.request_seed(body)
        except Exception:  # a team's hook on a body it does not know
            continue
        if type(seed) is int:
            return seed
    return None
