"""vcrpy persisters: read a cassette file once with one clear line for a bad one; write it
atomically, and never with a secret in it."""
from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write_text
from ..credentials import find_secret
from ..paths import shown_path
from .cassette_format import replayable_responses, shape_problem
from .problems import CassetteProblem, SecretInCassette
from .vcr_adapter import CassetteNotFoundError, request_from_dict, response_with_bytes, serialize


class AtomicPersister:
    """vcrpy persister: atomic writes, secret scan before writing, one clear line for a bad file."""

    @staticmethod
    def load_cassette(cassette_path, serializer):
        path = Path(cassette_path)
        if not path.is_file():
            raise CassetteNotFoundError()
        try:
            data = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            raise CassetteProblem(
                f"{shown_path(path)}: cannot read cassette ({exc}); delete it and re-record") from None
        if not data.strip():
            raise CassetteNotFoundError()
        try:
            parsed = serializer.deserialize(data)
        except Exception as exc:  # yaml's or json's own error for a damaged file
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise CassetteProblem(f"{shown_path(path)}: corrupt cassette ({type(exc).__name__}: {first}); "
                                  "delete it and re-record") from None
        problem = shape_problem(parsed)
        if problem:
            raise CassetteProblem(f"{shown_path(path)}: corrupt cassette ({problem}); delete it and re-record")
        if not parsed["interactions"]:
            raise CassetteNotFoundError()  # like an empty file: recorded again in mode once
        # What vcr.serialize.deserialize returns, built from the text parsed above (not parsed twice).
        requests = [request_from_dict(r["request"]) for r in parsed["interactions"]]
        responses = [response_with_bytes(r) for r in replayable_responses(path, parsed["interactions"])]
        if parsed.get("metadata"):
            return requests, responses, parsed["metadata"]
        return requests, responses

    @staticmethod
    def save_cassette(cassette_path, cassette_dict, serializer):
        text = serialize(cassette_dict, serializer)
        leaked = find_secret(text)
        if leaked:
            raise SecretInCassette(f"refusing to write {shown_path(cassette_path)}: it would contain {leaked}; "
                                   "nothing was written (report this: a secret reached a request or response)")
        atomic_write_text(cassette_path, text)


class RewritingPersister(AtomicPersister):
    """Record mode rewrite records every request again and keeps none of the old ones, so the old
    cassette is not read at all: a damaged one is replaced instead of stopping the re-recording
    that the damage calls for."""

    @staticmethod
    def load_cassette(cassette_path, serializer):
        raise CassetteNotFoundError()
