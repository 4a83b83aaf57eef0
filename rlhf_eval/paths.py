"""How paths appear in messages meant for people."""
from __future__ import annotations

from pathlib import Path


def shown_path(path: str | Path) -> str:
    """`path` relative to the working directory when it is under it: shorter lines, same meaning."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)
