"""schemathesis against a live stack: every operation of the OpenAPI description, loaded from the
stack's own GET /_plugins/_ml/openapi.json, gets generated requests; no answer may be a 5xx, and
every answer must be described (its status, its content type, its body's schema).

A private cluster (generated requests change settings and delete things) with one worker node,
security on, and something to hit: a tiny model registered and deployed through ML Commons, and
an Elasticsearch trained model (uploaded as Eland does) behind an inference endpoint. Requests go
as the admin, so every route does its work; a few more per operation go without credentials (401,
or the answer of a public route). Half the requests that name a model, an endpoint or a user in
their path (or a model in /v1/embeddings' body) name the live one, except for PUT and DELETE;
operations that stop or delete run after the others. Time values a request gives (``timeout``,
the waits of _cluster/health) are held to 2 s, so that no example waits half a minute on a
condition that will not come.

Examples are derandomized (the same each run) and bounded: EXAMPLES generated requests per
operation as the admin plus ANONYMOUS without credentials, over the 84 operations (schemathesis
sends fewer where an operation has fewer distinct inputs): about 1,600 requests, some 20 s on a
2-core machine. OPENAPI_EXAMPLES=200 OPENAPI_RANDOM=1 searches longer with fresh
examples.
"""
from __future__ import annotations

import base64
import os
import time

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mlcommons.elasticsearch.deployments import parse_time
from mlcommons.errors import BadRequest
from mlcommons.openapi.document import document
from mlcommons.openapi.handlers import PATH
from tests.integration.flows import deploy, register_url

EXAMPLES = int(os.environ.get("OPENAPI_EXAMPLES", "20"))
ANONYMOUS = 2
RANDOM = os.environ.get("OPENAPI_RANDOM") == "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
LONGEST_WAIT = 2.0  # seconds any time value of a request is held to
ADMIN_PASSWORD = "openapi-admin-1"
ADMIN = {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()}
ES_MODEL, ENDPOINT = "es-tiny", "es-embed"
ENV = {
    "MLCOMMONS_SECURITY_ENABLED": "true",
    "MLCOMMONS_ADMIN_PASSWORD": ADMIN_PASSWORD,
    # Nothing generated may reach outside: model URLs are file:// only, connectors loopback only.
    "MLCOMMONS_PLUGINS_ML_COMMONS_TRUSTED_URL_REGEX": r"^file://",
    "MLCOMMONS_PLUGINS_ML_COMMONS_TRUSTED_CONNECTOR_ENDPOINTS_REGEX": r'["^http://127\\.0\\.0\\.1:1/.*$"]',
    "MLCOMMONS_MLCOMMONS_UNDEPLOY_TIMEOUT_SECONDS": "3",
    "MLCOMMONS_MLCOMMONS_PREDICT_TIMEOUT_SECONDS": "5",
}


def _bounded(value):
    """A time value held to LONGEST_WAIT; one that does not parse is left to the server."""
    if not isinstance(value, str):
        return value
    try:
        return value if parse_time(value, "timeout") <= LONGEST_WAIT else f"{int(LONGEST_WAIT)}s"
    except (BadRequest, ValueError, OverflowError):
        return value


def _live_names(path: str, model_id: str) -> dict[str, str]:
    """The path parameters that name something live, for a path of the description."""
    if path.startswith("/_ml/"):
        return {"model_id": ES_MODEL}
    if path == "/_inference/{first}":
        return {"first": ENDPOINT}
    if path == "/_inference/{first}/{second}":
        return {"first": "text_embedding", "second": ENDPOINT}
    return {"model_id": model_id, "model": model_id, "model_ids": model_id}


def _adjust(case, model_id: str, use_live: bool) -> None:
    """Point the case at what is live (when drawn so) and hold its waits to LONGEST_WAIT."""
    params = case.path_parameters or {}
    if use_live and case.method.upper() not in ("DELETE", "PUT"):
        for name, value in _live_names(case.path, model_id).items():
            if name in params:
                params[name] = value
        if case.path == "/v1/embeddings" and isinstance(case.body, dict):
            case.body["model"] = model_id
    if params.get("name") == "admin":  # the test's own credentials stay as they are
        params["name"] = "admin-not"
    if case.query:
        if "timeout" in case.query:
            case.query["timeout"] = _bounded(case.query["timeout"])
        if case.path == "/_cluster/health" and ({"wait_for_status", "wait_for_nodes"} & set(case.query)):
            case.query["timeout"] = _bounded(case.query.get("timeout", "30s"))
    if isinstance(case.body, dict) and "timeout" in case.body:
        case.body["timeout"] = _bounded(case.body["timeout"])


def _describe(case, response) -> str:
    body = response.text[:300] if response is not None else ""
    status = response.status_code if response is not None else "no answer"
    return (f"{case.method.upper()} {case.formatted_path} query={case.query} body={str(case.body)[:300]!r}"
            f" -> {status} {body!r}")


def exercise(operation, base_url: str, model_id: str, failures: dict[str, list[str]], *, examples: int,
             headers: dict[str, str]) -> int:
    """Send up to ``examples`` generated requests for one operation; record what breaks the
    description (every operation's failures, not only the first operation's)."""
    label = operation.label
    sent = 0

    @settings(max_examples=examples, deadline=None, derandomize=not RANDOM, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(drawn=st.tuples(operation.as_strategy(), st.booleans()))
    def run(drawn):
        nonlocal sent
        case, use_live = drawn
        _adjust(case, model_id, use_live)
        response = None
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=60)
            sent += 1
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
            found = failures.setdefault(f"{label} ({'admin' if headers else 'anonymous'})", [])
            if len(found) < 3:
                found.append(f"{type(exc).__name__}: {str(exc)[:600]}\n    {_describe(case, response)}")

    run()
    return sent


def _order(operation) -> int:
    """Stops, undeploys and deletes after the rest, so that the rest find what is live."""
    if operation.method.upper() == "DELETE":
        return 2
    return 1 if any(word in operation.path for word in ("_stop", "_undeploy", "_unload")) else 0


def _elasticsearch_endpoint(cluster, tmp_path) -> None:
    """A trained model uploaded as Eland uploads it, behind an inference endpoint (its deployment)."""
    from elasticsearch import Elasticsearch

    from tests.elandkit import eland_model, upload_to_elasticsearch

    with Elasticsearch(cluster.api.base, basic_auth=("admin", ADMIN_PASSWORD), request_timeout=120) as es:
        upload_to_elasticsearch(es, ES_MODEL, eland_model(tmp_path / "eland", "text_embedding"))
    created = cluster.api.put(f"/_inference/text_embedding/{ENDPOINT}", {
        "service": "elasticsearch",
        "service_settings": {"model_id": ES_MODEL, "num_allocations": 1, "num_threads": 1}})
    assert created.status == 200, created.body


def test_schemathesis_finds_no_server_error_and_nothing_outside_the_description(make_cluster, tiny, tmp_path):
    started = time.monotonic()
    cluster = make_cluster(("node-a",), env=ENV)
    cluster.api.headers.update(ADMIN)
    model_id = register_url(cluster, *tiny)
    assert deploy(cluster, model_id)["state"] == "COMPLETED"
    _elasticsearch_endpoint(cluster, tmp_path)
    base_url = cluster.api.base

    schema = schemathesis.openapi.from_url(base_url + PATH)  # the document as the stack serves it
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the operation that serves the document it loaded: take it from the
    # same document loaded from the dict, so that every operation is exercised
    operations.append(schemathesis.openapi.from_dict(document()).find_operation_by_path("GET", PATH))
    operations.sort(key=_order)
    described = {f"{method.upper()} {path}" for path, item in document()["paths"].items() for method in item}
    assert sorted(operation.label for operation in operations) == sorted(described)
    failures: dict[str, list[str]] = {}
    sent = {}
    ready = time.monotonic()
    for operation in operations:
        sent[operation.label] = exercise(operation, base_url, model_id, failures, examples=EXAMPLES, headers=ADMIN)
        sent[operation.label] += exercise(operation, base_url, model_id, failures, examples=ANONYMOUS, headers={})
    report = "\n".join(f"{label}:\n  " + "\n  ".join(found) for label, found in sorted(failures.items()))
    assert not failures, f"{len(failures)} operations broke the description:\n{report}"
    assert all(count > 0 for count in sent.values()), [label for label, count in sent.items() if not count]
    # the stack still works: the model (undeployed by the generated _undeploy calls) deploys and predicts
    assert deploy(cluster, model_id)["state"] == "COMPLETED"
    resp = cluster.api.post(f"/_plugins/_ml/models/{model_id}/_predict", {"text_docs": ["still here"]})
    assert resp.status == 200, resp.body
    print(f"\n{sum(sent.values())} requests over {len(operations)} operations in {time.monotonic() - ready:.0f} s "
          f"({time.monotonic() - started:.0f} s with the cluster's start)")
