"""The credentials a run uses: the values nothing it writes may contain, and URLs shown without them.

A run's secrets are the values of the key variables its suites name (`api_key_env`, or the
default `GEMINI_API_KEY` ...), of any variable whose name says it holds a key (`*_API_KEY`,
`*_TOKEN` ...), and the credentials inside a base URL (`user:pass@`, `?key=`, `?token=` ...),
whether the URL comes from a suite or from a variable such as `OPENAI_BASE_URL`. Every file the
run writes is scanned for them (`refuse_secrets`), and every URL it prints or stores goes
through `redact_url`.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

from .paths import shown_path

# Shapes of credentials that must never be written, whatever variable they came from.
SECRET_PATTERNS = {
    "a Google API key": re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
    "a Google OAuth token": re.compile(r"ya29\.[0-9A-Za-z_\-]{20,}"),
    "a bearer token": re.compile(r"(?i)bearer\s+[0-9A-Za-z._~+/\-]{16,}=*"),
    "an OpenAI-style key": re.compile(r"\bsk-[0-9A-Za-z_\-]{20,}"),
}
SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_ACCESS_TOKEN", "_SECRET")
# Query parameters that carry a credential in a URL (compared in lower case, "-" read as "_").
SECRET_URL_PARAMS = {"key", "api_key", "apikey", "token", "access_token", "auth", "password", "secret",
                     "sig", "signature", "client_secret", "x_goog_api_key"}
# Shorter values (a local server's "EMPTY", a user name "me") would match ordinary text.
MIN_SECRET_LENGTH = 8
REDACTED = "***"

_lock = threading.Lock()
_key_envs: set[str] = set()  # variables named as holding a key (api_key_env and the defaults)
_url_secrets: dict[str, str] = {}  # a credential found in a configured base URL -> what it is


class SecretInOutput(Exception):
    """A file about to be written contains a secret; it is not written. `what` says which secret
    (never its value). `partial`: the target is a pipe or device (`-` / /dev/stdout) that had
    already taken the text before the secret, which cannot be withdrawn (none of it holds a secret)."""

    def __init__(self, path: str | Path, what: str, partial: bool = False) -> None:
        super().__init__(_refusal(f"{shown_path(path)}", what, partial))
        self.path, self.what, self.partial = path, what, partial


def _refusal(target: str, what: str, partial: bool) -> str:
    if partial:
        return (f"stopped writing {target}: the rest would contain {what}; what it already took (a pipe or "
                "device cannot take it back) is incomplete and holds no secret")
    return f"refusing to write {target}: it would contain {what}; nothing was written"


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------

def url_credentials(url: str) -> list[tuple[str, str]]:
    """(what, value) of each credential in `url`: its user name and password, and the values of
    query parameters such as `key`, `api_key` or `token`."""
    try:
        parts = urlsplit(url)
        found = [("the user name", parts.username), ("the password", parts.password)]
    except ValueError:  # e.g. a bad IPv6 host; redact_url still hides what it can
        return []
    for name, value in _query_pairs(parts.query):
        if _is_secret_param(name):
            found.append((f"the {name}= parameter", value))
    return [(what, value) for what, value in found if value]


def redact_url(url: Any) -> Any:
    """`url` with its credentials replaced by `***` (user info, `?key=`, `?token=` ...); anything
    that is not a string is returned as it is. Use it wherever a URL is printed or stored."""
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not parsable (a bad IPv6 host): hide user info and secret-looking parameters
        url = re.sub(r"//[^/?#@]*@", f"//{REDACTED}@", url)
        return re.sub(r"(?<=[?&])[^=&#]*=[^&#]*", lambda m: _redact_param(m.group()), url)
    if "@" not in parts.netloc and not any(_is_secret_param(name) for name, _ in _query_pairs(parts.query)):
        return url  # unchanged, byte for byte
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(_redact_param(piece) for piece in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a server's base URL (no http(s) scheme, no host, a bad port or IPv6
    address), or None. The reason never repeats the URL, which may hold a credential."""
    try:
        parts = urlsplit(url)
    except ValueError:  # urllib's only complaint here: a bracketed host that is no IPv6 address
        return "its IPv6 address is not valid"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return "its port is not a number from 0 to 65535"
    if parts.scheme not in ("http", "https"):
        return "it needs a scheme, http:// or https://"
    if not parts.hostname:
        return "it names no host"
    return None


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def redact_urls(text: str) -> str:
    """`text` with every URL in it redacted (for an error message that quotes one)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)


def redact_base_urls(settings: Any) -> Any:
    """A copy of `settings` (nested dicts and lists) with every `base_url` value redacted."""
    if isinstance(settings, dict):
        return {k: redact_url(v) if k == "base_url" else redact_base_urls(v) for k, v in settings.items()}
    if isinstance(settings, list):
        return [redact_base_urls(v) for v in settings]
    return settings


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return [(name, value) for name, _, value in (piece.partition("=") for piece in query.split("&")) if value]


def _redact_param(piece: str) -> str:
    name, _, value = piece.partition("=")
    return f"{name}={REDACTED}" if value and _is_secret_param(name) else piece


def _is_secret_param(name: str) -> bool:
    return name.lower().replace("-", "_") in SECRET_URL_PARAMS


# ---------------------------------------------------------------------------------------------
# What to scan for
# ---------------------------------------------------------------------------------------------

def watch_key_env(name: str | None) -> None:
    """Scan everything written from now on for the value of variable `name` (a suite's
    `api_key_env`, whatever it is called)."""
    if name:
        with _lock:
            _key_envs.add(name)


def watch_url(url: str | None) -> None:
    """Scan everything written from now on for the credentials inside `url` (a base URL)."""
    if not url:
        return
    shown = redact_url(url)
    with _lock:
        for what, value in url_credentials(url):
            _url_secrets.setdefault(value, f"{what} of the base URL {shown}")


def watch_settings(settings: Any) -> None:
    """Watch every `api_key_env` and `base_url` named anywhere in a suite's settings (nested dicts)."""
    if isinstance(settings, dict):
        for key, value in settings.items():
            if key == "api_key_env" and isinstance(value, str):
                watch_key_env(value)
            elif key == "base_url" and isinstance(value, str):
                watch_url(value)
            else:
                watch_settings(value)
    elif isinstance(settings, list):
        for value in settings:
            watch_settings(value)


def secrets_in_use() -> dict[str, str]:
    """Values of the key variables (watched ones, and any whose name says it holds a key), name → value."""
    with _lock:
        watched = set(_key_envs)
    return {name: value for name, value in _environ()
            if (name in watched or name.upper().endswith(SECRET_ENV_SUFFIXES)) and len(value) >= MIN_SECRET_LENGTH}


def _environ() -> list[tuple[str, str]]:
    """The environment's (name, value) pairs. Files are saved on worker threads while the main
    thread may set or unset a variable (pytest sets PYTEST_CURRENT_TEST around every test): a
    plain `os.environ.items()` then raises KeyError or RuntimeError half way. Read it again."""
    while True:
        try:
            return list(os.environ.items())
        except (KeyError, RuntimeError):
            continue


def _all_secrets(extra: dict[str, str] | None) -> dict[str, str]:
    """What each secret is (for a message) → its value."""
    found = {f"the value of ${name}": value for name, value in {**secrets_in_use(), **(extra or {})}.items()}
    for name, value in _environ():
        if "://" in value:  # OPENAI_BASE_URL, RLHF_EVAL_GEMINI_BASE_URL, a proxy ...
            for what, secret in url_credentials(value):
                found.setdefault(f"{what} of the URL in ${name}", secret)
    with _lock:
        found.update({what: value for value, what in _url_secrets.items()})
    return found


def find_secret(text: str, extra: dict[str, str] | None = None, start: int = 0) -> str | None:
    """What secret `text` contains (never the secret itself), or None. `extra`: more variables, name → value.
    `start`: the shapes (SECRET_PATTERNS) are looked for from there on, `text[start - 1]` read as
    the character before (a `\\b` of "sk-..." is then no word boundary after a letter)."""
    for what, value in _all_secrets(extra).items():
        if len(value) >= MIN_SECRET_LENGTH and value in text:
            return what
    for what, pattern in SECRET_PATTERNS.items():
        if pattern.search(text, start):
            return what
    return None


def refuse_secrets(path: str | Path, text: str, start: int = 0) -> None:
    """Raises `SecretInOutput` (naming the file and which secret, never its value) if `text`,
    about to be written to `path`, contains one of the run's secrets (see `find_secret`'s `start`)."""
    leaked = find_secret(text, start=start)
    if leaked:
        raise SecretInOutput(path, leaked)


def write_problem(label: str, path: str | Path, exc: SecretInOutput | OSError) -> str:
    """The one line for output `label` that `write_without_secrets` could not write to `path`:
    `exc` is its SecretInOutput or OSError."""
    if isinstance(exc, SecretInOutput):
        return _refusal(f"{label} {shown_path(path)}", exc.what, exc.partial)
    from .atomic import os_reason

    return f"could not write {label} to {shown_path(path)} ({os_reason(exc)}); choose a writable path"


def write_without_secrets(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically, unless it contains one of the run's secrets.

    Raises `SecretInOutput` (nothing written) or OSError (the file, if any, left as it was)."""
    from .atomic import atomic_write_text

    refuse_secrets(path, text)
    atomic_write_text(path, text)


def write_chunks_without_secrets(path: str | Path, chunks: Iterable[str]) -> None:
    """`write_without_secrets` for a text made piece by piece (a report too large to hold), each
    piece checked before it is written (`CheckedWriter`). Raises `SecretInOutput` (nothing
    written, but to a pipe or device: see its `partial`) or OSError."""
    with checked_writer(path) as write:
        for chunk in chunks:
            write(chunk)


@contextlib.contextmanager
def checked_writer(path: str | Path) -> Iterator[Callable[[str], None]]:
    """A `write(text)` whose pieces replace `path` atomically when the block ends, each checked
    for the run's secrets before it is written (`CheckedWriter`). Raises `SecretInOutput`: a
    file is then left as it was; a pipe or device keeps what it took (`partial`)."""
    from .atomic import atomic_writer, is_special

    with atomic_writer(path) as f:
        out = CheckedWriter(path, f)
        try:
            yield out.write
            out.flush(final=True)
        except SecretInOutput as exc:
            if out.written and is_special(Path(path)):
                exc.partial = True
                exc.args = (_refusal(shown_path(path), exc.what, True),)
            raise


class CheckedWriter:
    """Writes text to `file` in chunks of about `chunk` characters, each checked for the run's
    secrets first (`refuse_secrets`) together with the characters before it that a secret cut by
    the chunk's boundary could start in (`overlap`, or the longest secret's length if more), so
    such a secret is found too. The last of those characters are written only with the next
    chunk, once it is checked: a pipe that took the text before a secret holds no part of it.
    Call `flush` at the end. `write` and `flush` raise `SecretInOutput` (the caller then
    discards the file: see atomic.atomic_writer). `written`: the characters written to `file`
    so far."""

    def __init__(self, path: str | Path, file: Any, chunk: int = 1 << 20, overlap: int = 4096) -> None:
        self._path, self._file, self._chunk, self._overlap = path, file, chunk, overlap
        self._pieces: list[str] = []
        self._size = 0
        self._tail = ""
        self._cut = 0  # 1: `_tail` was cut from a longer text (its first character is context)
        self._held = ""  # checked, not yet written: where a secret cut by the last chunk's end may start
        self.written = 0

    def write(self, text: str) -> None:
        self._pieces.append(text)
        self._size += len(text)
        if self._size >= self._chunk:
            self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        """Check and write what `write` was given; all of it when `final` (the end of the text),
        else all but the characters a secret the next chunk completes may start in."""
        text = "".join(self._pieces)
        self._pieces.clear()
        self._size = 0
        if not text:
            if final and self._held:
                self._file.write(self._held)
                self.written += len(self._held)
                self._held = ""
            return
        checked = self._tail + text
        # a tail cut from the text keeps one character more, only read as the one before the rest:
        # "ta|sk-..." cut there is no OpenAI-style key (`\\b`), as the whole text is not
        refuse_secrets(self._path, checked, start=self._cut)
        # the patterns' matches are found by their first few dozen characters; a variable's value
        # (a service account's key, a JWT) only whole: it may be longer than `overlap`
        keep = max(self._overlap, max(map(len, _all_secrets(None).values()), default=0))
        self._cut = int(len(checked) > keep + 1)
        self._tail = checked[-(keep + 1):]  # however small the chunks
        out = self._held + text
        # what --rlhf-report-json /dev/stdout took before a refusal held the key's first characters
        self._held = "" if final else out[len(out) - min(keep, len(out)):]
        out = out[:len(out) - len(self._held)]
        self._file.write(out)
        self.written += len(out)
