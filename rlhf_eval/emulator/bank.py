"""The emulator's trace bank, tokenizer and (tempered) unigram log-probability models.

Everything here is read-only after :func:`load_bank` builds it (once per process), apart from
caches, so it is shared freely between server threads. See README.md (beside this module) for the
definitions.
"""
from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import math
import re
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BANK_PATH = Path(__file__).with_name("data") / "bank.json.gz"

#: The tokenizer: one word (``\w+``), one punctuation character (``[^\w\s]``) or one run of
#: whitespace (``\s+``) per token, so ``"".join(tokenize(t)) == t`` for every text ``t``, and
#: ``tokenize(a + b) == tokenize(a) + tokenize(b)`` unless ``a`` ends and ``b`` starts with a
#: word character, or both with whitespace (e.g. a context ending in ``"\n"`` splits cleanly).
TOKEN_RE = re.compile(r"\w+|[^\w\s]|\s+")

#: Token ids are ``zlib.crc32(token.encode("utf-8")) % TOKEN_ID_MOD`` (stable, vocabulary-free).
TOKEN_ID_MOD = 2**18

_WS_RE = re.compile(r"\s+")
#: Length of the question prefix used as the lookup key (every bank question is longer).
_KEY_LEN = 32
#: Size of the pool of frequent tokens from which ``topCandidates`` alternatives are drawn.
_ALT_POOL = 64
#: How many tempered models (one per temperature) a bank keeps built at once (LRU).
_MAX_MODELS = 32


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens with :data:`TOKEN_RE` (lossless: the tokens join to ``text``)."""
    return TOKEN_RE.findall(text)


def token_id(token: str) -> int:
    return zlib.crc32(token.encode("utf-8")) % TOKEN_ID_MOD


def model_tau(model: str) -> float:
    """The temperature ``tau`` of a model name's tempered unigram model (see :class:`UnigramModel`).

    1.0 for names starting ``gemini`` (case-insensitive, a leading ``models/`` ignored, as for
    the Gemini model families); for any other name
    ``0.8 + 0.4 * (zlib.crc32(model.encode("utf-8")) % 1000) / 999``, i.e. in [0.8, 1.2],
    computed on the name exactly as sent.
    """
    m = model.lower()
    if m.startswith("models/"):
        m = m[len("models/") :]
    if m.startswith("gemini"):
        return 1.0
    return 0.8 + 0.4 * (zlib.crc32(model.encode("utf-8")) % 1000) / 999


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


def as_float32(x: float) -> float:
    """`x` as the API sends a proto FLOAT: the shortest decimal that reads back as the same
    float32 (`-13.375002`, `-1.5496514e-06`), not a 17-digit double. A cassette of chosen-token
    logprobs is mostly these numbers, so the difference is a tenth of its size."""
    return float(str(np.float32(x)))


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class UnigramModel:
    """A tempered add-one smoothed unigram model (temperature ``tau``; 1.0 = the plain model).

    The outcomes are the ``V`` distinct corpus tokens plus one extra entry, "unseen", with
    count 0 that stands for every token not in the corpus. The base model is add-one smoothed
    over these ``V + 1`` entries: ``p(t) = (count(t) + 1) / (N + V + 1)`` (``N`` corpus tokens),
    so an unseen token gets ``1 / (N + V + 1)`` and the ``V + 1`` probabilities sum to 1. The
    tempered model is ``log p_tau(t) = log p(t) / tau - log Z_tau`` with
    ``Z_tau = sum over the V + 1 entries u of p(u) ** (1 / tau)`` (``math.fsum`` of the terms,
    computed once per model; ``Z_1 = 1`` exactly and is not computed), so it sums to 1 too.
    ``tau < 1`` is sharper than the base model, ``tau > 1`` flatter; the order of the tokens
    (and so :meth:`rank` and the pool of alternatives) is the same for every ``tau``.
    """

    def __init__(self, corpus_tokens: list[str], tau: float = 1.0, *, _counts: dict[str, int] | None = None):
        if _counts is None:
            counts: dict[str, int] = {}
            for t in corpus_tokens:
                counts[t] = counts.get(t, 0) + 1
            n_tokens = len(corpus_tokens)
        else:
            counts, n_tokens = _counts, sum(_counts.values())
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.counts = counts
        self.tau = float(tau)
        self.n_tokens = n_tokens
        self.vocab_size = len(counts)  # V (the "unseen" entry not included)
        self.log_denominator = math.log(self.n_tokens + self.vocab_size + 1)
        inv = 1.0 / self.tau
        if self.tau == 1.0:
            self.log_normalizer = 0.0
        else:
            terms = [math.exp((math.log(c + 1) - self.log_denominator) * inv) for c in counts.values()]
            terms.append(math.exp(-self.log_denominator * inv))  # the "unseen" entry
            self.log_normalizer = math.log(math.fsum(terms))
        self.unknown_logp = self._tempered(-self.log_denominator)
        self._logp = {t: self._tempered(math.log(c + 1) - self.log_denominator) for t, c in counts.items()}
        self._entries: dict[str, dict] = {}
        self._entry_json: dict[str, str] = {}
        self._step_json: dict[tuple[str, int, int], str] = {}
        self._traces: dict[Trace, Trace] = {}  # bank trace (of the tau = 1 model) -> this model's
        # the most frequent tokens, sorted by (logp desc, token) for deterministic ties
        top = sorted(counts, key=lambda t: (-counts[t], t))[:_ALT_POOL]
        self.pool = tuple(self.entry(t) for t in top)
        self._sorted_counts = sorted(counts.values())  # ascending, for :meth:`rank`

    def _tempered(self, base_logp: float) -> float:
        if self.tau == 1.0:
            return as_float32(base_logp)
        return as_float32(base_logp / self.tau - self.log_normalizer)

    def tempered(self, tau: float) -> "UnigramModel":
        """The model over the same counts at temperature ``tau`` (``self`` if it is already)."""
        if float(tau) == self.tau:
            return self
        return UnigramModel([], tau, _counts=self.counts)

    def logp(self, token: str) -> float:
        return self._logp.get(token, self.unknown_logp)

    def rank(self, token: str) -> int:
        """1-based rank of ``token`` in the model's (context-independent) distribution:
        1 + the number of corpus tokens that are strictly more probable. Tokens of equal
        probability share a rank; a token never seen in the corpus ranks ``V + 1``."""
        c = self.counts.get(token, 0)
        return 1 + len(self._sorted_counts) - bisect.bisect_right(self._sorted_counts, c)

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
        return self._trace(text, tuple(tokenize(text)))

    def _trace(self, text: str, tokens: tuple[str, ...]) -> Trace:
        chosen = tuple(self.entry(t) for t in tokens)
        cj = tuple(self.entry_json(t) for t in tokens)
        return Trace(text, tokens, chosen, tuple(e["logProbability"] for e in chosen), cj, "[" + ",".join(cj) + "]")

    def retrace(self, trace: Trace) -> Trace:
        """``trace`` (a bank solution, built once by the bank's tau = 1 model) with this
        model's logprobs; cached, so only call it with the bank's own long-lived traces."""
        t = self._traces.get(trace)
        if t is None:
            t = self._traces[trace] = self._trace(trace.text, trace.tokens)
        return t

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
    """Bank questions -> tokenised solutions (:meth:`solutions`), plus the unigram model over all solutions
    (``model``, tau = 1) and its tempered variants, one per model name (:meth:`model_for`)."""

    def __init__(self, questions: list[tuple[str, list[str]]], meta: dict | None = None):
        self.meta = meta or {}
        corpus: list[str] = []
        for _, sols in questions:
            for s in sols:
                corpus.extend(tokenize(s))
        self.model = UnigramModel(corpus)
        self._models: OrderedDict[float, UnigramModel] = OrderedDict()
        self._models_lock = threading.Lock()
        self.questions: list[str] = []  # normalised question texts
        self._texts: list[list[str]] = []
        # Traces are built when a question is first asked: all of them took 0.9 s of CPU at every
        # emulator's start, for the few questions a run asks. (Two threads may build the same
        # question's at once; both are equal and either is kept.)
        self._traces: list[tuple[Trace, ...] | None] = []
        self._by_key: dict[str, list[int]] = {}
        for q, sols in questions:
            nq = normalize_ws(q)
            idx = len(self.questions)
            self.questions.append(nq)
            self._texts.append(sols)
            self._traces.append(None)
            self._by_key.setdefault(nq[:_KEY_LEN], []).append(idx)
        self._min_len = min((len(q) for q in self.questions), default=0)

    def __len__(self) -> int:
        return len(self.questions)

    def model_for(self, model: str) -> UnigramModel:
        """The unigram model of a model name: the bank's model tempered with :func:`model_tau`
        (``self.model`` itself for tau = 1). Models are built on first use and kept (LRU)."""
        tau = model_tau(model)
        if tau == 1.0:
            return self.model
        with self._models_lock:
            lm = self._models.get(tau)
            if lm is not None:
                self._models.move_to_end(tau)
                return lm
        lm = self.model.tempered(tau)  # built outside the lock (a few ms)
        with self._models_lock:
            lm = self._models.setdefault(tau, lm)
            self._models.move_to_end(tau)
            while len(self._models) > _MAX_MODELS:
                self._models.popitem(last=False)
        return lm

    def solutions(self, qi: int) -> tuple[Trace, ...]:
        """The solutions of question ``qi``, with the logprobs of ``self.model``."""
        traces = self._traces[qi]
        if traces is None:
            traces = self._traces[qi] = tuple(self.model.make_trace(s) for s in self._texts[qi])
        return traces

    def solution(self, qi: int, i: int, lm: UnigramModel | None = None) -> Trace:
        """Solution ``i`` of question ``qi``, with the logprobs of ``lm`` (default: ``self.model``)."""
        t = self.solutions(qi)[i]
        return t if lm is None or lm is self.model else lm.retrace(t)

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
