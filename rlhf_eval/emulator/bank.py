"""The emulator's trace bank, tokenizer and unigram log-probability model.

Everything here is read-only after :func:`load_bank` builds it (once per process), so it
is shared freely between server threads. See the package docstring for the definitions.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

BANK_PATH = Path(__file__).with_name("data") / "bank.json.gz"

#: The tokenizer: a run of optional whitespace followed by one word (``\w+``) or one
#: punctuation character; trailing whitespace becomes a token of its own, so
#: ``"".join(tokenize(t)) == t`` for every text ``t``.
TOKEN_RE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")

#: Token ids are ``zlib.crc32(token.encode("utf-8")) % TOKEN_ID_MOD`` (stable, vocabulary-free).
TOKEN_ID_MOD = 2**18

_WS_RE = re.compile(r"\s+")
#: Length of the question prefix used as the lookup key (every bank question is longer).
_KEY_LEN = 32
#: Size of the pool of frequent tokens from which ``topCandidates`` alternatives are drawn.
_ALT_POOL = 64


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens with :data:`TOKEN_RE` (lossless: the tokens join to ``text``)."""
    return TOKEN_RE.findall(text)


def token_id(token: str) -> int:
    return zlib.crc32(token.encode("utf-8")) % TOKEN_ID_MOD


def normalize_ws(text: str) -> str:
    """Collapse every whitespace run to one space and strip the ends."""
    return _WS_RE.sub(" ", text).strip()


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is stable across processes and platforms (unlike ``hash``)."""
    h = hashlib.blake2b(digest_size=8)
    h.update("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass"))
    return int.from_bytes(h.digest(), "big")


@dataclass(frozen=True, eq=False)
class Trace:
    """One bank solution, pre-tokenised with its per-token log-probabilities."""

    text: str
    tokens: tuple[str, ...]
    chosen: tuple[dict, ...]  # {"token", "tokenId", "logProbability"} per token (shared, never mutate)
    logps: tuple[float, ...]
    chosen_json: tuple[str, ...]  # the compact JSON of each ``chosen`` entry
    full_chosen_json: str  # the JSON array of all ``chosen`` entries

    def chosen_json_prefix(self, n: int) -> str:
        """The JSON array of the first ``n`` chosen entries."""
        if n >= len(self.chosen_json):
            return self.full_chosen_json
        return "[" + ",".join(self.chosen_json[:n]) + "]"


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class UnigramModel:
    """Add-one smoothed unigram model: ``logp(t) = log((count(t) + 1) / (N + V))``.

    ``N`` is the number of tokens and ``V`` the number of distinct tokens in the corpus.
    A token never seen in the corpus gets ``log(1 / (N + V))``.
    """

    def __init__(self, corpus_tokens: list[str]):
        counts: dict[str, int] = {}
        for t in corpus_tokens:
            counts[t] = counts.get(t, 0) + 1
        self.counts = counts
        self.n_tokens = len(corpus_tokens)
        self.vocab_size = len(counts)
        self.log_denominator = math.log(self.n_tokens + self.vocab_size)
        self.unknown_logp = -self.log_denominator
        self._logp = {t: math.log(c + 1) - self.log_denominator for t, c in counts.items()}
        self._entries: dict[str, dict] = {}
        self._entry_json: dict[str, str] = {}
        self._step_json: dict[tuple[str, int, int], str] = {}
        # the most frequent tokens, sorted by (logp desc, token) for deterministic ties
        top = sorted(counts, key=lambda t: (-counts[t], t))[:_ALT_POOL]
        self.pool = tuple(self.entry(t) for t in top)

    def logp(self, token: str) -> float:
        return self._logp.get(token, self.unknown_logp)

    def entry(self, token: str) -> dict:
        """The ``LogprobsResult.Candidate`` JSON for ``token`` (cached for corpus tokens)."""
        e = self._entries.get(token)
        if e is None:
            e = {"token": token, "tokenId": token_id(token), "logProbability": self.logp(token)}
            if token in self._logp:
                self._entries[token] = e
        return e

    def entry_json(self, token: str) -> str:
        s = self._entry_json.get(token)
        if s is None:
            s = _dumps(self.entry(token))
            if token in self._logp:
                self._entry_json[token] = s
        return s

    def text_logp(self, text: str) -> float:
        """Sequence log-probability of ``text``: the sum of its tokens' logps, left to right."""
        total = 0.0
        for t in tokenize(text):
            total += self.logp(t)
        return total

    def make_trace(self, text: str) -> Trace:
        tokens = tuple(tokenize(text))
        chosen = tuple(self.entry(t) for t in tokens)
        cj = tuple(self.entry_json(t) for t in tokens)
        return Trace(text, tokens, chosen, tuple(e["logProbability"] for e in chosen), cj, "[" + ",".join(cj) + "]")

    def top_step(self, c: dict, step: int, k: int) -> list[dict]:
        """The ``k`` top candidates of one decoding step whose chosen entry is ``c``: sorted by
        logProbability desc (ties by token), always containing ``c``; the other ``k - 1``
        are taken from the pool of the 64 most frequent corpus tokens, starting at offset
        ``(tokenId * 31 + step * 7) % 64`` and skipping the chosen token."""
        pool = self.pool
        n = len(pool)
        alts = [c]
        start = (c["tokenId"] * 31 + step * 7) % n
        i = 0
        while len(alts) < k and i < n:
            e = pool[(start + i) % n]
            if e["token"] != c["token"]:
                alts.append(e)
            i += 1
        alts.sort(key=lambda e: (-e["logProbability"], e["token"]))
        return alts

    def top_candidates(self, chosen: tuple[dict, ...] | list[dict], k: int) -> list[dict]:
        """``topCandidates`` JSON (one ``{"candidates": [...]}`` per step), see :meth:`top_step`."""
        return [{"candidates": self.top_step(c, step, k)} for step, c in enumerate(chosen)]

    def top_candidates_json(self, chosen: tuple[dict, ...] | list[dict], k: int) -> str:
        """The compact JSON of :meth:`top_candidates`, from a cache of per-step strings."""
        cache = self._step_json
        n = len(self.pool)
        parts = []
        for step, c in enumerate(chosen):
            key = (c["token"], (c["tokenId"] * 31 + step * 7) % n if n else 0, k)
            sj = cache.get(key)
            if sj is None:
                sj = '{"candidates":' + _dumps(self.top_step(c, step, k)) + "}"
                if len(cache) > 500_000:
                    cache.clear()
                cache[key] = sj
            parts.append(sj)
        return "[" + ",".join(parts) + "]"


class Bank:
    """Bank questions -> pre-tokenised solutions, plus the unigram model over all solutions."""

    def __init__(self, questions: list[tuple[str, list[str]]], meta: dict | None = None):
        self.meta = meta or {}
        corpus: list[str] = []
        for _, sols in questions:
            for s in sols:
                corpus.extend(tokenize(s))
        self.model = UnigramModel(corpus)
        self.questions: list[str] = []  # normalised question texts
        self.traces: list[tuple[Trace, ...]] = []
        self._by_key: dict[str, list[int]] = {}
        for q, sols in questions:
            nq = normalize_ws(q)
            idx = len(self.questions)
            self.questions.append(nq)
            self.traces.append(tuple(self.model.make_trace(s) for s in sols))
            self._by_key.setdefault(nq[:_KEY_LEN], []).append(idx)
        self._min_len = min((len(q) for q in self.questions), default=0)

    def __len__(self) -> int:
        return len(self.questions)

    def find(self, prompt: str) -> int | None:
        """Index of the bank question whose (whitespace-normalised) text occurs in ``prompt``.

        Looks up the 32-character window at every word start of the normalised prompt in
        a dict keyed on each question's first 32 characters, then confirms the full match.
        If several questions occur (e.g. few-shot examples), the one starting last wins,
        since the question being asked normally comes after the examples.
        """
        p = normalize_ws(prompt)
        if len(p) < self._min_len:
            return None
        by_key = self._by_key
        best: int | None = None
        i = 0
        n = len(p)
        while i <= n - _KEY_LEN:
            hits = by_key.get(p[i : i + _KEY_LEN])
            if hits:
                here = None  # the longest question starting at i
                for qi in hits:
                    q = self.questions[qi]
                    if p.startswith(q, i) and (here is None or len(q) > len(self.questions[here])):
                        here = qi
                if here is not None:
                    best = here
            j = p.find(" ", i)
            if j < 0:
                break
            i = j + 1
        return best


_LOCK = threading.Lock()
_BANK: Bank | None = None


def load_bank(path: Path | str | None = None) -> Bank:
    """Load (once, then cached) the bank shipped in ``data/bank.json.gz``."""
    global _BANK
    if path is not None:
        return _read(Path(path))
    if _BANK is None:
        with _LOCK:
            if _BANK is None:
                _BANK = _read(BANK_PATH)
    return _BANK


def _read(path: Path) -> Bank:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        doc = json.load(fh)
    questions = [(q, list(sols)) for q, sols in doc["questions"]]
    meta = {k: v for k, v in doc.items() if k != "questions"}
    return Bank(questions, meta)
