"""Property-based fuzzing of every route of both dialects: whatever a client sends (any JSON body,
path parameter or query string), the API answers with a status below 500 or a deliberate error of
the dialect, within a deadline, and keeps answering.

The API runs in this process on the session's real Redis under a key prefix of its own, with no
worker node: the point is the parsing and validation in front of the core, which is where a
malformed request either gets its 4xx or finds a bug. Examples are derandomized, so CI sees the
same ones every run, and their number is bounded so the whole module stays well under a minute.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import threading
import uuid
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcommons.api.http import SERVICES
from mlcommons.stack.procutil import free_port

# Field names both dialects read, so that generated bodies reach past the "unknown field" checks.
FIELDS = [
    "name", "description", "version", "model_group_id", "model_format", "function_name", "algorithm",
    "model_config", "model_type", "embedding_dimension", "framework_type", "pooling_mode", "all_config",
    "normalize_result", "model_content_hash_value", "model_content_size_in_bytes", "total_chunks", "url",
    "is_enabled", "deploy_setting", "is_auto_deploy_enabled", "model_ttl_minutes", "rate_limiter", "limit",
    "unit", "node_ids", "model_ids", "text_docs", "return_number", "target_response", "query_text",
    "parameters", "input", "query", "size", "from", "sort", "_source", "match_all", "bool", "must",
    "should", "filter", "must_not", "term", "terms", "match", "wildcard", "prefix", "range", "exists",
    "ids", "value", "persistent", "transient", "plugins.ml_commons.max_model_on_node",
    "mlcommons.predict.queue_capacity", "inference_config", "text_embedding", "text_expansion",
    "text_similarity", "tokenization", "bert", "max_sequence_length", "truncate", "field_names",
    "definition", "total_definition_length", "total_parts", "vocabulary", "merges", "scores", "docs",
    "text_field", "inference_config", "number_of_allocations", "threads_per_allocation", "queue_capacity",
    "priority", "cache_size", "deployment_id", "wait_for", "adaptive_allocations", "enabled",
    "min_number_of_allocations", "max_number_of_allocations", "service", "service_settings", "model_id",
    "num_threads", "num_allocations", "task_settings", "chunking_settings", "strategy", "max_chunk_size",
    "overlap", "sentence_overlap", "input_type", "top_n", "return_documents", "tags", "metadata",
]
QUERY_PARAMS = ["deploy", "wait_for", "size", "from", "allow_no_match", "force", "finish_pending_work",
                "include", "deployment_id", "number_of_allocations", "queue_capacity", "priority",
                "threads_per_allocation", "cache_size", "return_number", "algorithm", "input_type"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "*", "**b", "１", "1_0", "1e400", "9" * 500, "30s", "-1", "true", "TORCH_SCRIPT",
                     "TEXT_EMBEDDING", "text_embedding", "started", "elasticsearch", "file:///etc/passwd",
                     "http://127.0.0.1:1/x", "a" * 64, "${parameters.x}"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), inner, max_size=6),
    ),
    max_leaves=30,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8),
    json_values,
)
segments = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20),
    st.sampled_from(["_all", "*", "a,b", "..", "%2e%2e", "_search", "-", "x" * 300, "0", "１"]),
)


def nested_bool(depth: int) -> bytes:
    """A query of ``depth`` nested bools, spelled out (json.dumps itself recurses)."""
    return b'{"query": ' + b'{"bool": {"must": [' * depth + b'{"match_all": {}}' + b"]}}" * depth + b"}"


@pytest.fixture(scope="module")
def api(redis_url):
    """The API alone, in a thread of this process, on its own key prefix."""
    from mlcommons.api.app import serve
    from mlcommons.core.context import Context
    from mlcommons.settings import static_values

    static = {**static_values(), "mlcommons.redis.key_prefix": f"fz{uuid.uuid4().hex[:8]}"}
    ctx = Context.connect(redis_url, static=static, auto_refresh=False)
    port = free_port()
    loop = asyncio.new_event_loop()
    ready, stopped = threading.Event(), threading.Event()
    box: dict = {}

    async def main():
        box["stop"] = asyncio.Event()
        started = asyncio.Event()
        task = asyncio.create_task(serve(ctx, "127.0.0.1", port, ready=started, stop=box["stop"]))
        await started.wait()
        ready.set()
        await task

    thread = threading.Thread(target=lambda: (loop.run_until_complete(main()), stopped.set()), daemon=True)
    thread.start()
    assert ready.wait(30), "the API did not start"
    routes = _routes(ctx)
    assert len(routes) > 40, routes
    yield port, routes
    loop.call_soon_threadsafe(box["stop"].set)
    thread.join(30)


def _routes(ctx) -> list[tuple[str, str]]:
    """(method, path template) of every route the API serves, read off the application."""
    from mlcommons.api.app import create_app

    app = create_app(ctx, watcher=False)
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path")
        if template and route.method in ("GET", "POST", "PUT", "DELETE"):
            out.add((route.method, template))
    app[SERVICES].executor.shutdown(wait=False)
    return sorted(out)


def send(port: int, method: str, path: str, body: bytes | None, timeout: float = 30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# Routes whose answers are not JSON: Prometheus' text format and the models page (and its
# redirect from /ui to /ui/). Their errors are still JSON in the dialect's shape.
TEXT_ROUTES = ("/_prometheus/metrics", "/ui")


def check(status: int, raw: bytes, what: str) -> None:
    assert status < 500 or status in (503, 504), f"{what} -> {status} {raw[:500]!r}"
    path = what.split(" ", 2)[1] if what.count(" ") >= 1 else what
    if status < 400 and path.split("?")[0].startswith(TEXT_ROUTES):
        return
    if raw:
        body = json.loads(raw)
        if status >= 400:
            error = body.get("error")
            assert error, f"{what}: no error body: {raw[:300]!r}"
            if isinstance(error, dict) and " /v1/" in f" {what}":  # OpenAI's shape
                assert error.get("type") and error.get("message") is not None, f"{what}: {raw[:300]!r}"
            elif isinstance(error, dict):
                assert error.get("type") and error.get("reason") is not None, f"{what}: {raw[:300]!r}"


def _fill(template: str, values: list[str]) -> str:
    names = re.findall(r"\{([^}]+)\}", template)
    path = template
    for name, value in zip(names, values):
        path = path.replace("{" + name + "}", quote(value, safe=""), 1)
    return path


# FUZZ_EXAMPLES=5000 FUZZ_RANDOM=1 fuzzes longer, with fresh examples, on a developer's machine.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 250)),
                derandomize=not os.environ.get("FUZZ_RANDOM"), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@FUZZ
@given(data=st.data())
def test_any_request_to_any_route_gets_a_dialect_answer(api, data):
    port, routes = api
    method, template = data.draw(st.sampled_from(routes), label="route")
    path = _fill(template, data.draw(st.lists(segments, min_size=3, max_size=3), label="path params"))
    params = data.draw(st.dictionaries(st.sampled_from(QUERY_PARAMS), st.text(max_size=12), max_size=3),
                       label="query")
    if params:
        path += "?" + urlencode(params)
    body = None
    if method in ("POST", "PUT"):
        value = data.draw(bodies, label="body")
        body = json.dumps(value).encode()
    status, raw = send(port, method, path, body)
    check(status, raw, f"{method} {path} {body[:300] if body else b''!r}")


# Valid requests of each kind, which the mutation test below breaks one place at a time: a
# generator that starts from nothing seldom gets past the first check of a route.
CONFIG = {"model_type": "bert", "embedding_dimension": 8, "framework_type": "sentence_transformers",
          "pooling_mode": "mean", "normalize_result": True, "all_config": "{}"}
SEEDS = [
    ("POST", "/_plugins/_ml/models/_register_meta", {
        "name": "fz", "version": "1", "model_format": "TORCH_SCRIPT", "model_group_id": "",
        "model_content_size_in_bytes": 100, "model_content_hash_value": "a" * 64, "model_config": CONFIG,
        "total_chunks": 2, "description": "d", "deploy_setting": {"is_auto_deploy_enabled": True,
                                                                  "model_ttl_minutes": 5},
        "rate_limiter": {"limit": "4", "unit": "MINUTES"}}),
    ("POST", "/_plugins/_ml/models/_register", {
        "name": "fz", "version": "1.0.0", "model_format": "TORCH_SCRIPT", "function_name": "TEXT_EMBEDDING",
        "model_content_hash_value": "a" * 64, "model_config": CONFIG, "url": "http://127.0.0.1:1/m.zip"}),
    ("POST", "/_plugins/_ml/models/_register", {"name": "huggingface/sentence-transformers/all-MiniLM-L6-v2",
                                                "version": "1.0.1", "model_format": "TORCH_SCRIPT"}),
    ("POST", "/_plugins/_ml/model_groups/_register", {"name": "fz-group", "description": "d"}),
    ("POST", "/_plugins/_ml/models/_search", {
        "query": {"bool": {"must": [{"match": {"name": {"query": "a b", "operator": "and"}}}],
                           "filter": [{"range": {"created_time": {"gte": 1}}}, {"terms": {"model_state": ["x"]}}],
                           "should": [{"wildcard": {"name": {"value": "*a?"}}}, {"prefix": {"name": "f"}}],
                           "must_not": [{"exists": {"field": "x"}}, {"ids": {"values": ["1"]}}],
                           "minimum_should_match": "50%"}},
        "size": 5, "from": 1, "sort": [{"created_time": {"order": "desc"}}], "_source": {"includes": ["name"]}}),
    ("POST", "/_plugins/_ml/tasks/_search", {"query": {"term": {"state": "COMPLETED"}}, "size": 1}),
    ("POST", "/_plugins/_ml/models/fz/_predict", {"text_docs": ["a", "b"], "return_number": True,
                                                  "target_response": ["sentence_embedding"]}),
    ("POST", "/_plugins/_ml/models/fz/_deploy", {"node_ids": ["a", "b"]}),
    ("POST", "/_plugins/_ml/models/_undeploy", {"model_ids": ["fz"], "node_ids": ["a"]}),
    ("PUT", "/_plugins/_ml/models/fz", {"name": "n", "description": "d", "is_enabled": False}),
    ("PUT", "/_cluster/settings", {"persistent": {"plugins.ml_commons.max_model_on_node": 5},
                                   "transient": {"plugins": {"ml_commons": {"only_run_on_ml_node": False}}}}),
    ("PUT", "/_ml/trained_models/fz-model", {
        "model_type": "pytorch", "description": "d", "tags": ["t"], "metadata": {"k": "v"},
        "inference_config": {"text_embedding": {"tokenization": {"bert": {"do_lower_case": True,
                                                                          "max_sequence_length": 64,
                                                                          "truncate": "first"}},
                                                "embedding_size": 8}},
        "input": {"field_names": ["text_field"]}}),
    ("PUT", "/_ml/trained_models/fz-model/definition/0", {"definition": "YWJj", "total_definition_length": 3,
                                                         "total_parts": 1}),
    ("PUT", "/_ml/trained_models/fz-model/vocabulary", {"vocabulary": ["[PAD]", "a"], "merges": ["a b"],
                                                        "scores": [1.0, 2.0]}),
    ("POST", "/_ml/trained_models/fz-model/deployment/_start", {
        "number_of_allocations": 1, "threads_per_allocation": 1, "queue_capacity": 10, "priority": "normal",
        "cache_size": "10mb", "timeout": "1s", "wait_for": "starting",
        "adaptive_allocations": {"enabled": False, "min_number_of_allocations": 0, "max_number_of_allocations": 2}}),
    ("POST", "/_ml/trained_models/fz-model/deployment/_update", {"number_of_allocations": 2}),
    ("POST", "/_ml/trained_models/fz-model/deployment/_stop", {"force": True, "allow_no_match": True}),
    ("POST", "/_ml/trained_models/fz-model/_infer", {"docs": [{"text_field": "a"}], "inference_config": {
        "text_embedding": {}}}),
    ("PUT", "/_inference/text_embedding/fz-endpoint", {
        "service": "elasticsearch", "service_settings": {"model_id": "fz-model", "num_allocations": 1,
                                                         "num_threads": 1},
        "task_settings": {}, "chunking_settings": {"strategy": "sentence", "max_chunk_size": 100,
                                                   "sentence_overlap": 1}}),
    ("POST", "/_inference/text_embedding/fz-endpoint", {"input": ["a", "b"], "input_type": "search"}),
    ("POST", "/_inference/rerank/fz-endpoint", {"input": ["a"], "query": "q", "task_settings": {
        "top_n": 1, "return_documents": True}}),
]


def _paths(value, here=()):
    """Every place in a JSON value, as a tuple of keys and indexes."""
    yield here
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, here + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, here + (i,))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]


@FUZZ
@given(data=st.data())
def test_valid_requests_broken_in_one_place_get_a_dialect_answer(api, data):
    port, _ = api
    method, path, body = data.draw(st.sampled_from(SEEDS), label="seed")
    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        where = data.draw(st.sampled_from(list(_paths(body))), label="where")
        body = _replace(body, where, data.draw(json_values, label="new value"))
    status, raw = send(port, method, path, json.dumps(body).encode())
    check(status, raw, f"{method} {path} {json.dumps(body)[:300]}")


@pytest.mark.parametrize("path", ["/_plugins/_ml/models/_search", "/_plugins/_ml/tasks/_search",
                                  "/_plugins/_ml/model_groups/_search"])
def test_deep_and_wide_bodies_are_refused_cleanly(api, path):
    port, _ = api
    for body in (nested_bool(300), nested_bool(5000)):
        status, raw = send(port, "POST", path, body)
        check(status, raw, path)
        assert status == 400
    # Nesting past what the JSON parser takes is a parse error too, not a crash.
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    status, raw = send(port, "POST", path, deep)
    check(status, raw, path)
    assert status == 400
    status, raw = send(port, "GET", "/_plugins/_ml/models/_search", None)
    assert status == 200


@pytest.mark.parametrize("method, path, body", [
    ("PUT", "/_ml/trained_models/fz-a", {"inference_config": {"text_embedding": [1]},
                                         "input": {"field_names": ["text_field"]}}),
    ("PUT", "/_ml/trained_models/fz-b", {"inference_config": {"text_embedding": {"tokenization": {"bert": [1]}}},
                                         "input": {"field_names": ["text_field"]}}),
    ("PUT", "/_ml/trained_models/fz-c", {"inference_config": {"text_embedding": {}}, "input": [1]}),
    ("PUT", "/_ml/trained_models/fz-d", {"inference_config": {"text_embedding": {}}, "input": {"field_names": ["t"]},
                                         "tags": "x" * 10, "metadata": [1] * 100_000}),
    ("POST", "/_plugins/_ml/models/_register", {"name": "x", "model_config": [1], "url": 5}),
    ("POST", "/_plugins/_ml/models/_register_meta", {"name": "x", "model_format": "TORCH_SCRIPT",
                                                     "model_content_hash_value": "a" * 64, "total_chunks": 1,
                                                     "model_config": {"model_type": "bert", "embedding_dimension": 3,
                                                                      "framework_type": "sentence_transformers",
                                                                      "pooling_mode": [1]}}),
    ("POST", "/_ml/trained_models/x/deployment/_start", {"adaptive_allocations": {"enabled": True,
                                                                                  "min_number_of_allocations": "１"}}),
    ("PUT", "/_inference/text_embedding/fz-e", {"service": "elasticsearch", "service_settings": [1]}),
    ("PUT", "/_inference/text_embedding/fz-f", {"service": "elasticsearch",
                                                "service_settings": {"num_allocations": 10**9, "num_threads": 1,
                                                                     "model_id": "x"}}),
    ("POST", "/_plugins/_ml/models/_search", {"query": {"terms": {"name": [[1]]}}}),
    ("POST", "/_plugins/_ml/models/_search", {"sort": [{"name": [1]}]}),
    ("PUT", "/_cluster/settings", {"persistent": [1]}),
    ("PUT", "/_cluster/settings", {"persistent": {"plugins": {"ml_commons": {"max_model_on_node": 10**30}}}}),
])
def test_malformed_shapes_found_by_hand(api, method, path, body):
    """Shapes a generator reaches only rarely: a list where an object belongs, numbers past any
    bound, Unicode digits."""
    port, _ = api
    status, raw = send(port, method, path, json.dumps(body).encode())
    check(status, raw, f"{method} {path}")
    assert 400 <= status < 500, raw[:300]
