"""Registering by URL when the URL is hostile (issue 9, items 5, 6 and 7): redirects off the
allow-list, file URLs outside their folders, sources that never end, trickle or fill Redis. Each
request goes to a real stack, with HTTP servers of the test's own on 127.0.0.1; the stack must
refuse or fail the register with a clear reason, keep answering, and leave nothing half written
(no model document, no chunk)."""
from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import threading
import urllib.parse
from pathlib import Path

import pytest

from tests.cluster import KEYS
from tests.harness import Client, api_proc, wait_for, wait_http
from tests.integration.flows import ML, deploy, register_body, register_url, unique

ROOTS = "mlcommons.model_store.url_file_roots"
OUTSIDE = "is outside the folders named in [mlcommons.model_store.url_file_roots]"


# --- a model source of the test's own ----------------------------------------------------------

class Source:
    """An HTTP server on 127.0.0.1 that misbehaves on request. Paths:
    ``/file`` the given archive; ``/redirect?to=URL`` a 302; ``/hop?n=K`` a 302 to ``/hop?n=K+1``;
    ``/trickle?every=S&length=N`` one byte
    every S seconds of an announced N; ``/endless`` zeros without a length, as fast as they go;
    ``/announce?length=N`` announces N bytes and sends one; ``/slow-headers?every=S`` a header
    sent one byte every S seconds. Trickles go on until :meth:`release`."""

    def __init__(self, archive: Path | None = None):
        self.archive = archive
        self.requests: list[str] = []
        self.sent = 0
        self.released = threading.Event()
        source = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                source.requests.append(self.path)
                path, _, query = self.path.partition("?")
                args = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
                try:
                    getattr(source, "_" + path.strip("/").replace("-", "_"))(self, **args)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> "Source":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def _send(self, handler, data: bytes) -> None:
        handler.wfile.write(data)
        handler.wfile.flush()
        self.sent += len(data)

    def _headers(self, handler, status: int = 200, **headers) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), str(value))
        handler.end_headers()

    def _file(self, handler) -> None:
        data = self.archive.read_bytes()
        self._headers(handler, Content_Length=len(data))
        self._send(handler, data)

    def _redirect(self, handler, to: str) -> None:
        self._headers(handler, 302, Location=to, Content_Length=0)

    def _hop(self, handler, n: str) -> None:
        self._redirect(handler, f"/hop?n={int(n) + 1}")

    def _trickle(self, handler, every: str, length: str) -> None:
        self._headers(handler, Content_Length=length)
        while not self.released.wait(float(every)):
            self._send(handler, b"x")

    def _endless(self, handler) -> None:
        self._headers(handler, Connection="close")
        block = bytes(1 << 16)
        while not self.released.is_set():
            self._send(handler, block)

    def _announce(self, handler, length: str) -> None:
        self._headers(handler, Content_Length=length)
        self._send(handler, b"x")
        self.released.wait(30)

    def _slow_headers(self, handler, every: str) -> None:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not self.released.wait(float(every)):
            self._send(handler, b"x")


# --- what every refusal must leave -------------------------------------------------------------

def chunk_keys(cluster) -> set[bytes]:
    return set(cluster.redis.keys(KEYS.chunk("*", "*"))) | set(cluster.redis.keys(KEYS.chunk_index("*")))


def models_named(cluster, name: str) -> int:
    hits = cluster.api.post(f"{ML}/models/_search", {"query": {"term": {"name": name}}}).body
    return hits["hits"]["total"]["value"]


def fails(cluster, body: dict, reason: str, timeout: float = 60) -> dict:
    """Register ``body``: accepted, then FAILED with ``reason`` in its error, and nothing left."""
    before = chunk_keys(cluster)
    resp = cluster.api.post(f"{ML}/models/_register", body)
    assert resp.status == 200, resp.body
    task = cluster.wait_task(resp.body["task_id"], timeout)
    assert task["state"] == "FAILED", task
    assert reason in task["error"], task["error"]
    nothing_left(cluster, body["name"], before)
    return task


def refused(cluster, body: dict, status: int, reason: str) -> dict:
    """Register ``body``: refused at once with the dialect's error, and nothing written."""
    before = chunk_keys(cluster)
    resp = cluster.api.post(f"{ML}/models/_register", body)
    assert resp.status == status, resp.body
    assert resp.body["status"] == status and reason in resp.error["reason"], resp.body
    assert resp.error["root_cause"][0]["reason"] == resp.error["reason"]
    nothing_left(cluster, body["name"], before)
    return resp.error


def nothing_left(cluster, name: str, before: set[bytes]) -> None:
    assert models_named(cluster, name) == 0
    assert chunk_keys(cluster) <= before
    assert cluster.api.get("/").status == 200


@pytest.fixture
def roots(cluster):
    """The folder file URLs may read (the session cluster's setting): pytest's temporary folder."""
    value = cluster.api.get("/_cluster/settings?include_defaults=true&flat_settings=true").body
    return Path(value["defaults"][ROOTS])


# --- item 5: where a model may come from --------------------------------------------------------

def test_every_redirect_is_checked_against_the_allow_list(cluster, tiny):
    zip_path, info = tiny
    with Source(zip_path) as trusted, Source(zip_path) as other:
        hop = f"{trusted.base}/redirect?to=" + urllib.parse.quote(f"{other.base}/file")
        allow_only_trusted = "^" + trusted.base.replace(".", r"\.") + "/"
        with cluster.settings({"plugins.ml_commons.trusted_url_regex": allow_only_trusted}):
            fails(cluster, register_body(zip_path, info, url=hop),
                  f"the redirect from [{hop}] to [{other.base}/file] is refused: URL can't match trusted url regex")
        assert other.requests == []
        # The same redirect, both hosts trusted: followed.
        model_id = register_url(cluster, zip_path, info, url=hop)
        assert cluster.model(model_id)["model_content_hash_value"] == info["model_content_hash_value"]
        assert other.requests == ["/file"]


def test_a_redirect_never_leads_to_a_file(cluster, tiny):
    zip_path, info = tiny
    with Source() as source:
        url = f"{source.base}/redirect?to=" + urllib.parse.quote(zip_path.resolve().as_uri())
        fails(cluster, register_body(zip_path, info, url=url), "Redirection to url 'file://")


def test_redirects_end_after_five(cluster, tiny):
    zip_path, info = tiny
    with Source() as source:
        fails(cluster, register_body(zip_path, info, url=f"{source.base}/hop?n=0"), "HTTP 302")
        assert source.requests == [f"/hop?n={n}" for n in range(6)]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/model.zip", "data:application/zip;base64,UEsFBgAAAAAAAAAAAAAAAA==",
                                 "gopher://127.0.0.1/model.zip", "jar:file:///tmp/model.zip!/model.zip"])
def test_only_http_https_and_file(cluster, tiny, url):
    """Whatever the allow-list lets through, only these three schemes are fetched."""
    zip_path, info = tiny
    scheme = url.split(":")[0]
    with cluster.settings({"plugins.ml_commons.trusted_url_regex": "."}):
        refused(cluster, register_body(zip_path, info, url=url), 400,
                f"URL scheme [{scheme}] is not supported; use http, https or file")


def test_file_urls_outside_the_folders_get_one_answer_whatever_is_behind_them(cluster, tiny, roots, tmp_path):
    """/etc/shadow, a file that does not exist, a climb out with .., a link inside the folder
    that leads out: the same refusal, at once, whether or not there is anything there."""
    assert tmp_path.is_relative_to(roots)
    zip_path, info = tiny
    (tmp_path / "to-passwd").symlink_to("/etc/passwd")
    (tmp_path / "to-nowhere").symlink_to("/etc/no-such-file")
    (tmp_path / "to-zero").symlink_to("/dev/zero")
    for path in ["/etc/shadow", "/etc/passwd", "/etc/no-such-file", "/dev/zero", f"{roots}/../../etc/passwd",
                 f"{roots}/%2E%2E/%2E%2E/etc/passwd", str(tmp_path / "to-passwd"), str(tmp_path / "to-nowhere"),
                 str(tmp_path / "to-zero")]:
        url = f"file://{path}"
        error = refused(cluster, register_body(zip_path, info, url=url), 400, "")
        assert error["reason"] == f"file URL [{url}] {OUTSIDE}"


@contextlib.contextmanager
def another_api(cluster, logs: Path, **env):
    """A second API process on the cluster's Redis (its own environment on top of the cluster's)."""
    proc, port = api_proc(cluster.redis_url, logs, env={**cluster.env, **env})
    proc.start()
    try:
        client = Client(f"http://127.0.0.1:{port}")
        wait_http(client, 60)
        yield client
    finally:
        proc.stop()


def test_file_urls_need_a_folder_named_in_the_setting(cluster, tiny, tmp_path):
    """The default: no folder, no file URL at all (as Elasticsearch without path.repo)."""
    zip_path, info = tiny
    with another_api(cluster, tmp_path, MLCOMMONS_MLCOMMONS_MODEL_STORE_URL_FILE_ROOTS="") as api:
        body = register_body(zip_path, info)
        resp = api.post(f"{ML}/models/_register", body)
    assert resp.status == 400
    assert resp.error["reason"] == "file URLs are refused: no folder is named in [mlcommons.model_store.url_file_roots]"
    nothing_left(cluster, body["name"], chunk_keys(cluster))


def test_only_regular_files_are_read(cluster, tiny, tmp_path):
    """Inside the folder, a FIFO (which would block, or stream forever) and a folder are refused
    before anything is stored: only now, past every check, may the error tell what is there."""
    zip_path, info = tiny
    os.mkfifo(tmp_path / "pipe.zip")
    fails(cluster, register_body(zip_path, info, url=(tmp_path / "pipe.zip").as_uri()), "not a regular file")
    fails(cluster, register_body(zip_path, info, url=tmp_path.as_uri()), "not a regular file")
    fails(cluster, register_body(zip_path, info, url=(tmp_path / "missing.zip").as_uri()),
          "No such file or directory")


# --- item 6: how much -----------------------------------------------------------------------------

def test_a_source_larger_than_the_limit_is_refused_before_storing(cluster, tiny):
    zip_path, info = tiny
    with cluster.settings({"mlcommons.model_store.max_model_size": 1_000_000}), Source() as source:
        fails(cluster, register_body(zip_path, info, url=f"{source.base}/announce?length=2000000"),
              "is 2000000 bytes, larger than the limit of 1000000 bytes (mlcommons.model_store.max_model_size)")
        fails(cluster, register_body(zip_path, info, url=f"{source.base}/endless"),
              "is larger than the limit of 1000000 bytes")
        fails(cluster, register_body(zip_path, info),  # a file announces its size
              f"is {zip_path.stat().st_size} bytes, larger than the limit of 1000000 bytes")


def test_the_declared_size_is_held_to(cluster, tiny):
    zip_path, info = tiny
    size = zip_path.stat().st_size
    body = register_body(zip_path, info, model_content_size_in_bytes=5 * 2**30)
    refused(cluster, body, 413, "Model file size exceeds the limit of 4294967295 bytes: 5368709120")
    body = register_body(zip_path, info, model_content_size_in_bytes="12")
    refused(cluster, body, 400, "[model_content_size_in_bytes] must be a positive integer")
    fails(cluster, register_body(zip_path, info, model_content_size_in_bytes=size - 1),
          f"is {size} bytes, larger than the declared model_content_size_in_bytes ({size - 1})")
    fails(cluster, register_body(zip_path, info, model_content_size_in_bytes=size + 1),
          f"is {size} bytes; the request declared model_content_size_in_bytes {size + 1}")
    with Source() as source:
        fails(cluster, register_body(zip_path, info, url=f"{source.base}/endless", model_content_size_in_bytes=1000),
              "is larger than the declared model_content_size_in_bytes (1000)")
    model_id = register_url(cluster, zip_path, info, model_content_size_in_bytes=size)
    assert cluster.model(model_id)["model_content_size_in_bytes"] == size


def test_a_lowered_max_model_size_holds_for_the_very_next_register(cluster, tiny, tmp_path):
    """No second of stale settings: the worker reads them when the task starts, and an API process
    other than the one that took the change reads them for the register it takes."""
    zip_path, info = tiny
    with another_api(cluster, tmp_path) as other:
        for _ in range(3):
            with cluster.settings({"mlcommons.model_store.max_model_size": 1000}):
                fails(cluster, register_body(zip_path, info), "larger than the limit of 1000 bytes")
                body = register_body(zip_path, info, model_content_size_in_bytes=2000)
                resp = other.post(f"{ML}/models/_register", body)
                assert resp.status == 413 and resp.error["reason"].endswith("limit of 1000 bytes: 2000"), resp.body
                meta = {"name": unique("meta"), "model_format": "TORCH_SCRIPT", "total_chunks": 1,
                        "model_content_hash_value": "a" * 64, "model_config": info["model_config"],
                        "model_content_size_in_bytes": 2000}
                assert other.post(f"{ML}/models/_register_meta", meta).status == 413
            register_url(cluster, zip_path, info)  # and raised again just as fast


@contextlib.contextmanager
def room_for(cluster, nbytes: int):
    """Give the session's Redis a memory ceiling that leaves model archives ``nbytes`` of room
    (the cluster's own writes still fit: the reserve stays free)."""
    from mlcommons.store import capacity

    config = cluster.redis_server.config_command  # CONFIG, under the test Redis' secret name
    old = cluster.redis.info("memory")["maxmemory"]
    used = cluster.redis.info("memory")["used_memory"]
    cluster.redis.execute_command(config, "SET", "maxmemory", int((used + nbytes) / (1 - capacity.RESERVE)))
    try:
        yield
    finally:
        cluster.redis.execute_command(config, "SET", "maxmemory", old)


def test_a_register_past_the_memory_ceiling_fails_cleanly(cluster, tiny):
    """By URL: refused before the first chunk (the size is known). By declared size: 429 at once,
    as OpenSearch's memory circuit breaker answers. By upload: the chunk that does not fit ends
    the upload, and none of its chunks stays behind."""
    zip_path, info = tiny
    content = zip_path.read_bytes()
    with room_for(cluster, 1_000_000):
        task = fails(cluster, register_body(zip_path, info), "the model store has no room for")
        assert "memory ceiling (maxmemory)" in task["error"]
        body = register_body(zip_path, info, model_content_size_in_bytes=len(content))
        error = refused(cluster, body, 429, "the model store has no room for")
        assert error["type"] == "circuit_breaking_exception"
        meta = {"name": unique("full"), "model_format": "TORCH_SCRIPT", "total_chunks": 2,
                "model_content_hash_value": hashlib.sha256(content).hexdigest(), "model_config": info["model_config"]}
        before = chunk_keys(cluster)
        model_id = cluster.api.post(f"{ML}/models/_register_meta", meta).body["model_id"]
        assert cluster.api.post(f"{ML}/models/{model_id}/upload_chunk/0", data=content[:500_000]).status == 200
        resp = cluster.api.post(f"{ML}/models/{model_id}/upload_chunk/1", data=content[500_000:])
        assert resp.status == 429 and resp.error["type"] == "circuit_breaking_exception", resp.body
        assert f"the upload of model [{model_id}] was abandoned" in resp.error["reason"]
        nothing_left(cluster, meta["name"], before)
    register_url(cluster, zip_path, info)  # room again


# --- item 7: how long ------------------------------------------------------------------------------

def test_a_slow_download_holds_up_no_deploy_and_no_undeploy(cluster, tiny):
    """A register trickling one byte at a time takes a node's shared-queue worker, not the worker
    that deploys and undeploys on that node: a deploy and an undeploy on every node complete while
    it is in flight; it fails when the source gives up, with nothing left."""
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    settings = {"mlcommons.model_store.url_min_bytes_per_second": 0,
                "mlcommons.model_store.url_deadline_seconds": 300}
    with cluster.settings(settings), Source() as source:
        before = chunk_keys(cluster)
        body = register_body(zip_path, info, url=f"{source.base}/trickle?every=0.2&length=4000000")
        task_id = cluster.api.post(f"{ML}/models/_register", body).body["task_id"]
        wait_for(lambda: source.sent > 0, 30, 0.05, "the download to start")
        downloading = cluster.api.get(f"{ML}/tasks/{task_id}").body["worker_node"][0]

        assert deploy(cluster, model_id)["state"] == "COMPLETED"
        assert downloading in cluster.model(model_id)["current_worker_nodes"]
        resp = cluster.api.post(f"{ML}/models/{model_id}/_undeploy")
        assert resp.status == 200 and set(resp.body) == set(cluster.nodes), resp.body
        assert cluster.model(model_id)["model_state"] == "UNDEPLOYED"
        assert cluster.api.get(f"{ML}/tasks/{task_id}").body["state"] == "CREATED"  # still downloading

        source.release()
        task = cluster.wait_task(task_id)
        assert task["state"] == "FAILED" and "the source ended after" in task["error"], task
        nothing_left(cluster, body["name"], before)


@pytest.mark.parametrize("path, settings, reason", [
    ("/trickle?every=0.05&length=4000000", {"mlcommons.model_store.url_deadline_seconds": 2,
                                            "mlcommons.model_store.url_min_bytes_per_second": 0},
     "did not finish within 2 seconds (mlcommons.model_store.url_deadline_seconds)"),
    ("/slow-headers?every=0.05", {"mlcommons.model_store.url_deadline_seconds": 2,
                                  "mlcommons.model_store.url_min_bytes_per_second": 0},
     "did not finish within 2 seconds"),
    ("/trickle?every=0.05&length=4000000", {"mlcommons.model_store.url_timeout_seconds": 1,
                                            "mlcommons.model_store.url_min_bytes_per_second": 1000},
     "is too slow: "),
])
def test_a_trickling_source_fails_at_its_deadline_or_minimum_rate(cluster, tiny, path, settings, reason):
    """A byte every 50 ms never trips a socket time-out; the deadline (headers included) and the
    minimum rate end it."""
    zip_path, info = tiny
    with cluster.settings(settings), Source() as source:
        fails(cluster, register_body(zip_path, info, url=source.base + path), reason)
        assert source.sent > 0


def test_a_register_past_its_job_time_out_ends_and_the_node_serves_on(cluster, tiny):
    """The shared-queue worker is a thread: the job time-out comes from a timer, not SIGALRM, and
    stops only that job; the next register runs on the same worker."""
    zip_path, info = tiny
    settings = {"plugins.ml_commons.ml_task_timeout_in_seconds": 2,
                "mlcommons.model_store.url_min_bytes_per_second": 0}
    with cluster.settings(settings), Source() as source:
        # Two clocks end it at the same instant: the job's own timer ("Task exceeded maximum
        # timeout value (2 seconds)") or the watcher's task time-out ("timed out after 2 seconds"),
        # whichever writes first; either way the task fails and the worker goes on.
        fails(cluster, register_body(zip_path, info, url=f"{source.base}/trickle?every=0.05&length=4000000"),
              "2 seconds")
    for _ in cluster.nodes:
        register_url(cluster, zip_path, info)


def test_a_node_that_dies_or_stops_mid_download_leaves_nothing(make_cluster, tiny):
    """Killed: the liveness round fails the register that the node's shared-queue worker had
    started (found by the worker's name, ``<node>.<boot>.shared``), undoes it, and takes both of
    the node's rq workers out of rq's registry. Stopped: the download ends at its next read and the
    register fails at once with the reason."""
    from rq import Worker
    from rq.registry import StartedJobRegistry

    zip_path, info = tiny
    c = make_cluster(nodes=("node-a",))
    c.api.put("/_cluster/settings", {"persistent": {"mlcommons.model_store.url_min_bytes_per_second": 0}})

    def start(source: Source) -> tuple[str, str]:
        body = register_body(zip_path, info, url=f"{source.base}/trickle?every=0.05&length=4000000")
        task_id = c.api.post(f"{ML}/models/_register", body).body["task_id"]
        wait_for(lambda: source.sent > 0, 30, 0.05, "the download to start")
        return task_id, body["name"]

    with Source() as source:
        before = chunk_keys(c)
        boot = c.redis.get(KEYS.node_alive("node-a")).decode()
        both = {f"node-a.{boot[:8]}", f"node-a.{boot[:8]}.shared"}
        wait_for(lambda: {w.name for w in Worker.all(connection=c.redis)} == both, 30, 0.05, "both rq workers")
        task_id, name = start(source)
        started = StartedJobRegistry(KEYS.shared_queue(), connection=c.redis).get_job_ids(cleanup=False)
        assert started == [f"register-{task_id}"], started
        c.kill_worker("node-a")
        task = c.wait_task(task_id, 30)
        assert task["state"] == "FAILED" and "worker node node-a left the cluster" in task["error"], task
        nothing_left(c, name, before)
        assert StartedJobRegistry(KEYS.shared_queue(), connection=c.redis).get_job_ids(cleanup=False) == []
        assert Worker.all(connection=c.redis) == []

    c.start_worker("node-a")
    with Source() as source:
        task_id, name = start(source)
        c.stop_worker("node-a")
        task = c.wait_task(task_id, 30)
        assert task["state"] == "FAILED" and "the worker node is stopping" in task["error"], task
        nothing_left(c, name, before)
