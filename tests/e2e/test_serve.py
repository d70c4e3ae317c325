"""The README's first command, started as a user would: deploy the bundled model and predict over
HTTP, look at the jobs in rq-dashboard, then stop with Ctrl-C and check that nothing is left."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import numpy as np

from mlcommons.stack.procutil import free_port, pid_alive
from tests.harness import ROOT, Client, child_env, wait_for, wait_http

ML = "/_plugins/_ml"


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_serve_deploy_predict_and_stop_cleanly(tmp_path):
    port, dashboard = free_port(), free_port()
    log = open(tmp_path / "serve.log", "wb")
    # The README's first command, with ports and a data folder of the test's own.
    proc = subprocess.Popen(["bash", "run.sh", "serve", "--port", str(port), "--dashboard-port", str(dashboard),
                             "--data-dir", str(tmp_path / "data")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={k: v for k, v in child_env().items() if k != "MLCOMMONS_REDIS_URL"})
    api = Client(f"http://127.0.0.1:{port}")
    try:
        wait_http(api, timeout=120)
        resp = api.post(f"{ML}/models/_register", {"name": "huggingface/sentence-transformers/all-MiniLM-L6-v2",
                                                   "version": "1.0.1", "model_format": "TORCH_SCRIPT"})
        assert resp.status == 200, resp.body

        def finished(task_id):
            body = api.get(f"{ML}/tasks/{task_id}").body
            return body if body["state"] not in ("CREATED", "RUNNING") else None

        task = wait_for(lambda: finished(resp.body["task_id"]), 300, 0.2, "the register task")
        assert task["state"] == "COMPLETED", task
        model_id = task["model_id"]
        deploy = api.post(f"{ML}/models/{model_id}/_deploy").body
        task = wait_for(lambda: finished(deploy["task_id"]), 120, 0.1, "the deploy task")
        assert task["state"] == "COMPLETED", task
        body = api.post(f"{ML}/_predict/text_embedding/{model_id}", {"text_docs": ["hello world"]}).body
        tensor = body["inference_results"][0]["output"][0]
        assert tensor["name"] == "sentence_embedding" and tensor["shape"] == [384] and len(tensor["data"]) == 384
        quickstart_in_the_other_dialects(api, model_id, tensor["data"])

        node = task["worker_node"][0]
        jobs = Client(f"http://127.0.0.1:{dashboard}").get(f"/0/data/jobs/mlc.node.{node}/finished/20/asc/1.json")
        assert jobs.status == 200
        assert any(deploy["task_id"] in job["description"] for job in jobs.body["jobs"]), jobs.body

        # A worker that crashes is restarted by the supervisor as the same node, and the model
        # comes back on it without anyone calling _deploy.
        worker_pid = int((tmp_path / "data" / "run" / "worker-0.pid").read_text())
        os.kill(worker_pid, signal.SIGKILL)
        wait_for(lambda: int((tmp_path / "data" / "run" / "worker-0.pid").read_text()) != worker_pid, 30, 0.1,
                 "the supervisor to restart the worker")

        def redeployed():
            nodes = api.get("/_nodes").body["nodes"]
            return (node in nodes and nodes[node]["pid"] != worker_pid and model_id in nodes[node]["models"]
                    and api.get(f"{ML}/models/{model_id}").body["model_state"] == "DEPLOYED")

        wait_for(redeployed, 120, 0.2, "the model to be deployed again on the restarted node")
        body = api.post(f"{ML}/_predict/text_embedding/{model_id}", {"text_docs": ["hello again"]}).body
        assert body["inference_results"][0]["output"][0]["shape"] == [384]

        # The stack seals connector credentials with a key of its own, kept in its data dir.
        connector = api.post(f"{ML}/connectors/_create", {
            "name": "e2e", "version": 1, "protocol": "http", "credential": {"key": "sk-e2e-secret"},
            "actions": [{"action_type": "predict", "method": "POST", "url": "https://api.openai.com/v1/embeddings"}]})
        assert connector.status == 200, connector.body
        assert stat.S_IMODE((tmp_path / "data" / "master.key").stat().st_mode) == 0o600
        assert "credential" not in api.get(f"{ML}/connectors/{connector.body['connector_id']}").body

        tree = descendants(proc.pid)
        assert len(tree) >= 4  # redis, a worker, the API, the dashboard
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        code = proc.wait(90)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
    assert not [pid for pid in tree if pid_alive(pid) and not _zombie(pid)]
    output = (tmp_path / "serve.log").read_text()
    assert "stopped" in output and f"http://127.0.0.1:{port}" in output


def quickstart_in_the_other_dialects(api: Client, model_id: str, expected: list[float]) -> None:
    """The README quickstart's Elasticsearch and OpenAI steps, on the model its OpenSearch steps
    deployed: the same vector for "hello world" from each."""
    infer = api.post(f"/_ml/trained_models/{model_id}/_infer", {"docs": [{"text_field": "hello world"}]})
    assert infer.status == 200, infer.body
    assert np.allclose(infer.body["inference_results"][0]["predicted_value"], expected, atol=1e-5)
    endpoint = api.put("/_inference/text_embedding/minilm", {
        "service": "elasticsearch", "service_settings": {"model_id": model_id, "num_allocations": 1, "num_threads": 1}})
    assert endpoint.status == 200, endpoint.body
    embedded = api.post("/_inference/text_embedding/minilm", {"input": ["hello world"]})
    assert np.allclose(embedded.body["text_embedding"][0]["embedding"], expected, atol=1e-5), embedded.body
    assert api.delete("/_inference/minilm").body == {"acknowledged": True, "pipelines": []}
    openai = api.post("/v1/embeddings", {"model": "huggingface/sentence-transformers/all-MiniLM-L6-v2",
                                         "input": ["hello world"]})
    assert openai.status == 200, openai.body
    assert np.allclose(openai.body["data"][0]["embedding"], expected, atol=1e-5)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
