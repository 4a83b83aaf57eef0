"""Every extraction pattern runs in time linear in the text: a model's output is untrusted input,
and one quadratic regex turns a 100 KB degenerate completion into seconds of CPU per trace
(the old `(X) at end` tail took 2.7 s on "(B)" + 20,000 spaces + "x"). The `math` verifier is
left out: its time is sympy's, bounded by the worker's timeout instead (test_verifier_math_worker.py).
"""
from __future__ import annotations

import gc
import time

from rlhf_eval.verify import verify

N = 100_000  # characters in the large input; the small one is a quarter of it


def _fill(unit: str, n: int) -> str:
    return unit * (n // len(unit))


# Each builder makes a string of about n characters aimed at one way a pattern could backtrack:
# long runs of what a quantifier accepts followed by what makes the match fail, many openers
# that never close, and markers repeated so that each could restart a scan.
ADVERSARIAL = {
    "spaces": lambda n: _fill(" ", n),
    "newlines": lambda n: _fill("\n", n),
    "digits": lambda n: _fill("1", n),
    "digits and commas": lambda n: _fill("1,", n),
    "digits and spaces": lambda n: _fill("1 ", n),
    "digits and no-break spaces": lambda n: _fill("1\u00a0", n),
    "thousands groups then a 4-digit group": lambda n: "1" + _fill(" 000", n) + "0",
    "comma groups then a 4-digit group": lambda n: "1" + _fill(",000", n) + "0",
    "dollars": lambda n: _fill("$", n),
    "escaped dollars": lambda n: _fill("\\$", n),
    "backslashes": lambda n: _fill("\\", n),
    "open braces": lambda n: _fill("{", n),
    "open parentheses": lambda n: _fill("(", n),
    "stars and underscores": lambda n: _fill("*_", n),
    "(B), spaces, x": lambda n: "(B)" + _fill(" ", n) + "x",
    "(B, spaces": lambda n: "(B" + _fill(" ", n),
    "answer, spaces, x": lambda n: "answer" + _fill(" ", n) + "x",
    "answer:, spaces, x": lambda n: "Answer:" + _fill(" ", n) + "x",
    "answer is repeated": lambda n: _fill("answer is ", n),
    "answer lines": lambda n: _fill("\nA:", n),
    "unclosed boxes": lambda n: _fill("\\boxed{", n),
    "unclosed fractions": lambda n: _fill("\\frac{1}{", n),
    "fraction padded with spaces": lambda n: "\\frac{" + _fill(" ", n) + "1",
    "slashes": lambda n: _fill("1/", n),
    "decimal points": lambda n: _fill("1.", n),
    "exponents": lambda n: _fill("1e", n),
    "powers": lambda n: _fill("10^", n),
    "times ten to the": lambda n: _fill("1 x 10^", n),
    "number, tabs, x": lambda n: "1" + _fill("\t", n) + "x",
    "number, spaces, \\times": lambda n: "1" + _fill(" ", n) + "\\times 10^3",
    "number, spaces, \\frac": lambda n: "2" + _fill(" ", n) + "\\frac{1}{2}",
    "statement, spaces, aside": lambda n: "The answer is 18" + _fill(" ", n) + "x (1)",
    "mixed-number starts": lambda n: _fill("1 1/", n),
    "latex commas": lambda n: _fill("1{,}", n),
    "no place to start a window": lambda n: "x" + _fill("1 + ", n),
    "number words": lambda n: "The answer is " + _fill("twenty ", n),
    "hyphenated number words": lambda n: "The answer is " + _fill("twenty-", n),
    "pronoun one": lambda n: "The answer is " + _fill("the one ", n),
    "scale words": lambda n: _fill("1 million ", n),
    "sentence ends": lambda n: "The answer is " + _fill(". ", n),
    "asides": lambda n: "The answer is " + _fill("(1) ", n),
    "article A": lambda n: "Answer: " + _fill("A b ", n),
    "option letters": lambda n: _fill("(A) ", n),
    "rejected letters": lambda n: _fill("(A) is wrong ", n),
    "letter lines": lambda n: _fill("A\n", n),
    "bold letter lines": lambda n: _fill("**B**\n", n),
    "choice verbs": lambda n: _fill("I choose ", n),
}
VERIFIERS = [("numeric", "18", {}), ("exact", "x", {}), ("regex", "x", {"pattern": r"ANSWER: (\w+)"}),
             ("choice", "B", {})]
BOUND = 0.5  # seconds for ~100 KB; each measured well under 0.15 s when written


def _seconds(text: str, verifier: str, reference: str, options: dict, repeat: int = 1) -> float:
    # CPU time of this process with the collector paused: other jobs on the machine (an xdist
    # sibling) and a full collection of pytest's heap are not the pattern's cost.
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.process_time()
            verify(text, reference, verifier, **options)
            best = min(best, time.process_time() - start)
    finally:
        gc.enable()
    return best


def test_every_verifier_is_linear_on_adversarial_text():
    worst: list[tuple[float, str]] = []
    failures = []
    for name, build in ADVERSARIAL.items():
        small, large = build(N // 4), build(N)
        for verifier, reference, options in VERIFIERS:
            t_large = _seconds(large, verifier, reference, options)
            # Four times the input takes about four times as long if linear, sixteen if quadratic:
            # 8x between them leaves room for noise either way. Below 20 ms timer and cache noise
            # dominate, so the ratio is only judged above that. Re-measure before failing, so a
            # busy machine (xdist, other jobs) is not mistaken for a quadratic pattern.
            t_small = _seconds(small, verifier, reference, options) if t_large > 0.02 else 0.0
            if t_large > BOUND or (t_large > 0.02 and t_large > 8 * t_small):
                t_small = _seconds(small, verifier, reference, options, repeat=3)
                t_large = _seconds(large, verifier, reference, options, repeat=3)
                if t_large > BOUND or (t_large > 0.02 and t_large > 8 * t_small):
                    failures.append(f"{verifier} on {name!r}: {t_small * 1e3:.1f} ms at {N // 4}, "
                                    f"{t_large * 1e3:.1f} ms at {N}")
            worst.append((t_large, f"{verifier} on {name!r}"))
    worst.sort(reverse=True)
    print("\nslowest at 100 KB: " + ", ".join(f"{label} {t * 1e3:.0f} ms" for t, label in worst[:5]))
    assert not failures, "\n".join(failures)


def test_choice_tail_after_a_letter_is_linear():
    # The case that used to take 2.7 s: a letter, a long run the old `[\s.*_]*\Z` tail accepted,
    # then a character that made every split of that run fail.
    text = "(B)" + " " * 20000 + "x"
    assert _seconds(text, "choice", "B", {}, repeat=2) < 0.05
    assert verify(text, "B", "choice").correct  # still read: "(B)" opens the last line
