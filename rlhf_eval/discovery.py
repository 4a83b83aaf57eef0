"""Which files are suites: by name, the way pytest picks test modules by `python_files`.

Cheap to import (no YAML, no engine): the pytest plugin asks it about every YAML file it meets.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Iterable

SUITE_SUFFIXES = (".yaml", ".yml")
# ini rlhf_suite_files: which files are suites, by name (pytest's way with python_files)
DEFAULT_SUITE_FILES = ("suites/*.yaml", "suites/*.yml", "*.suite.yaml", "*.suite.yml")


def is_suite_path(file_path: str | Path, rootdir: Path, patterns: Iterable[str] = DEFAULT_SUITE_FILES,
                  cassette_dir: Path | None = None) -> bool:
    """Whether `file_path` matches one of `patterns`, as pytest matches `python_files`: a pattern
    without a `/` matches the file name; one with a `/` matches the end of the path from `rootdir`
    (`*` crosses folders: `suites/*.yaml` matches suites/a.yaml, suites/math/b.yaml and
    evals/suites/c.yaml; no folder above the rootdir counts). A file inside `cassette_dir` is a
    cassette, never a suite."""
    path = Path(os.path.abspath(file_path))
    if path.suffix not in SUITE_SUFFIXES:
        return False
    try:
        relative = path.relative_to(rootdir).as_posix()
    except ValueError:  # outside the rootdir: the end of its absolute path
        relative = path.as_posix()
    for pattern in patterns:
        pattern = pattern.replace(os.sep, "/")
        if "/" not in pattern:
            matched = fnmatch.fnmatch(path.name, pattern)
        elif pattern.startswith("/") or os.path.isabs(pattern):
            matched = fnmatch.fnmatch(path.as_posix(), pattern)
        else:
            matched = fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, "*/" + pattern)
        if matched:
            return cassette_dir is None or not _inside(path, cassette_dir)
    return False


def suite_files(paths: Iterable[str | Path], rootdir: Path, patterns: Iterable[str] = DEFAULT_SUITE_FILES,
                cassette_dir: Path | None = None) -> list[Path]:
    """The suite files `paths` name, as `pytest PATHS` collects them: a file named directly is a
    suite whatever its name; a folder gives the suite files under it (by `patterns`), by name,
    folder by folder; each file once. Raises FileNotFoundError for a path that does not exist."""
    patterns = tuple(patterns)
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
                found += [Path(folder, n) for n in sorted(names)
                          if is_suite_path(Path(folder, n), rootdir, patterns, cassette_dir)]
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")
    # a file named twice (`suites/ suites/a.yaml`, `a.yaml ./a.yaml`) runs once, as pytest collects it once
    once: dict[Path, Path] = {}
    for p in found:
        once.setdefault(p.resolve(), p)
    return list(once.values())


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False
