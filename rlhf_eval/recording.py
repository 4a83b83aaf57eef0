"""Recording and replaying a question's HTTP with vcrpy: one cassette per question.

Requests match on method, path and the *canonical JSON body* (never host or port), so a changed
prompt, model or sampling setting can never replay a stale answer, and a cassette recorded against
the emulator replays against any base URL. Secrets never reach a cassette, and cassettes are
written atomically (temp file + rename) and only when the whole question was sampled.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import vcr
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.record_mode import RecordMode
from vcr.serialize import deserialize, serialize

from .atomic import atomic_write_text
from .paths import shown_path

RECORD_MODES = ("none", "once", "new_episodes", "all", "rewrite")
SECRET_HEADERS = ["x-goog-api-key", "authorization", "x-goog-api-client", "user-agent", "cookie"]
SECRET_QUERY = ["key"]


class CassetteProblem(Exception):
    """A cassette is missing, stale or unreadable; the message says what and how to fix it."""


def cassette_path(cassette_dir: str | Path, suite: str, question_id: str) -> Path:
    return Path(cassette_dir) / suite / f"{question_id}.yaml"


def _body_json(request) -> Any:
    body = request.body
    if body is None or body == b"" or body == "":
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body


def json_body(r1, r2) -> None:
    """vcrpy matcher: the bodies are equal as JSON values (key order and spacing do not matter)."""
    b1, b2 = _body_json(r1), _body_json(r2)
    if b1 != b2:
        raise AssertionError("\n".join(json_diff(b2, b1)[:5]) or "bodies differ")


class _AtomicPersister:
    """vcrpy persister that writes via a temp file + rename, and can be told to write nothing."""

    def __init__(self) -> None:
        self.discard = False

    @staticmethod
    def load_cassette(cassette_path, serializer):
        path = Path(cassette_path)
        if not path.is_file():
            raise CassetteNotFoundError()
        try:
            data = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise CassetteProblem(f"{path}: cannot read cassette ({exc}); delete it and re-record") from None
        if not data.strip():
            raise CassetteNotFoundError()
        try:
            return deserialize(data, serializer)
        except Exception as exc:  # vcrpy raises yaml, KeyError or ValueError for a damaged file
            raise CassetteProblem(f"{path}: corrupt cassette ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it and re-record") from None

    def save_cassette(self, cassette_path, cassette_dict, serializer):
        if self.discard:
            return
        atomic_write_text(cassette_path, serialize(cassette_dict, serializer))


def _make_vcr(mode: str, persister: _AtomicPersister) -> vcr.VCR:
    record_mode = {"none": RecordMode.NONE, "once": RecordMode.ONCE, "new_episodes": RecordMode.NEW_EPISODES,
                   "all": RecordMode.ALL, "rewrite": RecordMode.ALL}[mode]
    v = vcr.VCR(
        record_mode=record_mode,
        match_on=["method", "path", "json_body"],
        filter_headers=SECRET_HEADERS,
        filter_query_parameters=SECRET_QUERY,
        decode_compressed_response=True,
        drop_unused_requests=(mode == "rewrite"),
    )
    v.register_matcher("json_body", json_body)
    v.register_persister(persister)
    return v


@contextlib.contextmanager
def use_cassette(path: str | Path, mode: str = "none", *, rerecord_hint: str = "") -> Iterator[Any]:
    """Record or replay everything inside the block into the cassette at `path`.

    Raises `CassetteProblem` for a missing cassette in mode `none` and for a request the cassette
    does not hold (explaining what differs). Nothing is written if the block raises.
    """
    if mode not in RECORD_MODES:
        raise ValueError(f"record mode {mode!r}; expected one of {', '.join(RECORD_MODES)}")
    path = Path(path)
    if mode == "none" and not path.is_file():
        raise CassetteProblem(f"no cassette at {shown_path(path)}; record it with: {rerecord_hint}".rstrip(": "))
    persister = _AtomicPersister()
    my_vcr = _make_vcr(mode, persister)
    try:
        with my_vcr.use_cassette(str(path)) as cassette:
            try:
                yield cassette
            except BaseException:
                persister.discard = True
                raise
    except CannotOverwriteExistingCassetteException as exc:
        raise CassetteProblem(explain_mismatch(exc, path, rerecord_hint)) from None


def find_cassette_mismatch(exc: BaseException | None) -> CannotOverwriteExistingCassetteException | None:
    """The vcrpy refusal inside an SDK exception chain, if there is one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, CannotOverwriteExistingCassetteException):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _seed_of(body: Any) -> Any:
    if isinstance(body, dict):
        return (body.get("generationConfig") or {}).get("seed")
    return None


def explain_mismatch(exc: CannotOverwriteExistingCassetteException, path: Path, hint: str) -> str:
    """Say which part of the request changed since the cassette was recorded."""
    new = exc.failed_request
    path = shown_path(path)
    recorded = list(exc.cassette.requests)
    fix = f"; re-record with: {hint}" if hint else ""
    if not recorded:
        return f"cassette {path} holds no requests{fix}"
    new_body = _body_json(new)
    seed = _seed_of(new_body)
    seeds = [s for s in (_seed_of(_body_json(r)) for r in recorded) if s is not None]
    same_seed = [r for r in recorded if seed is not None and _seed_of(_body_json(r)) == seed]
    if seed is not None and seeds and not same_seed:
        without = [r for r in recorded if _strip_seed(_body_json(r)) == _strip_seed(new_body) and r.path == new.path]
        if without:
            return (f"stale cassette {path}: it holds seeds {_span(seeds)} ({len(seeds)} requests) but this run "
                    f"asks for seed {seed} (did `samples` or `seed` change?){fix}")
    old = same_seed[0] if same_seed else recorded[0]
    diffs = []
    if old.method != new.method:
        diffs.append(f"method: {old.method} → {new.method}")
    if old.path != new.path:
        diffs.append(f"path: {old.path} → {new.path}")
    diffs += json_diff(_body_json(old), new_body)
    if not diffs:
        return f"cassette {path} already replayed this request (the run asked for it twice){fix}"
    shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
    return f"stale cassette {path}: the suite changed since it was recorded: {shown}{fix}"


def _strip_seed(body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("generationConfig"), dict):
        return {**body, "generationConfig": {k: v for k, v in body["generationConfig"].items() if k != "seed"}}
    return body


def _span(seeds: list) -> str:
    seeds = sorted(seeds)
    return f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])


_MISSING = object()


def json_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON values, one `path: old → new` per change."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            out += json_diff(old.get(key, _MISSING), new.get(key, _MISSING), f"{prefix}.{key}" if prefix else key)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += json_diff(a, b, f"{prefix}[{i}]")
        return out
    if old == new and type(old) is type(new) or (old == new and not isinstance(old, (str, bool))):
        return []
    if isinstance(old, str) and isinstance(new, str) and max(len(old), len(new)) > 60:
        return [f"{prefix or '<body>'} changed at character {_common_prefix(old, new)}: "
                f"{_excerpt(old, new)} → {_excerpt(new, old)}"]
    return [f"{prefix or '<body>'}: {_show(old)} → {_show(new)}"]


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def _excerpt(text: str, other: str) -> str:
    """The part of `text` around where it starts to differ from `other`."""
    start = max(0, _common_prefix(text, other) - 20)
    piece = text[start:start + 50]
    return json.dumps(("…" if start else "") + piece + ("…" if start + 50 < len(text) else ""), ensure_ascii=False)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    if isinstance(value, str) and len(value) > 60:
        return json.dumps(value[:57] + "…", ensure_ascii=False)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "…"
