"""Registering a model from a URL or from the pretrained catalog.

The API validates the request (a URL as mlcommons/core/models/download.py says, against settings read
fresh from Redis, so that a change made an instant ago on any API process holds) and, in one
transaction, takes the model group's next version, stores the model document (REGISTERING) and a
REGISTER_MODEL task (CREATED); a worker then runs :func:`execute`: it downloads the archive into
the model store within the download limits while hashing it, and in one write
marks the model REGISTERED and the task COMPLETED with its ``model_id``. On failure the task is
FAILED with the error, and the chunks, the model document and the group version are undone.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from mlcommons.core import replication
from mlcommons.core.context import Context
from mlcommons.core.models import download, pretrained
from mlcommons.core.models import groups as model_groups
from mlcommons.core.models import records as models
from mlcommons.core.remote import connectors
from mlcommons.core.security import access
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import lifecycle
from mlcommons.core.serving.lifecycle import Event
from mlcommons.core.tasks import records as tasks
from mlcommons.errors import BadRequest, MLError, NotFound, TooLarge
from mlcommons.ids import new_id, now_ms
from mlcommons.store import capacity
from mlcommons.store import keys as K
from mlcommons.store.documents import Tx
from mlcommons.store.modelstore import write_chunks
from mlcommons.types import FunctionName, ModelState, TaskState, TaskType

log = logging.getLogger(__name__)

# Called on a worker to put a pretrained model's archive into the model store (once) and return
# {"blob_id", "total_chunks", "model_content_hash_value", "model_content_size_in_bytes", "model_config"}.
Materialize = Callable[[Context, pretrained.Pretrained, str], dict[str, Any]]


def register(ctx: Context, body: dict[str, Any], *, deploy: bool = False) -> dict[str, Any]:
    ctx.settings.refresh(ctx.redis)
    acl = model_groups.acl_of(ctx, body)
    name = models.name_of(body)
    fn = models.function_name(body)
    if fn is FunctionName.REMOTE:
        return register_remote(ctx, body, name, deploy=deploy or bool(body.get("deploy_model")), acl=acl)
    url = body.get("url")
    extra = models.optional_fields(body)
    group_id = models.optional_group_id(body)
    deploy = deploy or bool(body.get("deploy_model"))
    if url is not None:
        if not isinstance(url, str) or not url:
            raise BadRequest("[url] must be a non-empty string")
        if not ctx.settings.get("plugins.ml_commons.allow_registering_model_via_url"):
            raise BadRequest("To upload custom model user needs to enable allow_registering_model_via_url "
                             "settings. Otherwise please use opensearch pre-trained models.")
        try:
            download.check(url, download.Policy.of(ctx.settings))
        except download.Refused as exc:
            raise BadRequest(str(exc)) from None
        declared = declared_size(ctx, body)
        fmt = models.model_format(body, fn=fn)
        config = models.model_config(body, fn)
        digest = models.hash_value(body, required=True, message=(
            "Model content Hash code need to be provided when register via url. "
            "Please calculate sha 256 Hash code."))
        source = {"url": url, "sha256": digest, "size": declared}
        extra["model_content_hash_value"] = digest
    else:
        entry = pretrained.lookup(name, body.get("version"), body.get("model_format"))
        fmt = models.model_format({"model_format": body.get("model_format") or "TORCH_SCRIPT"})
        config = None
        source = {"pretrained": entry.name, "format": fmt.value}
        extra.setdefault("description", entry.description)
    model_id = new_id()

    def tx_body(tx: Tx):
        gid, version, created = model_groups.take_version(tx, ctx, name, group_id, acl)
        doc = models.new_model_doc(name=name, group_id=gid, version=version, fn=fn, fmt=fmt, config=config,
                                   state=ModelState.REGISTERING, extra=extra)
        tx.put(K.MODEL, model_id, doc, created=doc["created_time"])
        task = tasks.new_task(TaskType.REGISTER_MODEL, None, fn.value, [])
        task.update(_model_id=model_id, _source=source, _deploy=deploy,
                    _group={"id": gid, "version": version, "created": created})
        return tasks.create(tx, task)

    task_id = ctx.docs.transact(tx_body)
    from mlcommons.core.tasks import jobs

    jobs.enqueue_register(ctx, task_id, model_id, name)
    replication.wait(ctx, f"register task {task_id} (model {model_id})")
    return {"task_id": task_id, "status": TaskState.CREATED.value}


def register_remote(ctx: Context, body: dict[str, Any], name: str, *, deploy: bool,
                    acl: dict[str, Any] | None = None) -> dict[str, Any]:
    """A remote model: nothing to download, so it is REGISTERED at once, with its REGISTER_MODEL
    task COMPLETED, as ML Commons answers (the reply carries the model id). It names a connector
    (``connector_id``, which wins) or holds one (``connector``, its credential sealed here)."""
    connectors.check_enabled(ctx)
    extra = models.optional_fields(body)
    group_id = models.optional_group_id(body)
    connector_id = body.get("connector_id")
    if connector_id is not None and (not isinstance(connector_id, str) or not connector_id.strip()):
        connector_id = None
    if connector_id is not None:
        found = ctx.docs.get(K.CONNECTOR, connector_id)
        if found is None:
            raise NotFound(f"Failed to find connector:{connector_id}")
        access.check_connector(ctx, found)
        extra["connector_id"] = connector_id
    else:
        inline = body.get("connector")
        if not isinstance(inline, dict) or not inline:
            raise BadRequest("You must provide connector content when creating a remote model without connector "
                             "id!")
        connector = connectors.parse({"name": name, "version": "1", **inline})
        if not any(a["action_type"] == "PREDICT" for a in connector["actions"]):
            raise BadRequest("Connector endpoint is required when creating a remote model without connector id!")
        connectors.check_urls(ctx, connector)
        connector["credential"] = ctx.secrets.seal(connector["credential"])
        extra["connector"] = connector
    model_id = new_id()

    def tx_body(tx: Tx) -> str:
        gid, version, _ = model_groups.take_version(tx, ctx, name, group_id, acl)
        doc = models.new_model_doc(name=name, group_id=gid, version=version, fn=FunctionName.REMOTE, fmt=None,
                                   config=None, state=ModelState.REGISTERED, extra=extra)
        doc["last_registered_time"] = doc["created_time"]
        tx.put(K.MODEL, model_id, doc, created=doc["created_time"])
        task = tasks.new_task(TaskType.REGISTER_MODEL, model_id, FunctionName.REMOTE.value, [],
                              state=TaskState.COMPLETED)
        return tasks.create(tx, task)

    task_id = ctx.docs.transact(tx_body)
    replication.wait(ctx, f"remote model {model_id} (register task {task_id})")
    reply = {"task_id": task_id, "status": TaskState.CREATED.value, "model_id": model_id}
    if deploy:
        try:
            deploys.deploy(ctx, model_id)
        except MLError as exc:  # registered all the same: a _deploy, or the first predict, deploys it
            log.warning("remote model %s registered; its deploy did not start: %s", model_id, exc.reason)
    return reply


def register_endpoint_model(ctx: Context, model_id: str, connector: dict[str, Any],
                            rate_limiter: dict[str, Any] | None = None) -> None:
    """A hidden remote model that serves an Elasticsearch inference endpoint of an external
    service (elasticsearch/services.py), under the endpoint's id; its connector was built by the
    server, not sent by a client, so it is not held to the trusted-endpoint patterns."""
    sealed = {**connector, "credential": ctx.secrets.seal(connector["credential"]), "_es_service": True}

    def tx_body(tx: Tx) -> None:
        if tx.get(K.MODEL, model_id) is not None:
            raise BadRequest(f"Inference endpoint IDs must be unique: a model with the id [{model_id}] exists",
                             error_type="status_exception")
        doc = models.new_model_doc(name=model_id, group_id=None, version="1", fn=FunctionName.REMOTE, fmt=None,
                                   config=None, state=ModelState.REGISTERED,
                                   extra={"connector": sealed, "is_hidden": True,
                                          "description": f"inference endpoint [{model_id}]",
                                          **({"rate_limiter": rate_limiter} if rate_limiter else {})})
        tx.put(K.MODEL, model_id, doc, created=doc["created_time"])

    ctx.docs.transact(tx_body)
    replication.wait(ctx, f"inference endpoint model {model_id}")


def declared_size(ctx: Context, body: dict[str, Any]) -> int | None:
    """The archive size a register by URL may declare (``model_content_size_in_bytes``): within
    max_model_size and the room left in the model store, refused at once otherwise."""
    size = body.get("model_content_size_in_bytes")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise BadRequest("[model_content_size_in_bytes] must be a positive integer")
    max_size = ctx.settings.get("mlcommons.model_store.max_model_size")
    if size > max_size:
        raise TooLarge(f"Model file size exceeds the limit of {max_size} bytes: {size}")
    capacity.check_room(ctx.redis, size)
    return size


class RegisterFailed(Exception):
    pass


def execute(ctx: Context, task_id: str, node_id: str, materialize: Materialize,
            cancelled: Callable[[], bool] = lambda: False) -> str | None:
    """Run a REGISTER_MODEL task on a worker. Returns the model id, or None if there was nothing to do.
    ``cancelled()`` true (the node is stopping) ends a download at its next read."""
    # Limits as they are now, not as this process last read them (a second ago).
    ctx.settings.refresh(ctx.redis)
    task = ctx.docs.get(K.TASK, task_id)
    if task is None or TaskState(task["state"]).terminal:
        return None
    model_id = task["_model_id"]
    source = task["_source"]
    ctx.docs.update(K.TASK, task_id, {"worker_node": [node_id]})
    store = _RoomCheckingStore(ctx.blobs, ctx.redis)
    try:
        model = ctx.docs.get(K.MODEL, model_id)
        if model is None:
            raise RegisterFailed("the model was deleted while it was being registered")
        if "url" in source:
            fields = _from_url(ctx, model_id, source, store, cancelled)
        else:
            entry = pretrained.CATALOG[source["pretrained"]]
            info = materialize(ctx, entry, source.get("format", "TORCH_SCRIPT"))
            capacity.check_room(ctx.redis, info["model_content_size_in_bytes"])
            ctx.blobs.copy_chunks(info["blob_id"], model_id)
            fields = {k: info[k] for k in ("total_chunks", "model_content_hash_value",
                                           "model_content_size_in_bytes")}
            fields["model_config"] = models.normalize_config(info["model_config"])
    except Exception as exc:  # every failure is reported on the task and undone
        if capacity.is_out_of_memory(exc):  # another writer took the room first
            exc = capacity.full(ctx.redis)
        known = (RegisterFailed, ValueError, OSError, capacity.StoreFull)
        reason = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, known):
            log.exception("register task %s failed", task_id)
        _fail(ctx, task_id, task, model_id, reason)
        return None

    def tx_body(tx: Tx):
        current = tx.get(K.TASK, task_id)
        if current is None or TaskState(current["state"]).terminal:
            raise RegisterFailed("task ended while registering")
        model = tx.get(K.MODEL, model_id)
        if model is None:
            raise RegisterFailed("the model was deleted while it was being registered")
        now = now_ms()
        lifecycle.move(tx, K.MODEL, model_id, model, Event.REGISTERED,
                       {**fields, "last_registered_time": now, "last_updated_time": now})
        tasks.transition(tx, task_id, TaskState.COMPLETED, model_id=model_id)

    try:
        ctx.docs.transact(tx_body)
    except RegisterFailed as exc:
        _fail(ctx, task_id, task, model_id, str(exc))
        return None
    replication.wait(ctx, f"model {model_id} registered (task {task_id})")
    if task.get("_deploy"):
        try:
            deploys.deploy(ctx, model_id)
        except Exception as exc:  # the registration stands; the deploy error is logged
            log.warning("deploy after register of %s failed: %s", model_id, exc)
    return model_id


def _from_url(ctx: Context, model_id: str, source: dict[str, Any], store: "_RoomCheckingStore",
              cancelled: Callable[[], bool]) -> dict[str, Any]:
    """Download into the store: checked again here (the settings may have changed since the
    API took the request, and only this machine can resolve its own file paths), and sized
    against the limits and the store's room before the first chunk is written."""
    settings = ctx.settings
    limits = download.Limits.of(settings, source.get("size"))
    try:
        with download.open_url(source["url"], download.Policy.of(settings), limits, cancelled) as fetched:
            if fetched.size is not None:
                capacity.check_room(ctx.redis, fetched.size)
            digest = write_chunks(store, model_id, fetched.stream, settings.get("mlcommons.model_store.chunk_size"))
    except (download.Refused, download.DownloadFailed, capacity.StoreFull) as exc:
        raise RegisterFailed(str(exc)) from None
    if digest.size == 0:
        raise RegisterFailed(f"The model file at [{source['url']}] is empty")
    if digest.sha256 != source["sha256"]:
        raise RegisterFailed("model content changed")
    return {"total_chunks": digest.total_chunks, "model_content_size_in_bytes": digest.size,
                     "model_content_hash_value": digest.sha256}


class _RoomCheckingStore:
    """Wraps the model store to refuse a chunk it has no room for (a source that announced no
    size). What a failed download left behind is found by the store's own chunk index."""

    def __init__(self, inner, client):
        self.inner = inner
        self.client = client

    def put_chunk(self, model_id: str, number: int, data: bytes) -> None:
        with capacity.writing(self.client, len(data)):
            self.inner.put_chunk(model_id, number, data)


def abandon(ctx: Context, task_id: str, reason: str) -> None:
    """The node running this register task is gone: fail it and undo what it wrote."""
    task = ctx.docs.get(K.TASK, task_id)
    if task is None or TaskState(task["state"]).terminal or task.get("task_type") != TaskType.REGISTER_MODEL.value:
        return
    _fail(ctx, task_id, task, task["_model_id"], reason)


def _fail(ctx: Context, task_id: str, task: dict, model_id: str, reason: str) -> None:
    ctx.blobs.delete_chunks(model_id)
    ctx.docs.delete(K.MODEL, model_id)
    group = task.get("_group") or {}
    if group.get("id"):
        model_groups.release_version(ctx, group["id"], group["version"], bool(group.get("created")))
    tasks.finish(ctx, task_id, TaskState.FAILED, error=reason)
