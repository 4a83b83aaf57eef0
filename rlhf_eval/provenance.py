"""Provenance of a report: when it was made, with what, from which suite files.

`provenance(suite_paths, argv)` gives the report's top-level `provenance` object:

    {"time": "2026-11-30T17:02:11Z",            # UTC, when the report was built
     "rlhf_eval_version": "0.1.0", "python": "3.11.9",
     "packages": {"google-genai": "1.52.0", "openai": "2.8.1", "vcrpy": "7.0.0", ...},  # installed ones
     "git": {"commit": "49e4ba4…", "dirty": false} | null,   # the repository holding the suites
     "command_line": ["pytest", "suites/", "--rlhf-report-json=r.json"],   # secrets as ***
     "suites": {"gsm8k_smoke": {"path": "suites/gsm8k_smoke.yaml", "sha256": "…"}}}

`git` is null when the suites are in no git repository, or git is not installed or does not
answer within `GIT_TIMEOUT` seconds; `dirty` says whether tracked files differ from the commit or
a suite file is not in it (new, not added yet, or ignored).
`command_line` never holds a key: the values of the run's secret variables, anything shaped like
a key, credentials inside URLs and the value of any option or assignment named like a key
(`--api-key X`, `GEMINI_API_KEY=X`) are replaced by `***` (`rlhf_eval.credentials`).
"""
from __future__ import annotations

import hashlib
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .credentials import REDACTED, SECRET_PATTERNS, find_secret, redact_urls, secrets_in_use

# Distributions whose versions change what a run samples, records or computes.
PACKAGES = ("google-genai", "openai", "google-generativeai", "vcrpy", "httpx", "pydantic", "numpy", "pytest",
            "pytest-xdist", "math-verify", "transformers", "torch", "trl", "datasets")
GIT_TIMEOUT = 5.0  # seconds for each git command
# An option or NAME=value assignment whose name says it holds a credential.
# "key" and "auth" as words: --key, --gemini-key, MY_KEY=, --auth (not --keyword, --author, -k).
_SECRET_NAME = re.compile(r"(?i)(api[_-]?key|token|secret|password|passwd|credential|bearer"
                          r"|(?<![a-z])key(?![a-z])|(?<![a-z])auth(?:orization)?(?![a-z]))")


def provenance(suite_paths: Mapping[str, str | Path], argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The provenance object for a report of the suites `suite_paths` (suite name → its file) run by
    the command `argv` (default `sys.argv`). Never raises for a missing file or git: what cannot be
    found is null."""
    paths = {name: Path(p) for name, p in suite_paths.items()}
    return {
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rlhf_eval_version": _version("rlhf-eval"),
        "python": platform.python_version(),
        "packages": {name: v for name in PACKAGES if (v := _version(name)) is not None},
        "git": git_state(sorted({p.resolve().parent for p in paths.values()}), [p.resolve() for p in paths.values()]),
        "command_line": redact_argv(sys.argv if argv is None else argv),
        "suites": {name: {"path": str(p), "sha256": file_sha256(p)} for name, p in sorted(paths.items())},
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def file_sha256(path: str | Path) -> str | None:
    """The hex SHA-256 of the file's bytes; None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def git_state(folders: Iterable[Path], files: Sequence[Path] = ()) -> dict[str, Any] | None:
    """{"commit": HEAD's full hash, "dirty": ...} of the git repository holding the first of `folders`
    (the suites' folders); None outside a repository or without git. `dirty`: tracked files differ
    from the commit, or one of `files` (the suite files) is not in the repository's index (a new
    suite not added yet, an ignored one): the commit alone does not give the suites that ran."""
    for folder in folders:
        # one process for the commit and the changes: "# branch.oid <hash>" heads the v2 status,
        # then a line per changed tracked file
        status = _git(folder, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
        if status is None:
            return None
        lines = status.splitlines()
        commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
        if commit is None or commit == "(initial)":  # a repository with no commit yet
            return None
        dirty = any(not line.startswith("#") for line in lines)
        # ls-files fails on a path it does not track (untracked, ignored, in another repository)
        untracked = bool(files) and not dirty and _git(folder, "ls-files", "--error-unmatch", "--",
                                                       *map(str, files)) is None
        return {"commit": commit, "dirty": dirty or untracked}
    return None


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def redact_argv(argv: Sequence[str]) -> list[str]:
    """`argv` with every credential replaced by `***` (see the module's docstring)."""
    secrets = [v for v in secrets_in_use().values() if v]
    out: list[str] = []
    if argv:  # the program by its name, not where it is installed (python -m pytest: .../pytest/__main__.py)
        program = Path(str(argv[0]))
        first = f"python -m {program.parent.name}" if program.name == "__main__.py" else program.name
        argv = [first or str(argv[0]), *argv[1:]]
    after_secret_option = False
    for arg in map(str, argv):
        if after_secret_option and not arg.startswith("-"):
            out.append(REDACTED)
            after_secret_option = False
            continue
        after_secret_option = arg.startswith("-") and "=" not in arg and bool(_SECRET_NAME.search(arg))
        name, eq, _ = arg.partition("=")
        if eq and _SECRET_NAME.search(name) and "://" not in name:
            arg = f"{name}={REDACTED}"
        for value in secrets:
            arg = arg.replace(value, REDACTED)
        for pattern in SECRET_PATTERNS.values():
            arg = pattern.sub(REDACTED, arg)
        arg = redact_urls(arg)
        out.append(REDACTED if find_secret(arg) else arg)
    return out


def package_changes(current: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None) -> list[str]:
    """One note per package whose version differs between two reports' provenance (an SDK upgrade
    can change what is parsed or recorded); [] when either report has none (written before it existed)."""
    if not current or not baseline:
        return []
    now = {"rlhf-eval": current.get("rlhf_eval_version"), **(current.get("packages") or {})}
    was = {"rlhf-eval": baseline.get("rlhf_eval_version"), **(baseline.get("packages") or {})}
    return [f"{name} {was.get(name) or 'not installed'} → {now.get(name) or 'not installed'}"
            for name in sorted(set(now) | set(was)) if now.get(name) != was.get(name)]
