"""Auto-deploy on the first predict: a storm of first predicts starts exactly one deploy, and every
request is answered once the model is up."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.integration.flows import ML, cosine, predict, register_url, undeploy


def deploy_tasks_of(cluster, model_id: str) -> list[dict]:
    body = cluster.api.post(f"{ML}/tasks/_search", {"size": 100, "query": {"bool": {"filter": [
        {"term": {"model_id": model_id}}, {"term": {"task_type": "DEPLOY_MODEL"}}]}}}).body
    return [h["_source"] for h in body["hits"]["hits"]]


def test_storm_of_first_predicts_starts_one_deploy(cluster, tiny):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info)
    texts = [f"first predict number {i}" for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        replies = list(pool.map(lambda t: cluster.api.post(f"{ML}/models/{model_id}/_predict",
                                                           {"text_docs": [t]}), texts))
    assert [r.status for r in replies] == [200] * len(texts), [r.body for r in replies if r.status != 200][:3]
    tasks = deploy_tasks_of(cluster, model_id)
    assert len(tasks) == 1, tasks
    # the predicts were answered once the first node served; the task ends when both have
    from tests.harness import wait_for

    wait_for(lambda: deploy_tasks_of(cluster, model_id)[0]["state"] == "COMPLETED", 30, 0.1, "the deploy task")
    assert cluster.model(model_id)["model_state"] == "DEPLOYED"
    # the answers are the model's answers
    again = predict(cluster, model_id, texts[:3])
    got = [r.body["inference_results"][0]["output"][0]["data"] for r in replies[:3]]
    import numpy as np

    assert (cosine(np.asarray(got, dtype=np.float32), again) >= 0.9999).all()
    undeploy(cluster, model_id)


def test_model_can_opt_out_of_auto_deploy(cluster, tiny):
    zip_path, info = tiny
    model_id = register_url(cluster, zip_path, info, deploy_setting={"is_auto_deploy_enabled": False})
    resp = cluster.api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": ["x"]})
    assert resp.status == 400 and resp.error["reason"].startswith("Auto deployment disabled for this model")
    assert deploy_tasks_of(cluster, model_id) == []
