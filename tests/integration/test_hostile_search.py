"""Hostile searches against a real stack (issue 9, items 3 and 4): a wildcard that hung the API, a
bool nested past Python's recursion limit, a result window and a sort that OpenSearch refuses.
Each must be answered (hits or OpenSearch's 400), and the API must answer the next request."""
from __future__ import annotations

import pytest

from tests.harness import wait_for
from tests.integration.flows import ML, unique

SEARCHES = [f"{ML}/models/_search", f"{ML}/tasks/_search", f"{ML}/model_groups/_search"]


def still_answers(cluster) -> None:
    resp = cluster.api.get(f"{ML}/models/_search", {"query": {"match_all": {}}, "size": 1}, timeout=30)
    assert resp.status == 200, resp.body


def assert_400(resp, reason: str, error_type: str) -> None:
    assert resp.status == 400, resp.body
    assert resp.body["status"] == 400
    assert resp.error["type"] == error_type and resp.error["reason"] == reason
    assert resp.error["root_cause"] == [{"type": error_type, "reason": reason}]


def nested_bool(depth: int) -> dict:
    query: dict = {"match_all": {}}
    for _ in range(depth):
        query = {"bool": {"must": [query]}}
    return {"query": query}


@pytest.fixture(scope="module")
def model_name(cluster, tiny) -> str:
    """A model document of our own (registered from its metadata: no upload needed)."""
    _, info = tiny
    name = unique("hostile-search") + "-b"
    resp = cluster.api.post(f"{ML}/models/_register_meta", {
        "name": name, "model_format": "TORCH_SCRIPT", "model_content_hash_value": "a" * 64,
        "model_config": info["model_config"], "total_chunks": 1})
    assert resp.status == 200, resp.body
    return name


def test_wildcard_with_5000_stars_is_answered_with_its_hits(cluster, model_name):
    """The probe's repro hung the event loop, every route and the watcher for good."""
    token = model_name.split("-")[2]  # the unique part of the name
    body = {"query": {"wildcard": {"name": {"value": "*" * 5000 + token + "*b"}}}, "_source": ["name"]}
    resp = cluster.api.post(f"{ML}/models/_search", body, timeout=30)
    assert resp.status == 200, resp.body
    assert resp.body["timed_out"] is False
    assert [hit["_source"]["name"] for hit in resp.body["hits"]["hits"]] == [model_name]
    body["query"]["wildcard"]["name"]["value"] = "*" * 5000 + token + "*c"
    resp = cluster.api.post(f"{ML}/models/_search", body, timeout=30)
    assert resp.status == 200 and resp.body["hits"]["hits"] == [], resp.body
    # The probe's own body, as it sent it, over every model there is.
    resp = cluster.api.post(f"{ML}/models/_search", {"query": {"wildcard": {"name": {"value": "*" * 5000 + "b"}}},
                                                      "size": 10_000}, timeout=30)
    assert resp.status == 200, resp.body
    assert model_name in [hit["_source"]["name"] for hit in resp.body["hits"]["hits"]]
    assert all(hit["_source"]["name"].endswith("b") for hit in resp.body["hits"]["hits"])
    still_answers(cluster)


def test_pattern_longer_than_a_lucene_term_is_a_400(cluster):
    resp = cluster.api.post(f"{ML}/models/_search", {"query": {"wildcard": {"name": "*?" * 20_000}}}, timeout=30)
    assert_400(resp, "The length of the pattern [40000] used in [wildcard] has exceeded the allowed maximum "
                     "of [32766] bytes", "illegal_argument_exception")
    still_answers(cluster)


@pytest.mark.parametrize("path", SEARCHES)
def test_bool_nested_300_deep_is_a_400(cluster, path):
    """It raised RecursionError: a 500."""
    resp = cluster.api.post(path, nested_bool(300), timeout=30)
    assert_400(resp, "The nested depth of the query exceeds the maximum nested depth for bool queries set in "
                     "[indices.query.bool.max_nested_depth]", "illegal_argument_exception")
    still_answers(cluster)


@pytest.mark.parametrize("path", SEARCHES)
def test_size_above_the_result_window_is_a_400(cluster, path):
    resp = cluster.api.post(path, {"size": 10_001}, timeout=30)
    assert_400(resp, "Result window is too large, from + size must be less than or equal to: [10000] but was "
                     "[10001]. See the scroll api for a more efficient way to request large data sets. This "
                     "limit can be set by changing the [index.max_result_window] index level setting.",
               "illegal_argument_exception")
    assert cluster.api.post(path, {"size": 10_000, "_source": False}, timeout=30).status == 200
    still_answers(cluster)


@pytest.mark.parametrize("path", SEARCHES)
def test_sort_on_an_unknown_field_is_a_400(cluster, path):
    resp = cluster.api.post(path, {"sort": [{"no_such_field": {"order": "asc"}}]}, timeout=30)
    assert_400(resp, "No mapping found for [no_such_field] in order to sort on", "query_shard_exception")
    resp = cluster.api.post(path, {"sort": [{"no_such_field": {"order": "asc", "unmapped_type": "long"}}]},
                            timeout=30)
    assert resp.status == 200, resp.body
    still_answers(cluster)


@pytest.mark.parametrize("path, field", [(SEARCHES[0], "last_deployed_time"), (SEARCHES[0], "name.keyword"),
                                         (SEARCHES[1], "create_time"), (SEARCHES[2], "latest_version")])
def test_sort_on_mapped_fields(cluster, model_name, path, field):
    """Fields of ML Commons' mappings sort whether or not a document holds one yet."""
    resp = cluster.api.post(path, {"sort": [{field: "desc"}]}, timeout=30)
    assert resp.status == 200, resp.body


def test_a_search_past_its_timeout_answers_timed_out(cluster, model_name):
    resp = cluster.api.post(f"{ML}/models/_search", {"timeout": "0ms"}, timeout=30)
    assert resp.status == 200, resp.body
    assert resp.body["timed_out"] is True and resp.body["hits"]["hits"] == []
    resp = cluster.api.post(f"{ML}/models/_search", {"timeout": "5"}, timeout=30)
    assert_400(resp, "failed to parse setting [timeout] with value [5] as a time value: unit is missing or "
                     "unrecognized", "illegal_argument_exception")
    still_answers(cluster)


def test_the_time_budget_is_a_dynamic_setting(cluster, model_name):
    def search(body):
        resp = cluster.api.post(f"{ML}/models/_search", body, timeout=30)
        assert resp.status == 200, resp.body
        return resp.body

    with cluster.settings({"mlcommons.search.timeout_seconds": 0}):
        # The API reads cluster settings on its own schedule: wait for it to see the change.
        wait_for(lambda: search({"query": {"match_all": {}}})["timed_out"], 10, message="a budget of 0 s")
        # A body timeout cannot lengthen the server's budget.
        assert search({"timeout": "1m"})["timed_out"] is True
    found = wait_for(lambda: (body := search({"query": {"term": {"name": model_name}}}))["timed_out"] is False
                     and body, 10, message="the default budget back")
    assert found["hits"]["total"]["value"] == 1
