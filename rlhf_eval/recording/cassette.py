"""One question's cassette: where it lives, how it is opened in each record mode, and the block
that records or replays into it (`use_cassette`)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterable, Iterator

from ..atomic import os_reason
from ..paths import shown_path
from ..record_modes import RECORD_MODES
from .cassette_format import CompactJSONSerializer, compact_response, trim_request
from .answers import ANSWERS
from .explain import explain_mismatch
from .faults import forget_replayed, note_played
from .matching import MATCHERS, SECRET_HEADERS, SECRET_QUERY, MatchIndex, filter_request, json_body
from .problems import CassetteProblem, CassetteWriteError, ReplayFault
from .router import ROUTER
from .storage import AtomicPersister, RewritingPersister
from .vcr_adapter import VCR, AdaptedCassette, CannotOverwriteExistingCassetteException, RecordMode, cassette_options


def cassette_path(cassette_dir: str | Path, suite: str, question_id: str) -> Path:
    """Where question `question_id` of suite `suite` is recorded: <cassette_dir>/<suite>/<id>.yaml."""
    return Path(cassette_dir) / suite / f"{question_id}.yaml"


class IndexedCassette(AdaptedCassette):
    """vcrpy's Cassette, except that a request is matched only against the recorded requests that
    can match it (found through a `MatchIndex`) instead of against every one.

    vcrpy scans all recorded requests for each request, twice (`can_play_response_for`, then
    `play_response`), and builds a diff message for every mismatch: k² work per question. The
    index only skips requests that cannot match; the candidates still go through vcrpy's
    matchers, in recorded order, so which response is played is unchanged. It also notes which
    interaction answered each thread's last request (for `replay_fault`)."""

    rerecord_hint = ""  # the command that records this question again; set by `use_cassette`
    _index: MatchIndex | None = None
    _plain = False  # matched or filtered otherwise than `open_cassette` sets up: vcrpy's own scan

    def _ours(self) -> bool:
        """Whether this cassette matches and filters as `open_cassette` set it up (the index and
        skipping the filter's copy rely on it)."""
        return self.matchers == MATCHERS and self.filters_requests_with(filter_request)

    def candidates(self, request) -> Iterable[int] | None:
        if self._index is None:  # matchers and filter are set when the cassette loads: decided once
            if self._plain or not self._ours():
                self._plain = True
                return None
            self._index = MatchIndex()
        first = self._next_in_order(self._index, request)
        return (first,) if first is not None else self._index.candidates(request, self.data)

    def _next_in_order(self, index: MatchIndex, request) -> int | None:
        """The interaction vcrpy would play for `request` when replay follows the recorded order:
        the first unplayed one with the same raw body, every interaction before it played. Then no
        body needs parsing — an earlier unplayed one whose body parsed equal would have come first.
        None otherwise (the parsed bodies decide)."""
        same = index.raw_matches(request, self.data)
        if same is None or self.allow_playback_repeats:
            return None
        first = next((i for i in same if not self.play_counts[i]), None)
        if first is None or not all(self.play_counts[i] for i in range(first)):
            return None
        return first

    def on_played(self, index: int) -> None:
        note_played(self, index)

    def can_play_response_for(self, request) -> bool:
        forget_replayed()  # a new request: whatever answered the last one is not this one's
        if not self.filters_requests_with(filter_request):
            playable = super().can_play_response_for(request)
        else:
            playable = self.can_play_response_for_unfiltered(request)
        return playable or (bool(ANSWERS) and not self.write_protected and ANSWERS.response_for(request) is not None)

    def play_response(self, request):
        """vcrpy's; a request the cassette cannot play but an installed answer (`answers`) holds is
        answered from there and recorded as an exchange with the network would be."""
        answer = ANSWERS.response_for(request) if ANSWERS else None
        if answer is None or (self.record_mode != RecordMode.ALL and request in self):
            return super().play_response(request)
        self.append_played(request, answer)
        return answer


def _make_vcr(mode: str) -> VCR:
    record_mode = {"none": RecordMode.NONE, "once": RecordMode.ONCE, "new_episodes": RecordMode.NEW_EPISODES,
                   "all": RecordMode.ALL, "rewrite": RecordMode.ALL}[mode]
    v = VCR(
        record_mode=record_mode,
        match_on=["method", "path", "json_body"],
        filter_headers=SECRET_HEADERS,
        filter_query_parameters=SECRET_QUERY,
        before_record_request=trim_request,
        before_record_response=compact_response,
        decode_compressed_response=True,
        drop_unused_requests=(mode == "rewrite"),
        serializer="compact-json",
    )
    v.register_serializer("compact-json", CompactJSONSerializer)
    v.register_matcher("json_body", json_body)
    v.register_persister(RewritingPersister if mode == "rewrite" else AtomicPersister)
    return v


_VCRS = {mode: _make_vcr(mode) for mode in RECORD_MODES}


def open_cassette(path: str | Path, mode: str) -> IndexedCassette:
    """The cassette at `path` loaded for record mode `mode`. Raises CassetteProblem (ReplayFault)
    for a file that cannot be read or holds a response no API sends."""
    options = cassette_options(_VCRS[mode], str(path))
    options["before_record_request"] = filter_request  # vcrpy's chain for these options, without its deepcopy
    return IndexedCassette.load(**options)


@contextlib.contextmanager
def use_cassette(path: str | Path, mode: str = "none", *, rerecord_hint: str = "") -> Iterator[IndexedCassette]:
    """Record or replay everything this thread (and threads it binds with `bind`) sends inside the
    block, into the cassette at `path`.

    Raises `CassetteProblem` for a missing cassette in mode `none` and for a request the cassette
    does not hold (explaining what differs); `SecretInCassette` if what was recorded holds a
    secret, and `CassetteWriteError` if the disk refuses it (both write nothing and keep the old
    cassette). Nothing is written if the block raises.
    """
    if mode not in RECORD_MODES:
        raise ValueError(f"record mode {mode!r}; expected one of {', '.join(RECORD_MODES)}")
    path = Path(path)
    if mode == "none" and not path.is_file():
        raise CassetteProblem(f"no cassette at {shown_path(path)}; record it with: {rerecord_hint}".rstrip(": "))
    try:
        cassette = open_cassette(path, mode)
    except ReplayFault as fault:
        raise fault.with_hint(rerecord_hint) from None
    cassette.rerecord_hint = rerecord_hint
    try:
        with ROUTER.bound(cassette):
            yield cassette
    except CannotOverwriteExistingCassetteException as exc:
        raise CassetteProblem(explain_mismatch(exc.failed_request, cassette.requests, path, rerecord_hint)) from None
    _save(cassette, path)


def _save(cassette: IndexedCassette, path: Path) -> None:
    """Write what was recorded; a disk fault (full, read-only, a file in the way) is one line."""
    try:
        cassette.save()
    except OSError as exc:
        raise CassetteWriteError(
            f"could not write cassette {shown_path(path)} ({os_reason(exc)}); what was there before is unchanged: "
            "free some space or choose a writable directory with --rlhf-cassette-dir, then record again") from None
