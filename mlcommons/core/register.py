"""Registering a model from a URL or from the pretrained catalog.

The API validates the request and, in one transaction, takes the model group's next version,
stores the model document (REGISTERING) and a REGISTER_MODEL task (CREATED); a worker then runs
:func:`execute`: it streams the archive into the model store while hashing it, and in one write
marks the model REGISTERED and the task COMPLETED with its ``model_id``. On failure the task is
FAILED with the error, and the chunks, the model document and the group version are undone.
"""
from __future__ import annotations

import logging
import re
import urllib.error
import urllib.request
from typing import Any, Callable

from mlcommons import keys as K
from mlcommons.core import deploy as deploys
from mlcommons.core import model_groups, models, pretrained, tasks
from mlcommons.core.context import Context
from mlcommons.errors import BadRequest
from mlcommons.ids import new_id, now_ms
from mlcommons.store.documents import Tx
from mlcommons.store.modelstore import write_chunks
from mlcommons.types import ModelState, TaskState, TaskType

log = logging.getLogger(__name__)

# Called on a worker to put a pretrained model's archive into the model store (once) and return
# {"blob_id", "total_chunks", "model_content_hash_value", "model_content_size_in_bytes", "model_config"}.
Materialize = Callable[[Context, pretrained.Pretrained], dict[str, Any]]


def register(ctx: Context, body: dict[str, Any], *, deploy: bool = False) -> dict[str, Any]:
    model_groups.check_no_acl(body)
    name = models.name_of(body)
    fn = models.function_name(body)
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
        if not re.search(ctx.settings.get("plugins.ml_commons.trusted_url_regex"), url):
            raise BadRequest("URL can't match trusted url regex")
        fmt = models.model_format(body)
        config = models.model_config(body, fn)
        digest = models.hash_value(body, required=True, message=(
            "Model content Hash code need to be provided when register via url. "
            "Please calculate sha 256 Hash code."))
        source = {"url": url, "sha256": digest}
        extra["model_content_hash_value"] = digest
    else:
        entry = pretrained.lookup(name, body.get("version"), body.get("model_format"))
        fmt = models.model_format({"model_format": "TORCH_SCRIPT"})
        config = None
        source = {"pretrained": entry.name}
        extra.setdefault("description", entry.description)
    model_id = new_id()

    def tx_body(tx: Tx):
        gid, version, created = model_groups.take_version(tx, ctx, name, group_id)
        doc = models.new_model_doc(name=name, group_id=gid, version=version, fn=fn, fmt=fmt, config=config,
                                   state=ModelState.REGISTERING, extra=extra)
        tx.put(K.MODEL, model_id, doc, created=doc["created_time"])
        task = tasks.new_task(TaskType.REGISTER_MODEL, None, fn.value, [])
        task.update(_model_id=model_id, _source=source, _deploy=deploy,
                    _group={"id": gid, "version": version, "created": created})
        return tasks.create(tx, task)

    task_id = ctx.docs.transact(tx_body)
    from mlcommons.core import jobs

    jobs.enqueue_register(ctx, task_id, model_id, name)
    return {"task_id": task_id, "status": TaskState.CREATED.value}


class RegisterFailed(Exception):
    pass


def execute(ctx: Context, task_id: str, node_id: str, materialize: Materialize) -> str | None:
    """Run a REGISTER_MODEL task on a worker. Returns the model id, or None if there was nothing to do."""
    task = ctx.docs.get(K.TASK, task_id)
    if task is None or TaskState(task["state"]).terminal:
        return None
    model_id = task["_model_id"]
    source = task["_source"]
    ctx.docs.update(K.TASK, task_id, {"worker_node": [node_id]})
    store = _CountingStore(ctx.blobs)
    try:
        model = ctx.docs.get(K.MODEL, model_id)
        if model is None:
            raise RegisterFailed("the model was deleted while it was being registered")
        if "url" in source:
            fields = _from_url(ctx, model_id, source, store)
        else:
            entry = pretrained.CATALOG[source["pretrained"]]
            info = materialize(ctx, entry)
            store.written = info["total_chunks"]
            ctx.blobs.copy_chunks(info["blob_id"], model_id, info["total_chunks"])
            fields = {k: info[k] for k in ("total_chunks", "model_content_hash_value",
                                           "model_content_size_in_bytes")}
            fields["model_config"] = models.normalize_config(info["model_config"])
    except Exception as exc:  # every failure is reported on the task and undone
        reason = str(exc) if isinstance(exc, (RegisterFailed, ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (RegisterFailed, ValueError, OSError)):
            log.exception("register task %s failed", task_id)
        _fail(ctx, task_id, task, model_id, store.written, reason)
        return None

    def tx_body(tx: Tx):
        current = tx.get(K.TASK, task_id)
        if current is None or TaskState(current["state"]).terminal:
            raise RegisterFailed("task ended while registering")
        if tx.get(K.MODEL, model_id) is None:
            raise RegisterFailed("the model was deleted while it was being registered")
        now = now_ms()
        tx.update(K.MODEL, model_id, {**fields, "model_state": ModelState.REGISTERED.value,
                                      "last_registered_time": now, "last_updated_time": now})
        tasks.transition(tx, task_id, TaskState.COMPLETED, model_id=model_id)

    try:
        ctx.docs.transact(tx_body)
    except RegisterFailed as exc:
        _fail(ctx, task_id, task, model_id, store.written, str(exc))
        return None
    if task.get("_deploy"):
        try:
            deploys.deploy(ctx, model_id)
        except Exception as exc:  # the registration stands; the deploy error is logged
            log.warning("deploy after register of %s failed: %s", model_id, exc)
    return model_id


def _from_url(ctx: Context, model_id: str, source: dict[str, str], store: "_CountingStore") -> dict[str, Any]:
    chunk_size = ctx.settings.get("mlcommons.model_store.chunk_size")
    max_size = ctx.settings.get("mlcommons.model_store.max_model_size")
    timeout = ctx.settings.get("mlcommons.model_store.url_timeout_seconds")
    try:
        with urllib.request.urlopen(source["url"], timeout=timeout) as response:  # noqa: S310 (checked above)
            digest = write_chunks(store, model_id, response, chunk_size, max_size=max_size)
    except urllib.error.HTTPError as exc:
        raise RegisterFailed(f"Failed to download model from [{source['url']}]: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise RegisterFailed(f"Failed to download model from [{source['url']}]: {exc.reason}") from None
    if digest.size == 0:
        raise RegisterFailed(f"The model file at [{source['url']}] is empty")
    if digest.sha256 != source["sha256"]:
        raise RegisterFailed("model content changed")
    return {"total_chunks": digest.total_chunks, "model_content_size_in_bytes": digest.size,
                     "model_content_hash_value": digest.sha256}


class _CountingStore:
    """Wraps the model store to know how many chunks a failed download left behind."""

    def __init__(self, inner):
        self.inner = inner
        self.written = 0

    def put_chunk(self, model_id: str, number: int, data: bytes) -> None:
        self.inner.put_chunk(model_id, number, data)
        self.written = max(self.written, number + 1)


def abandon(ctx: Context, task_id: str, reason: str) -> None:
    """The node running this register task is gone: fail it and undo what it wrote."""
    task = ctx.docs.get(K.TASK, task_id)
    if task is None or TaskState(task["state"]).terminal or task.get("task_type") != TaskType.REGISTER_MODEL.value:
        return
    _fail(ctx, task_id, task, task["_model_id"], None, reason)


def _fail(ctx: Context, task_id: str, task: dict, model_id: str, written: int | None, reason: str) -> None:
    ctx.blobs.delete_chunks(model_id, written)
    ctx.docs.delete(K.MODEL, model_id)
    group = task.get("_group") or {}
    if group.get("id"):
        model_groups.release_version(ctx, group["id"], group["version"], bool(group.get("created")))
    tasks.finish(ctx, task_id, TaskState.FAILED, error=reason)
