"""Local models (a transformers checkpoint run in this process) in the question's cassette.

A local sampler or scorer sends no HTTP, so nothing would be recorded and replay would need the
checkpoint (and its GPU). Instead each of its calls is an ordinary cassette interaction with a
pseudo request::

    POST local://<provider>/<operation>        e.g. local://hf/generate, local://hf/score
    content-type: application/json
    <the canonical JSON of the call: model name, prompt, seed and every generation setting>

and a 200 response whose JSON body is what the call computed. It goes through the same vcrpy
cassette, filters, matcher (method, path, JSON body) and stale-cassette explanation as an HTTP
request: replay needs neither the checkpoint nor torch, and a changed setting (temperature,
max_output_tokens, seed, prompt) is "stale cassette …: <field>: old → new" like any other.

The request holds only what the suite says, never something read from the checkpoint: replay must
build the request without it. The checkpoint's identity is recorded in the *response* (its
`model_version`, as an API's `modelVersion`), so the report shows which weights produced a
replayed trace; as with a hosted model whose weights change behind the same name, re-record
(`--rlhf-record-mode=rewrite`) after retraining a checkpoint in place.
"""
from __future__ import annotations

import json
from typing import Any

from .bodies import loads_json
from .router import ROUTER
from .vcr_adapter import CannotOverwriteExistingCassetteException, Request

LOCAL_SCHEME = "local"
_HEADERS = {"content-type": "application/json"}


def local_request(provider: str, operation: str, body: dict[str, Any]) -> Request:
    """The pseudo request of one local call: `POST local://<provider>/<operation>` with `body` as
    canonical JSON (sorted keys, no spaces), so equal calls give equal bytes and replay matches
    without parsing."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Request("POST", f"{LOCAL_SCHEME}://{provider}/{operation}", text.encode("utf-8"), dict(_HEADERS))


def replayed(request: Request) -> Any | None:
    """The recorded result (the response's JSON body) of `request` from this thread's cassette, or
    None when it must be computed: no cassette is bound, or the cassette may record it.

    Raises vcrpy's `CannotOverwriteExistingCassetteException` when the cassette holds no answer and
    may not record one (mode `none`, or `once` with a cassette on disk): `use_cassette` explains it
    as a stale cassette, naming the setting that changed. The body is parsed with `loads_json`; a
    caller reading it should do so inside `sampling.checking_replay`, which blames a malformed
    one on its interaction."""
    if ROUTER.current is None:
        return None
    if ROUTER.can_play_response_for(request):
        response = ROUTER.play_response(request)
        return loads_json(response["body"]["string"])
    if ROUTER.write_protected and ROUTER.filter_request(request):
        raise CannotOverwriteExistingCassetteException(cassette=ROUTER, failed_request=request)
    return None


def record(request: Request, result: Any) -> None:
    """Keep `result` (a JSON object) as the answer to `request` in this thread's cassette (nothing
    when none is bound). Written with the cassette, only if the whole question was sampled."""
    if ROUTER.current is None:
        return
    body = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    ROUTER.append(request, {"status": {"code": 200, "message": "OK"},
                            "headers": {"content-type": ["application/json"]}, "body": {"string": body}})
