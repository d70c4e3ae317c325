"""Models: their documents, lookups, updates and deletion, and the chunked-upload flow."""
from __future__ import annotations

from typing import Any, Iterator

from mlcommons.core import limits, replication
from mlcommons.core.context import Context
from mlcommons.core.models import groups as model_groups
from mlcommons.core.serving import lifecycle
from mlcommons.core.serving.lifecycle import ACTIVE_MODEL_STATES, Event
from mlcommons.errors import BadRequest, Conflict, NotFound, TooLarge
from mlcommons.ids import new_id, now_ms
from mlcommons.store import capacity
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx
from mlcommons.types import FrameworkType, FunctionName, ModelFormat, ModelState

SUPPORTED_FUNCTIONS = {FunctionName.TEXT_EMBEDDING, FunctionName.SPARSE_ENCODING, FunctionName.SPARSE_TOKENIZE,
                       FunctionName.TEXT_SIMILARITY, FunctionName.REMOTE}
MAX_CHUNK_BYTES = 10_000_000


def not_found(model_id: str) -> NotFound:
    return NotFound(f"Failed to find model with the provided model id: {model_id}")


def get_doc(ctx: Context, model_id: str) -> dict[str, Any]:
    model = ctx.docs.get(K.MODEL, model_id)
    if model is None:
        raise not_found(model_id)
    return model


def all_docs(ctx: Context) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every model document, as (id, document)."""
    return ctx.docs.all(K.MODEL)


# --- validation of register inputs ---------------------------------------------------------

def function_name(body: dict[str, Any]) -> FunctionName:
    raw = body.get("function_name") or body.get("algorithm") or FunctionName.TEXT_EMBEDDING.value
    try:
        fn = FunctionName(str(raw).upper())
    except ValueError:
        raise BadRequest(f"Wrong function name: [{raw}]") from None
    if fn not in SUPPORTED_FUNCTIONS:
        raise BadRequest(f"function_name [{fn.value}] is not supported yet; supported: "
                         f"{sorted(f.value for f in SUPPORTED_FUNCTIONS)}")
    return fn


def model_format(body: dict[str, Any], *, required: bool = True, fn: FunctionName | None = None) -> ModelFormat | None:
    """The archive's format; ONNX is served for TEXT_EMBEDDING (``fn``, where known)."""
    raw = body.get("model_format")
    if raw is None:
        if required:
            raise BadRequest("model format is null")
        return None
    try:
        fmt = ModelFormat(str(raw).upper())
    except ValueError:
        raise BadRequest(f"Wrong model format: [{raw}]; expected TORCH_SCRIPT or ONNX") from None
    if fmt is ModelFormat.ONNX and fn is not None and fn is not FunctionName.TEXT_EMBEDDING:
        raise BadRequest(f"model_format [ONNX] is supported for TEXT_EMBEDDING models, not [{fn.value}]; "
                         "use TORCH_SCRIPT")
    return fmt


def model_config(body: dict[str, Any], fn: FunctionName) -> dict[str, Any] | None:
    config = body.get("model_config")
    if config is None:
        if fn in (FunctionName.SPARSE_ENCODING, FunctionName.SPARSE_TOKENIZE):
            return None
        raise BadRequest("model config is null")
    if not isinstance(config, dict):
        raise BadRequest("[model_config] must be an object")
    if fn is FunctionName.TEXT_EMBEDDING:
        if not config.get("model_type"):
            raise BadRequest("model type is null")
        dim = config.get("embedding_dimension")
        if dim is None:
            raise BadRequest("embedding dimension is null")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise BadRequest("[model_config.embedding_dimension] must be a positive integer")
        framework = config.get("framework_type")
        if framework is None:
            raise BadRequest("framework type is null")
        try:
            FrameworkType(str(framework).upper())
        except ValueError:
            raise BadRequest(f"Wrong framework type: [{framework}]; expected SENTENCE_TRANSFORMERS or "
                             "HUGGINGFACE_TRANSFORMERS") from None
        pooling = config.get("pooling_mode")
        if pooling is not None and str(pooling).upper() not in ("MEAN", "CLS", "MAX", "MEAN_SQRT_LEN",
                                                                "WEIGHTED_MEAN"):
            raise BadRequest(f"Wrong pooling mode: [{pooling}]")
        if config.get("normalize_result") is not None and not isinstance(config["normalize_result"], bool):
            raise BadRequest("[model_config.normalize_result] must be a boolean")
        if config.get("all_config") is not None and not isinstance(config["all_config"], str):
            raise BadRequest("[model_config.all_config] must be a string")
        return normalize_config(config)
    return config


def normalize_config(config: dict[str, Any]) -> dict[str, Any]:
    """Store a text-embedding config the way ML Commons prints it: enum names upper-case, and
    ``pooling_mode`` and ``normalize_result`` always present."""
    out = dict(config)
    if out.get("framework_type") is not None:
        out["framework_type"] = str(out["framework_type"]).upper()
    out["pooling_mode"] = str(out.get("pooling_mode") or "MEAN").upper()
    out["normalize_result"] = bool(out.get("normalize_result", False))
    order = ("model_type", "embedding_dimension", "framework_type", "all_config", "model_max_length",
             "pooling_mode", "normalize_result")
    return {**{k: out[k] for k in order if k in out}, **{k: v for k, v in out.items() if k not in order}}


def name_of(body: dict[str, Any]) -> str:
    name = body.get("name")
    if name is None:
        raise BadRequest("model name is null")
    return limits.name(name)


def optional_group_id(body: dict[str, Any]) -> str | None:
    group_id = body.get("model_group_id")
    if group_id in (None, ""):  # opensearch-py-ml sends "" for "none"
        return None
    if not isinstance(group_id, str):
        raise BadRequest("[model_group_id] must be a string")
    return group_id


def hash_value(body: dict[str, Any], *, required: bool, message: str) -> str | None:
    value = body.get("model_content_hash_value")
    if value is None:
        if required:
            raise BadRequest(message)
        return None
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise BadRequest("[model_content_hash_value] must be a SHA-256 digest: 64 hexadecimal characters")
    return value.lower()


def optional_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Fields a register request may carry that are stored as given after a light check."""
    out: dict[str, Any] = {}
    if body.get("description") is not None:
        out["description"] = limits.description(body["description"])
    if body.get("is_enabled") is not None:
        if not isinstance(body["is_enabled"], bool):
            raise BadRequest("[is_enabled] must be a boolean")
        out["is_enabled"] = body["is_enabled"]
    if body.get("deploy_setting") is not None:
        out["deploy_setting"] = deploy_setting(body["deploy_setting"])
    if body.get("rate_limiter") is not None:
        out["rate_limiter"] = rate_limiter(body["rate_limiter"])
    return out


def rate_limiter(value: Any) -> dict[str, Any]:
    """ML Commons' ``{"limit": "4", "unit": "MINUTES"}``: at most ``limit`` predictions per ``unit``
    for the whole cluster (core/serving/ratelimit.py). The limit is kept as a string, as ML
    Commons keeps it."""
    if not isinstance(value, dict):
        raise BadRequest("[rate_limiter] must be an object")
    for key in value:
        if key not in ("limit", "unit"):
            raise BadRequest(f"[rate_limiter.{key}] is not a known field")
    limit = value.get("limit")
    if limit is not None:
        try:
            number = float(str(limit)) if not isinstance(limit, bool) and len(str(limit)) <= 20 else -1.0
        except ValueError:
            number = -1.0
        if not 0 <= number < 1e12:  # NaN fails too
            raise BadRequest("Limit field must be a positive number.", error_type="parse_exception")
        value = {**value, "limit": str(limit)}
    unit = value.get("unit")
    if unit is not None and (not isinstance(unit, str) or unit.upper() not in _TIME_UNITS):
        raise BadRequest(f"[rate_limiter.unit] must be one of {list(_TIME_UNITS)}")
    return value


_TIME_UNITS = ("NANOSECONDS", "MICROSECONDS", "MILLISECONDS", "SECONDS", "MINUTES", "HOURS", "DAYS")


def deploy_setting(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("[deploy_setting] must be an object")
    for key in value:
        if key not in ("is_auto_deploy_enabled", "model_ttl_minutes"):
            raise BadRequest(f"[deploy_setting.{key}] is not a known field")
    if "is_auto_deploy_enabled" in value and not isinstance(value["is_auto_deploy_enabled"], bool):
        raise BadRequest("[deploy_setting.is_auto_deploy_enabled] must be a boolean")
    ttl = value.get("model_ttl_minutes")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < -1):
        raise BadRequest("[deploy_setting.model_ttl_minutes] must be an integer >= -1")
    return value


def new_model_doc(*, name: str, group_id: str, version: str, fn: FunctionName, fmt: ModelFormat | None,
                  config: dict | None, state: ModelState, extra: dict[str, Any]) -> dict[str, Any]:
    now = now_ms()
    return {
        "name": name,
        "model_group_id": group_id,
        "algorithm": fn.value,
        "model_version": version,
        "model_format": fmt.value if fmt else None,
        **lifecycle.initial(state),
        "model_config": config,
        "created_time": now,
        "last_updated_time": now,
        "is_hidden": False,
        "planning_worker_node_count": 0,
        "current_worker_node_count": 0,
        "current_worker_nodes": [],
        **extra,
    }


# --- chunked upload ------------------------------------------------------------------------

def register_meta(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    ctx.settings.refresh(ctx.redis)  # limits as they are now, whichever API process took a change
    if not ctx.settings.get("plugins.ml_commons.allow_registering_model_via_local_file"):
        raise BadRequest("To upload custom model from local file, user needs to enable "
                         "allow_registering_model_via_local_file settings. Otherwise please use opensearch "
                         "pre-trained models")
    acl = model_groups.acl_of(ctx, body)
    name = name_of(body)
    fn = function_name(body)
    fmt = model_format(body, fn=fn)
    digest = hash_value(body, required=True, message="model content hash value is null")
    config = model_config(body, fn)
    total = body.get("total_chunks")
    if total is None:
        raise BadRequest("total chunks field is null")
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        raise BadRequest("[total_chunks] must be a positive integer")
    size = body.get("model_content_size_in_bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise BadRequest("[model_content_size_in_bytes] must be a positive integer")
    max_size = ctx.settings.get("mlcommons.model_store.max_model_size")
    if size is not None and size > max_size:
        raise TooLarge(f"Model file size exceeds the limit of {max_size} bytes: {size}")
    if size is not None:
        capacity.check_room(ctx.redis, size)
    max_total = max_chunks(ctx)
    if total > max_total:
        raise BadRequest(f"[total_chunks] must be at most {max_total} (the largest model, {max_size} bytes, in "
                         f"chunks of {ctx.settings.get('mlcommons.model_store.chunk_size')} bytes), found [{total}]")
    if total * MAX_CHUNK_BYTES < (size or 0):
        raise BadRequest(f"[total_chunks] {total} chunks of at most {MAX_CHUNK_BYTES} bytes cannot hold "
                         f"{size} bytes")
    group_id = optional_group_id(body)
    extra = {"model_content_hash_value": digest, "total_chunks": total, **optional_fields(body)}
    if size is not None:
        extra["model_content_size_in_bytes"] = size
    model_id = new_id()

    def tx_body(tx: Tx):
        gid, version, _created = model_groups.take_version(tx, ctx, name, group_id, acl)
        doc = new_model_doc(name=name, group_id=gid, version=version, fn=fn, fmt=fmt, config=config,
                            state=ModelState.REGISTERING, extra=extra)
        tx.put(K.MODEL, model_id, doc, created=doc["created_time"])

    ctx.docs.transact(tx_body)
    replication.wait(ctx, f"model {model_id} (register meta)")
    return {"model_id": model_id, "status": "CREATED"}


def max_chunks(ctx: Context) -> int:
    """The most chunks a model may be declared in: the largest model in chunks of the store's size."""
    chunk_size = ctx.settings.get("mlcommons.model_store.chunk_size")
    return -(-ctx.settings.get("mlcommons.model_store.max_model_size") // chunk_size)


def upload_chunk(ctx: Context, model_id: str, number: int, data: bytes) -> dict[str, Any]:
    model = get_doc(ctx, model_id)
    total = int(model.get("total_chunks") or 0)
    if number < 0 or number >= total:
        raise BadRequest(f"Chunk number exceeds total chunks: chunk [{number}], total_chunks [{total}]")
    if not data:
        raise BadRequest("Chunk size either 0 or null")
    if len(data) > MAX_CHUNK_BYTES:
        raise TooLarge(f"Chunk size exceeds 10MB: {len(data)} bytes")
    if model["model_state"] != ModelState.REGISTERING.value:
        raise Conflict(f"Model [{model_id}] is {model['model_state']}; its chunks can no longer change")
    # The chunks together may not outgrow the declared size, nor the largest model.
    limit = model.get("model_content_size_in_bytes") or ctx.settings.get("mlcommons.model_store.max_model_size")
    others = sum(size for n, size in ctx.blobs.sizes(model_id).items() if n != number)
    if others + len(data) > limit:
        raise TooLarge(f"Model file size exceeds the limit of {limit} bytes: chunk [{number}] brings the upload "
                       f"to {others + len(data)} bytes")
    try:
        with capacity.writing(ctx.redis, len(data)):
            ctx.blobs.put_chunk(model_id, number, data)
    except capacity.StoreFull as exc:
        delete(ctx, model_id)  # the upload cannot finish: none of it stays behind
        raise capacity.StoreFull(f"{exc.reason}; the upload of model [{model_id}] was abandoned") from None

    # The model is REGISTERED once every chunk is there, whatever order they arrived in.
    def tx_body(tx: Tx):
        current = tx.get(K.MODEL, model_id)
        if current is None or current["model_state"] != ModelState.REGISTERING.value:
            return
        sizes = ctx.blobs.sizes(model_id)
        if len(sizes) < total:  # numbers past the total were refused above
            return
        size = sum(sizes.values())
        now = now_ms()
        lifecycle.move(tx, K.MODEL, model_id, current, Event.REGISTERED, {
            "model_content_size_in_bytes": current.get("model_content_size_in_bytes", size),
            "last_registered_time": now, "last_updated_time": now})

    ctx.docs.transact(tx_body)
    replication.wait(ctx, f"chunk {number} of model {model_id}")
    return {"status": "Uploaded"}


# --- update and delete ----------------------------------------------------------------------

UPDATABLE = {"name", "description", "is_enabled", "rate_limiter", "deploy_setting", "model_config"}


def update(ctx: Context, model_id: str, body: dict[str, Any]) -> int:
    """Change a model's updatable fields; returns the document's new version."""
    for field in body:
        if field not in UPDATABLE:
            raise BadRequest(f"[{field}] cannot be updated; updatable fields: {sorted(UPDATABLE)}")
    fields: dict[str, Any] = {}
    if "name" in body:
        fields["name"] = name_of(body)
    fields.update(optional_fields({k: v for k, v in body.items() if k != "name"}))
    if not body:
        raise BadRequest("Updated fields is null or empty")

    def tx_body(tx: Tx):
        model = tx.get(K.MODEL, model_id)
        if model is None:
            raise NotFound(f"Failed to find model to update with the provided model id: {model_id}")
        if model["model_state"] == ModelState.DEPLOYING.value:
            raise Conflict("Model is deploying. Please wait for the model to complete deployment. "
                           f"model ID {model_id}")
        if "model_config" in body:
            fields["model_config"] = model_config(body, FunctionName(model["algorithm"]))
        version = int(model.get("_version", 1)) + 1
        tx.update(K.MODEL, model_id, {**fields, "last_updated_time": now_ms(), "_version": version})
        return version

    return ctx.docs.transact(tx_body)


def delete(ctx: Context, model_id: str) -> int:
    """Delete a model that no node holds; returns the version the delete makes."""
    def tx_body(tx: Tx):
        model = tx.get(K.MODEL, model_id)
        if model is None:
            raise not_found(model_id)
        if ModelState(model["model_state"]) in ACTIVE_MODEL_STATES or model.get("current_worker_nodes"):
            raise BadRequest("Model cannot be deleted in deploying or deployed state. "
                             "Try undeploy model first then delete")
        tx.delete(K.MODEL, model_id)
        tx.call(lambda p: p.delete(ctx.keys.route(model_id)))
        return int(model.get("_version", 1)) + 1

    version = ctx.docs.transact(tx_body)
    ctx.blobs.delete_chunks(model_id)
    return version
