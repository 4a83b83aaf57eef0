"""Hooks a conftest.py (or another plugin) implements to change how rlhf-eval runs suites."""
from __future__ import annotations

import pytest


@pytest.hookspec(firstresult=True)
def pytest_rlhf_eval_backends(config: pytest.Config, suite, replay: bool, policy):
    """Return the `rlhf_eval.Backends` (sampler, policy scorer, reference scorer) that sample and
    score `suite`, or None to let rlhf-eval build them from the suite's `model:` as usual.

    Called once per suite and process. `replay` is True when no request may reach the network;
    `policy` is the run's `rlhf_eval.throttle.RequestPolicy` (concurrency, rate limit, retries)
    that every sampler and scorer of the run shares. Requests still go through the question's
    cassette, so what a supplied backend sends is recorded and replayed like any other.

        def pytest_rlhf_eval_backends(config, suite, replay, policy):
            if suite.name == "via-proxy":
                return Backends(sampler=GeminiSampler(suite.spec.model, replay=replay, policy=policy,
                                                      base_url="https://proxy.internal"))
    """
