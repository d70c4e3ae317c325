"""Materialise a pretrained model: convert the bundled model once into an ML Commons TorchScript
(or ONNX) archive and keep it in the model store, where every registration of that name copies it from."""
from __future__ import annotations

import importlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson

from mlcommons.core.context import Context
from mlcommons.core.models.pretrained import Pretrained
from mlcommons.store.modelstore import write_chunks


def materialize(ctx: Context, entry: Pretrained, model_format: str = "TORCH_SCRIPT") -> dict[str, Any]:
    blob_id = entry.blob_id(model_format)
    meta_key = ctx.keys.blob_meta(blob_id)
    cached = _stored(ctx, meta_key, blob_id)
    if cached:
        return cached
    # One node converts; the others wait on the lock and then find the archive.
    with ctx.redis.lock(ctx.keys.blob_lock(blob_id), timeout=1800, blocking_timeout=1800):
        cached = _stored(ctx, meta_key, blob_id)
        if cached:
            return cached
        from workers.export import export_sentence_transformer

        package = importlib.import_module(entry.package)
        work = Path(tempfile.mkdtemp(prefix="pretrained-"))
        try:
            archive = work / (entry.name.rsplit("/", 1)[-1] + ".zip")
            info = export_sentence_transformer(package.get_model_path(), archive,
                                               name=entry.name.rsplit("/", 1)[-1], model_format=model_format)
            with open(archive, "rb") as fh:
                digest = write_chunks(ctx.blobs, blob_id, fh,
                                      ctx.settings.get("mlcommons.model_store.chunk_size"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        meta = {"blob_id": blob_id, "total_chunks": digest.total_chunks,
                "model_content_hash_value": digest.sha256, "model_content_size_in_bytes": digest.size,
                "model_config": info["model_config"]}
        ctx.redis.set(meta_key, orjson.dumps(meta))
        return meta


def _stored(ctx: Context, meta_key: str, blob_id: str) -> dict[str, Any] | None:
    """The archive's description if every one of its chunks is indexed in the store (an archive
    stored before the chunk index existed is converted again)."""
    cached = ctx.redis.get(meta_key)
    if not cached:
        return None
    meta = orjson.loads(cached)
    return meta if len(ctx.blobs.sizes(blob_id)) == meta["total_chunks"] else None
