"""A remote model against a provider that misbehaves (tests/faults.py between the model and a
real infinity-emb): retries on 429 and 5xx with Retry-After honoured, no retry on other 4xx, a slow
reply cut by read_timeout, a reset connection retried, and a burst that a provider taking few
connections at a time absorbs with nothing hung."""
from __future__ import annotations

import concurrent.futures

import pytest

from tests.cluster import ML
from tests.faults import FaultProxy
from tests.harness import wait_for


@pytest.fixture(scope="module")
def proxy(infinity):
    server = FaultProxy(infinity.url)
    yield server
    server.stop()


def deployed_model(api, proxy, key: str, client_config: dict) -> str:
    connector = {
        "protocol": "http", "parameters": {"model": "dummy/model"}, "credential": {"key": key},
        "client_config": client_config,
        "actions": [{"action_type": "predict", "method": "POST", "url": f"{proxy.url}/embeddings",
                     "headers": {"Authorization": "Bearer ${credential.key}"},
                     "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }',
                     "pre_process_function": "connector.pre_process.openai.embedding",
                     "post_process_function": "connector.post_process.openai.embedding"}]}
    resp = api.post(f"{ML}/models/_register?deploy=true", {"name": "faulty", "function_name": "remote",
                                                           "connector": connector})
    assert resp.status == 200, resp.body
    model_id = resp.body["model_id"]
    wait_for(lambda: api.get(f"{ML}/models/{model_id}").body["model_state"] == "DEPLOYED", 60, 0.1, "the deploy")
    return model_id


def predict(api, model_id: str, text: str = "x"):
    return api.post(f"{ML}/models/{model_id}/_predict", {"text_docs": [text]})


def test_429_and_5xx_are_retried_and_retry_after_is_honoured(cluster, infinity, proxy):
    model_id = deployed_model(cluster.api, proxy, infinity.api_key,
                              {"max_retry_times": 3, "retry_backoff_millis": 10})
    proxy.plan("429:0.3", "503", "500")
    resp = predict(cluster.api, model_id)
    assert resp.status == 200, resp.body
    assert len(proxy.arrivals) == 4
    assert proxy.arrivals[1] - proxy.arrivals[0] >= 0.3  # waited as Retry-After asked
    # Out of retries: the last error comes through with its status and the provider's words.
    proxy.plan("503", "503", "503", "503")
    resp = predict(cluster.api, model_id)
    assert resp.status == 503 and resp.body["error"]["reason"] == 'Error from remote service: {"error": "injected 503"}'
    cluster.api.post(f"{ML}/models/{model_id}/_undeploy")


def test_other_client_errors_are_not_retried(cluster, infinity, proxy):
    model_id = deployed_model(cluster.api, proxy, infinity.api_key, {"max_retry_times": 3})
    proxy.plan("400")
    resp = predict(cluster.api, model_id)
    assert resp.status == 400 and len(proxy.arrivals) == 1
    assert resp.body["error"]["reason"].startswith("Error from remote service: ")
    cluster.api.post(f"{ML}/models/{model_id}/_undeploy")


def test_a_slow_reply_is_cut_and_a_reset_connection_retried(cluster, infinity, proxy):
    model_id = deployed_model(cluster.api, proxy, infinity.api_key,
                              {"read_timeout": 1, "max_retry_times": 1, "retry_backoff_millis": 10})
    proxy.plan("slow:5", "slow:5")
    resp = predict(cluster.api, model_id)
    assert resp.status == 500 and resp.body["error"]["reason"].startswith("Error communicating with remote model")
    proxy.plan("reset")
    resp = predict(cluster.api, model_id)
    assert resp.status == 200, resp.body
    assert len(proxy.arrivals) == 2
    cluster.api.post(f"{ML}/models/{model_id}/_undeploy")


def test_a_burst_through_few_connections_all_completes(cluster, infinity, proxy):
    model_id = deployed_model(cluster.api, proxy, infinity.api_key, {"max_connection": 4})
    # The slow replies of an earlier test may still be sleeping in the proxy (their callers gave up).
    wait_for(lambda: proxy.in_flight == 0, 15, 0.05, "the proxy to be idle")
    proxy.plan()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda i: predict(cluster.api, model_id, f"text {i}").status, range(1000)))
    assert all(status in (200, 429) for status in statuses), sorted(set(statuses))
    assert statuses.count(200) >= 900
    # Each node kept to its connector's max_connection.
    assert proxy.most_in_flight <= 4 * len(cluster.nodes)
    cluster.api.post(f"{ML}/models/{model_id}/_undeploy")


def test_an_aws_sigv4_connector_signs_each_request(cluster, proxy):
    import hashlib

    connector = {
        "protocol": "aws_sigv4", "parameters": {"region": "us-east-1", "service_name": "bedrock"},
        "credential": {"access_key": "AKIDEXAMPLE", "secret_key": "wJalrXUtnFEMI", "session_token": "TOKEN"},
        "actions": [{"action_type": "predict", "method": "POST", "url": f"{proxy.url}/model/titan/invoke",
                     "headers": {"content-type": "application/json", "x-amz-content-sha256": "required"},
                     "request_body": '{ "inputText": "${parameters.inputText}" }',
                     "pre_process_function": "connector.pre_process.bedrock.embedding",
                     "post_process_function": "connector.post_process.bedrock.embedding"}]}
    resp = cluster.api.post(f"{ML}/models/_register?deploy=true", {"name": "bedrock", "function_name": "remote",
                                                                   "connector": connector})
    model_id = resp.body["model_id"]
    wait_for(lambda: cluster.api.get(f"{ML}/models/{model_id}").body["model_state"] == "DEPLOYED", 60, 0.1,
             "the deploy")
    proxy.plan('answer:{"embedding": [0.5, 0.25]}')
    resp = predict(cluster.api, model_id, "sign me")
    assert resp.status == 200, resp.body
    assert resp.body["inference_results"][0]["output"][0]["data"] == [0.5, 0.25]
    ((headers, body),) = proxy.seen
    assert body == b'{ "inputText": "sign me" }'
    authorization = headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/bedrock/aws4_request" in authorization and "Signature=" in authorization
    assert "host" in authorization and "x-amz-date" in authorization
    assert headers["X-Amz-Security-Token"] == "TOKEN" and headers["X-Amz-Date"].endswith("Z")
    assert headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert "wJalrXUtnFEMI" not in str(headers)
    cluster.api.post(f"{ML}/models/{model_id}/_undeploy")
