"""How paths appear in messages meant for people, and which names may name a folder."""
from __future__ import annotations

import re
from pathlib import Path

# A suite's name names its cassette folder (and its export folder), a question id its cassette.
FOLDER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # whole-string matches only (fullmatch)
FOLDER_NAME_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit"


def shown_path(path: str | Path) -> str:
    """`path` relative to the working directory when it is under it: shorter lines, same meaning."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)
