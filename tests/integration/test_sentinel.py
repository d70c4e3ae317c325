"""A Redis that fails over: a cluster on a ``redis+sentinel://`` URL (a primary, a replica, three
sentinels, all real) keeps serving when its primary is killed, and writes that must not be lost
wait for the replica when ``mlcommons.redis.wait_replicas`` asks for it.

Run with ``-s`` to see the failover's timings."""
from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

import pytest
import redis

from mlcommons.api.hosts import HostPolicy
from mlcommons.stack import dashboard
from mlcommons.stack.startup import unreachable
from mlcommons.store.connection import sync_client
from tests.cluster import FAST, KEYS, ML, LocalCluster
from tests.harness import wait_for
from tests.integration.flows import register_body, register_url
from tests.sentinel import SentinelRedis

FILE_ROOTS = "MLCOMMONS_MLCOMMONS_MODEL_STORE_URL_FILE_ROOTS"
# A node's heartbeat must outlive the failover (down-after 1 s, then the election and the
# promotion: 2 to 3 s here), or every node is declared gone and fenced when Redis comes back.
ENV = {**FAST, "MLCOMMONS_MLCOMMONS_NODE_HEARTBEAT_EXPIRY_SECONDS": "5",
       "MLCOMMONS_MLCOMMONS_PREDICT_TIMEOUT_SECONDS": "20"}


@pytest.fixture
def sentinel_redis(tmp_path):
    servers = SentinelRedis(tmp_path / "redis").start()
    yield servers
    servers.stop()


@pytest.fixture
def cluster_on(tmp_path, tmp_path_factory):
    made: list[LocalCluster] = []

    def make(servers: SentinelRedis, env: dict | None = None) -> LocalCluster:
        local = LocalCluster(tmp_path / "cluster", ("node-a",), redis_server=servers,
                                env={**ENV, FILE_ROOTS: str(tmp_path_factory.getbasetemp()), **(env or {})})
        made.append(local)
        return local.start()

    yield make
    for local in made:
        local.stop()


def documents(client: redis.Redis) -> set[str]:
    """The task and model documents one data node holds."""
    return {key.decode() for index in ("task", "model") for key in client.scan_iter(KEYS.doc(index, "*"))}


class Load:
    """One client sending predictions back to back, recording each one's start, end and status."""

    def __init__(self, c, model_id: str):
        self.c, self.model_id = c, model_id
        self.records: list[tuple[float, float, int, str]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stopped.is_set():
            n += 1
            started = time.monotonic()
            try:
                resp = self.c.api.post(f"{ML}/models/{self.model_id}/_predict", {"text_docs": [f"doc {n}"]},
                                       timeout=60)
                status, detail = resp.status, "" if resp.status == 200 else str(resp.body)[:200]
            except OSError as exc:
                status, detail = 0, repr(exc)
            self.records.append((started, time.monotonic(), status, detail))

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(90)

    def ok_after(self, moment: float) -> int:
        return sum(1 for _, end, status, _ in self.records if status == 200 and end > moment)

    def first_ok_after(self, moment: float) -> float:
        return min(end for _, end, status, _ in self.records if status == 200 and end > moment)

    def failed(self) -> list[tuple[float, float, int, str]]:
        return [r for r in self.records if r[2] != 200]


def test_killing_the_primary_the_cluster_serves_again_and_deploys(sentinel_redis, cluster_on, tiny):
    zip_path, info = tiny
    c = cluster_on(sentinel_redis)
    serving = register_url(c, zip_path, info)
    deploy = c.api.post(f"{ML}/models/{serving}/_deploy").body["task_id"]
    assert c.wait_task(deploy)["state"] == "COMPLETED"
    spare = register_url(c, zip_path, info)  # deployed after the failover
    boot = c.wait_alive("node-a")

    with Load(c, serving) as load:
        wait_for(lambda: load.ok_after(0) >= 20, 60, 0.05, "predictions to flow")
        primary = sentinel_redis.data(sentinel_redis.primary_port())
        before = documents(primary)
        # The last write before the crash: a register, answered (task and model written, job queued).
        last = c.api.post(f"{ML}/models/_register", register_body(zip_path, info))
        assert last.status == 200, last.body
        old, killed = sentinel_redis.kill_primary()
        new, promoted = sentinel_redis.wait_promoted(old)
        wait_for(lambda: load.ok_after(promoted) >= 20, 60, 0.05, "predictions to resume")
        resumed = load.first_ok_after(killed)

        deploy_spare = c.api.post(f"{ML}/models/{spare}/_deploy", timeout=60)
        assert deploy_spare.status == 200, deploy_spare.body
        spare_task = c.wait_task(deploy_spare.body["task_id"], timeout=30)
        deployed = time.monotonic()
    after = documents(sentinel_redis.data(new))
    last_task = c.wait_task(last.body["task_id"], timeout=60)

    failed = load.failed()
    lost = sorted(before - after)
    print(f"\nfailover: kill -> promotion {promoted - killed:.2f} s; promotion -> first prediction answered "
          f"{resumed - promoted:+.2f} s; promotion -> deploy of a second model COMPLETED {deployed - promoted:.2f} s")
    print(f"failover: {len(load.records)} predictions, {len(failed)} failed {[r[2:] for r in failed]}; "
          f"{len(before)} task/model documents before the kill, lost: {lost or 'none'}; "
          f"register answered just before the kill: task {last_task['state']}; "
          f"node restarted: {c.wait_alive('node-a') != boot}")
    assert spare_task["state"] == "COMPLETED", spare_task
    assert deployed - promoted < 15, "a deploy after the failover must complete within 15 s of the promotion"
    assert c.model(spare)["model_state"] == "DEPLOYED"
    assert not failed, failed
    assert not lost
    assert last_task["state"] == "COMPLETED", last_task
    assert c.workers["node-a"].stop(timeout=20) == 0, "the worker stops on SIGTERM"


def test_with_wait_replicas_a_registration_is_on_the_replica_when_the_api_answers(sentinel_redis, cluster_on, tiny):
    zip_path, info = tiny
    c = cluster_on(sentinel_redis)
    replica_server = sentinel_redis.nodes[1]
    primary, replica = sentinel_redis.data(sentinel_redis.nodes[0].port), sentinel_redis.data(replica_server.port)
    with c.settings({"mlcommons.redis.wait_replicas": 1, "mlcommons.redis.wait_timeout_ms": 10_000}):
        with ThreadPoolExecutor(1) as pool:
            with replica_server.paused():
                before = documents(primary)
                answer = pool.submit(c.api.post, f"{ML}/models/_register", register_body(zip_path, info))
                answered: list[float] = []
                answer.add_done_callback(lambda _: answered.append(time.monotonic()))
                # The write is on the primary, and the API holds the answer while the replica lacks it
                # (without the wait it answers within milliseconds of the write).
                written = wait_for(lambda: documents(primary) - before, 10, 0.01, "the register to be written")
                done, _ = futures_wait([answer], timeout=1.0)
                assert not done, "answered before the replica had the registration"
                resumed = time.monotonic()
            resp = answer.result(30)
            assert answered[0] > resumed
            print(f"\nwait_replicas=1: the answer came {answered[0] - resumed:.3f} s after the replica resumed")
        assert resp.status == 200, resp.body
        task_key = KEYS.doc("task", resp.body["task_id"])
        assert task_key in written and replica.exists(task_key), "the task is on the replica when the API answers"
        model_id = c.wait_task(resp.body["task_id"])["model_id"]
        assert replica.hget(KEYS.doc("model", model_id), "model_state") is not None

    # A replica that does not answer in time costs the wait, never the request.
    with c.settings({"mlcommons.redis.wait_replicas": 1, "mlcommons.redis.wait_timeout_ms": 200}):
        with replica_server.paused():
            started = time.monotonic()
            resp = c.api.post(f"{ML}/models/_register", register_body(zip_path, info))
            took = time.monotonic() - started
        assert resp.status == 200, resp.body
        assert 0.2 <= took < 5, took
        wait_for(lambda: "only 0 of 1 replica(s) acknowledged it within 200 ms" in c.api_process.log(), 10, 0.05,
                 "the warning in the API's log")
        assert c.wait_task(resp.body["task_id"])["state"] == "COMPLETED"
    assert sentinel_redis.password not in c.api_process.log()


def test_a_primary_demoted_alive_is_left_by_writes_and_blocked_pops(sentinel_redis):
    """SENTINEL FAILOVER: the old primary keeps running and is turned into a replica later. A pop
    blocked on it forever and a writer both end up on the new primary, with no error."""
    url = sentinel_redis.url
    writer, blocker = sync_client(url), sync_client(url)
    errors: list[str] = []
    written = [0]
    stop = threading.Event()

    def write():
        while not stop.is_set():
            try:
                writer.incr("written")
                written[0] += 1
            except redis.RedisError as exc:
                errors.append(repr(exc))
            stop.wait(0.01)

    with ThreadPoolExecutor(2) as pool:
        popped = pool.submit(blocker.blmove, "in", "out", 0, "LEFT", "RIGHT")  # blocks with no time-out
        writing = pool.submit(write)
        wait_for(lambda: written[0] > 20, 10, 0.01, "writes")
        old = sentinel_redis.primary_port()
        started = time.monotonic()
        sentinel_redis.ask_failover()
        new, promoted = sentinel_redis.wait_promoted(old)
        mark = written[0]
        wait_for(lambda: written[0] > mark + 50, 30, 0.01, "writes after the failover")
        sentinel_redis.data(new).lpush("in", b"item")
        assert popped.result(60) == b"item"
        unblocked = time.monotonic()
        stop.set()
        writing.result(10)
    on_new = int(sentinel_redis.data(new).get("written"))
    print(f"\nmanual failover: promotion after {promoted - started:.2f} s; the blocked pop followed "
          f"{unblocked - promoted:.2f} s after it; {written[0] - on_new} of {written[0]} acknowledged writes "
          "went to the old primary in the window and are lost")
    assert not errors, errors
    assert written[0] - on_new < written[0] - mark  # writes made well after the promotion all reached the new one


def test_a_command_interrupted_by_a_signal_leaves_no_reply_behind(sentinel_redis):
    """rq stops a worker by raising from its SIGTERM handler inside a blocked BLMOVE; the
    connection must not go back to the pool with the pop pending (the next command would read
    its reply: a worker that never stopped)."""
    class Interrupted(Exception):
        pass

    def interrupt(_signum, _frame):
        raise Interrupted()

    client = sync_client(sentinel_redis.url)
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(Interrupted):
            client.blmove("nothing", "out", 5, "LEFT", "RIGHT")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    started = time.monotonic()
    assert client.set("after", "interrupt") is True and client.get("after") == b"interrupt"
    assert time.monotonic() - started < 1


def test_the_start_up_check_and_the_dashboard_on_a_sentinel_url(sentinel_redis):
    url = sentinel_redis.url
    assert unreachable(url) is None
    wrong_name = url.replace(f"/{sentinel_redis.master}/", "/no-such-master/")
    assert unreachable(wrong_name, within=10) == (
        f"no sentinel monitors a master named 'no-such-master' (they monitor '{sentinel_redis.master}')")
    wrong_password = url.replace(sentinel_redis.sentinel_password, "wrong")
    assert "authentication failed" in unreachable(wrong_password, within=0.5)
    wrong_node_password = url.replace(f":{sentinel_redis.password}@", ":wrong@")
    assert unreachable(wrong_node_password).startswith("authentication failed")
    sentinel_redis.nodes[0].kill()  # no primary until the sentinels promote the replica: the check waits
    assert unreachable(url, within=30) is None

    app = dashboard.create_app(url, HostPolicy("127.0.0.1"))
    page = app.test_client().get("/", headers={"Host": "127.0.0.1:9181"})
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert sentinel_redis.password not in body and sentinel_redis.sentinel_password not in body
