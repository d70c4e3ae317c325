"""OpenSearch ML Commons under /_plugins/_ml: models, model groups, connectors, tasks, predict and
profile (mlcommons/opensearch/handlers/)."""
from __future__ import annotations

from typing import Any

from mlcommons.openapi.parts import (
    ANY_OBJECT,
    BOOLEAN,
    FLOATS,
    INTEGER,
    NULLABLE_STRING,
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
from mlcommons.types import FrameworkType, FunctionName, ModelFormat, ModelState, PoolingMode, TaskState, TaskType

ML = "/_plugins/_ml"
TAG = "OpenSearch ML Commons"

MODEL_ID = path("model_id", "A model's id.")
TASK_ID = path("task_id", "A task's id.")
GROUP_ID = path("group_id", "A model group's id.")
CONNECTOR_ID = path("connector_id", "A connector's id.")
NODE_IDS = {"node_ids": {**STRINGS, "description": "Worker node ids (a comma-separated string is taken too)."}}

SCHEMAS: dict[str, Any] = {
    "ModelConfig": obj({
        "model_type": STRING, "embedding_dimension": INTEGER,
        "framework_type": enum(*(f.value for f in FrameworkType)),
        "pooling_mode": enum(*(p.value for p in PoolingMode)),
        "normalize_result": BOOLEAN, "all_config": STRING,
    }),
    "Model": obj({
        "name": STRING, "model_group_id": NULLABLE_STRING, "algorithm": STRING, "model_version": STRING,
        "description": STRING, "model_format": NULLABLE_STRING,
        "model_state": enum(*(s.value for s in ModelState)),
        "model_content_size_in_bytes": INTEGER, "model_content_hash_value": STRING,
        "model_config": {"anyOf": [ref("ModelConfig"), {"type": "null"}]},
        "deploy_setting": ANY_OBJECT, "is_enabled": BOOLEAN, "rate_limiter": ANY_OBJECT,
        "created_time": INTEGER, "last_updated_time": INTEGER, "total_chunks": INTEGER,
        "planning_worker_node_count": INTEGER, "current_worker_node_count": INTEGER,
        "planning_worker_nodes": STRINGS, "current_worker_nodes": STRINGS, "is_hidden": BOOLEAN,
        "connector_id": STRING, "connector": ref("Connector"),
    }, description="A model document as ML Commons shows it (fields starting with _ are never shown)."),
    "Task": obj({
        "model_id": NULLABLE_STRING, "task_type": enum(*(t.value for t in TaskType)),
        "function_name": NULLABLE_STRING, "state": enum(*(s.value for s in TaskState)),
        "worker_node": STRINGS, "create_time": INTEGER, "last_update_time": INTEGER, "error": STRING,
        "is_async": BOOLEAN,
    }),
    "ModelGroup": obj({
        "name": STRING, "latest_version": INTEGER, "description": NULLABLE_STRING,
        "access": enum("public", "private", "restricted"), "backend_roles": STRINGS, "owner": ANY_OBJECT,
        "created_time": INTEGER, "last_updated_time": INTEGER,
    }),
    "Connector": obj({
        "name": STRING, "version": STRING, "description": STRING, "protocol": STRING,
        "parameters": ANY_OBJECT, "actions": array(ANY_OBJECT), "client_config": ANY_OBJECT,
        "created_time": INTEGER, "last_updated_time": INTEGER, "access": STRING, "backend_roles": STRINGS,
        "owner": ANY_OBJECT,
    }, description="A connector; its credential is never shown."),
    "WriteResponse": obj({
        "_index": STRING, "_id": STRING, "_version": INTEGER, "result": enum("created", "updated", "deleted"),
        "forced_refresh": BOOLEAN, "_shards": obj({"total": INTEGER, "successful": INTEGER, "failed": INTEGER}),
        "_seq_no": INTEGER, "_primary_term": INTEGER,
    }, ("_index", "_id", "_version", "result")),
    "SearchRequest": obj({
        "query": ANY_OBJECT, "size": INTEGER, "from": INTEGER, "sort": {},
        "_source": {}, "timeout": STRING,
    }, description="OpenSearch's search DSL over the documents' public fields: bool, term(s), match, "
                   "wildcard, prefix, range, exists, ids and match_all queries; 10,000 results at most."),
    "SearchResponse": obj({
        "took": INTEGER, "timed_out": BOOLEAN,
        "_shards": ANY_OBJECT,
        "hits": obj({
            "total": obj({"value": INTEGER, "relation": STRING}, ("value", "relation")),
            "max_score": {"type": ["number", "null"]},
            "hits": array(obj({"_index": STRING, "_id": STRING, "_score": {"type": ["number", "null"]},
                               "_source": ANY_OBJECT, "sort": array({})}, ("_index", "_id"))),
        }, ("total", "max_score", "hits")),
    }, ("took", "timed_out", "hits")),
    "TaskCreated": obj({"task_id": STRING, "task_type": STRING, "status": STRING, "model_id": STRING},
                       ("task_id", "status")),
    "Tensor": obj({
        "name": STRING, "data_type": STRING, "shape": array(INTEGER), "data": FLOATS,
        "byte_buffer": obj({"array": STRING, "order": STRING}, ("array", "order")),
        "dataAsMap": ANY_OBJECT,
    }, ("name",)),
    "PredictResponse": obj({
        "inference_results": array(obj({"output": array(ref("Tensor"))})),
    }, description="For models of this cluster: one result per text (empty when target_response leaves "
                   "the embedding out). A remote model answers what its connector's post-process makes."),
}

SEARCH = json_body(ref("SearchRequest"), required=False)
MODEL_FIELDS = {
    "name": STRING, "version": STRING, "description": STRING, "model_group_id": STRING,
    "function_name": enum(*(f.value for f in FunctionName)), "model_format": enum(*(f.value for f in ModelFormat)),
    "model_config": ref("ModelConfig"), "model_content_hash_value": STRING,
    "is_enabled": BOOLEAN, "deploy_setting": ANY_OBJECT, "rate_limiter": ANY_OBJECT,
}
REGISTER_BODY = obj({
    **MODEL_FIELDS, "url": STRING, "connector_id": STRING, "connector": ANY_OBJECT, "deploy_model": BOOLEAN,
    "model_content_size_in_bytes": INTEGER,
}, ("name",), description="A model from a URL (TorchScript or ONNX archive), one of the bundled pretrained "
                          "models (name and version only), or a remote model (connector_id or connector).")
META_BODY = obj({**MODEL_FIELDS, "model_content_size_in_bytes": INTEGER, "total_chunks": INTEGER},
                ("name", "model_content_hash_value", "total_chunks"))
PREDICT_BODY = obj({
    "text_docs": array(STRING, minItems=1), "query_text": STRING, "return_number": BOOLEAN, "return_bytes": BOOLEAN,
    "target_response": STRINGS, "target_response_positions": array(INTEGER), "parameters": ANY_OBJECT,
}, description="text_docs for a model of this cluster (and query_text for TEXT_SIMILARITY); "
               "parameters and/or text_docs for a remote model.")


def _paths() -> dict[str, dict[str, Any]]:
    write = ref("WriteResponse")
    model = operation("Register a model", tag=TAG, ok=ref("TaskCreated"), fails=(404, 409, 429),
                      body=json_body(REGISTER_BODY),
                      params=[flag("deploy", "Deploy the model once it is registered.")],
                      description="Starts a REGISTER_MODEL task; its model_id is in the task once known.")
    meta = operation("Register a model to upload in chunks", tag=TAG, fails=(404, 409, 429),
                     ok=obj({"model_id": STRING, "status": STRING}, ("model_id", "status")),
                     body=json_body(META_BODY))
    chunk = operation(
        "Upload one chunk of a model registered with _register_meta", tag=TAG, fails=(404, 409, 413, 429),
        params=[MODEL_ID, path("chunk_number", "The chunk's number, from 0.", {"type": "string", "pattern": "^[0-9]+$"})],
        body={"required": True, "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                     "format": "binary"}}},
              "description": "The chunk's raw bytes, whatever its Content-Type says."},
        ok=obj({"status": STRING}, ("status",)))
    deploy = operation("Deploy a model", tag=TAG, ok=ref("TaskCreated"), fails=(404, 409, 429, 503),
                       params=[MODEL_ID], body=json_body(obj(NODE_IDS), required=False))
    undeploy_reply = obj(values=obj({"stats": obj(values=STRING)}),
                         description="Per worker node, what it did with each model (\"undeployed\").")
    undeploy_one = operation("Undeploy a model", tag=TAG, ok=undeploy_reply, fails=(404, 409),
                             params=[MODEL_ID], body=json_body(obj(NODE_IDS), required=False))
    undeploy_many = operation("Undeploy models", tag=TAG, ok=undeploy_reply, fails=(404, 409),
                              body=json_body(obj({"model_ids": STRINGS, **NODE_IDS}, ("model_ids",))))
    predict_fails = (404, 408, 409, 429, 503)
    predict = operation("Predict with a model: embeddings, sparse weights or similarity scores", tag=TAG,
                        ok=ref("PredictResponse"), fails=predict_fails, params=[MODEL_ID],
                        body=json_body(PREDICT_BODY),
                        description="A model nobody serves is deployed first (auto-deploy); an Elasticsearch "
                                    "deployment scaled to zero is woken.")
    predict_algo = {**predict, "parameters": [
        path("algorithm", "The model's function name, in any case.",
             {"type": "string", "enum": [f.value.lower() for f in FunctionName] + [f.value for f in FunctionName]}),
        MODEL_ID]}
    profile_reply = obj({"nodes": obj(values=obj({"models": obj(values=ANY_OBJECT)})),
                         "models": obj(values=ANY_OBJECT)},
                        description="By node (view=node) or by model (view=model); {} when nothing is deployed.")
    profile_params = [query("view", "node (default) or model.", enum("node", "model"))]
    profile_body = json_body(obj({"model_ids": STRINGS, **NODE_IDS}), required=False)
    profile = operation("Where models run and what their predictions cost", tag=TAG, ok=profile_reply,
                        params=profile_params, body=profile_body)

    def search(what: str) -> dict[str, Any]:
        return operation(f"Search {what}", tag=TAG, ok=ref("SearchResponse"), body=SEARCH, fails=(408,))

    return {
        f"{ML}/connectors/_create": {"post": operation(
            "Create a connector", tag=TAG, fails=(404, 409),
            ok=obj({"connector_id": STRING}, ("connector_id",)),
            body=json_body(obj({"name": STRING, "version": STRING, "description": STRING, "protocol": STRING,
                                "parameters": ANY_OBJECT, "credential": obj(values=STRING),
                                "actions": array(ANY_OBJECT), "client_config": ANY_OBJECT,
                                "backend_roles": STRINGS, "access_mode": STRING},
                               ("name", "protocol", "actions"))))},
        f"{ML}/connectors/_search": {"get": search("connectors"), "post": search("connectors")},
        f"{ML}/connectors/{{connector_id}}": {
            "get": operation("Get a connector", tag=TAG, ok=ref("Connector"), fails=(404,), params=[CONNECTOR_ID]),
            "put": operation("Update a connector", tag=TAG, ok=write, fails=(404, 409), params=[CONNECTOR_ID],
                             body=json_body(ANY_OBJECT, required=False)),
            "delete": operation("Delete a connector", tag=TAG, ok=write, fails=(404, 409), params=[CONNECTOR_ID]),
        },
        f"{ML}/model_groups/_register": {"post": operation(
            "Register a model group", tag=TAG, fails=(409,),
            ok=obj({"model_group_id": STRING, "status": STRING}, ("model_group_id", "status")),
            body=json_body(obj({"name": STRING, "description": STRING, "access_mode": STRING,
                                "backend_roles": STRINGS, "add_all_backend_roles": BOOLEAN}, ("name",))))},
        f"{ML}/model_groups/_search": {"get": search("model groups"), "post": search("model groups")},
        f"{ML}/model_groups/{{group_id}}": {
            "get": operation("Get a model group", tag=TAG, ok=ref("ModelGroup"), fails=(404,), params=[GROUP_ID]),
            "put": operation("Update a model group", tag=TAG, ok=obj({"status": STRING}, ("status",)),
                             fails=(404, 409), params=[GROUP_ID],
                             body=json_body(obj({"name": STRING, "description": STRING, "access_mode": STRING,
                                                 "backend_roles": STRINGS}))),
            "delete": operation("Delete a model group (it must hold no model)", tag=TAG, ok=write, fails=(404, 409),
                                params=[GROUP_ID]),
        },
        f"{ML}/models/_register": {"post": model},
        f"{ML}/models/_upload": {"post": {**model, "summary": "Register a model (the older name of _register)"}},
        f"{ML}/models/_register_meta": {"post": meta},
        f"{ML}/models/meta": {"post": {**meta, "summary": "Register a model to upload in chunks (older name)"}},
        f"{ML}/models/_search": {"get": search("models"), "post": search("models")},
        f"{ML}/models/_undeploy": {"post": undeploy_many},
        f"{ML}/models/_unload": {"post": {**undeploy_many, "summary": "Undeploy models (older name)"}},
        f"{ML}/models/{{model_id}}/upload_chunk/{{chunk_number}}": {"post": chunk},
        f"{ML}/models/{{model_id}}/chunk/{{chunk_number}}": {"post": {**chunk, "summary": "Upload one chunk "
                                                                                          "(older name)"}},
        f"{ML}/models/{{model_id}}/_deploy": {"post": deploy},
        f"{ML}/models/{{model_id}}/_load": {"post": {**deploy, "summary": "Deploy a model (older name)"}},
        f"{ML}/models/{{model_id}}/_undeploy": {"post": undeploy_one},
        f"{ML}/models/{{model_id}}/_unload": {"post": {**undeploy_one, "summary": "Undeploy a model (older name)"}},
        f"{ML}/models/{{model_id}}": {
            "get": operation("Get a model", tag=TAG, ok=ref("Model"), fails=(404,), params=[MODEL_ID]),
            "put": operation("Update a model", tag=TAG, ok=write, fails=(404, 409), params=[MODEL_ID],
                             body=json_body(obj({k: MODEL_FIELDS[k] for k in (
                                 "name", "description", "model_group_id", "is_enabled", "deploy_setting",
                                 "rate_limiter", "model_config")}))),
            "delete": operation("Delete a model (it must not be deployed)", tag=TAG, ok=write, fails=(404, 409),
                                params=[MODEL_ID]),
        },
        f"{ML}/models/{{model_id}}/_predict": {"post": predict},
        f"{ML}/_predict/{{algorithm}}/{{model_id}}": {"post": predict_algo},
        f"{ML}/profile": {"get": profile},
        f"{ML}/profile/models": {"get": profile},
        f"{ML}/profile/models/{{model_ids}}": {"get": {
            **profile, "parameters": [path("model_ids", "Model ids, separated by commas."), *profile_params]}},
        f"{ML}/tasks/_search": {"get": search("tasks"), "post": search("tasks")},
        f"{ML}/tasks/{{task_id}}": {
            "get": operation("Get a task", tag=TAG, ok=ref("Task"), fails=(404,), params=[TASK_ID]),
            "delete": operation("Delete a task (a finished one)", tag=TAG, ok=ref("WriteResponse"), fails=(404, 409),
                                params=[TASK_ID]),
        },
    }


PATHS = _paths()
