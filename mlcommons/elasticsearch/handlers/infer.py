"""POST /_ml/trained_models/<model or deployment id>/_infer."""
from __future__ import annotations

from aiohttp import web

from mlcommons.api.http import ELASTICSEARCH, read_json, respond
from mlcommons.core.serving.predict import NoRoute
from mlcommons.elasticsearch.deployments import parse_time
from mlcommons.elasticsearch.protocol import es_errors, param
from mlcommons.errors import BadRequest, MLError


@es_errors
async def infer(request: web.Request) -> web.Response:
    service = request.app[ELASTICSEARCH]
    ident = request.match_info["model_id"]
    body = await read_json(request, required=True)
    timeout = parse_time(param(request, None, "timeout", "10s"), "timeout")
    unit_id, es, asleep = await service.infer_target(ident)
    task = next(iter(es.get("inference_config") or {"text_embedding": {}}))
    texts = _texts(body, (es.get("input") or {}).get("field_names") or ["text_field"])
    try:
        overrides = (body.get("inference_config") or {}).get(task) or {}
        if task == "text_embedding":
            result = await service.infer(unit_id, "embed", texts, timeout, asleep=asleep)
            results = [{"predicted_value": row} for row in result.vectors]
        elif task == "text_expansion":
            maps = await service.infer(unit_id, "sparse", texts, timeout, asleep=asleep)
            results = [{"predicted_value": weights} for weights in maps]
        elif task == "text_similarity":
            query = overrides.get("text")
            if not isinstance(query, str) or not query:
                raise BadRequest("[text_similarity] requires [inference_config.text_similarity.text]: the text to "
                                 "compare the documents with", error_type="status_exception")
            scores = await service.infer(unit_id, "similarity", texts, timeout, query=query, asleep=asleep)
            results = [{"predicted_value": float(s)} for s in scores]
        else:
            raise BadRequest(f"_infer for [{task}] models is not supported", error_type="status_exception")
    except NoRoute:
        raise MLError(f"Trained model deployment [{unit_id}] is not allocated to any nodes", status=409,
                      error_type="status_exception") from None
    return respond({"inference_results": results})


def _texts(body: dict, fields: list[str]) -> list[str]:
    docs = body.get("docs")
    if not isinstance(docs, list) or not docs:
        raise BadRequest("Validation Failed: 1: at least one document is required;",
                         error_type="action_request_validation_exception")
    field = fields[0]
    texts = []
    for doc in docs:
        if not isinstance(doc, dict) or not isinstance(doc.get(field), str):
            raise BadRequest(f"Input field [{field}] does not exist in the source document",
                             error_type="status_exception")
        texts.append(doc[field])
    return texts


ROUTES = [
    ("POST", "/_ml/trained_models/{model_id}/_infer", infer),
    ("POST", "/_ml/trained_models/{model_id}/deployment/_infer", infer),
]
