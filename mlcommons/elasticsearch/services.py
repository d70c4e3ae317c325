"""Elasticsearch's external inference services: ``openai``, ``hugging_face``, ``cohere`` and
``custom`` endpoints for ``text_embedding``, and ``cohere`` for ``rerank``.

An endpoint of such a service is served like an ML Commons remote model: its settings become a
connector (URL, headers with the secret, request template, reply path), kept sealed in a hidden
remote model whose id is the endpoint's id, which is deployed when the endpoint is created and
undeployed when it is deleted. The endpoint document holds only what GET shows: never a secret.
Settings, defaults and words follow Elasticsearch's services (x-pack/plugin/inference).
"""
from __future__ import annotations

from typing import Any

from mlcommons.core import limits
from mlcommons.errors import BadRequest

SERVICES = ("openai", "hugging_face", "cohere", "custom")
OPENAI_URL = "https://api.openai.com/v1/embeddings"
COHERE_URL = "https://api.cohere.com/v1/embed"
COHERE_RERANK_URL = "https://api.cohere.com/v1/rerank"
TASK_TYPES = {"openai": ("text_embedding",), "hugging_face": ("text_embedding",),
              "cohere": ("text_embedding", "rerank"), "custom": ("text_embedding",)}
# Elasticsearch's input types as Cohere names them (CohereEmbeddingsTaskSettings).
COHERE_INPUT_TYPES = {"search": "search_query", "ingest": "search_document", "classification": "classification",
                      "clustering": "clustering"}
DEFAULT_RATE = {"openai": 3000, "hugging_face": 3000, "cohere": 10000, "custom": 10000}
# As Elasticsearch retries a provider (429, 500, 503; its exponential back-off from 1 s).
CLIENT_CONFIG = {"max_connection": 64, "connection_timeout": 30, "read_timeout": 30, "max_retry_times": -1,
                 "retry_timeout_seconds": 30, "retry_backoff_millis": 1000,
                 "retry_backoff_policy": "exponential_equal_jitter"}


def _missing(field: str, scope: str = "service_settings") -> str:
    return f"[{scope}] does not contain the required setting [{field}]"


def _string(settings: dict, field: str, errors: list[str], *, required: bool = False, limit: int = 8192
            ) -> str | None:
    value = settings.get(field)
    if value is None:
        if required:
            errors.append(_missing(field))
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        errors.append(f"[service_settings] Invalid value [{str(value)[:100]}] for [{field}]")
        return None
    return value


def _positive(settings: dict, field: str, errors: list[str]) -> int | None:
    value = settings.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1_000_000:
        errors.append(f"[service_settings] Invalid value [{value}]. [{field}] must be a positive integer")
        return None
    return value


def parse(service: str, task_type: str, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict]:
    """(the service settings GET shows, the secrets, the connector that calls the provider), or a
    400 listing every problem as Elasticsearch does."""
    if task_type not in TASK_TYPES[service]:
        raise BadRequest(f"The [{service}] service does not support task type [{task_type}]",
                         error_type="status_exception")
    limits.small_object(raw, "service_settings")
    errors: list[str] = []
    shown: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    rate = raw.get("rate_limit") or {}
    per_minute = rate.get("requests_per_minute", DEFAULT_RATE[service]) if isinstance(rate, dict) else None
    if not isinstance(per_minute, int) or isinstance(per_minute, bool) or not 0 < per_minute <= 10_000_000:
        errors.append("[rate_limit] [requests_per_minute] must be a positive integer")
    headers: dict[str, str] = {}
    if service == "openai":
        key = _string(raw, "api_key", errors, required=True)
        model = _string(raw, "model_id", errors, required=True, limit=256)
        url = _string(raw, "url", errors) or OPENAI_URL
        organization = _string(raw, "organization_id", errors, limit=256)
        dimensions = _positive(raw, "dimensions", errors)
        secrets = {"api_key": key or ""}
        headers = {"Authorization": "Bearer ${credential.api_key}"}
        if organization:
            headers["OpenAI-Organization"] = organization
        body = '{"input": ${parameters.input}, "model": "${parameters.model}"' + (
            ', "dimensions": ${parameters.dimensions}' if dimensions else "") + "}"
        parameters = {"model": model or "", **({"dimensions": str(dimensions)} if dimensions else {})}
        post, path = "connector.post_process.openai.embedding", None
        shown = {"model_id": model, "url": url, **({"organization_id": organization} if organization else {}),
                 **({"dimensions": dimensions} if dimensions else {})}
    elif service == "hugging_face":
        key = _string(raw, "api_key", errors, required=True)
        url = _string(raw, "url", errors, required=True)
        secrets = {"api_key": key or ""}
        headers = {"Authorization": "Bearer ${credential.api_key}"}
        body, parameters = '{"inputs": ${parameters.input}}', {}
        post, path = None, None  # replies [[...]] or {"embeddings": [[...]]}: read below
        shown = {"url": url}
    elif service == "cohere" and task_type == "rerank":
        key = _string(raw, "api_key", errors, required=True)
        model = _string(raw, "model_id", errors, limit=256)
        url = _string(raw, "url", errors) or COHERE_RERANK_URL
        secrets = {"api_key": key or ""}
        headers = {"Authorization": "Bearer ${credential.api_key}"}
        body = ('{"query": "${parameters.query}", "documents": ${parameters.documents}, "top_n": ${parameters.top_n}, '
                '"return_documents": false' + (', "model": "${parameters.model}"' if model else "") + "}")
        parameters = {"model": model} if model else {}
        post, path = "connector.post_process.cohere.rerank", None
        shown = {"url": url, **({"model_id": model} if model else {})}
    elif service == "cohere":
        key = _string(raw, "api_key", errors, required=True)
        model = _string(raw, "model_id", errors, limit=256)
        url = _string(raw, "url", errors) or COHERE_URL
        embedding_type = raw.get("embedding_type", "float")
        if embedding_type not in ("float", "byte", "int8", "bit", "binary"):
            errors.append(f"[service_settings] Invalid value [{embedding_type}] for [embedding_type]")
        secrets = {"api_key": key or ""}
        headers = {"Authorization": "Bearer ${credential.api_key}"}
        body = ('{"texts": ${parameters.input}, "input_type": "${parameters.input_type:-search_document}"'
                + (', "model": "${parameters.model}"' if model else "") + ', "truncate": "${parameters.truncate:-END}"}')
        parameters = {"model": model} if model else {}
        post, path = "connector.post_process.cohere.embedding", None
        shown = {"url": url, **({"model_id": model} if model else {}), "embedding_type": embedding_type}
    else:  # custom
        url = _string(raw, "url", errors, required=True)
        template = raw.get("request")
        if not isinstance(template, str) or "${input}" not in template:
            errors.append(_missing("request") + ": a template that holds ${input}")
            template = "{}"
        response = raw.get("response") if isinstance(raw.get("response"), dict) else {}
        parser = response.get("json_parser") if isinstance(response.get("json_parser"), dict) else {}
        path = parser.get("text_embeddings")
        if not isinstance(path, str):
            errors.append(_missing("response.json_parser.text_embeddings"))
            path = "$"
        given_headers = raw.get("headers") or {}
        secret_parameters = raw.get("secret_parameters") or {}
        if not isinstance(given_headers, dict) or not isinstance(secret_parameters, dict):
            errors.append("[service_settings] [headers] and [secret_parameters] must be objects")
            given_headers, secret_parameters = {}, {}
        secrets = {str(k): str(v) for k, v in secret_parameters.items()}
        # ${secret} in headers is filled from the sealed credential; the template's ${input}
        # and ${input_type} from the call.
        headers = {str(k): _secret_refs(str(v), secrets) for k, v in given_headers.items()}
        body = template.replace("${input}", "${parameters.input}").replace(
            "${input_type}", "${parameters.input_type:-}")
        parameters, post = {}, "connector.post_process.default.embedding"
        shown = {"url": url, "headers": {k: v for k, v in given_headers.items() if "$" not in str(v)},
                 "request": template, "response": {"json_parser": {"text_embeddings": path}}}
    if errors:
        raise BadRequest("Validation Failed: " + "".join(f"{i}: {e};" for i, e in enumerate(errors, 1)),
                         error_type="validation_exception")
    query = raw.get("query_parameters")
    if service == "custom" and isinstance(query, list):
        pairs = [p for p in query if isinstance(p, list) and len(p) == 2]
        url += ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in pairs)
    shown["rate_limit"] = {"requests_per_minute": per_minute}
    pre = "connector.pre_process." + ("cohere.rerank" if task_type == "rerank" else "default.embedding")
    action = {"action_type": "PREDICT", "method": "POST", "url": url, "headers": headers, "request_body": body,
              "pre_process_function": pre}
    if post:
        action["post_process_function"] = post
    connector = {"name": f"{service} endpoint", "version": "1", "protocol": "http", "parameters": parameters,
                 "credential": secrets, "actions": [action], "client_config": dict(CLIENT_CONFIG)}
    if path and service == "custom":
        connector["parameters"]["response_filter"] = path
    return shown, secrets, connector


def _secret_refs(value: str, secrets: dict[str, str]) -> str:
    for name in secrets:
        value = value.replace("${" + name + "}", "${credential." + name + "}")
    return value


def call_parameters(service: str, task_settings: dict[str, Any], input_type: str | None) -> dict[str, str]:
    """What one inference call adds to the connector's parameters: Cohere's input type (the
    request's ``input_type``, else the endpoint's task setting) and truncation."""
    if service != "cohere":
        return {}
    out = {}
    chosen = (input_type or task_settings.get("input_type") or "").lower()
    if chosen in COHERE_INPUT_TYPES:
        out["input_type"] = COHERE_INPUT_TYPES[chosen]
    truncate = task_settings.get("truncate")
    if isinstance(truncate, str) and truncate.upper() in ("NONE", "START", "END"):
        out["truncate"] = truncate.upper()
    return out


def scores_of(reply: dict[str, Any]) -> list[float]:
    """A remote rerank's relevance scores, in the order of the documents."""
    scores: list[float] = []
    for result in reply.get("inference_results") or []:
        for tensor in result.get("output") or []:
            if tensor.get("name") != "similarity":
                raise BadRequest("The provider's reply holds no relevance scores", status=502,
                                 error_type="status_exception")
            scores.append(float(tensor["data"][0]))
    return scores


def embeddings_of(reply: dict[str, Any]) -> list[list[float]]:
    """The vectors of a remote model's reply (ML Commons tensors, or a reply read without a
    post-process function: ``[[...]]`` or ``{"embeddings": [[...]]}``)."""
    vectors: list[list[float]] = []
    for result in reply.get("inference_results") or []:
        for tensor in result.get("output") or []:
            if tensor.get("name") == "sentence_embedding":
                vectors.append(tensor["data"])
            elif tensor.get("name") == "response":
                found = tensor.get("dataAsMap") or {}
                rows = found.get("embeddings", found.get("response"))
                if not isinstance(rows, list):
                    raise BadRequest("The provider's reply holds no embeddings", status=502,
                                     error_type="status_exception")
                vectors.extend(rows)
    return vectors
