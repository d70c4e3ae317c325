"""The HTTP handlers in process: aiohttp's test client (under pytest-asyncio) against the real app
on the tests' Redis, with no worker node. What a client sees when its request is refused before
any node is involved: the dialect's error body and status, and that the facade renders the core's
documents the way each dialect does."""
from __future__ import annotations

from tests.unit.inprocess import expect_error

ES = {"Accept": "application/vnd.elasticsearch+json; compatible-with=8"}


async def test_root_answers_each_dialect_in_its_own_shape(client):
    opensearch = await (await client.get("/")).json()
    assert opensearch["version"]["distribution"] == "opensearch"
    elasticsearch = await (await client.get("/", headers=ES)).json()
    assert elasticsearch["tagline"] == "You Know, for Search" and elasticsearch["cluster_uuid"] == opensearch[
        "cluster_uuid"]


async def test_a_model_group_round_trip_is_rendered_as_opensearch_does(client):
    created = await (await client.post("/_plugins/_ml/model_groups/_register", json={"name": "g1"})).json()
    assert created["status"] == "CREATED"
    group_id = created["model_group_id"]
    got = await (await client.get(f"/_plugins/_ml/model_groups/{group_id}")).json()
    assert list(got)[:2] == ["name", "latest_version"] and got["name"] == "g1" and "_version" not in got
    found = await (await client.post("/_plugins/_ml/model_groups/_search",
                                     json={"query": {"term": {"name": "g1"}}})).json()
    assert found["hits"]["total"]["value"] == 1 and found["hits"]["hits"][0]["_id"] == group_id
    deleted = await (await client.delete(f"/_plugins/_ml/model_groups/{group_id}")).json()
    assert deleted["result"] == "deleted" and deleted["_index"] == ".plugins-ml-model-group"


async def test_unknown_ids_are_404_in_the_opensearch_body(client):
    await expect_error(await client.get("/_plugins/_ml/tasks/nope"), 404, "status_exception", "Failed to find task")
    await expect_error(await client.post("/_plugins/_ml/models/nope/_predict", json={"text_docs": ["a"]}), 404,
                       "status_exception", "Failed to find model")


async def test_a_register_without_a_name_is_400_and_writes_nothing(client):
    await expect_error(await client.post("/_plugins/_ml/models/_register", json={"model_format": "TORCH_SCRIPT"}),
                       400, "illegal_argument_exception", "name")
    found = await (await client.post("/_plugins/_ml/models/_search", json={"query": {"match_all": {}}})).json()
    assert found["hits"]["total"]["value"] == 0


async def test_elasticsearch_refusals_carry_elasticsearch_types(client):
    await expect_error(await client.get("/_ml/trained_models/nope/_stats?allow_no_match=false", headers=ES), 404,
                       "resource_not_found_exception", "nope")
    await expect_error(await client.post("/_ml/trained_models/m/deployment/_start?threads_per_allocation=3",
                                         headers=ES), 400, "action_request_validation_exception",
                       "power of 2")
    await expect_error(await client.put("/_inference/nope_type/x", json={}, headers=ES), 400,
                       "illegal_argument_exception", "Unknown task_type")
