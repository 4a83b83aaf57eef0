"""The contract between rlhf_eval.recording and the installed vcrpy: every function of
rlhf_eval/recording/vcr_adapter.py, each against the vcrpy behaviour it names.

A vcrpy release that changes one of these internals fails here, naming it, rather than deep inside
a replay. CI runs this file against the lowest vcrpy pyproject.toml allows as well (.ci/run)."""
import http.client
import inspect
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import requests
import urllib3.connectionpool
import vcr
import vcr.patch
import vcr.stubs

from rlhf_eval.recording import CompactJSONSerializer
from rlhf_eval.recording.vcr_adapter import (SUPPORTED, VCR, AdaptedCassette, CannotOverwriteExistingCassetteException,
                                             CassetteNotFoundError, PatchTarget, RecordMode, cassette_options,
                                             copy_request, httpx_response, install_patches, match_method,
                                             match_path,
                                             request_filters, request_from_dict, requests_match,
                                             response_with_bytes, serialize)


def contract(holds: bool, behaviour: str) -> None:
    """Fail with the vcrpy behaviour that changed, not with a bare assertion."""
    assert holds, (f"vcrpy {vcr.__version__} changed {behaviour}, which rlhf_eval/recording/vcr_adapter.py relies "
                   f"on (pyproject allows vcrpy{SUPPORTED}): adapt the adapter or narrow the range")


def interaction(body: dict, answer: str, path: str = "/v1/chat") -> dict:
    return {"request": {"method": "POST", "uri": f"http://api.example{path}", "body": json.dumps(body),
                        "headers": {"content-type": ["application/json"]}},
            "response": {"status": {"code": 200, "message": "OK"}, "headers": {"content-type": ["application/json"]},
                         "body": {"string": json.dumps({"answer": answer})}}}


def write_cassette(path, *interactions) -> None:
    path.write_text(json.dumps({"version": 1, "interactions": list(interactions)}))


def load(path, mode=RecordMode.NONE, cls=AdaptedCassette, **options):
    config = VCR(record_mode=mode, serializer="json", match_on=["method", "path", "body"], **options)
    return cls.load(**cassette_options(config, str(path)))


def vcr_request(body: dict, path: str = "/v1/chat"):
    return request_from_dict(interaction(body, "")["request"])


# ------------------------------------------------------------------ requests and responses

def test_request_from_dict_builds_what_a_cassette_file_holds():
    request = request_from_dict(interaction({"seed": 1}, "a")["request"])
    contract(request.method == "POST" and request.path == "/v1/chat" and request.host == "api.example",
             "Request._from_dict (method, uri)")
    contract(json.loads(request.body) == {"seed": 1} and isinstance(request.body, bytes), "Request._from_dict (body)")
    contract(request.headers["content-type"] == "application/json", "Request._from_dict (headers)")


def test_response_with_bytes_turns_a_body_string_into_bytes():
    response = response_with_bytes(interaction({}, "a")["response"])
    contract(response["body"]["string"] == b'{"answer": "a"}', "vcr.serializers.compat.convert_to_bytes")


def test_httpx_response_is_the_response_vcrpys_httpx_stub_plays():
    recorded = response_with_bytes(interaction({}, "a")["response"])
    response = httpx_response(recorded, httpx)
    contract(isinstance(response, httpx.Response) and response.status_code == 200,
             "vcr.stubs.httpx_stubs._deserialize_response(vcr_response, httpx) (status)")
    contract(response.headers["content-type"] == "application/json" and response.read() == b'{"answer": "a"}',
             "vcr.stubs.httpx_stubs._deserialize_response (headers, body)")


def test_copy_request_is_an_independent_equal_request():
    request = request_from_dict(interaction({"seed": 1}, "a")["request"])
    copy = copy_request(request)
    contract((copy.method, copy.uri, copy.body, dict(copy.headers)) ==
             (request.method, request.uri, request.body, dict(request.headers)),
             "Request(method, uri, body, HeadersDict(headers))")
    del copy.headers["content-type"]
    contract("content-type" in request.headers, "Request(..., HeadersDict(headers)) copying the headers")


def test_request_filters_and_the_chain_vcrpy_builds_from_the_same_options_agree():
    """recording.matching.filter_request runs these filters itself, skipping vcrpy's deepcopy; it
    must keep exactly what vcrpy's own chain (filter_headers, filter_query_parameters,
    before_record_request) keeps."""
    raw = interaction({"seed": 1}, "a")["request"]
    raw["uri"] += "?key=SECRET&alt=json"
    raw["headers"]["x-goog-api-key"] = ["SECRET"]
    ours = request_from_dict(raw)
    for function in request_filters(["x-goog-api-key"], ["key"]):
        ours = function(ours)
    config = VCR(filter_headers=["x-goog-api-key"], filter_query_parameters=["key"])
    theirs = cassette_options(config, "unused.yaml")["before_record_request"](request_from_dict(raw))
    contract("SECRET" not in ours.uri and "x-goog-api-key" not in ours.headers,
             "vcr.filters.replace_headers / replace_query_parameters")
    contract((ours.uri, dict(ours.headers), ours.body) == (theirs.uri, dict(theirs.headers), theirs.body),
             "the order and effect of VCR's filter_headers / filter_query_parameters chain")


def test_matchers_compare_method_and_path_never_host():
    a = vcr_request({"seed": 1})
    b = request_from_dict({**interaction({"seed": 1}, "")["request"], "uri": "http://127.0.0.1:9/v1/chat"})
    c = request_from_dict({**interaction({"seed": 1}, "")["request"], "uri": "http://api.example/v1/other"})
    contract(requests_match(a, b, [match_method, match_path]), "vcr.matchers.requests_match / method / path")
    contract(not requests_match(a, c, [match_method, match_path]), "vcr.matchers.path")


def test_serialize_writes_through_a_custom_serializer():
    request = vcr_request({"seed": 1})
    response = response_with_bytes(interaction({}, "a")["response"])
    text = serialize({"requests": [request], "responses": [response]}, CompactJSONSerializer)
    data = json.loads(text)
    contract(json.loads(data["interactions"][0]["request"]["body"]) == {"seed": 1},
             "vcr.serialize.serialize handing the serializer {'interactions': [...]}")


# ------------------------------------------------------------------ the cassette

def test_cassette_options_load_an_adapted_cassette_and_name_its_internals(tmp_path):
    path = tmp_path / "c.json"
    write_cassette(path, interaction({"seed": 1}, "a"), interaction({"seed": 2}, "b"))

    def keep(request):
        return request

    options = cassette_options(VCR(record_mode=RecordMode.NONE, serializer="json",
                                   match_on=["method", "path", "body"]), str(path))
    options["before_record_request"] = keep  # as recording.cassette.open_cassette does
    cassette = AdaptedCassette.load(**options)
    contract(cassette.file_path == str(path), "Cassette._path")
    contract(cassette.loaded_count == 2 and len(cassette.data) == 2, "Cassette._loaded_count / data after load")
    contract([getattr(m, "__name__", "") for m in cassette.matchers] == ["method", "path", "body"],
             "Cassette._match_on")
    contract(cassette.filters_requests_with(keep) and not load(path).filters_requests_with(keep),
             "Cassette._before_record_request")


def test_a_persister_raising_cassette_not_found_gives_an_empty_cassette(tmp_path):
    class Missing:
        @staticmethod
        def load_cassette(cassette_path, serializer):
            raise CassetteNotFoundError()

    config = VCR(record_mode=RecordMode.ONCE, serializer="json")
    config.register_persister(Missing)
    cassette = AdaptedCassette.load(**cassette_options(config, str(tmp_path / "c.json")))
    contract(len(cassette) == 0 and not cassette.write_protected,
             "Cassette.load treating CassetteNotFoundError as a new cassette")


def test_play_response_plays_what_vcrpys_own_cassette_plays_and_names_the_interaction(tmp_path):
    path = tmp_path / "c.json"
    write_cassette(path, interaction({"seed": 1}, "first"), interaction({"seed": 2}, "other"),
                   interaction({"seed": 1}, "second"))
    played = []

    class Noting(AdaptedCassette):
        def on_played(self, index):
            played.append(index)

    ours, theirs = load(path, cls=Noting), load(path, cls=vcr.cassette.Cassette)
    request = vcr_request({"seed": 1})
    for _ in range(2):
        contract(ours.can_play_response_for_unfiltered(request) and theirs.can_play_response_for(request),
                 "Cassette.can_play_response_for (a match not yet played)")
        contract(ours.play_response(request) == theirs.play_response(request), "Cassette.play_response's order")
    contract(played == [0, 2], "Cassette._responses (index, response) pairs")
    contract({i: n for i, n in ours.play_counts.items() if n} == {0: 1, 2: 1}, "Cassette.play_counts")
    contract([r.body for r, _ in ours._played_interactions] == [r.body for r, _ in theirs._played_interactions],
             "Cassette._played_interactions (drop_unused_requests)")
    contract(not ours.can_play_response_for_unfiltered(request) and not theirs.can_play_response_for(request),
             "Cassette.can_play_response_for (every match played)")
    with pytest.raises(vcr.errors.UnhandledHTTPRequestError):
        theirs.play_response(request)
    with pytest.raises(vcr.errors.UnhandledHTTPRequestError):
        ours.play_response(request)


def test_candidates_narrow_what_a_request_is_matched_against(tmp_path):
    path = tmp_path / "c.json"
    write_cassette(path, interaction({"seed": 1}, "first"), interaction({"seed": 1}, "second"))

    class OnlySecond(AdaptedCassette):
        def candidates(self, request):
            return [1]

    cassette = load(path, cls=OnlySecond)
    contract(json.loads(cassette.play_response(vcr_request({"seed": 1}))["body"]["string"]) == {"answer": "second"},
             "Cassette._responses, which play_response iterates")
    contract(vcr_request({"seed": 1}) not in cassette, "Cassette.__contains__ going through _responses")


def test_append_played_and_save_keep_the_new_exchange(tmp_path):
    path = tmp_path / "c.json"
    write_cassette(path, interaction({"seed": 1}, "a"))
    cassette = load(path, mode=RecordMode.NEW_EPISODES)
    request = vcr_request({"seed": 2})
    cassette.append_played(request, response_with_bytes(interaction({}, "b")["response"]))
    contract(len(cassette) == 2 and not cassette.can_play_response_for(request), "Cassette.append / play_counts")
    cassette.save()
    saved = json.loads(path.read_text())["interactions"]
    contract([json.loads(i["request"]["body"])["seed"] for i in saved] == [1, 2], "Cassette._save")


def test_record_mode_all_replaces_the_loaded_interactions_it_records_again(tmp_path):
    """Record mode all (and rewrite) record every request again; the cassette must hold the new
    answer, not the old one beside it (vcrpy 8.4's `_rerecorded_interactions`: the lower bound)."""
    path = tmp_path / "c.json"
    write_cassette(path, interaction({"seed": 1}, "old"), interaction({"seed": 2}, "kept"))
    cassette = load(path, mode=RecordMode.ALL)
    cassette.append_played(vcr_request({"seed": 1}), response_with_bytes(interaction({}, "new")["response"]))
    cassette.save()
    saved = [(json.loads(i["request"]["body"])["seed"], i["response"]["body"]["string"])
             for i in json.loads(path.read_text())["interactions"]]
    contract(saved == [(2, '{"answer": "kept"}'), (1, '{"answer": "new"}')],
             "record mode all's save (re-recorded interactions replace the loaded ones)")


# ------------------------------------------------------------------ the patch

class _Server:
    """Answers each POST with {"echo": <its JSON body>}."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                out = json.dumps({"echo": json.loads(body or b"null")}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/chat"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def server():
    s = _Server()
    yield s
    s.server.shutdown()


class _Target(PatchTarget):
    def __init__(self, cassette):
        self.cassette = cassette

    def target(self):
        return self.cassette


def _post_with_each_library(url: str) -> list[dict]:
    answers = [httpx.post(url, json={"via": "httpx"}).json(), requests.post(url, json={"via": "requests"}).json()]
    request = urllib.request.Request(url, data=json.dumps({"via": "urllib"}).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as response:
        answers.append(json.loads(response.read()))
    return answers


def test_install_patches_sends_each_librarys_requests_to_the_target_and_closing_removes_them(tmp_path, server):
    cassette = load(tmp_path / "c.json", mode=RecordMode.ONCE)
    unpatched = httpx.HTTPTransport.handle_request
    with install_patches(_Target(cassette)):
        contract(httpx.HTTPTransport.handle_request is not unpatched, "CassettePatcherBuilder(cassette).build()")
        answers = _post_with_each_library(server.url)
    contract(answers == [{"echo": {"via": via}} for via in ("httpx", "requests", "urllib")],
             "the stubs sending an unrecorded request to the network")
    contract([json.loads(r.body)["via"] for r in cassette.requests] == ["httpx", "requests", "urllib"],
             "the stubs calling append on their cassette")
    contract(httpx.HTTPTransport.handle_request is unpatched and vcr.patch.force_reset.__module__ == "vcr.patch",
             "closing the patchers CassettePatcherBuilder builds")
    # Replayed from the saved cassette, against a port where nothing listens (requests match on path).
    cassette.save()
    with install_patches(_Target(load(tmp_path / "c.json"))):
        contract(_post_with_each_library("http://127.0.0.1:9/v1/chat") == answers,
                 "the stubs playing a recorded response")


def test_a_request_the_cassette_refuses_raises_with_the_request(tmp_path, server):
    cassette = load(tmp_path / "c.json")  # record mode none, no file: everything is refused
    with install_patches(_Target(cassette)):
        with pytest.raises(CannotOverwriteExistingCassetteException) as info:
            httpx.post(server.url, json={"seed": 5})
    contract(json.loads(info.value.failed_request.body) == {"seed": 5} and info.value.failed_request.path == "/v1/chat",
             "CannotOverwriteExistingCassetteException.failed_request")


def test_a_target_without_a_cassette_passes_requests_through(server):
    with install_patches(_Target(None)):
        contract(httpx.post(server.url, json={"n": 1}).json() == {"echo": {"n": 1}},
                 "the stubs asking can_play_response_for / write_protected / append of their cassette")


def test_sending_for_real_puts_back_only_the_classes_that_name_themselves(tmp_path):
    """vcrpy's force_reset un-patches every library for every thread while one request is sent
    for real; the adapter's keeps httpx and urllib3 (requests) patched meanwhile, and puts back
    only http.client's HTTPSConnection, whose __init__ calls super(HTTPSConnection, self)."""
    contract("from vcr.patch import force_reset" in inspect.getsource(vcr.stubs),
             "the stubs importing force_reset from vcr.patch when they send (so it can be replaced)")
    contract(vcr.patch._HTTPSConnection is http.client.HTTPSConnection, "vcr.patch._HTTPSConnection (the original)")
    with install_patches(_Target(load(tmp_path / "c.json", mode=RecordMode.ONCE))):
        patched = (httpx.HTTPTransport.handle_request, urllib3.connectionpool.HTTPConnectionPool.ConnectionCls)
        stub = http.client.HTTPSConnection
        with vcr.patch.force_reset():
            contract((httpx.HTTPTransport.handle_request, urllib3.connectionpool.HTTPConnectionPool.ConnectionCls)
                     == patched, "vcr.patch.force_reset (replaced while the patch is installed)")
            contract(http.client.HTTPSConnection is vcr.patch._HTTPSConnection, "vcr.patch._HTTPSConnection")
            with vcr.patch.force_reset():  # another thread's window at the same time
                pass
            contract(http.client.HTTPSConnection is vcr.patch._HTTPSConnection, "nested force_reset windows")
        contract(http.client.HTTPSConnection is stub, "the stubs' http.client.HTTPSConnection after a window")


def test_the_installed_vcrpy_is_in_the_range_pyproject_declares():
    import tomllib
    from pathlib import Path

    from packaging.specifiers import SpecifierSet

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    (declared,) = [d[len("vcrpy"):] for d in pyproject["project"]["dependencies"] if d.startswith("vcrpy")]
    assert declared == SUPPORTED, f"pyproject.toml allows vcrpy{declared}, vcr_adapter.SUPPORTED says {SUPPORTED}"
    assert vcr.__version__ in SpecifierSet(SUPPORTED), (
        f"vcrpy {vcr.__version__} is installed, outside the range rlhf-eval is tested with ({SUPPORTED}): "
        f"pip install 'vcrpy{SUPPORTED}'")
