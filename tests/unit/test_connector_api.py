"""The connectors API in process (aiohttp's test client on the real app, a real Redis): what a
client sees on create, get, search, update and delete, that no credential is ever shown or stored
in clear, and the refusals while models use a connector."""
from __future__ import annotations

from mlcommons.store import keys as K
from tests.unit.inprocess import expect_error

ML = "/_plugins/_ml"
SECRET = "sk-the-real-secret-4242"
CONNECTOR = {
    "name": "OpenAI embeddings", "description": "text-embedding-3-small", "version": 1, "protocol": "http",
    "parameters": {"model": "text-embedding-3-small", "dimensions": 256},
    "credential": {"openAI_key": SECRET},
    "actions": [{"action_type": "predict", "method": "POST", "url": "https://api.openai.com/v1/embeddings",
                 "headers": {"Authorization": "Bearer ${credential.openAI_key}"},
                 "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }',
                 "pre_process_function": "connector.pre_process.openai.embedding",
                 "post_process_function": "connector.post_process.openai.embedding"}],
}


async def create(client, body=CONNECTOR) -> str:
    response = await client.post(f"{ML}/connectors/_create", json=body)
    assert response.status == 200, await response.text()
    return (await response.json())["connector_id"]


async def test_a_connector_round_trip_never_shows_its_credential(client, ctx):
    connector_id = await create(client)
    got = await (await client.get(f"{ML}/connectors/{connector_id}")).json()
    assert "credential" not in got and list(got)[:4] == ["name", "version", "description", "protocol"]
    assert got["parameters"] == {"model": "text-embedding-3-small", "dimensions": "256"}
    assert got["actions"][0]["action_type"] == "PREDICT"
    assert got["actions"][0]["headers"] == {"Authorization": "Bearer ${credential.openAI_key}"}
    found = await (await client.post(f"{ML}/connectors/_search", json={"query": {"match_all": {}}})).json()
    assert [h["_id"] for h in found["hits"]["hits"]] == [connector_id]
    assert "credential" not in found["hits"]["hits"][0]["_source"]
    # Nothing in Redis holds the key in clear.
    for key in ctx.redis.scan_iter(f"{ctx.keys.prefix}:*"):
        kind = ctx.redis.type(key)
        values = ctx.redis.hvals(key) if kind == b"hash" else [ctx.redis.get(key)] if kind == b"string" else []
        assert not any(SECRET.encode() in (v or b"") for v in values), key


async def test_an_update_merges_parameters_and_a_delete_removes(client):
    connector_id = await create(client)
    updated = await client.put(f"{ML}/connectors/{connector_id}",
                               json={"parameters": {"dimensions": 512}, "description": "wider"})
    assert (await updated.json())["result"] == "updated" and (await updated.json())["_version"] == 2
    got = await (await client.get(f"{ML}/connectors/{connector_id}")).json()
    assert got["parameters"] == {"model": "text-embedding-3-small", "dimensions": "512"}
    assert got["description"] == "wider"
    deleted = await client.delete(f"{ML}/connectors/{connector_id}")
    assert (await deleted.json())["result"] == "deleted"
    # as ML Commons answers (the connector is looked up, with its access, before the delete)
    await expect_error(await client.delete(f"{ML}/connectors/{connector_id}"), 404, "status_exception",
                       f"Failed to find connector with the provided connector id: {connector_id}")
    await expect_error(await client.get(f"{ML}/connectors/{connector_id}"), 404, "status_exception",
                       f"Failed to find connector with the provided connector id: {connector_id}")


async def test_models_using_a_connector_hold_it(client, ctx):
    connector_id = await create(client)
    ctx.docs.create(K.MODEL, "m-idle", {"name": "idle", "model_state": "REGISTERED", "connector_id": connector_id})
    ctx.docs.create(K.MODEL, "m-live", {"name": "live", "model_state": "DEPLOYED", "connector_id": connector_id,
                                        "current_worker_nodes": ["n1"]})
    await expect_error(await client.put(f"{ML}/connectors/{connector_id}", json={"description": "x"}), 400,
                       "illegal_argument_exception",
                       "1 models are still using this connector, please undeploy the models first: [m-live]")
    await expect_error(await client.delete(f"{ML}/connectors/{connector_id}"), 409, "status_exception",
                       "2 models are still using this connector, please delete or update the models first: "
                       "[m-idle, m-live]")
    assert (await client.get(f"{ML}/connectors/{connector_id}")).status == 200


async def test_refusals_write_nothing(client):
    await expect_error(await client.post(f"{ML}/connectors/_create", json={**CONNECTOR, "actions": [
        {**CONNECTOR["actions"][0], "url": "http://127.0.0.1:9999/embeddings"}]}), 400, "illegal_argument_exception",
        "Connector URL is not matching the trusted connector endpoint regex")
    await expect_error(await client.post(f"{ML}/connectors/_create", json={**CONNECTOR, "name": None}), 400,
                       "illegal_argument_exception", "Connector name is null")
    await expect_error(await client.put(f"{ML}/connectors/nope", json={"description": "x"}), 404,
                       "status_exception", "Failed to find connector with the provided connector id: nope")
    assert (await client.put("/_cluster/settings", json={"transient": {
        "plugins.ml_commons.remote_inference.enabled": False}})).status == 200
    await expect_error(await client.post(f"{ML}/connectors/_create", json=CONNECTOR), 400,
                       "illegal_argument_exception", "Remote Inference is currently disabled")
    found = await (await client.post(f"{ML}/connectors/_search", json={"query": {"match_all": {}}})).json()
    assert found["hits"]["total"]["value"] == 0


async def test_a_dry_run_checks_and_stores_nothing(client):
    reply = await (await client.post(f"{ML}/connectors/_create", json={**CONNECTOR, "dry_run": True})).json()
    assert reply == {"connector_id": "dryRunConnector"}
    found = await (await client.post(f"{ML}/connectors/_search", json={"query": {"match_all": {}}})).json()
    assert found["hits"]["total"]["value"] == 0
