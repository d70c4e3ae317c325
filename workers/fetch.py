"""Fetch a registered model out of the model store onto this node, checked, and extract it."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable

from mlcommons.errors import ModelContentChanged, UnsafeArchive
from mlcommons.store.modelstore import Digest, ModelStore, read_chunks
from workers.extract import NotStreamable, StreamExtractor, safe_extract

log = logging.getLogger(__name__)

_bytes_read = 0  # model chunk bytes this process read out of Redis (mlcommons_model_chunk_bytes_read_total)
_bytes_lock = threading.Lock()


def chunk_bytes_read() -> int:
    return _bytes_read


def _count(size: int) -> None:
    global _bytes_read
    with _bytes_lock:
        _bytes_read += size


def fetch_and_extract(store: ModelStore, model_id: str, model: dict, work_dir: Path,
                      on_chunk: Callable[[int], None] | None = None) -> Path:
    """Stream the model's chunks while hashing and extracting them into a fresh folder under
    ``work_dir``, refuse a size or SHA-256 mismatch, and return the folder (the caller removes it
    when done with it). The extraction overlaps the reading and writes no copy of the archive
    (workers/extract.py, StreamExtractor); an archive the stream cannot vouch for is read again
    into a temporary file and extracted from there, which gives its canonical error, if any.
    ``on_chunk(n)`` runs after chunk ``n`` is written and may raise to abandon the fetch."""
    work_dir.mkdir(parents=True, exist_ok=True)
    total = int(model.get("total_chunks") or 0)
    if total <= 0:
        raise ModelContentChanged("the model has no chunks")
    expected_size = model.get("model_content_size_in_bytes")
    target = Path(tempfile.mkdtemp(prefix=f"{model_id}-", dir=work_dir))
    try:
        if expected_size is not None:
            try:
                extractor = StreamExtractor(target / "model", int(expected_size))
                _check(model, _read(store, model_id, total, extractor, on_chunk))
                extractor.finish()
                return target
            except (NotStreamable, UnsafeArchive) as exc:
                log.info("model %s: extracting from a file (%s)", model_id, exc)
                shutil.rmtree(target / "model", ignore_errors=True)
        _extract_from_file(store, model_id, model, total, target, on_chunk)
        return target
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _read(store: ModelStore, model_id: str, total: int, out, on_chunk) -> Digest:
    try:
        digest = read_chunks(store, model_id, total, out, on_chunk=on_chunk)
    except KeyError as exc:
        raise ModelContentChanged(str(exc.args[0])) from None
    _count(digest.size)
    return digest


def _check(model: dict, digest: Digest) -> None:
    expected_size = model.get("model_content_size_in_bytes")
    if expected_size is not None and digest.size != int(expected_size):
        raise ModelContentChanged(f"read {digest.size} bytes, registered {expected_size}")
    if digest.sha256 != (model.get("model_content_hash_value") or "").lower():
        raise ModelContentChanged("its SHA-256 differs from the registered model_content_hash_value")


def _extract_from_file(store: ModelStore, model_id: str, model: dict, total: int, target: Path,
                       on_chunk) -> None:
    fd, archive = tempfile.mkstemp(prefix=f"{model_id}-", suffix=".zip", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _read(store, model_id, total, out, on_chunk)
        _check(model, digest)
        safe_extract(Path(archive), target / "model")
    finally:
        os.unlink(archive)


def fetch_definition(store: ModelStore, model_id: str, model: dict, work_dir: Path,
                     on_chunk: Callable[[int], None] | None = None) -> Path:
    """A model uploaded through Elasticsearch's API: its definition parts form one TorchScript
    file. Stream them into ``<folder>/model/model.pt`` while hashing (refusing a size or SHA-256
    that differs from what was recorded at ``_start``), write the vocabulary beside it, and return
    the folder (the caller removes it)."""
    import orjson

    work_dir.mkdir(parents=True, exist_ok=True)
    total = int(model.get("total_chunks") or 0)
    if total <= 0:
        raise ModelContentChanged("the model has no definition parts")
    target = Path(tempfile.mkdtemp(prefix=f"{model_id}-", dir=work_dir))
    try:
        (target / "model").mkdir()
        with open(target / "model" / "model.pt", "wb") as out:
            try:
                digest = read_chunks(store, model_id, total, out, on_chunk=on_chunk)
            except KeyError as exc:
                raise ModelContentChanged(str(exc.args[0])) from None
            _count(digest.size)
        if digest.size != int(model.get("model_content_size_in_bytes") or -1):
            raise ModelContentChanged(f"read {digest.size} bytes, recorded {model.get('model_content_size_in_bytes')}")
        if digest.sha256 != (model.get("model_content_hash_value") or "").lower():
            raise ModelContentChanged("its SHA-256 differs from the one recorded when the deployment started")
        (target / "model" / "vocabulary.json").write_bytes(orjson.dumps(model.get("_vocabulary") or {}))
        return target
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
