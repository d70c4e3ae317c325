"""Models uploaded through Elasticsearch's trained-model API, kept in the same store as every
other model: a model document (``_es`` holds the Elasticsearch config), definition parts as the
model's chunks (decoded), and the vocabulary. The definition is checked for completeness when a
deployment starts (as Elasticsearch does), which also records its size and SHA-256 so that
worker nodes verify it like any other archive.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from mlcommons.core import limits, replication
from mlcommons.core.context import Context
from mlcommons.core.serving import lifecycle
from mlcommons.core.serving.lifecycle import Event
from mlcommons.core.wildcards import Glob, bounded
from mlcommons.errors import BadRequest, Conflict, NotFound
from mlcommons.ids import now_ms
from mlcommons.store import capacity
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx
from mlcommons.store.modelstore import missing_chunks
from mlcommons.types import FunctionName, ModelFormat, ModelState

TASKS = {"text_embedding": FunctionName.TEXT_EMBEDDING, "text_expansion": FunctionName.SPARSE_ENCODING,
         "text_similarity": FunctionName.TEXT_SIMILARITY}
TOKENIZATIONS = ("bert", "mpnet", "roberta", "xlm_roberta")
MAX_PARTS = 10_000
ES_VERSION = "12.0.0"  # the trained-model config version Elasticsearch 9 reports


def validation(*messages: str) -> BadRequest:
    text = "".join(f"{i}: {m};" for i, m in enumerate(messages, 1))
    return BadRequest(f"Validation Failed: {text}", error_type="action_request_validation_exception")


def not_found(model_id: str) -> NotFound:
    return NotFound(f"Could not find trained model [{model_id}]", error_type="resource_not_found_exception")


def is_es_model(model: dict[str, Any]) -> bool:
    return "_es" in model


def get_es_model(reader, model_id: str) -> dict[str, Any]:
    model = reader.get(K.MODEL, model_id)
    if model is None:
        raise not_found(model_id)
    return model


# --- PUT _ml/trained_models/<id> --------------------------------------------------------------

def parse_config(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The stored Elasticsearch config of a pytorch model, with defaults filled in."""
    errors = []
    known = {"model_type", "inference_config", "input", "description", "metadata", "tags", "prefix_strings",
             "platform_architecture", "model_size_bytes", "estimated_operations", "location", "definition",
             "compressed_definition", "default_field_map", "license"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"[put_trained_model_config] unknown field [{unknown[0]}]", error_type="x_content_parse_exception")
    if body.get("definition") or body.get("compressed_definition"):
        errors.append("only pytorch models uploaded in parts through the definition API are supported here")
    model_type = body.get("model_type", "pytorch")
    if model_type != "pytorch":
        errors.append(f"[model_type] must be [pytorch], got [{model_type}]")
    inference = body.get("inference_config")
    if not isinstance(inference, dict) or len(inference) != 1:
        errors.append("[inference_config] must hold exactly one task: one of " + ", ".join(TASKS))
        raise validation(*errors)
    task, settings = next(iter(inference.items()))
    if task not in TASKS:
        raise BadRequest(f"unsupported inference_config [{task}]; supported: {', '.join(TASKS)}",
                         error_type="illegal_argument_exception")
    if settings is not None and not isinstance(settings, dict):
        raise validation(f"[inference_config.{task}] must be an object")
    settings = dict(limits.small_object(settings or {}, f"inference_config.{task}"))
    tokenization = settings.get("tokenization") or {"bert": {}}
    if not isinstance(tokenization, dict) or len(tokenization) != 1 or next(iter(tokenization)) not in TOKENIZATIONS \
            or not isinstance(next(iter(tokenization.values())) or {}, dict):
        errors.append("[tokenization] must be one of " + ", ".join(TOKENIZATIONS))
    else:
        kind, opts = next(iter(tokenization.items()))
        opts = {"do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 512,
                "truncate": "first", "span": -1, **(opts or {})}
        if opts["truncate"] not in ("first", "second", "none"):
            errors.append("[truncate] must be one of first, second, none")
        if not isinstance(opts["max_sequence_length"], int) or opts["max_sequence_length"] < 1:
            errors.append("[max_sequence_length] must be a positive integer")
        tokenization = {kind: opts}
    settings["tokenization"] = tokenization
    if task == "text_embedding" and "embedding_size" in settings and not (
            isinstance(settings["embedding_size"], int) and settings["embedding_size"] > 0):
        errors.append("[embedding_size] must be a positive integer")
    model_input = body.get("input")
    fields = model_input.get("field_names") if isinstance(model_input, dict) else None
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        errors.append("[input.field_names] must be a non-empty list of field names")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        errors.append("[tags] must be a list of strings")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        errors.append("[metadata] must be an object")
    if errors:
        raise validation(*errors)
    config = {
        "model_id": model_id,
        "model_type": "pytorch",
        "created_by": "api_user",
        "version": ES_VERSION,
        "create_time": now_ms(),
        "model_size_bytes": 0,
        "estimated_operations": 0,
        "license_level": "platinum",
        "description": limits.description(body.get("description", "")),
        "tags": limits.small_object(tags, "tags"),
        "metadata": limits.small_object(metadata, "metadata"),
        "input": {"field_names": fields},
        "inference_config": {task: settings},
        "location": {"index": {"name": ".ml-inference-native-000002"}},
    }
    if body.get("prefix_strings"):
        config["prefix_strings"] = limits.small_object(body["prefix_strings"], "prefix_strings")
    if body.get("platform_architecture"):
        config["platform_architecture"] = limits.text(body["platform_architecture"], "platform_architecture",
                                                      limits.MAX_NAME_CHARS)
    return config


def put(ctx: Context, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    config = parse_config(model_id, body)
    task = next(iter(config["inference_config"]))

    def tx_body(tx: Tx):
        if tx.get(K.MODEL, model_id) is not None or tx.get(K.DEPLOYMENT, model_id) is not None:
            raise BadRequest(f"Trained machine learning model [{model_id}] already exists",
                             error_type="resource_already_exists_exception")
        now = now_ms()
        tx.put(K.MODEL, model_id, {
            "name": model_id, "model_group_id": None, "algorithm": TASKS[task].value,
            "model_version": "1", "model_format": ModelFormat.TORCH_SCRIPT.value,
            **lifecycle.initial(ModelState.REGISTERING), "model_config": None, "description": config["description"],
            "created_time": now, "last_updated_time": now, "is_hidden": False,
            "planning_worker_node_count": 0, "current_worker_node_count": 0, "current_worker_nodes": [],
            "_es": config,
        }, created=now)

    ctx.docs.transact(tx_body)
    replication.wait(ctx, f"trained model {model_id}")
    return dict(config)


# --- definition parts and vocabulary ------------------------------------------------------------

def put_definition_part(ctx: Context, model_id: str, part: int, body: dict[str, Any]) -> dict[str, Any]:
    errors = []
    total_parts = body.get("total_parts")
    total_length = body.get("total_definition_length")
    definition = body.get("definition")
    if not isinstance(definition, str) or not definition:
        errors.append("[definition] must not be empty")
    if not isinstance(total_parts, int) or total_parts <= 0:
        errors.append("[total_parts] must be greater than 0")
    elif total_parts > MAX_PARTS:
        errors.append(f"[total_parts] must be less than or equal to {MAX_PARTS}")
    if not isinstance(total_length, int) or total_length <= 0:
        errors.append("[total_definition_length] must be greater than 0")
    if part < 0:
        errors.append("[part] must be greater or equal to 0")
    elif isinstance(total_parts, int) and part >= total_parts:
        errors.append("[part] must be less than total_parts")
    if errors:
        raise validation(*errors)
    try:
        data = base64.b64decode(definition, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("[definition] is not valid base64", error_type="illegal_argument_exception") from None
    _still_uploading(ctx, model_id, "add definition parts to")
    with capacity.writing(ctx.redis, len(data)):
        ctx.blobs.put_chunk(model_id, part, data)
    ctx.docs.update(K.MODEL, model_id, {"_es_parts": {"total_parts": total_parts,
                                                      "total_definition_length": total_length},
                                        "last_updated_time": now_ms()})
    replication.wait(ctx, f"definition part {part} of trained model {model_id}")
    return {"acknowledged": True}


def _still_uploading(ctx: Context, model_id: str, action: str) -> None:
    """Definition parts and the vocabulary can change only until a deployment first starts."""
    model = get_es_model(ctx.docs, model_id)
    if not is_es_model(model):
        raise BadRequest(f"model [{model_id}] was not created through the trained models API")
    if model["model_state"] != ModelState.REGISTERING.value:
        raise Conflict(f"Cannot {action} trained model [{model_id}]: its definition is complete and in use",
                       error_type="status_exception")


def put_vocabulary(ctx: Context, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    vocabulary = body.get("vocabulary")
    if not isinstance(vocabulary, list) or not vocabulary or not all(isinstance(v, str) for v in vocabulary):
        raise validation("[vocabulary] must be a non-empty list of strings")
    merges, scores = body.get("merges"), body.get("scores")
    if merges is not None and not (isinstance(merges, list) and all(isinstance(m, str) for m in merges)):
        raise validation("[merges] must be a list of strings")
    if scores is not None and not (isinstance(scores, list) and len(scores) == len(vocabulary)):
        raise validation("[scores] must hold one number per vocabulary entry")
    _still_uploading(ctx, model_id, "change the vocabulary of")
    vocab = {"vocabulary": vocabulary}
    if merges:
        vocab["merges"] = merges
    if scores:
        vocab["scores"] = scores
    ctx.docs.update(K.MODEL, model_id, {"_vocabulary": vocab, "last_updated_time": now_ms()})
    replication.wait(ctx, f"vocabulary of trained model {model_id}")
    return {"acknowledged": True}


def complete_definition(ctx: Context, model_id: str) -> dict[str, Any]:
    """Check that every definition part and the vocabulary are there; the first time, record the
    definition's size and SHA-256 and make the model REGISTERED. Returns the model document."""
    model = get_es_model(ctx.docs, model_id)
    if not is_es_model(model) or model["model_state"] != ModelState.REGISTERING.value:
        return model
    parts = model.get("_es_parts")
    if not parts:
        raise BadRequest(f"Cannot start deployment of trained model [{model_id}]: no definition was uploaded",
                         error_type="status_exception")
    total = int(parts["total_parts"])
    sizes = ctx.blobs.sizes(model_id)
    missing = missing_chunks(sizes, total)
    if missing:
        raise BadRequest(f"Cannot start deployment of trained model [{model_id}]: definition parts {missing} "
                         f"of [{total}] are missing", error_type="status_exception")
    length = sum(size for number, size in sizes.items() if number < total)
    if length != int(parts["total_definition_length"]):
        raise BadRequest(f"Cannot start deployment of trained model [{model_id}]: the definition parts hold "
                         f"[{length}] bytes but [total_definition_length] is [{parts['total_definition_length']}]",
                         error_type="status_exception")
    if not model.get("_vocabulary"):
        raise BadRequest(f"Cannot start deployment of trained model [{model_id}]: no vocabulary was uploaded",
                         error_type="status_exception")
    digest = hashlib.sha256()
    for number in range(total):
        digest.update(ctx.blobs.get_chunk(model_id, number) or b"")
    config = dict(model["_es"], model_size_bytes=length)
    fields = {"total_chunks": total,
              "model_content_size_in_bytes": length, "model_content_hash_value": digest.hexdigest(),
              "_es": config, "last_updated_time": now_ms()}

    def tx_body(tx: Tx):
        doc = tx.get(K.MODEL, model_id)
        if doc is not None and doc["model_state"] == ModelState.REGISTERING.value:
            lifecycle.move(tx, K.MODEL, model_id, doc, Event.REGISTERED, fields)

    ctx.docs.transact(tx_body)
    return ctx.docs.get(K.MODEL, model_id)


# --- GET and DELETE --------------------------------------------------------------------------------

def matching(ctx: Context, expression: str | None, allow_no_match: bool) -> list[tuple[str, dict[str, Any]]]:
    """Models matching a comma-separated list of ids and wildcards (``_all``/``*``/empty: all)."""
    models = sorted(((m, d) for m, d in ctx.docs.all(K.MODEL) if is_es_model(d)), key=lambda e: e[0])
    if not expression or expression in ("_all", "*"):
        if not models and not allow_no_match and expression:
            raise not_found(expression)
        return models
    out, seen = [], set()
    for token in [t.strip() for t in expression.split(",") if t.strip()]:
        matches = Glob(bounded(token, "model_id"), simple=True).matches  # Elasticsearch's simpleMatch: * only
        hits = [(m, d) for m, d in models if matches(m)]
        if not hits and ("*" not in token or not allow_no_match):
            raise not_found(token)
        for m, d in hits:
            if m not in seen:
                seen.add(m)
                out.append((m, d))
    return sorted(out, key=lambda e: e[0])


def config_view(ctx: Context, model_id: str, model: dict[str, Any], *,
                definition_status: bool = False) -> dict[str, Any]:
    config = dict(model["_es"])
    if definition_status:
        config["fully_defined"] = definition_complete(ctx, model_id, model)
    return config


def definition_complete(ctx: Context, model_id: str, model: dict[str, Any]) -> bool:
    """Every definition part uploaded, adding up to the announced length, and a vocabulary."""
    if model["model_state"] != ModelState.REGISTERING.value:
        return True
    parts = model.get("_es_parts")
    if not parts or not model.get("_vocabulary"):
        return False
    total = int(parts["total_parts"])
    sizes = ctx.blobs.sizes(model_id)
    return (not missing_chunks(sizes, total, limit=1)
            and sum(size for number, size in sizes.items() if number < total) == int(parts["total_definition_length"]))


def check_deletable(ctx: Context, model_id: str) -> None:
    if not is_es_model(get_es_model(ctx.docs, model_id)):
        raise BadRequest(f"model [{model_id}] was not created through the trained models API; "
                         "delete it with DELETE /_plugins/_ml/models/<id>")


def delete(ctx: Context, model_id: str) -> dict[str, Any]:
    """Forget a trained model that no deployment serves (``deployments.delete_model`` stops them)."""
    def tx_body(tx: Tx):
        if tx.get(K.MODEL, model_id) is not None:
            tx.delete(K.MODEL, model_id)
            tx.call(lambda p: p.delete(ctx.keys.route(model_id)))

    ctx.docs.transact(tx_body)
    ctx.blobs.delete_chunks(model_id)
    return {"acknowledged": True}
