"""Prices of tokens, to turn a run's token usage into a cost in US dollars.

A price is USD per 1M tokens: `input` for prompt tokens, `output` for output tokens (the answer
and, for thinking models, the thinking tokens, which Gemini and OpenAI bill as output). A suite
sets its own with `model.price: {input: 0.30, output: 2.50}`, which always wins; otherwise a
built-in default is used when `DEFAULTS` has one for the model, else the cost is None with the reason.

Defaults are shipped only where stored copies of public pages agree on the price, each with its
sources and the date they state. No default is shipped for a model whose sources disagree or that
no source covers (gemini-2.0-flash: $0.10/$0.40 on one page, $0.075/$0.30 on another;
gemini-3-flash: none found). The defaults are the Gemini Developer API's standard (paid, non-batch)
tier for prompts of at most 200k tokens; Vertex AI, batch and cached-prompt rates differ (cached
prompt tokens are priced here at the full input rate, so a cost is an upper bound when caching).
Prices change: check https://ai.google.dev/gemini-api/docs/pricing and set `model.price`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PER = 1_000_000  # prices are per this many tokens
# The highest price a suite may set, USD per 1M tokens ($1 a token, thousands of times any real
# price): above it a price is a typo, and near float's limit (1e308) a cost is infinite, which no
# JSON report can hold.
MAX_PRICE = 1_000_000.0


@dataclass(frozen=True)
class Price:
    """USD per 1M prompt (`input`) and output (`output`) tokens, and where it comes from."""
    input: float
    output: float
    source: str

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        """USD for that many prompt and output tokens."""
        return (prompt_tokens * self.input + output_tokens * self.output) / PER

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "source": self.source}


# model name (as the suite writes it, without "models/") -> Price, Gemini Developer API only.
DEFAULTS: dict[str, Price] = {
    "gemini-2.5-flash": Price(0.30, 2.50, "rlhf-eval default: deploybase.ai/articles/gemini-2.5-pricing (2026-03), "
                                          "nicolalazzari.ai/articles/gemini-api-pricing-explained-2026 (2026), both "
                                          "from ai.google.dev/gemini-api/docs/pricing"),
    "gemini-2.5-pro": Price(1.25, 10.00, "rlhf-eval default: deploybase.ai/articles/gemini-2.5-pricing (2026-03), "
                                         "hivebook.wiki Gemini 2.5 (2026); prompts of at most 200k tokens"),
}


def suite_price(model) -> tuple[Price | None, str | None]:
    """(price, None) for a suite's `ModelConfig` (or its dumped dict), or (None, why there is none).

    The suite's own `model.price` first, then `DEFAULTS` (Gemini Developer API models only)."""
    def get(key: str) -> Any:
        return model.get(key) if isinstance(model, dict) else getattr(model, key, None)

    own = get("price")
    name = str(get("name") or "")
    if own:
        own = own if isinstance(own, dict) else own.model_dump()
        return Price(float(own["input"]), float(own["output"]), "the suite's model.price"), None
    default = DEFAULTS.get(name.removeprefix("models/"))
    if get("provider") == "gemini" and not get("vertex") and default is not None:
        return default, None
    # a model with a default, served elsewhere: say why the default does not apply
    where = (" on Vertex AI (rlhf-eval's default prices are the Gemini Developer API's)" if get("vertex") else
             f" through provider {get('provider')} (rlhf-eval's default prices are the Gemini Developer API's)")
    return None, (f"no price for {name or 'the model'}{where if default is not None else ''}: set model.price: "
                  "{input: USD, output: USD} (per 1M tokens) in the suite")
