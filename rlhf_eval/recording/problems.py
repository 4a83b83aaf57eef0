"""What can be wrong with a cassette, each as one line that says how to fix it."""
from __future__ import annotations

import re
from pathlib import Path

from ..paths import shown_path


class CassetteProblem(Exception):
    """A cassette is missing, stale or unreadable; the message says what and how to fix it."""


class SecretInCassette(CassetteProblem):
    """A cassette about to be written contains a secret; it is not written."""


class CassetteWriteError(CassetteProblem):
    """A cassette could not be written (disk full, read-only, a file in the way); any old one is kept."""


class ReplayFault(CassetteProblem):
    """A recorded response is not one the API sends as an answer (a malformed body, or an HTTP
    error that was never meant to be kept): one line naming the cassette and the interaction, and
    the command that records the question again."""

    def __init__(self, path: str | Path, number: int, total: int, what: str, hint: str = ""):
        self.path, self.number, self.total, self.what = path, number, total, what
        super().__init__(f"cassette {shown_path(path)} interaction {number} of {total} {what}; "
                         f"{rerecord_advice(hint, 'rewrite')}")

    def with_hint(self, hint: str) -> "ReplayFault":
        return ReplayFault(self.path, self.number, self.total, self.what, hint)


def rerecord_advice(hint: str, mode: str) -> str:
    """'re-record with: <hint in record mode `mode`>' — the plugin's hint names the mode a replay
    would record in (once), which cannot replace what an existing cassette holds."""
    if not hint:
        return f"re-record it in record mode {mode}"
    return "re-record with: " + re.sub(r"--rlhf-record-mode=\S+", f"--rlhf-record-mode={mode}", hint)
