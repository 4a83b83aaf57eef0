"""Which cassette interaction answered this thread's last request, so that a response an SDK
cannot read is blamed on the cassette (`ReplayFault`) only when a cassette gave it."""
from __future__ import annotations

import threading

from .bodies import loads_json
from .problems import ReplayFault

# Per thread: (cassette, index) of the interaction that answered the thread's last request, or None.
_LAST_PLAYED = threading.local()


def note_played(cassette, index: int) -> None:
    """Interaction `index` of `cassette` answered this thread's request."""
    _LAST_PLAYED.value = (cassette, index)


def forget_replayed() -> None:
    """Start of a request: no response has answered it yet (see `replay_fault`)."""
    _LAST_PLAYED.value = None


def replay_fault(detail: str) -> ReplayFault | None:
    """The cassette's fault when this thread's last request was answered by a cassette and reading
    that answer failed (`detail` says how): a recorded HTTP error is named as such, any other
    response as one the API does not send. None when the last request (since `forget_replayed`)
    was not answered from a cassette: then the failure is not the cassette's."""
    played = getattr(_LAST_PLAYED, "value", None)
    if played is None:
        return None
    cassette, index = played
    response = cassette.data[index][1]
    code = response["status"]["code"]
    if code >= 400:
        what = f"recorded an HTTP {code} from the API ({_error_message(response)})"
    else:
        what = f"holds a response the API does not send ({detail})"
    return ReplayFault(cassette.file_path, index + 1, max(cassette.loaded_count, index + 1), what,
                       cassette.rerecord_hint)


def _error_message(response: dict) -> str:
    """The message of a recorded HTTP error, on one line: the API's `error.message` when the body
    is the usual JSON error, else the start of the body, else the status line's reason."""
    text = response["body"].get("string") or b""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    try:
        error = loads_json(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    message = " ".join(str(message or text or response["status"].get("message") or "no message").split())
    return message if len(message) <= 120 else message[:117] + "…"
