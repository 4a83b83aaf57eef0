"""What every backend provides: a `Sampler` draws traces, a `Scorer` gives log-probabilities of a text.

Backends live in `rlhf_eval.backends` (Gemini through google-genai, OpenAI-compatible servers,
a local transformers model, the legacy google-generativeai SDK); `backends.make_sampler` and
`backends.make_scorer` build one from a suite's settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from .types import Trace


class SamplingError(Exception):
    """The API refused or failed a request; the message is one actionable line."""


class ScoringError(SamplingError):
    """A scorer could not give an honest log-probability (e.g. the server does not score prompt tokens)."""


@dataclass(frozen=True)
class Score:
    logp: float  # Σ log π(token | everything before it) over the completion's tokens only
    token_count: int  # how many completion tokens that sum covers


@runtime_checkable
class Sampler(Protocol):
    def sample(self, prompt: str, k: int, seed: int) -> list[Trace]:
        """Return exactly `k` traces for `prompt`; trace i is drawn with seed `seed + i`
        (or, with several candidates per request, the seed of its request)."""


@runtime_checkable
class Scorer(Protocol):
    name: str  # shown in reports, e.g. "openai:Qwen/Qwen2.5-0.5B" or "hf:/models/ref"

    def score(self, prompt: str, completions: Sequence[str]) -> list[Score]:
        """Teacher-forced log-probability of each completion given `prompt`, one `Score` each."""
