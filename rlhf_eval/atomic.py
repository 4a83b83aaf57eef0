"""Whole-or-nothing file writes: a reader (or a crash) never sees half a file."""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from .paths import shown_path

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, fsync it, then rename it over `path`; on any
    failure the temp file is removed and `path` is left as it was.

    A path that is a device or a pipe (`/dev/stdout`, `/dev/null`) is written in place: renaming
    a file over it would replace the device. Raises OSError (a file in the way of the folder is
    NotADirectoryError naming it)."""
    atomic_write_chunks(path, (text,))


def atomic_write_chunks(path: str | Path, chunks: Iterable[str]) -> None:
    """`atomic_write_text` of the concatenated `chunks`, written as they come (a large report is
    never whole in memory); an exception raised by the iterator leaves `path` as it was too."""
    with atomic_writer(path) as f:
        f.writelines(chunks)


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[TextIO]:
    """A text file (UTF-8) whose content replaces `path` when the block ends, as `atomic_write_text`
    does; when the block raises, the temp file is removed, `path` is left as it was, and the
    exception propagates. Raises OSError."""
    path = Path(path)
    if is_special(path):
        with open(path, "w", encoding="utf-8") as f:
            yield f
        return
    make_directory(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; cassettes and reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def make_directory(directory: str | Path) -> None:
    """`mkdir -p directory`; a file where a folder should be is a NotADirectoryError that names it
    (mkdir's own FileExistsError does not say which one)."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = _file_in_the_way(Path(directory))
        if blocker is None:
            raise
        raise NotADirectoryError(errno.ENOTDIR, f"{shown_path(blocker)} is a file, not a folder") from None


def unwritable_reason(directory: str | Path) -> str | None:
    """Why files cannot be written under `directory` (which need not exist yet), or None.

    Creates and removes an empty probe file in `directory`, or in its nearest existing ancestor:
    the only test that holds for root, read-only mounts and ACLs alike."""
    directory = Path(directory)
    blocker = _file_in_the_way(directory)
    if blocker is not None:
        return f"{shown_path(blocker)} is a file, not a folder"
    existing = next((d for d in (directory, *directory.parents) if d.is_dir()), None)
    if existing is None:
        return "no folder of it exists"
    try:
        fd, probe = tempfile.mkstemp(prefix=".rlhf-eval-write-check.", dir=existing)
    except OSError as exc:
        return os_reason(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def os_reason(exc: OSError) -> str:
    """The OS's reason for `exc` in a few words, e.g. `No space left on device`."""
    return exc.strerror or str(exc) or type(exc).__name__


def _file_in_the_way(directory: Path) -> Path | None:
    """The nearest of `directory` and its ancestors that exists, if it is not a folder."""
    for d in (directory, *directory.parents):
        if d.is_dir():
            return None
        if d.exists() or d.is_symlink():
            return d
    return None


def is_special(path: Path) -> bool:
    """A device, pipe or socket (after symlinks): never to be replaced by a rename."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
