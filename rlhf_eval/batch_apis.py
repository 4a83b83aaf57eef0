"""The providers' batch APIs, as far as recording needs them: submit a chunk of requests as one
job, read its state, fetch its answers, cancel it.

- Gemini Developer API, Batch Mode (REST `v1beta`): `models/{model}:batchGenerateContent` with the
  requests inline (under `BatchSettings.max_inline_bytes`, the API's 20 MB) or as a JSONL file
  uploaded through the Files API's resumable upload; `batches/{id}` (an Operation whose
  `metadata.state` is `BATCH_STATE_*`); answers in `metadata.output.inlinedResponses` or the
  `responsesFile` downloaded from `download/v1beta/{file}:download?alt=media`.
- OpenAI's Batch API, through the `openai` SDK: `files.create(purpose="batch")` with a JSONL of
  `{custom_id, method, url, body}`, `batches.create(input_file_id, endpoint, completion_window="24h")`,
  `batches.retrieve`, `files.content(output_file_id)` (and `error_file_id`), `batches.cancel`.

Each request body is sent exactly as the online request's (the bytes the SDK built, parsed once):
a batch answer is then the body the online request would have got.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .credentials import redact_url, redact_urls
from .sampling import SamplingError

# Documented limits: Gemini inline requests up to 20 MB in all (larger: a file, up to 2 GB);
# OpenAI up to 50,000 requests and 200 MB in one input file.
GEMINI_INLINE_BYTES = 20_000_000
OPENAI_MAX_REQUESTS = 50_000
OPENAI_MAX_BYTES = 200_000_000

GEMINI_DONE = {"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}
OPENAI_DONE = {"completed", "failed", "expired", "cancelled"}


@dataclass
class Status:
    """A job as last read: its state (the provider's word), whether it is over, how many of its
    requests are answered (None when the provider does not say), and where its answers are."""

    state: str
    done: bool
    finished: int | None
    total: int
    output: Any = None  # Gemini: the Operation's output; OpenAI: (output_file_id, error_file_id)
    content_type: str = "application/json"  # what the server sends its JSON answers as
    error: str | None = None  # why the whole job failed, when the provider says


@dataclass
class ItemResult:
    """One request's answer: `body` (the response JSON, bytes) with HTTP `status`, or `error` (one line)."""

    status: int = 200
    body: bytes | None = None
    error: str | None = None


class BatchAPIError(SamplingError):
    """The batch API refused or failed a call; one line."""


NO_BATCH_API = ("{server} answered 404 to {what}: it does not serve {api} (a vLLM, SGLang or llama.cpp "
                "server, a proxy, a base_url that is not the provider's do not); record this suite online (drop "
                "--rlhf-record-via batch)")


def _json_object(data: bytes | str, what: str) -> dict:
    """`data` parsed as one JSON object, or BatchAPIError naming `what` it was."""
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BatchAPIError(f"{what} is not a JSON object: {_line(data, 120)}")
    return value


def _object(value: Any) -> dict:
    """`value` when it is a JSON object, else an empty one (a field the API left out or garbled)."""
    return value if isinstance(value, dict) else {}


def _jsonl(data: bytes, what: str) -> list[dict]:
    """The JSON objects of a JSONL file, or BatchAPIError naming `what` and the line."""
    return [_json_object(line, f"line {n} of {what}") for n, line in enumerate(data.splitlines(), 1) if line.strip()]


def _line(data: bytes | str, limit: int = 200) -> str:
    text = " ".join((data.decode("utf-8", "replace") if isinstance(data, bytes) else data).split())
    return redact_urls(text if len(text) <= limit else text[:limit - 1] + "…")


def _add(out: dict[str, ItemResult], key: str, result: ItemResult) -> None:
    """Note `key`'s result; a key answered twice, differently, is answered by neither (it goes online)."""
    seen = out.get(key)
    if seen is not None and (seen.body, seen.error) != (result.body, result.error):
        result = ItemResult(error=f"the batch answered request {key} twice, differently")
    out[key] = result


class GeminiBatches:
    """Gemini Developer API batch jobs on the server at `root` (scheme://host[/prefix], before
    `/v1beta`), authenticated with `headers` (the online request's `x-goog-api-key`)."""

    provider = "gemini"

    def __init__(self, root: str, headers: dict[str, str], *, max_inline_bytes: int = GEMINI_INLINE_BYTES,
                 timeout: float = 300.0) -> None:
        import httpx

        self.root = root.rstrip("/")
        self.max_inline_bytes = max_inline_bytes
        self._http = httpx.Client(headers=headers, timeout=timeout)

    def _call(self, method: str, url: str, **kwargs) -> Any:
        import httpx

        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise BatchAPIError(f"could not reach {redact_url(self.root)} ({type(exc).__name__}: {exc})",
                                transient=True) from None
        if response.status_code == 404 and url.endswith((":batchGenerateContent", "/upload/v1beta/files")):
            raise BatchAPIError(NO_BATCH_API.format(server=redact_url(self.root), what=f"{method} "
                                                    f"{redact_url(url.replace(self.root, ''))}",
                                                    api="Gemini Batch Mode"), status=404, permanent=True)
        if response.status_code >= 400:
            raise BatchAPIError(f"the Gemini batch API answered {response.status_code} to {method} "
                                f"{redact_url(url.replace(self.root, ''))}: {_line(response.content)}",
                                status=response.status_code)
        return response

    def submit(self, model: str, items: list[tuple[str, bytes]], display_name: str) -> tuple[str, str]:
        """Submit `items` ((key, request body)) as one job; (the job's name, where its input is)."""
        lines = [b'{"key":' + json.dumps(key).encode() + b',"request":' + body + b"}" for key, body in items]
        size = sum(map(len, lines))
        if size <= self.max_inline_bytes:
            requests = b",".join(b'{"request":' + body + b',"metadata":{"key":' + json.dumps(key).encode() + b"}}"
                                 for key, body in items)
            source = b'{"requests":{"requests":[' + requests + b"]}}"
            where = "inline"
        else:
            where = self._upload(b"\n".join(lines) + b"\n", display_name)
            source = b'{"fileName":' + json.dumps(where).encode() + b"}"
        body = (b'{"batch":{"displayName":' + json.dumps(display_name).encode() + b',"inputConfig":' + source + b"}}")
        answer = self._call("POST", f"{self.root}/v1beta/models/{model}:batchGenerateContent", content=body,
                            headers={"Content-Type": "application/json"})
        operation = _json_object(answer.content, "the Gemini batch API's answer to creating a job")
        if not isinstance(operation.get("name"), str) or not operation["name"]:
            raise BatchAPIError(f"the Gemini batch API created a job but named none: {_line(answer.content, 120)}")
        return operation["name"], where

    def _upload(self, data: bytes, display_name: str) -> str:
        start = self._call("POST", f"{self.root}/upload/v1beta/files", json={"file": {"displayName": display_name}},
                           headers={"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
                                    "X-Goog-Upload-Header-Content-Length": str(len(data)),
                                    "X-Goog-Upload-Header-Content-Type": "application/jsonl"})
        url = start.headers.get("x-goog-upload-url")
        if not url:
            raise BatchAPIError("the Gemini Files API gave no upload URL for the batch's input file")
        done = self._call("POST", url, content=data, headers={"X-Goog-Upload-Offset": "0",
                                                              "X-Goog-Upload-Command": "upload, finalize"})
        file = _json_object(done.content, "the Gemini Files API's answer to the upload").get("file")
        if not isinstance(file, dict) or not file.get("name"):
            raise BatchAPIError(f"the Gemini Files API named no uploaded file: {_line(done.content, 120)}")
        return str(file["name"])

    def status(self, job: str, total: int) -> Status:
        response = self._call("GET", f"{self.root}/v1beta/{job}")
        operation = _json_object(response.content, f"the Gemini batch API's answer for {job}")
        meta = _object(operation.get("metadata"))
        state = str(meta.get("state") or "BATCH_STATE_UNSPECIFIED")
        stats = _object(meta.get("batchStats"))
        finished = None
        if "pendingRequestCount" in stats or "successfulRequestCount" in stats:
            try:  # int64 counts come as strings in proto JSON
                finished = total - int(stats.get("pendingRequestCount") or 0)
            except (TypeError, ValueError):
                finished = None
        error = _object(operation.get("error"))
        return Status(state, state in GEMINI_DONE, finished, total, meta.get("output"),
                      response.headers.get("content-type") or "application/json",
                      _line(str(error["message"]), 160) if error.get("message") else None)

    def results(self, status: Status, keys: list[str]) -> dict[str, ItemResult]:
        """Each answered request's result, by key (none when the job produced no output). `keys`
        are the job's keys in the order submitted: the API answers in that order, which names an
        answer that does not carry its key."""
        output = status.output if isinstance(status.output, dict) else {}
        if output.get("inlinedResponses"):
            inlined = output["inlinedResponses"]
            listed = inlined.get("inlinedResponses") if isinstance(inlined, dict) else None
            if not isinstance(listed, list) or not all(isinstance(r, dict) for r in listed):
                raise BatchAPIError(f"the Gemini batch API's inlined responses are not a list of objects: "
                                    f"{_line(json.dumps(inlined), 120)}")
            entries = [((r.get("metadata") if isinstance(r.get("metadata"), dict) else {}).get("key"), r)
                       for r in listed]
        elif output.get("responsesFile"):
            text = self._call("GET", f"{self.root}/download/v1beta/{output['responsesFile']}:download",
                              params={"alt": "media"}).content
            entries = [(r.get("key"), r) for r in _jsonl(text, f"the responses file {output['responsesFile']}")]
        else:
            return {}
        if len(entries) == len(keys):
            entries = [(key if key is not None else keys[n], r) for n, (key, r) in enumerate(entries)]
        out: dict[str, ItemResult] = {}
        for key, entry in entries:
            if isinstance(entry.get("response"), dict):
                result = ItemResult(200, json.dumps(entry["response"], ensure_ascii=False,
                                                    separators=(",", ":")).encode("utf-8"))
            else:
                error = entry.get("error") if isinstance(entry.get("error"), dict) else {}
                result = ItemResult(error=f"{error.get('code', '?')} {error.get('message', 'no answer')}")
            _add(out, str(key), result)
        return out

    def cancel(self, job: str) -> None:
        self._call("POST", f"{self.root}/v1beta/{job}:cancel")


class OpenAIBatches:
    """OpenAI Batch API jobs at `base_url` (…/v1), with the online requests' key."""

    provider = "openai"

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 300.0) -> None:
        import openai

        self.base_url = base_url
        # Retries off: a retried `batches.create` whose first answer was lost would pay twice; a
        # failed poll is asked again at the next poll (rlhf_eval.batch), a failed submit on the next run.
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)

    def _call(self, what: str, call):
        import openai

        try:
            return call()
        except openai.APIError as exc:
            status = getattr(exc, "status_code", None)
            if status == 404 and what in ("upload the batch input", "create the batch"):
                raise BatchAPIError(NO_BATCH_API.format(server=redact_url(self.base_url), what=f"the request to {what}",
                                                        api="OpenAI's Batch API"), status=404, permanent=True) from None
            raise BatchAPIError(f"the OpenAI batch API failed to {what} at {redact_url(self.base_url)} "
                                f"({status or type(exc).__name__}: {_line(str(exc))})", status=status,
                                transient=isinstance(exc, openai.APIConnectionError)) from None

    def submit(self, endpoint: str, items: list[tuple[str, bytes]], display_name: str) -> tuple[str, str]:
        data = b"".join(b'{"custom_id":' + json.dumps(key).encode() + b',"method":"POST","url":'
                        + json.dumps(endpoint).encode() + b',"body":' + body + b"}\n" for key, body in items)
        uploaded = self._call("upload the batch input", lambda: self._client.files.create(
            file=(f"{display_name}.jsonl", data, "application/jsonl"), purpose="batch"))
        batch = self._call("create the batch", lambda: self._client.batches.create(
            input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h",  # type: ignore[arg-type]
            metadata={"description": display_name[:500]}))
        return str(batch.id), str(uploaded.id)

    def status(self, job: str, total: int) -> Status:
        raw = self._call("read the batch", lambda: self._client.batches.with_raw_response.retrieve(job))
        batch = raw.parse()
        counts = batch.request_counts
        finished = (counts.completed + counts.failed) if counts is not None and counts.total else None
        content_type = raw.headers.get("content-type") or "application/json"
        errors = [e.message for e in (batch.errors.data or []) if e.message] if batch.errors is not None else []
        return Status(str(batch.status), batch.status in OPENAI_DONE, finished, total,
                      (batch.output_file_id, batch.error_file_id), content_type,
                      _line("; ".join(errors), 160) if errors else None)

    def results(self, status: Status, keys: list[str]) -> dict[str, ItemResult]:
        """Each answered request's result, by custom_id (OpenAI's lines always carry theirs)."""
        out: dict[str, ItemResult] = {}
        for file_id in status.output or ():
            if not file_id:
                continue
            text = self._call("download the batch's results",
                              lambda file_id=file_id: self._client.files.content(file_id).content)
            for entry in _jsonl(text, f"the batch's file {file_id}"):
                response, error = entry.get("response"), entry.get("error")
                if isinstance(response, dict) and response.get("status_code") == 200 and isinstance(
                        response.get("body"), dict):
                    result = ItemResult(200, json.dumps(response["body"], ensure_ascii=False,
                                                        separators=(",", ":")).encode("utf-8"))
                else:
                    why = error.get("message") if isinstance(error, dict) else None
                    if why is None and isinstance(response, dict):
                        why = f"{response.get('status_code')} {_line(json.dumps(response.get('body')), 120)}"
                    result = ItemResult(error=str(why or "no answer"))
                _add(out, str(entry.get("custom_id")), result)
        return out

    def cancel(self, job: str) -> None:
        self._call("cancel the batch", lambda: self._client.batches.cancel(job))
