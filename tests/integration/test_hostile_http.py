"""Hostile HTTP against a real API: bodies a web page can send without a CORS preflight, requests
for a rebound Host or from another site, and clients that send half a request or nothing at all.
Each test checks what the client sees, that nothing was created, and that the server still
answers everyone else."""
from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time

import pytest

from tests.harness import Client, api_proc, wait_http
from tests.integration.flows import ML, assert_error, unique

# A web page can send these three without a preflight (the CORS-safelisted content types).
SIMPLE_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
READ_TIMEOUT = 3.0


def raw(api: Client, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request with exactly these headers (urllib adds a Content-Type to every body)."""
    host, port = api.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


def counts(cluster) -> tuple[int, int]:
    models = cluster.api.post(f"{ML}/models/_search", {"size": 0}).body["hits"]["total"]["value"]
    tasks = cluster.api.post(f"{ML}/tasks/_search", {"size": 0}).body["hits"]["total"]["value"]
    return models, tasks


def upload_labelled(cluster, zip_path, info, label: str | None) -> str:
    """The opensearch-py-ml upload, each chunk's raw bytes labelled ``label`` (None: no label)."""
    content = zip_path.read_bytes()
    pieces = [content[i:i + 200_000] for i in range(0, len(content), 200_000)]
    meta = {"name": unique("labelled"), "version": "1", "model_format": "TORCH_SCRIPT",
            "model_content_hash_value": hashlib.sha256(content).hexdigest(),
            "model_config": info["model_config"], "total_chunks": len(pieces)}
    resp = cluster.api.post(f"{ML}/models/_register_meta", meta)
    assert resp.status == 200, resp.body
    model_id = resp.body["model_id"]
    for n, piece in enumerate(pieces):
        headers = {} if label is None else {"Content-Type": label}
        status, body = raw(cluster.api, "POST", f"{ML}/models/{model_id}/upload_chunk/{n}", piece, headers)
        assert (status, body) == (200, {"status": "Uploaded"})
    assert cluster.model(model_id)["model_state"] == "REGISTERED"
    return model_id


# --- content types ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registered(cluster, tiny) -> str:
    """A model uploaded with its chunks labelled text/plain, registered and not deployed."""
    zip_path, info = tiny
    return upload_labelled(cluster, zip_path, info, "text/plain")


def test_chunks_are_raw_bytes_whatever_their_label(cluster, tiny, registered):
    zip_path, info = tiny
    for label in ("application/octet-stream", None):
        upload_labelled(cluster, zip_path, info, label)


@pytest.mark.parametrize("label", SIMPLE_TYPES)
def test_json_routes_refuse_bodies_a_page_can_send(cluster, tiny, registered, label):
    zip_path, info = tiny
    model_id = registered
    before = counts(cluster)
    register = json.dumps({"name": unique("cross-site"), "version": "1", "model_format": "TORCH_SCRIPT",
                           "model_config": info["model_config"], "url": zip_path.resolve().as_uri(),
                           "model_content_hash_value": info["model_content_hash_value"]}).encode()
    predict = json.dumps({"text_docs": ["from a web page"]}).encode()
    for method, path, body in [
        ("POST", f"{ML}/models/_register", register),
        ("POST", f"{ML}/models/_register_meta", register),
        ("POST", f"{ML}/models/{model_id}/_deploy", b"{}"),
        ("POST", f"{ML}/models/{model_id}/_undeploy", b"{}"),
        ("POST", f"{ML}/models/{model_id}/_predict", predict),
        ("POST", f"{ML}/_predict/text_embedding/{model_id}", predict),
        ("PUT", "/_cluster/settings", b'{"persistent": {"plugins.ml_commons.model_auto_deploy.enable": true}}'),
        ("PUT", "/_ml/trained_models/cross-site", b'{"input": {"field_names": ["t"]}}'),
        ("POST", f"/_ml/trained_models/{model_id}/_infer", b'{"docs": [{"text_field": "x"}]}'),
    ]:
        resp = cluster.api.request(method, path, data=body, headers={"Content-Type": label})
        assert_error(resp, 406, f"Content-Type header [{label}] is not supported", "media_type_header_exception")
    status, body = raw(cluster.api, "POST", f"{ML}/models/{model_id}/_deploy", b"{}")
    assert status == 406 and body["error"]["reason"] == "Content-Type header is missing"
    # Nothing was registered, deployed (not even by an auto-deploy on _predict) or stored.
    assert counts(cluster) == before
    assert cluster.model(model_id)["model_state"] == "REGISTERED"
    assert cluster.api.get("/_ml/trained_models/cross-site").status == 404


def test_json_labels_and_bodyless_requests_are_accepted(cluster):
    search = b'{"size": 0}'
    for label in ("application/json", "application/json; charset=UTF-8", "Application/JSON",
                  "application/vnd.elasticsearch+json; compatible-with=8",
                  "application/vnd.elasticsearch+json; compatible-with=9"):
        resp = cluster.api.post(f"{ML}/models/_search", data=search, headers={"Content-Type": label})
        assert resp.status == 200, (label, resp.body)
    # No body: any label, or none, as OpenSearch and Elasticsearch accept.
    assert raw(cluster.api, "POST", f"{ML}/models/_search")[0] == 200
    assert cluster.api.post(f"{ML}/models/_search", data=b"", headers={"Content-Type": "text/plain"}).status == 200


# --- Host and Origin --------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:9200", "127.0.0.1.evil.example", "10.0.0.7:9200",
                                  "localhost@evil.example"])
def test_a_host_that_is_not_ours_is_refused(cluster, host):
    before = counts(cluster)
    for method, path, body in [("GET", "/", None), ("GET", f"{ML}/models/_search", None),
                               ("POST", f"{ML}/model_groups/_register", {"name": unique("rebound")}),
                               ("GET", "/_ml/trained_models", None), ("GET", "/no/such/route", None)]:
        resp = cluster.api.request(method, path, body, headers={"Host": host})
        assert_error(resp, 421, error_type="illegal_argument_exception")
        assert resp.error["reason"].startswith(f"Host [{host}] is not a name of this server")
    assert counts(cluster) == before


@pytest.mark.parametrize("host", ["localhost", "localhost:1", "127.0.0.1", "127.0.0.1:9200", "[::1]", "[::1]:9200",
                                  "LOCALHOST:9200", "localhost.:9200"])
def test_loopback_names_are_answered_on_any_port(cluster, host):
    assert cluster.api.get("/", headers={"Host": host}).status == 200


def test_state_changing_requests_from_another_site_are_refused(cluster):
    port = cluster.api.base.rsplit(":", 1)[1]
    before = counts(cluster)
    group = {"name": unique("csrf")}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": "http://127.0.0.1:1"},  # another local service is another origin
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"}):
        resp = cluster.api.post(f"{ML}/model_groups/_register", group, headers=headers)
        assert_error(resp, 403, error_type="status_exception")
        assert resp.error["reason"].startswith("cross-site request refused"), resp.body
    assert counts(cluster) == before
    # Reading is not changing anything, and a page of our own origin may change things.
    assert cluster.api.get(f"{ML}/models/_search", headers={"Origin": "http://evil.example"}).status == 200
    for headers in ({"Origin": f"http://127.0.0.1:{port}"}, {"Sec-Fetch-Site": "same-origin"}):
        assert cluster.api.post(f"{ML}/models/_search", {"size": 0}, headers=headers).status == 200


# --- slow clients -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def strict_api(cluster):
    """A second API on the session cluster, with short read and keep-alive time-outs and one extra
    allowed host name."""
    env = {**cluster.env, "MLCOMMONS_MLCOMMONS_HTTP_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
           "MLCOMMONS_MLCOMMONS_HTTP_KEEPALIVE_TIMEOUT_SECONDS": str(READ_TIMEOUT),
           "MLCOMMONS_MLCOMMONS_HTTP_ALLOWED_HOSTS": "api.internal, search.example.com"}
    proc, port = api_proc(cluster.redis_url, cluster.logs, env=env)
    proc.start()
    try:
        api = Client(f"http://127.0.0.1:{port}")
        wait_http(api, 60)
        yield api, proc
    finally:
        proc.stop()


def connect(api: Client) -> socket.socket:
    host, port = api.base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def wait_closed(sock: socket.socket, trickle: bytes = b"", deadline: float = 30.0) -> bytes:
    """Read until the server closes the connection, sending one byte of ``trickle`` every 0.2 s
    meanwhile; returns what the server sent. Fails if it is still open after ``deadline`` s (the
    time-outs under test are a tenth of that)."""
    sock.settimeout(0.2)
    received = b""
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            if trickle:
                sock.sendall(trickle[:1])
                trickle = trickle[1:] or trickle
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return received
            received += data
    except (ConnectionResetError, BrokenPipeError):
        return received
    finally:
        sock.close()
    raise AssertionError(f"the server kept the connection open for {deadline}s")


def test_slow_and_silent_clients_are_dropped_while_others_are_answered(strict_api):
    api, proc = strict_api
    body_head = (b"POST /_plugins/_ml/models/_search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    half_header = []
    for _ in range(10):
        sock = connect(api)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        half_header.append(sock)
    half_body = []
    for _ in range(10):
        sock = connect(api)
        sock.sendall(body_head + b'{"size": 0')
        half_body.append(sock)
    silent = [connect(api) for _ in range(10)]
    idle = []
    for _ in range(10):
        sock = connect(api)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        idle.append(sock)
    trickling = connect(api)
    trickling.sendall(body_head)

    # Forty connections held by clients that send nothing more: everyone else is answered.
    assert api.get("/").status == 200
    assert api.post(f"{ML}/models/_search", {"size": 0}).status == 200

    # A body trickling in a byte at a time is cut at the read time-out like a stalled one.
    assert wait_closed(trickling, trickle=b" " * 1000) == b""
    for sock in half_header + half_body + silent + idle:
        assert wait_closed(sock) == b""
    assert api.get("/").status == 200
    log = proc.log()  # dropped quietly: no error logged for any of them
    assert "Error handling request" not in log and "unhandled error" not in log, log[-3000:]


def test_a_client_that_keeps_sending_in_time_is_answered(strict_api):
    """The time-out is per request, from its first byte: a keep-alive connection sending one
    request a second, each in two parts, lives past it, and answers them all."""
    api, _ = strict_api
    head = (b"POST /_plugins/_ml/models/_search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 11\r\n\r\n")
    sock = connect(api)
    started = time.monotonic()
    answers = 0
    try:
        while time.monotonic() - started < READ_TIMEOUT * 1.5:
            sock.sendall(head + b'{"size"')
            time.sleep(0.5)  # the client's own pace, well inside the time-out
            sock.sendall(b": 0}")
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200"), reply
            answers += 1
            time.sleep(0.5)
    finally:
        sock.close()
    assert answers >= 3


def test_allowed_hosts_setting_adds_names(strict_api):
    api, _ = strict_api
    for host in ("api.internal", "api.internal:9200", "search.example.com:443"):
        assert api.get("/", headers={"Host": host}).status == 200
    assert_error(api.get("/", headers={"Host": "other.internal"}), 421)
