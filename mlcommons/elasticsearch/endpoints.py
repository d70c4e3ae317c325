"""Elasticsearch inference endpoints (``_inference/<task_type>/<id>``) with the ``elasticsearch``
service: an endpoint names a model and how to serve it; creating one starts a deployment whose
deployment_id is the endpoint id (or reuses a given deployment), deleting it stops that
deployment. Endpoints are documents of their own index.
"""
from __future__ import annotations

from typing import Any

from mlcommons.core import limits
from mlcommons.core.context import Context
from mlcommons.core.models import records as models
from mlcommons.core.serving import undeploy as undeploys
from mlcommons.elasticsearch import chunking, deployments, services, trained_models
from mlcommons.errors import BadRequest, NotFound
from mlcommons.ids import now_ms
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx
from mlcommons.types import FunctionName

TASK_TYPES = ("text_embedding", "sparse_embedding", "rerank")
# The model functions each task type can run on.
TASK_FUNCTIONS = {"text_embedding": {FunctionName.TEXT_EMBEDDING.value},
                  "sparse_embedding": {FunctionName.SPARSE_ENCODING.value, FunctionName.SPARSE_TOKENIZE.value},
                  "rerank": {FunctionName.TEXT_SIMILARITY.value}}
TASK_SETTINGS = {"text_embedding": set(), "sparse_embedding": set(), "rerank": {"return_documents", "top_n"}}


def not_found(inference_id: str) -> NotFound:
    return NotFound(f"Inference endpoint not found [{inference_id}]", error_type="resource_not_found_exception")


def validation(*messages: str) -> BadRequest:
    err = trained_models.validation(*messages)
    err.error_type = "validation_exception"
    return err


def parse(inference_id: str, task_type: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """The endpoint to create, validated as Elasticsearch validates an ``elasticsearch`` service."""
    task_type = task_type or body.get("task_type")
    if task_type not in TASK_TYPES:
        raise BadRequest(f"Unknown task_type [{task_type}]; this service supports {', '.join(TASK_TYPES)}",
                         error_type="illegal_argument_exception")
    service = body.get("service")
    if service in services.SERVICES:
        return _external(inference_id, task_type, service, body)
    if service != "elasticsearch":
        raise BadRequest(f"Unknown service [{service}]; this cluster offers the services "
                         f"[{', '.join(('elasticsearch',) + services.SERVICES)}]", error_type="illegal_argument_exception")
    settings = body.get("service_settings")
    if not isinstance(settings, dict):
        raise validation("[service_settings] does not contain the required setting [service_settings]")
    errors = []
    model_id = settings.get("model_id")
    if not model_id and not settings.get("deployment_id"):
        errors.append("[service_settings] does not contain the required setting [model_id]")
    threads = settings.get("num_threads")
    if threads is None:
        errors.append("[service_settings] does not contain the required setting [num_threads]")
    elif not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        errors.append(f"[service_settings] Invalid value [{threads}]. [num_threads] must be a positive integer")
    allocations = settings.get("num_allocations")
    adaptive = settings.get("adaptive_allocations")
    if allocations is None and not (isinstance(adaptive, dict) and adaptive.get("enabled")) \
            and not settings.get("deployment_id"):
        errors.append("[service_settings] does not contain one of the required settings [num_allocations, "
                      "adaptive_allocations]")
    if allocations is not None and (not isinstance(allocations, int) or isinstance(allocations, bool)
                                    or allocations < 1):
        errors.append(f"[service_settings] Invalid value [{allocations}]. [num_allocations] must be a positive integer")
    task_settings = body.get("task_settings") or {}
    if not isinstance(task_settings, dict):
        errors.append("[task_settings] must be an object")
    else:
        unknown = sorted(set(task_settings) - TASK_SETTINGS[task_type])
        if unknown:
            errors.append(f"Configuration contains settings [{unknown}] unknown to the [elasticsearch] service")
        errors += check_task_settings(task_settings)
    if errors:
        raise validation(*errors)
    chunks = chunking.parse_chunking_settings(body["chunking_settings"]) if "chunking_settings" in body else None
    if chunks is None and task_type != "rerank":
        chunks = chunking.DEFAULT_CHUNKING_SETTINGS
    unknown = sorted(set(body) - {"service", "service_settings", "task_settings", "chunking_settings", "task_type"})
    if unknown:
        raise BadRequest(f"Model configuration contains settings [{unknown}] unknown to the [elasticsearch] service",
                         error_type="status_exception")
    service_settings = {k: v for k, v in (("num_allocations", allocations), ("num_threads", threads),
                                          ("model_id", model_id), ("deployment_id", settings.get("deployment_id")),
                                          ("adaptive_allocations", adaptive)) if v is not None}
    out = {"inference_id": inference_id, "task_type": task_type, "service": "elasticsearch",
           "service_settings": service_settings, "created_time": now_ms()}
    if task_settings:
        out["task_settings"] = task_settings
    if chunks is not None:
        out["chunking_settings"] = chunks.to_dict()
    return out


def _external(inference_id: str, task_type: str, service: str, body: dict[str, Any]) -> dict[str, Any]:
    """An endpoint of an external service; the connector that calls it rides along as
    ``_connector`` until the facade has made the endpoint's hidden remote model."""
    raw = body.get("service_settings")
    if not isinstance(raw, dict):
        raise validation("[service_settings] does not contain the required setting [service_settings]")
    unknown = sorted(set(body) - {"service", "service_settings", "task_settings", "chunking_settings", "task_type"})
    if unknown:
        raise BadRequest(f"Model configuration contains settings [{unknown}] unknown to the [{service}] service",
                         error_type="status_exception")
    shown, _, connector = services.parse(service, task_type, raw)
    task_settings = body.get("task_settings") or {}
    if not isinstance(task_settings, dict):
        raise validation("[task_settings] must be an object")
    limits.small_object(task_settings, "task_settings")
    errors = check_task_settings(task_settings)
    if errors:
        raise validation(*errors)
    chunks = chunking.parse_chunking_settings(body["chunking_settings"]) if "chunking_settings" in body \
        else None if task_type == "rerank" else chunking.DEFAULT_CHUNKING_SETTINGS
    out = {"inference_id": inference_id, "task_type": task_type, "service": service, "service_settings": shown,
           "created_time": now_ms(), "_connector": connector}
    if chunks is not None:
        out["chunking_settings"] = chunks.to_dict()
    if task_settings:
        out["task_settings"] = task_settings
    return out


def is_external(endpoint: dict[str, Any]) -> bool:
    return endpoint.get("service", "elasticsearch") != "elasticsearch"


def check_task_settings(task_settings: dict[str, Any]) -> list[str]:
    errors = []
    if "return_documents" in task_settings and not isinstance(task_settings["return_documents"], bool):
        errors.append("[task_settings] Invalid value. [return_documents] must be a boolean")
    top_n = task_settings.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        errors.append(f"[task_settings] Invalid value [{top_n}]. [top_n] must be a positive integer")
    return errors


def check_model(ctx: Context, endpoint: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The model the endpoint serves, checked against its task type; (model id, model doc)."""
    settings = endpoint["service_settings"]
    model_id = settings.get("model_id")
    if settings.get("deployment_id"):
        found = [d for d in deployments.find(ctx, settings["deployment_id"]) if d[1] == settings["deployment_id"]]
        if not found:
            raise BadRequest(f"Deployment [{settings['deployment_id']}] does not exist; start it first or give "
                             "[model_id] and [num_allocations]", error_type="status_exception")
        index, unit_id, doc = found[0]
        model_id = doc.get("model_id") if index == K.DEPLOYMENT else unit_id
        settings["model_id"] = model_id
    model = ctx.docs.get(K.MODEL, model_id)
    if model is None:
        raise BadRequest(f"Could not find trained model [{model_id}]", status=404,
                         error_type="resource_not_found_exception")
    if model.get("algorithm") not in TASK_FUNCTIONS[endpoint["task_type"]]:
        raise BadRequest(f"Model [{model_id}] ({model.get('algorithm')}) cannot serve a [{endpoint['task_type']}] "
                         "inference endpoint", error_type="status_exception")
    return model_id, model


def start_settings(endpoint: dict[str, Any]) -> dict[str, Any]:
    """The _start settings of the endpoint's own deployment."""
    s = endpoint["service_settings"]
    adaptive = s.get("adaptive_allocations")
    params = {"threads_per_allocation": s["num_threads"]}
    if s.get("num_allocations") is not None:
        params["number_of_allocations"] = s["num_allocations"]
    return deployments.validate_start(params, adaptive)


def create(ctx: Context, endpoint: dict[str, Any]) -> None:
    inference_id = endpoint["inference_id"]

    def tx_body(tx: Tx):
        if tx.get(K.ENDPOINT, inference_id) is not None:
            raise BadRequest(f"Inference endpoint [{inference_id}] already exists",
                             error_type="resource_already_exists_exception")
        if tx.get(K.DEPLOYMENT, inference_id) is not None and \
                endpoint["service_settings"].get("deployment_id") != inference_id:
            raise BadRequest(f"Inference endpoint IDs must be unique. Requested inference endpoint ID [{inference_id}] "
                             "matches existing trained model deployment ID but must not.",
                             error_type="status_exception")
        tx.put(K.ENDPOINT, inference_id, endpoint, created=endpoint["created_time"])

    ctx.docs.transact(tx_body)


def get(ctx: Context, inference_id: str, task_type: str | None = None) -> dict[str, Any]:
    endpoint = ctx.docs.get(K.ENDPOINT, inference_id)
    if endpoint is None or (task_type and endpoint["task_type"] != task_type):
        raise not_found(inference_id)
    return endpoint


def listing(ctx: Context, inference_id: str | None, task_type: str | None) -> list[dict[str, Any]]:
    if inference_id and inference_id not in ("_all", "*"):
        return [view(get(ctx, inference_id, task_type))]
    return [view(e) for _, e in sorted(ctx.docs.all(K.ENDPOINT), key=lambda x: x[0])
            if not task_type or e["task_type"] == task_type]


def view(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if k not in ("created_time",) and not k.startswith("_")}


def record_service_settings(ctx: Context, inference_id: str, service_settings: dict[str, Any]) -> None:
    """Keep what the first inference of a new endpoint found out (its embedding size)."""
    ctx.docs.update(K.ENDPOINT, inference_id, {"service_settings": service_settings})


def forget(ctx: Context, inference_id: str) -> None:
    """Drop an endpoint document (an endpoint whose creation failed midway)."""
    ctx.docs.delete(K.ENDPOINT, inference_id)


def owned_deployment(endpoint: dict[str, Any]) -> str | None:
    """The deployment the endpoint started (and stops when deleted); None when it reuses one or
    calls an external service."""
    if is_external(endpoint):
        return None
    return None if endpoint["service_settings"].get("deployment_id") else endpoint["inference_id"]


def serving_unit(endpoint: dict[str, Any]) -> str:
    return deployments.endpoint_unit(endpoint["inference_id"], endpoint)


def delete(ctx: Context, inference_id: str, task_type: str | None) -> dict[str, Any]:
    endpoint = get(ctx, inference_id, task_type)
    owned = owned_deployment(endpoint)
    if owned and deployments.find(ctx, owned):
        deployments.stop_unit(ctx, owned, force=True)
    if is_external(endpoint):
        forget_external(ctx, inference_id)
    ctx.docs.delete(K.ENDPOINT, inference_id)
    return {"acknowledged": True, "pipelines": []}


def forget_external(ctx: Context, inference_id: str) -> None:
    """Undeploy and delete the hidden remote model of an external service's endpoint."""
    model = ctx.docs.get(K.MODEL, inference_id)
    if model is None or not (model.get("connector") or {}).get("_es_service"):
        return
    undeploys.undeploy(ctx, [inference_id])
    models.delete(ctx, inference_id)
