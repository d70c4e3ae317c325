"""Killing our own processes at the worst moments (SIGKILL, as a crash does), and checking the
invariants of DESIGN.md each time: every task ends; worker-node lists are true; no model, task or
setting is lost; no prediction hangs."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from tests.cluster import KEYS, ML
from tests.harness import wait_for
from tests.integration.flows import register_body

# Small chunks make a download long enough to be interrupted; the failpoints make each step
# last long enough for the test to see it start (see mlcommons/failpoints.py).
CHUNKED = {"MLCOMMONS_MLCOMMONS_MODEL_STORE_CHUNK_SIZE": "100000"}
SLOW_FETCH = {"MLCOMMONS_FAILPOINTS": "fetch.chunk=delay(0.1)"}
SLOW_LOAD = {"MLCOMMONS_FAILPOINTS": "deploy.load=delay(5)"}
SLOW_BATCH = {"MLCOMMONS_FAILPOINTS": "predict.batch=delay(1.5)"}
EXPIRY = 1.5  # tests.cluster.FAST heartbeat expiry


def register(c, zip_path, info, **extra) -> str:
    resp = c.api.post(f"{ML}/models/_register", register_body(zip_path, info, **extra))
    assert resp.status == 200, resp.body
    task = c.wait_task(resp.body["task_id"])
    assert task["state"] == "COMPLETED", task
    return task["model_id"]


def start_deploy(c, model_id: str, node_ids=None) -> str:
    resp = c.api.post(f"{ML}/models/{model_id}/_deploy", {"node_ids": node_ids} if node_ids else None)
    assert resp.status == 200, resp.body
    return resp.body["task_id"]


def wait_state(c, model_id: str, state: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (m := c.model(model_id))["model_state"] == state and m, timeout, 0.05,
                    f"model {model_id} to be {state}")


def rq_started(c, queue: str) -> list[str]:
    return StartedJobRegistry(queue, connection=c.redis).get_job_ids(cleanup=False)


def assert_killed_node_part_failed(c, task: dict, node: str) -> None:
    errors = json.loads(task["error"])
    assert "left the cluster" in errors[node], errors


def test_worker_killed_during_chunk_download(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster(env=CHUNKED, node_env={"node-a": SLOW_FETCH})
    model_id = register(c, zip_path, info)
    assert c.model(model_id)["total_chunks"] > 10
    task_id = start_deploy(c, model_id)
    wait_for(lambda: c.progress(task_id, "node-a").startswith("downloading"), 30, 0.01, "node-a downloading")
    c.kill_worker("node-a")
    killed_at = time.monotonic()

    task = c.wait_task(task_id, timeout=30)
    assert time.monotonic() - killed_at < EXPIRY + 3, "the dead node's part must fail within expiry + a tick"
    assert task["state"] == "COMPLETED_WITH_ERROR", task
    assert_killed_node_part_failed(c, task, "node-a")
    model = wait_state(c, model_id, "PARTIALLY_DEPLOYED")
    assert model["current_worker_nodes"] == ["node-b"] and model["planning_worker_nodes"] == ["node-a", "node-b"]
    # rq's own registries agree: nothing of node-a shows as started; its job is in the failed registry
    assert rq_started(c, KEYS.node_queue("node-a")) == []
    failed = FailedJobRegistry(queue=Queue(KEYS.node_queue("node-a"), connection=c.redis)).get_job_ids()
    assert f"deploy-{task_id}-node-a" in failed
    assert c.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["still served"]}).status == 200

    # The same node comes back: no stale state, and the model is redeployed there by itself.
    c.start_worker("node-a", env={"MLCOMMONS_FAILPOINTS": ""})
    model = wait_state(c, model_id, "DEPLOYED", 60)
    assert model["current_worker_nodes"] == ["node-a", "node-b"]
    tasks = c.tasks_of(model_id)
    assert len(tasks) == 2 and tasks[1]["worker_node"] == ["node-a"] and tasks[1]["state"] == "COMPLETED"
    c.assert_worker_lists_true(model_id)


def test_worker_killed_during_model_load(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster(node_env={"node-a": SLOW_LOAD})
    model_id = register(c, zip_path, info)
    task_id = start_deploy(c, model_id)
    wait_for(lambda: c.progress(task_id, "node-a") == "loading", 30, 0.01, "node-a loading")
    c.kill_worker("node-a")
    task = c.wait_task(task_id, timeout=30)
    assert task["state"] == "COMPLETED_WITH_ERROR"
    assert_killed_node_part_failed(c, task, "node-a")
    assert wait_state(c, model_id, "PARTIALLY_DEPLOYED")["current_worker_nodes"] == ["node-b"]
    assert rq_started(c, KEYS.node_queue("node-a")) == []
    c.assert_worker_lists_true(model_id)


def in_flight(c, node: str, model_id: str) -> int:
    """Requests a node's allocations of a deployment have taken and not yet answered."""
    return sum(c.redis.llen(key) for key in c.redis.scan_iter(KEYS.inflight(node, model_id, "*")))


def _predict_many(c, model_id: str, count: int) -> list:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: c.api.post(f"{ML}/models/{model_id}/_predict",
                                                  {"text_docs": [f"request {i}"]}, timeout=60), range(count)))


def test_worker_killed_during_a_prediction_batch_others_serve(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster(node_env={"node-a": SLOW_BATCH})
    model_id = register(c, zip_path, info)
    assert c.wait_task(start_deploy(c, model_id))["state"] == "COMPLETED"
    import threading

    stop = threading.Event()

    def keep_predicting() -> list:
        # Rounds of requests until node-a holds some: node-b alone may answer a first round
        # before node-a's allocations wait on the queue.
        replies = []
        while not stop.is_set():
            replies += _predict_many(c, model_id, 8)
        return replies

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(keep_predicting)
        wait_for(lambda: in_flight(c, "node-a", model_id) > 0, 30, 0.005, "node-a to take requests")
        c.kill_worker("node-a")
        killed = time.monotonic()
        stop.set()
        replies = future.result(timeout=60)
    # Every request is answered, by node-b, well before the 30 s prediction deadline.
    assert replies and [r.status for r in replies] == [200] * len(replies), \
        [r.body for r in replies if r.status != 200]
    assert time.monotonic() - killed < 15
    wait_state(c, model_id, "PARTIALLY_DEPLOYED")
    c.assert_worker_lists_true(model_id)


def test_last_worker_killed_during_a_batch_requests_fail_fast(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster(nodes=("node-a",), node_env={"node-a": SLOW_BATCH},
                     env={"MLCOMMONS_PLUGINS_ML_COMMONS_MODEL_AUTO_DEPLOY_ENABLE": "false"})
    model_id = register(c, zip_path, info)
    assert c.wait_task(start_deploy(c, model_id))["state"] == "COMPLETED"
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        future = pool.submit(_predict_many, c, model_id, 8)
        wait_for(lambda: in_flight(c, "node-a", model_id) > 0, 30, 0.005, "a batch in flight")
        c.kill_worker("node-a")
        replies = future.result(timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"requests should fail fast, not at their 30 s deadline ({elapsed:.1f}s)"
    assert {r.status for r in replies} <= {200, 400, 503}, [r.body for r in replies]
    assert any(r.status == 503 for r in replies)
    assert all("error" in r.body for r in replies if r.status != 200)
    assert wait_state(c, model_id, "DEPLOY_FAILED")["current_worker_node_count"] == 0


def test_redis_restarted_from_its_append_only_file(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster()
    model_id = register(c, zip_path, info)
    task_id = start_deploy(c, model_id)
    assert c.wait_task(task_id)["state"] == "COMPLETED"
    assert c.api.put("/_cluster/settings", {"persistent": {"plugins.ml_commons.max_model_on_node": 7}}).status == 200
    aof = c.redis_server.data_dir
    wait_for(lambda: b"max_model_on_node" in b"".join(p.read_bytes() for p in aof.rglob("*.aof*") if p.is_file()),
             10, 0.05, "the append-only file to be written")
    c.kill_redis()
    c.start_redis()
    # Everything is still there: the model, its tasks, the setting; and the nodes come back.
    assert c.model(model_id)["model_state"] in ("DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOY_FAILED")
    assert c.api.get(f"{ML}/tasks/{task_id}").body["state"] == "COMPLETED"
    flat = c.api.get("/_cluster/settings?flat_settings=true").body["persistent"]
    assert flat["plugins.ml_commons.max_model_on_node"] == "7"
    for node in c.nodes:
        c.wait_alive(node)
    wait_state(c, model_id, "DEPLOYED", 60)
    reply = wait_for(lambda: (r := c.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["back"]})).status
                     == 200 and r, 30, 0.1, "a prediction after the restart")
    assert reply.body["inference_results"][0]["output"][0]["shape"]
    c.assert_worker_lists_true(model_id)


def test_api_restarted_and_watcher_takes_over(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster()
    model_id = register(c, zip_path, info)
    assert c.wait_task(start_deploy(c, model_id))["state"] == "COMPLETED"
    c.kill_api()
    c.start_api()
    assert c.model(model_id)["model_state"] == "DEPLOYED"
    # The restarted API's watcher acts: a node death is still handled.
    c.kill_worker("node-b")
    model = wait_state(c, model_id, "PARTIALLY_DEPLOYED", 30)
    assert model["current_worker_nodes"] == ["node-a"]
    c.start_worker("node-b")
    wait_state(c, model_id, "DEPLOYED", 60)
    c.assert_worker_lists_true(model_id)


def restart_everything(c) -> None:
    """Everything stops, as at a power cut after a clean flush (API, workers, then Redis), and
    starts again; returns once the API answers (the workers may still be starting)."""
    c.api_process.stop()
    for node in c.nodes:
        c.kill_worker(node)
    c.redis_server.stop()
    c.start_redis()
    for node in c.nodes:
        c.start_worker(node, wait=False)
    c.start_api()


def test_whole_cluster_restart_redeploys_what_was_deployed(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster()
    everywhere = register(c, zip_path, info)
    on_b = register(c, zip_path, info)
    idle = register(c, zip_path, info)
    assert c.wait_task(start_deploy(c, everywhere))["state"] == "COMPLETED"
    assert c.wait_task(start_deploy(c, on_b, ["node-b"]))["state"] == "COMPLETED"
    tasks_before = c.api.post(f"{ML}/tasks/_search", {"size": 0}).body["hits"]["total"]["value"]
    restart_everything(c)
    for node in c.nodes:
        c.wait_alive(node)  # a node is alive only after it has cleaned up after its last run
    # Nobody calls _deploy: the models that were deployed are deployed again, with their plans,
    # by new DEPLOY_MODEL tasks.
    for model_id in (everywhere, on_b):
        wait_for(lambda: len(c.tasks_of(model_id)) >= 2 and c.tasks_of(model_id)[-1]["state"] == "COMPLETED",
                 90, 0.1, f"a redeploy task of {model_id}")
    a = wait_state(c, everywhere, "DEPLOYED", 90)
    b = wait_state(c, on_b, "DEPLOYED", 90)
    assert a["current_worker_nodes"] == ["node-a", "node-b"]
    assert b["current_worker_nodes"] == ["node-b"] and b["planning_worker_nodes"] == ["node-b"]
    assert c.model(idle)["model_state"] == "REGISTERED"
    assert c.api.post(f"{ML}/tasks/_search", {"size": 0}).body["hits"]["total"]["value"] > tasks_before
    for model_id in (everywhere, on_b):
        assert c.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["after"]}).status == 200
        c.assert_worker_lists_true(model_id)


def test_task_time_out(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster(nodes=("node-a",), node_env={"node-a": SLOW_LOAD})
    model_id = register(c, zip_path, info)
    with c.settings({"plugins.ml_commons.ml_task_timeout_in_seconds": 2}):
        task_id = start_deploy(c, model_id)
        started = time.monotonic()
        task = c.wait_task(task_id, timeout=20)
        assert time.monotonic() - started < 5
    assert task["state"] == "FAILED" and "timed out after 2 seconds" in task["error"]
    assert wait_state(c, model_id, "DEPLOY_FAILED")["current_worker_node_count"] == 0
    # the node stopped its job (or, had it finished loading, would see its part is over): it
    # does not keep the model
    wait_for(lambda: model_id not in c.held_by("node-a"), 20, 0.1, "node-a to hold nothing")
    c.assert_worker_lists_true(model_id)


def test_undeploy_while_deploying_cancels(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster(env=CHUNKED, node_env={"node-a": SLOW_FETCH, "node-b": SLOW_FETCH})
    model_id = register(c, zip_path, info)
    task_id = start_deploy(c, model_id)
    wait_for(lambda: c.progress(task_id, "node-a").startswith("downloading"), 30, 0.01, "the download")
    started = time.monotonic()
    reply = c.api.post(f"{ML}/models/{model_id}/_undeploy")
    assert reply.status == 200, reply.body
    assert time.monotonic() - started < 10
    task = c.api.get(f"{ML}/tasks/{task_id}").body
    assert task["state"] == "CANCELLED"
    model = c.model(model_id)
    assert model["model_state"] == "UNDEPLOYED" and model["current_worker_node_count"] == 0
    for node in c.nodes:
        wait_for(lambda: model_id not in c.held_by(node), 10, 0.1, f"{node} to hold nothing")
    assert rq_started(c, KEYS.node_queue("node-a")) == [] and rq_started(c, KEYS.node_queue("node-b")) == []


def test_sync_up_heals_a_wrong_worker_list(make_cluster, tiny):
    zip_path, info = tiny
    c = make_cluster()
    model_id = register(c, zip_path, info)
    assert c.wait_task(start_deploy(c, model_id))["state"] == "COMPLETED"
    # Make the document lie: say node-b does not hold the model.
    c.redis.hset(KEYS.doc("model", model_id), mapping={"current_worker_nodes": b'["node-a"]',
                                                          "current_worker_node_count": b"1"})
    model = wait_for(lambda: (m := c.model(model_id))["current_worker_nodes"] == ["node-a", "node-b"] and m,
                     15, 0.1, "the sync-up to correct the list")
    assert model["model_state"] == "DEPLOYED"
    c.assert_worker_lists_true(model_id)


def test_predictions_sent_across_a_whole_cluster_restart_are_all_answered(make_cluster, tiny):
    """The moment the API answers again after everything restarted, clients predict: none of
    their requests fails; they wait in the queue for the redeploy (issue: 503 'no worker node
    serves model [...] any more' while the model document still claimed its old nodes)."""
    zip_path, info = tiny
    c = make_cluster()
    model_id = register(c, zip_path, info)
    assert c.wait_task(start_deploy(c, model_id))["state"] == "COMPLETED"
    restart_everything(c)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: c.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": [f"t{i}"]}),
                                range(80)))
    failed = [(r.status, r.body) for r in replies if r.status != 200]
    assert not failed, failed[:5]
    assert wait_state(c, model_id, "DEPLOYED", 60)["current_worker_nodes"] == ["node-a", "node-b"]


def test_a_prediction_after_a_restart_brings_back_the_models_plan_not_every_live_node(make_cluster, tiny):
    """A model deployed to node-b only; everything restarts and node-a comes back first.
    Predictions sent then do not deploy the model to node-a (the first predict after a restart
    restores the plan, it does not replace it with whichever nodes are live): they wait, within
    their time-out, and are answered once node-b is back and serves it again."""
    zip_path, info = tiny
    c = make_cluster()
    model_id = register(c, zip_path, info)
    assert c.wait_task(start_deploy(c, model_id, ["node-b"]))["state"] == "COMPLETED"
    c.api_process.stop()
    for node in c.nodes:
        c.kill_worker(node)
    c.redis_server.stop()
    c.start_redis()
    c.start_worker("node-a")
    c.start_api()
    wait_for(lambda: c.model(model_id)["model_state"] != "DEPLOYED", 30, 0.05, "the API to see node-b gone")
    with ThreadPoolExecutor(4) as pool:
        replies = [pool.submit(c.api.post, f"{ML}/models/{model_id}/_predict", {"text_docs": [f"t{i}"]})
                   for i in range(4)]
        c.start_worker("node-b", wait=False)
        failed = [(r.status, r.body) for r in (f.result() for f in replies) if r.status != 200]
    assert not failed, failed
    model = wait_state(c, model_id, "DEPLOYED", 60)
    assert model["current_worker_nodes"] == ["node-b"] and model["planning_worker_nodes"] == ["node-b"]
    assert not model.get("deploy_to_all_nodes")
    c.assert_worker_lists_true(model_id)


def test_an_api_that_starts_never_reports_a_node_without_a_heartbeat(make_cluster, tiny):
    """A node died while no API process ran (so no watcher saw it): the first answer of the API
    that starts next already leaves it out."""
    zip_path, info = tiny
    c = make_cluster()
    model_id = register(c, zip_path, info)
    assert c.wait_task(start_deploy(c, model_id))["state"] == "COMPLETED"
    c.api_process.stop()
    c.kill_worker("node-b")
    wait_for(lambda: not c.redis.exists(KEYS.node_alive("node-b")), 10, 0.05, "node-b's heartbeat to expire")
    c.start_api()
    model = c.api.get(f"{ML}/models/{model_id}").body
    assert model["current_worker_nodes"] == ["node-a"] and model["model_state"] == "PARTIALLY_DEPLOYED", model
