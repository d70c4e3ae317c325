"""Elasticsearch's trained models (/_ml/trained_models: create, get, delete, stats, deployments and
_infer) and inference endpoints (/_inference) (mlcommons/elasticsearch/handlers/).

Elasticsearch takes most parameters from the query string or the body alike; both with different
values is a 400. Every answer carries ``X-Elastic-Product: Elasticsearch``."""
from __future__ import annotations

from typing import Any

from mlcommons.elasticsearch.endpoints import TASK_TYPES
from mlcommons.openapi.parts import (
    ANY_OBJECT,
    BOOLEAN,
    FLOATS,
    INTEGER,
    NUMBER,
    STRING,
    STRINGS,
    array,
    enum,
    flag,
    json_body,
    obj,
    operation,
    path,
    query,
    ref,
)

BASE = "/_ml/trained_models"
TAG = "Elasticsearch trained models"
INFERENCE_TAG = "Elasticsearch inference"

MODEL_ID = path("model_id", "A trained model's id, or a deployment's id where a deployment is meant.")
MODEL_EXPRESSION = path("model_id", "A model id, a comma-separated list of them, or a wildcard expression.")
ALLOW_NO_MATCH = flag("allow_no_match", "Answer an empty list, not 404, when a wildcard matches nothing.")
TIME = {"type": "string", "description": "A time value: 30s, 500ms, 1m..."}
TIMEOUT = query("timeout", "How long to wait.", TIME)
TIME_OR_NUMBER = {"anyOf": [STRING, INTEGER]}
ACK = obj({"acknowledged": BOOLEAN}, ("acknowledged",))
PRODUCT = {"X-Elastic-Product": {"description": "Always Elasticsearch (elasticsearch-py checks it).",
                                 "schema": {"type": "string", "const": "Elasticsearch"}}}

ADAPTIVE = obj({"enabled": BOOLEAN, "min_number_of_allocations": INTEGER, "max_number_of_allocations": INTEGER})
START_FIELDS = {
    "cache_size": STRING, "deployment_id": STRING, "number_of_allocations": INTEGER,
    "priority": enum("normal", "low"), "queue_capacity": INTEGER, "threads_per_allocation": INTEGER,
    "timeout": TIME, "wait_for": enum("starting", "started", "fully_allocated"),
}

SCHEMAS: dict[str, Any] = {
    "TrainedModelConfig": obj({
        "model_id": STRING, "model_type": STRING, "description": STRING, "tags": STRINGS,
        "create_time": INTEGER, "created_by": STRING, "version": STRING, "input": obj({"field_names": STRINGS}),
        "inference_config": ANY_OBJECT, "metadata": ANY_OBJECT, "fully_defined": BOOLEAN,
        "location": ANY_OBJECT, "platform_architecture": STRING,
    }),
    "Assignment": obj({
        "task_parameters": obj({
            "model_id": STRING, "deployment_id": STRING, "model_bytes": INTEGER, "threads_per_allocation": INTEGER,
            "number_of_allocations": INTEGER, "queue_capacity": INTEGER, "cache_size": STRING,
            "priority": STRING}),
        "routing_table": obj(values=obj({"routing_state": STRING, "current_allocations": INTEGER,
                                         "target_allocations": INTEGER})),
        "assignment_state": enum("starting", "started", "stopping", "failed"),
        "start_time": STRING, "max_assigned_allocations": INTEGER, "adaptive_allocations": ADAPTIVE,
    }, ("task_parameters", "routing_table", "assignment_state")),
    "InferenceEndpoint": obj({
        "inference_id": STRING, "task_type": enum(*TASK_TYPES), "service": STRING,
        "service_settings": ANY_OBJECT, "task_settings": ANY_OBJECT, "chunking_settings": ANY_OBJECT,
    }, ("inference_id", "task_type", "service")),
}
ENDPOINT_BODY = obj({
    "service": STRING, "service_settings": obj({
        "model_id": STRING, "num_allocations": INTEGER, "num_threads": INTEGER, "deployment_id": STRING,
        "adaptive_allocations": ADAPTIVE}),
    "task_settings": ANY_OBJECT,
    "chunking_settings": obj({"strategy": enum("word", "sentence", "none"), "max_chunk_size": INTEGER,
                              "overlap": INTEGER, "sentence_overlap": INTEGER}),
}, ("service", "service_settings"))
EMBEDDING = {"anyOf": [FLOATS, obj(values=NUMBER)]}
INFERENCE_RESULTS = obj({
    "text_embedding": array({"anyOf": [obj({"embedding": FLOATS}), obj({"chunks": array(ANY_OBJECT)})]}),
    "sparse_embedding": array({"anyOf": [obj({"is_truncated": BOOLEAN, "embedding": obj(values=NUMBER)}),
                                         obj({"chunks": array(ANY_OBJECT)})]}),
    "rerank": array(obj({"index": INTEGER, "relevance_score": NUMBER, "text": STRING}, ("index", "relevance_score"))),
}, description="Keyed by the endpoint's task type; with chunked=true each input has its chunks, each with "
               "its character offsets and result.")


def _es(summary: str, **kw: Any) -> dict[str, Any]:
    op = operation(summary, **{"tag": TAG, **kw})
    for status, answer in op["responses"].items():
        if "$ref" not in answer:
            answer["headers"] = PRODUCT
    return op


def _paths() -> dict[str, dict[str, Any]]:
    stats = _es("Trained models' statistics and their deployments'", fails=(404,),
                ok=obj({"count": INTEGER, "trained_model_stats": array(obj({
                    "model_id": STRING, "model_size_stats": ANY_OBJECT, "pipeline_count": INTEGER,
                    "deployment_stats": ANY_OBJECT}, ("model_id",)))}, ("count", "trained_model_stats")),
                params=[ALLOW_NO_MATCH])
    get_models = _es("Trained models' configurations", fails=(404,),
                     ok=obj({"count": INTEGER, "trained_model_configs": array(ref("TrainedModelConfig"))},
                            ("count", "trained_model_configs")),
                     params=[ALLOW_NO_MATCH,
                             query("include", "definition_status adds fully_defined to each configuration."),
                             query("from", "Skip this many.", {"type": "integer", "minimum": 0}),
                             query("size", "Return at most this many (100 by default).",
                                   {"type": "integer", "minimum": 0})])
    start_params = [MODEL_ID] + [query(name, f"The deployment's {name} (or in the body).", schema)
                                 for name, schema in START_FIELDS.items()]
    infer = _es("Infer with a trained model's deployment", fails=(404, 408, 409, 429, 503),
                ok=obj({"inference_results": array(obj({"predicted_value": {"anyOf": [EMBEDDING, NUMBER]}}))},
                       ("inference_results",)),
                params=[MODEL_ID, TIMEOUT],
                body=json_body(obj({"docs": array(obj({"text_field": STRING}, values=STRING), minItems=1),
                                    "inference_config": ANY_OBJECT}, ("docs",))),
                description="Each doc holds the text in the model's input field (text_field by default). "
                            "A deployment scaled to zero is woken first.")
    inference_get = _es("Get inference endpoints", tag=INFERENCE_TAG, fails=(404,),
                        ok=obj({"endpoints": array(ref("InferenceEndpoint"))}, ("endpoints",)))
    first = path("first", "The endpoint's id; or, followed by the id, its task type: " + ", ".join(TASK_TYPES) + ".")
    second = path("second", "The endpoint's id.")
    with_type = path("first", "The task type: " + ", ".join(TASK_TYPES) + ".", enum(*TASK_TYPES))
    put = _es("Create an inference endpoint", tag=INFERENCE_TAG, fails=(404, 408, 409, 429, 503),
              ok=ref("InferenceEndpoint"), body=json_body(ENDPOINT_BODY), params=[TIMEOUT],
              description="The elasticsearch service starts a deployment named after the endpoint (unless "
                          "service_settings.deployment_id names one); external services are called once.")
    delete = _es("Delete an inference endpoint (and the deployment it started)", tag=INFERENCE_TAG, fails=(404, 409),
                 ok=obj({"acknowledged": BOOLEAN, "pipelines": STRINGS}, ("acknowledged", "pipelines")),
                 params=[flag("dry_run", "Only check that the endpoint exists.")])
    post = _es("Infer with an inference endpoint", tag=INFERENCE_TAG, fails=(404, 408, 409, 429, 503),
               ok=INFERENCE_RESULTS, params=[TIMEOUT, flag("chunked", "Cut each input with the endpoint's "
                                                                    "chunking settings (not for rerank).")],
               body=json_body(obj({"input": {"anyOf": [STRING, array(STRING, minItems=1)]}, "query": STRING,
                                   "input_type": STRING, "task_settings": ANY_OBJECT}, ("input",))))

    def at(op: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
        return {**op, "parameters": [*params, *op.get("parameters", [])]}

    return {
        f"{BASE}/_stats": {"get": stats},
        f"{BASE}/{{model_id}}/_stats": {"get": at(stats, MODEL_EXPRESSION)},
        BASE: {"get": get_models},
        f"{BASE}/{{model_id}}": {
            "get": at(get_models, MODEL_EXPRESSION),
            "put": _es("Create a trained model (its configuration; definition and vocabulary follow)", fails=(409,),
                       ok=ref("TrainedModelConfig"), params=[MODEL_ID],
                       body=json_body(obj({"model_type": STRING, "description": STRING, "tags": STRINGS,
                                           "input": obj({"field_names": STRINGS}), "inference_config": ANY_OBJECT,
                                           "metadata": ANY_OBJECT, "platform_architecture": STRING}))),
            "delete": _es("Delete a trained model", fails=(404, 409), ok=ACK,
                          params=[MODEL_ID, flag("force", "Stop its deployments first.")]),
        },
        f"{BASE}/{{model_id}}/definition/{{part}}": {"put": _es(
            "Upload one part of a trained model's definition", fails=(404, 409, 429), ok=ACK,
            params=[MODEL_ID, path("part", "The part's number, from 0.", {"type": "string", "pattern": "^[0-9]+$"})],
            body=json_body(obj({"definition": {"type": "string", "description": "base64"},
                                "total_definition_length": INTEGER, "total_parts": INTEGER},
                               ("definition", "total_definition_length", "total_parts"))))},
        f"{BASE}/{{model_id}}/vocabulary": {"put": _es(
            "Upload a trained model's vocabulary", fails=(404, 409), ok=ACK, params=[MODEL_ID],
            body=json_body(obj({"vocabulary": STRINGS, "merges": STRINGS, "scores": FLOATS}, ("vocabulary",))))},
        f"{BASE}/{{model_id}}/deployment/_start": {"post": _es(
            "Start a deployment", fails=(404, 408, 409, 429, 503), ok=obj({"assignment": ref("Assignment")},
                                                                          ("assignment",)),
            params=start_params, body=json_body(obj({**START_FIELDS, "adaptive_allocations": ADAPTIVE}),
                                                required=False))},
        f"{BASE}/{{model_id}}/deployment/_stop": {"post": _es(
            "Stop a model's deployments (or one deployment)", fails=(404, 409), ok=obj({"stopped": BOOLEAN},
                                                                                        ("stopped",)),
            params=[MODEL_EXPRESSION, ALLOW_NO_MATCH, flag("force", "Stop even when in use."),
                    flag("finish_pending_work", "Answer the queued requests first.")],
            body=json_body(obj({"allow_no_match": BOOLEAN, "force": BOOLEAN, "finish_pending_work": BOOLEAN}),
                           required=False))},
        f"{BASE}/{{model_id}}/deployment/_update": {"post": _es(
            "Change a deployment's allocations", fails=(404, 409), ok=obj({"assignment": ref("Assignment")},
                                                                         ("assignment",)),
            params=[MODEL_ID, query("number_of_allocations", "The new count (or in the body).", INTEGER)],
            body=json_body(obj({"number_of_allocations": INTEGER, "adaptive_allocations": ADAPTIVE}),
                           required=False))},
        f"{BASE}/{{model_id}}/_infer": {"post": infer},
        f"{BASE}/{{model_id}}/deployment/_infer": {"post": {**infer, "summary": infer["summary"] + " (older path)"}},
        "/_inference": {"get": {**inference_get, "summary": "Get every inference endpoint"}},
        "/_inference/{first}": {
            "get": at(inference_get, path("first", "An endpoint's id, or a task type: every endpoint of it.")),
            "put": at(put, first), "delete": at(delete, first), "post": at(post, first),
        },
        "/_inference/{first}/{second}": {
            "get": at(inference_get, with_type, second), "put": at(put, with_type, second),
            "delete": at(delete, with_type, second), "post": at(post, with_type, second),
        },
    }


PATHS = _paths()
