"""Why a request is not in its cassette, in one line: which part of the suite changed, or that
`samples` or `seed` did (the requests differ only in their seeds), or that more answers are asked for."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..paths import shown_path
from ..providers import request_seed
from .bodies import body_json
from .problems import rerecord_advice
from .vcr_adapter import CannotOverwriteExistingCassetteException


def find_cassette_mismatch(exc: BaseException | None) -> CannotOverwriteExistingCassetteException | None:
    """The vcrpy refusal (a request the cassette does not hold) inside an SDK exception chain, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, CannotOverwriteExistingCassetteException):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def explain_mismatch(new, recorded: list, path: Path, hint: str) -> str:
    """Say which part of request `new` changed since the cassette (holding the vcrpy requests
    `recorded`) was recorded, and how to record it again (`hint`: the command, may be empty).
    Seeds are read by the providers (`rlhf_eval.providers.request_seed`)."""
    shown = shown_path(path)
    fix = f"; re-record with: {hint}" if hint else ""
    if not recorded:
        return f"cassette {shown} holds no requests{fix}"
    new_body = body_json(new)
    seed = request_seed(new_body)
    seeded = [(r, s) for r in recorded if (s := request_seed(body_json(r))) is not None]
    same_seed = [r for r, s in seeded if seed is not None and s == seed]
    if seed is not None and seeded and not same_seed:
        if any(r.path == new.path and _same_but_seed(body_json(r), new_body, s, seed) for r, s in seeded):
            seeds = [s for _, s in seeded]
            return (f"stale cassette {shown}: it holds seeds {_span(seeds)} ({len(seeds)} requests) but this run "
                    f"asks for seed {seed} (did `samples` or `seed` change?){fix}")
    if new.uri.startswith("local://") and not any(r.uri == new.uri for r in recorded):
        # A local model's call (`recording.local`) the cassette never saw: diffing it against an
        # HTTP request would only list every field as changed.
        return (f"stale cassette {shown}: it holds no answer to {new.uri} (a local model the suite now uses, "
                f"e.g. a scorer or reference added since it was recorded){fix}")
    old = same_seed[0] if same_seed else recorded[0]
    diffs = []
    if old.method != new.method:
        diffs.append(f"method: {old.method} → {new.method}")
    if old.path != new.path:
        diffs.append(f"path: {old.path} → {new.path}")
    diffs += json_diff(body_json(old), new_body)
    if not diffs:
        answers = sum(1 for r in recorded if r.method == new.method and r.path == new.path
                      and body_json(r) == new_body)
        return (f"cassette {shown} holds {answers} {'answer' if answers == 1 else 'answers'} to this request and the "
                f"run asks for more (did `samples` grow?); {rerecord_advice(hint, 'new_episodes')} "
                "(records only the missing ones)")
    old_body = body_json(old)
    if (new.uri.startswith("local://") and len(diffs) == 1 and diffs[0].startswith("dtype:")
            and isinstance(old_body, dict) and isinstance(old_body.get("dtype"), str)):
        # A training run's live model (the callback's, the online loop's) records its own dtype;
        # re-recording would sample the checkpoint on disk instead of the weights that answered.
        was, now = old_body["dtype"], new_body.get("dtype")
        if new.uri.endswith("/score"):
            what, setting = "its scores were computed", "the scorer's dtype (dpo.reference or model.scorer)"
        else:
            what, setting = "its traces were drawn", "model.dtype"
        return (f"stale cassette {shown}: {what} in {was} and this run asks for {now}: set {setting}: {was} in the "
                f"suite to replay them, or re-record in {now}{': ' + hint if hint else ''}")
    changes = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
    return f"stale cassette {shown}: the suite changed since it was recorded: {changes}{fix}"


def _same_but_seed(old: Any, new: Any, old_seed: int, new_seed: int) -> bool:
    """Whether two JSON values are equal but where `old` holds `old_seed` and `new` `new_seed`
    (wherever their provider keeps the seed: recording does not need to know where)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(_same_but_seed(old[k], new[k], old_seed, new_seed) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_same_but_seed(a, b, old_seed, new_seed) for a, b in zip(old, new))
    if type(old) is int and type(new) is int and (old, new) == (old_seed, new_seed):
        return True
    return old == new


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
