"""The emulator's batch endpoints: Gemini Batch Mode (Developer API) and OpenAI's Batch API.

Gemini (REST, `v1beta`):

- `POST /v1beta/models/{model}:batchGenerateContent` with `{"batch": {"displayName", "inputConfig":
  {"requests": {"requests": [{"request": GenerateContentRequest, "metadata": {"key"}}]}}}}` or
  `{"inputConfig": {"fileName": "files/…"}}` → a long-running Operation `{"name": "batches/…",
  "metadata": GenerateContentBatch}`;
- `GET /v1beta/batches/{id}` → the Operation; `metadata.state` is `BATCH_STATE_PENDING`,
  `_RUNNING`, `_SUCCEEDED`, `_FAILED`, `_CANCELLED` or `_EXPIRED`; when done, `done: true` and
  `metadata.output` holds `inlinedResponses.inlinedResponses` (`{"response"}` or `{"error"}`, with
  the request's `metadata`) or `responsesFile` (a JSONL file of `{"key", "response" | "error"}`);
- `POST /v1beta/batches/{id}:cancel`;
- the Files API's resumable upload (`POST /upload/v1beta/files`, `X-Goog-Upload-Command: start`,
  then `upload, finalize` to the `X-Goog-Upload-URL` it answers) and
  `GET /download/v1beta/files/{id}:download?alt=media`.

OpenAI: `POST /v1/files` (multipart, `purpose=batch`), `POST /v1/batches` (`input_file_id`,
`endpoint`, `completion_window`), `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`,
`GET /v1/files/{id}/content`; statuses `validating`, `in_progress`, `finalizing`, `completed`,
`failed`, `expired`, `cancelling`, `cancelled`; output lines `{"id", "custom_id", "response":
{"status_code", "request_id", "body"}, "error"}`, failed items in the `error_file_id` file.

Each item is answered by the same code as the online endpoint (`generateContent`,
`/v1/chat/completions`, `/v1/completions`), so a batch answer is the body the online request gets.
Knobs (`Emulator.batch`): `delay_polls` — how many `get`s a job stays pending/running before it
completes (counted in polls, not seconds, so tests never wait); `fail_every` — every Nth item of a
job (1-based) fails with a 500 error instead of being answered; `fail_polls` — the next N job
reads answer 503; `served = False` — every batch and file endpoint answers 404 as a server without
a batch API does (vLLM, SGLang: `{"detail": "Not Found"}`); `interrupt_after_create` — the next N
job creations, once the job exists, send Ctrl-C (SIGINT) to the process's main thread before
answering (an in-process emulator only: the Ctrl-C that lands while a job is created and before its
id is read); `fail_jobs` — the next N jobs to complete fail as a whole (Gemini: `BATCH_STATE_FAILED`
with the Operation's `error`; OpenAI: `failed` with `errors.data`, as a batch failing validation).
`creates` and `cancels` count jobs created and cancelled.
"""
from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from . import openai_api
from .server import ApiError, EmulatorState, camelize, render

_GEMINI_DONE = ("BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED")
_OPENAI_DONE = ("completed", "failed", "expired", "cancelled")


@dataclass
class Job:
    id: str
    kind: str  # "gemini" or "openai"
    model: str  # gemini: the model; openai: the endpoint path
    items: list[tuple[str, dict]]  # (key or custom_id, request body)
    inline: bool
    api_key: str = ""  # the key the job was created with: its items' `[[emulator:echo_key]]` quote it
    display_name: str = ""
    polls_left: int = 0
    state: str = ""
    results: list[dict] = field(default_factory=list)
    output_file: str | None = None
    error_file: str | None = None
    error: str | None = None  # why the whole job failed
    created: int = field(default_factory=lambda: int(time.time()))


class BatchState:
    """The batch jobs and uploaded files of one emulator, and its knobs (see the module)."""

    def __init__(self) -> None:
        self.delay_polls = 1
        self.fail_every = 0
        self.fail_polls = 0  # the next this many job reads answer 503 (a transient fault)
        self.served = True
        self.fail_jobs = 0
        self.interrupt_after_create = 0
        self.creates = 0
        self.cancels = 0
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, str] = {}  # upload id -> display name
        self._lock = threading.Lock()
        self._n = 0

    def new_id(self, prefix: str) -> str:
        with self._lock:
            self._n += 1
            return f"{prefix}{self._n:06d}"


def batch_state(state: EmulatorState) -> BatchState:
    """The batch side of `state`, made on first use."""
    found = getattr(state, "_batch_state", None)
    if found is None:
        found = state._batch_state = BatchState()  # type: ignore[attr-defined]
    return found


def handles(method: str, path: str) -> bool:
    """Whether `path` is one of the batch or file endpoints above."""
    return (path.startswith(("/v1beta/batches/", "/upload/v1beta/files", "/download/v1beta/files/",
                             "/v1/batches", "/v1/files"))
            or (path.startswith("/v1beta/models/") and path.endswith(":batchGenerateContent")))


Answer = tuple[int, bytes, dict[str, str]]


def handle(state: EmulatorState, method: str, path: str, query: str, headers: Any, raw: bytes) -> Answer:
    """Answer one batch or file request: (status, body bytes, headers)."""
    batches = batch_state(state)
    if not batches.served:
        return 404, b'{"detail":"Not Found"}', {"Content-Type": "application/json"}
    if method == "GET" and path.startswith(("/v1beta/batches/", "/v1/batches/")) and batches.fail_polls > 0:
        batches.fail_polls -= 1
        if path.startswith("/v1/"):
            return 503, render(openai_api.OpenAIError(503, "The server is overloaded.", "server_error").body()), {}
        return 503, render(ApiError(503, "UNAVAILABLE", "The service is currently unavailable.").body()), {}
    if path.startswith("/v1/"):
        try:
            return _openai(state, batches, method, path, headers, raw)
        except openai_api.OpenAIError as e:
            return e.status, render(e.body()), {}
    try:
        return _gemini(state, batches, method, path, query, headers, raw)
    except ApiError as e:
        return e.code, render(e.body()), {}


# ------------------------------------------------------------------------------------------ Gemini

def _gemini(state: EmulatorState, batches: BatchState, method: str, path: str, query: str, headers: Any,
            raw: bytes) -> Answer:
    if not (headers.get("x-goog-api-key") or "key=" in query):
        raise ApiError(401, "UNAUTHENTICATED", "Method doesn't allow unregistered callers (callers without "
                                               "established identity). Please use API Key or other form of API "
                                               "consumer identity to call this API.")
    if path == "/upload/v1beta/files" and method == "POST":
        return _upload(batches, query, headers, raw)
    if path.startswith("/download/v1beta/files/") and path.endswith(":download"):
        name = path[len("/download/v1beta/"):-len(":download")]
        if name not in batches.files:
            raise ApiError(404, "NOT_FOUND", f"File {name} not found.")
        return 200, batches.files[name], {"Content-Type": "application/jsonl"}
    if path.endswith(":batchGenerateContent") and method == "POST":
        model = path[len("/v1beta/models/"):-len(":batchGenerateContent")]
        key = headers.get("x-goog-api-key") or (parse_qs(query).get("key") or [""])[0]
        return 200, render(_gemini_create(batches, model, _json(raw), key)), {}
    name = path[len("/v1beta/"):]
    if name.endswith(":cancel") and method == "POST":
        job = _job(batches, name[:-len(":cancel")])
        if job.state not in _GEMINI_DONE:
            job.state = "BATCH_STATE_CANCELLED"
            batches.cancels += 1
        return 200, b"{}", {}
    if method == "GET":
        job = _job(batches, name)
        _advance(state, batches, job)
        return 200, render(_operation(job)), {}
    raise ApiError(404, "NOT_FOUND", f"The requested URL {path} was not found on this server.")


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"null")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ApiError(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Expected a JSON object.")
    return value


def _job(batches: BatchState, name: str) -> Job:
    job = batches.jobs.get(name)
    if job is None:
        raise ApiError(404, "NOT_FOUND", f"Batch {name} not found.")
    return job


def _upload(batches: BatchState, query: str, headers: Any, raw: bytes) -> Answer:
    command = (headers.get("X-Goog-Upload-Command") or "").lower()
    if "start" in command:
        upload_id = batches.new_id("u")
        display = ((_json(raw).get("file") or {}).get("displayName")
                   or (_json(raw).get("file") or {}).get("display_name") or "")
        batches.uploads[upload_id] = display
        host = headers.get("Host") or "127.0.0.1"
        url = f"http://{host}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
        return 200, b"", {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}
    upload_id = (parse_qs(query).get("upload_id") or [""])[0]
    if upload_id not in batches.uploads or "finalize" not in command:
        raise ApiError(400, "INVALID_ARGUMENT", "unknown upload, or an upload not finalized in one request")
    name = f"files/{batches.new_id('f')}"
    batches.files[name] = raw
    file = {"name": name, "displayName": batches.uploads.pop(upload_id), "mimeType": "application/jsonl",
            "sizeBytes": str(len(raw)), "state": "ACTIVE", "source": "UPLOADED"}
    return 200, render({"file": file}), {"X-Goog-Upload-Status": "final"}


def _gemini_create(batches: BatchState, model: str, body: dict, api_key: str) -> dict:
    batch = body.get("batch")
    if not isinstance(batch, dict):
        raise ApiError(400, "INVALID_ARGUMENT", "batch is required.")
    config = batch.get("inputConfig")
    if not isinstance(config, dict):
        raise ApiError(400, "INVALID_ARGUMENT", "batch.input_config is required.")
    if config.get("fileName"):
        data = batches.files.get(config["fileName"])
        if data is None:
            raise ApiError(404, "NOT_FOUND", f"File {config['fileName']} not found.")
        lines = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        items = [(str(line.get("key", "")), line.get("request") or {}) for line in lines]
        inline = False
    else:
        requests = ((config.get("requests") or {}).get("requests")) or []
        items = [(str((r.get("metadata") or {}).get("key", "")), r.get("request") or {}) for r in requests]
        inline = True
    if not items:
        raise ApiError(400, "INVALID_ARGUMENT", "A batch needs at least one request.")
    job = Job(id=f"batches/{batches.new_id('b')}", kind="gemini", model=model, items=items, inline=inline,
              api_key=api_key, display_name=str(batch.get("displayName") or ""), polls_left=batches.delay_polls,
              state="BATCH_STATE_PENDING")
    batches.jobs[job.id] = job
    batches.creates += 1
    _interrupt_if_asked(batches)
    return _operation(job)


def _interrupt_if_asked(batches: BatchState) -> None:
    """Ctrl-C in the main thread, the job created and its answer not yet sent (see the module)."""
    if batches.interrupt_after_create > 0:
        batches.interrupt_after_create -= 1
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


def _advance(state: EmulatorState, batches: BatchState, job: Job) -> None:
    """One poll: a pending job starts running, and completes after `delay_polls` polls."""
    if job.state in _GEMINI_DONE or job.state in _OPENAI_DONE:
        return
    if job.polls_left > 0:
        job.polls_left -= 1
        job.state = "BATCH_STATE_RUNNING" if job.kind == "gemini" else "in_progress"
        return
    if batches.fail_jobs > 0:
        batches.fail_jobs -= 1
        job.error = "The batch could not be processed: the model is not available for batch jobs."
        job.state = "BATCH_STATE_FAILED" if job.kind == "gemini" else "failed"
        return
    job.results = [_answer(state, batches, job, n, key, request) for n, (key, request) in enumerate(job.items, 1)]
    if job.kind == "gemini":
        job.state = "BATCH_STATE_SUCCEEDED"
        if not job.inline:
            job.output_file = f"files/{batches.new_id('f')}"
            batches.files[job.output_file] = b"".join(render(r) + b"\n" for r in job.results)
    else:
        job.state = "completed"
        ok = [r for r in job.results if r["error"] is None]
        bad = [r for r in job.results if r["error"] is not None]
        if ok:
            job.output_file = f"file-{batches.new_id('o')}"
            batches.files[job.output_file] = b"".join(render(r) + b"\n" for r in ok)
        if bad:
            job.error_file = f"file-{batches.new_id('e')}"
            batches.files[job.error_file] = b"".join(render(r) + b"\n" for r in bad)


def _answer(state: EmulatorState, batches: BatchState, job: Job, n: int, key: str, request: dict) -> dict:
    failed = bool(batches.fail_every) and n % batches.fail_every == 0
    if job.kind == "gemini":
        meta = {"metadata": {"key": key}} if job.inline else {"key": key}
        if failed:
            return {**meta, "error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}
        try:
            path = f"/v1beta/models/{job.model}:generateContent"
            payload, _ = state.generate(job.model, "v1beta", camelize(request), path=path, api_key=job.api_key)
        except ApiError as e:
            return {**meta, "error": e.body()["error"]}
        return {"response": payload, **meta} if job.inline else {"key": key, "response": payload}
    line_id = "batch_req_" + hashlib.sha256(f"{job.id}/{key}".encode()).hexdigest()[:24]
    if failed:
        return {"id": line_id, "custom_id": key, "response": None,
                "error": {"code": "server_error", "message": "The server had an error processing this request."}}
    try:
        handler = openai_api.chat_completions if job.model.endswith("/chat/completions") else openai_api.completions
        payload, _ = handler(state, job.model, request, job.api_key)
        response = {"status_code": 200, "request_id": line_id[10:], "body": payload}
    except openai_api.OpenAIError as e:
        response = {"status_code": e.status, "request_id": line_id[10:], "body": e.body()}
    return {"id": line_id, "custom_id": key, "response": response, "error": None}


def _operation(job: Job) -> dict:
    """The Operation a Gemini `create` or `get` answers, as the Developer API sends it."""
    done = job.state in _GEMINI_DONE
    total = len(job.items)
    failed = sum(1 for r in job.results if "error" in r)
    stats = {"requestCount": str(total)}
    if done:
        stats.update({"successfulRequestCount": str(total - failed), "failedRequestCount": str(failed)})
    else:
        stats["pendingRequestCount"] = str(total)
    metadata: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "model": f"models/{job.model}", "displayName": job.display_name, "name": job.id,
        "state": job.state, "batchStats": stats}
    if done and job.state == "BATCH_STATE_SUCCEEDED":
        metadata["output"] = ({"inlinedResponses": {"inlinedResponses": job.results}} if job.inline
                              else {"responsesFile": job.output_file})
    operation: dict[str, Any] = {"name": job.id, "metadata": metadata}
    if done and job.error:
        operation["done"] = True
        operation["error"] = {"code": 9, "message": job.error}  # google.rpc.Code FAILED_PRECONDITION
    elif done:
        operation["done"] = True
        operation["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main."
                                          "GenerateContentBatchOutput", **metadata.get("output", {})}
    return operation


# ------------------------------------------------------------------------------------------ OpenAI

def _openai(state: EmulatorState, batches: BatchState, method: str, path: str, headers: Any, raw: bytes) -> Answer:
    if path == "/v1/files" and method == "POST":
        return 200, render(_openai_upload(batches, headers, raw)), {}
    if path.startswith("/v1/files/") and path.endswith("/content") and method == "GET":
        file_id = path[len("/v1/files/"):-len("/content")]
        if file_id not in batches.files:
            raise openai_api.OpenAIError(404, f"No such File object: {file_id}", code="not_found")
        return 200, batches.files[file_id], {"Content-Type": "application/octet-stream"}
    if path == "/v1/batches" and method == "POST":
        auth = (headers.get("Authorization") or "").strip()
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        return 200, render(_openai_create(batches, _openai_json(raw), key)), {}
    if path.startswith("/v1/batches/"):
        rest = path[len("/v1/batches/"):]
        if rest.endswith("/cancel") and method == "POST":
            job = _openai_job(batches, rest[:-len("/cancel")])
            if job.state not in _OPENAI_DONE:
                job.state = "cancelled"
                batches.cancels += 1
            return 200, render(_batch_object(job)), {}
        if method == "GET":
            job = _openai_job(batches, rest)
            _advance(state, batches, job)
            return 200, render(_batch_object(job)), {}
    raise openai_api.OpenAIError(404, f"Invalid URL ({method} {path})")


def _openai_json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"null")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise openai_api.OpenAIError(400, "We could not parse the JSON body of your request.")
    return value


def _openai_job(batches: BatchState, batch_id: str) -> Job:
    job = batches.jobs.get(batch_id)
    if job is None:
        raise openai_api.OpenAIError(404, f"No batch found with id '{batch_id}'.", code="not_found")
    return job


def _openai_upload(batches: BatchState, headers: Any, raw: bytes) -> dict:
    content_type = headers.get("Content-Type") or ""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    fields: dict[str, Any] = {}
    filename = "upload.jsonl"
    for part in message.iter_parts() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename() or filename
        fields[str(name)] = part.get_payload(decode=True)
    if fields.get("purpose") != b"batch" or "file" not in fields:
        raise openai_api.OpenAIError(400, "A batch input file needs purpose=batch and a file.")
    file_id = f"file-{batches.new_id('i')}"
    batches.files[file_id] = fields["file"]
    return {"id": file_id, "object": "file", "bytes": len(fields["file"]), "created_at": int(time.time()),
            "filename": filename, "purpose": "batch", "status": "processed"}


def _openai_create(batches: BatchState, body: dict, api_key: str) -> dict:
    data = batches.files.get(str(body.get("input_file_id")))
    if data is None:
        raise openai_api.OpenAIError(400, f"No such File object: {body.get('input_file_id')}")
    endpoint = body.get("endpoint")
    if endpoint not in ("/v1/chat/completions", "/v1/completions"):
        raise openai_api.OpenAIError(400, f"endpoint {endpoint!r} is not served by the emulator", param="endpoint")
    items = []
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            if entry.get("url") != endpoint or entry.get("method") != "POST":
                raise openai_api.OpenAIError(400, f"line {entry.get('custom_id')}: url must be {endpoint}")
            items.append((str(entry.get("custom_id")), entry.get("body") or {}))
    job = Job(id=f"batch_{batches.new_id('')}", kind="openai", model=endpoint, items=items, inline=False,
              api_key=api_key, polls_left=batches.delay_polls, state="validating")
    job.display_name = str(body.get("input_file_id"))
    batches.jobs[job.id] = job
    batches.creates += 1
    _interrupt_if_asked(batches)
    return _batch_object(job)


def _batch_object(job: Job) -> dict:
    failed = sum(1 for r in job.results if r.get("error") is not None)
    done = job.state == "completed"
    errors = ({"object": "list", "data": [{"code": "invalid_request", "message": job.error, "param": None,
                                           "line": None}]} if job.error else None)
    return {"id": job.id, "object": "batch", "endpoint": job.model, "errors": errors,
            "input_file_id": job.display_name, "completion_window": "24h", "status": job.state,
            "output_file_id": job.output_file, "error_file_id": job.error_file, "created_at": job.created,
            "request_counts": {"total": len(job.items), "completed": len(job.items) - failed if done else 0,
                               "failed": failed}, "metadata": None}
