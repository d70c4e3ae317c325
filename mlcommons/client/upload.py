"""``models upload``: what to send, and sending it the ML Commons way.

A model reaches the server as an ML Commons archive (a zip of one TorchScript ``.pt`` or ONNX
``.onnx`` graph and its ``tokenizer.json``) in chunks: ``POST models/_register_meta`` declares
the name, format, SHA-256, size, chunk count and ``model_config``; ``POST
models/<id>/upload_chunk/<n>`` sends each chunk's raw bytes; the model is REGISTERED once the last
one is in (``core/models/records.py``).

Where the archive and its ``model_config`` come from:

- a model folder (sentence-transformers: it has ``modules.json``; a bare Hugging Face
  transformer: ``config.json``) is traced and packaged by ``workers/export.py``, which checks the
  traced graph against the eager model and returns the config the server wants;
- a zip is sent as it is, with the ``model_config`` of ``--model-config`` (the file
  opensearch-py-ml's ``register_model`` takes, or the bare object), or else the one
  :func:`probe_archive` reads off the archive by loading it with the workers' own runtime.
"""
from __future__ import annotations

import hashlib
import json
import math
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcommons.client.http import ML, ClientError, Connection, Exit, ServerError, quote, usage

CHUNK_BYTES = 10_000_000  # the server's largest chunk (records.MAX_CHUNK_BYTES): "10 MB" in ML Commons
MAX_CONFIG_FILE = 1_000_000
FORMATS = ("TORCH_SCRIPT", "ONNX")
POOLING_MODES = ("MEAN", "CLS", "MAX", "MEAN_SQRT_LEN", "WEIGHTED_MEAN")
# Fields of opensearch-py-ml's model config file that go into _register_meta as they are.
_META_FIELDS = ("name", "version", "description", "model_format", "function_name", "model_group_id",
                "deploy_setting", "rate_limiter", "is_enabled")


@dataclass
class Package:
    """An archive ready to upload, with everything ``_register_meta`` needs."""
    zip_path: Path
    sha256: str
    size: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def total_chunks(self) -> int:
        return max(1, math.ceil(self.size / CHUNK_BYTES))

    def register_body(self) -> dict[str, Any]:
        return {**self.meta, "model_content_hash_value": self.sha256,
                "model_content_size_in_bytes": self.size, "total_chunks": self.total_chunks}


def read_config_file(path: str | None) -> dict[str, Any]:
    """``--model-config``: opensearch-py-ml's file (``{"name", "version", "model_format",
    "model_config": {...}, ...}``) or a bare ``model_config`` object. Returns the register fields
    it gives, ``model_config`` among them."""
    if path is None:
        return {}
    source = Path(path)
    try:
        if source.stat().st_size > MAX_CONFIG_FILE:
            raise usage(f"--model-config [{path}] is larger than {MAX_CONFIG_FILE} bytes")
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise usage(f"cannot read --model-config [{path}]: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise usage(f"--model-config [{path}] is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise usage(f"--model-config [{path}] must hold a JSON object")
    if isinstance(data.get("model_config"), dict):
        out = {k: data[k] for k in _META_FIELDS if data.get(k) is not None}
        out["model_config"] = data["model_config"]
        return out
    return {"model_config": data}


def kind_of(path: Path) -> str:
    """``zip``, ``sentence_transformers`` or ``huggingface``; a usage error for anything else."""
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise usage(f"[{path}] is not a zip archive (nor a model folder)")
        return "zip"
    if path.is_dir():
        if (path / "modules.json").is_file():
            return "sentence_transformers"
        if (path / "config.json").is_file():
            return "huggingface"
        raise usage(f"[{path}] is neither a sentence-transformers folder (modules.json) nor a Hugging Face "
                    "model folder (config.json)")
    raise usage(f"[{path}] does not exist")


def format_of(zip_path: Path) -> str:
    """The archive's format, read from its graph's file name."""
    with zipfile.ZipFile(zip_path) as zf:
        names = [n.lower() for n in zf.namelist()]
    if any(n.endswith(".onnx") for n in names):
        return "ONNX"
    if any(n.endswith(".pt") for n in names):
        return "TORCH_SCRIPT"
    raise ClientError(Exit.PACKAGING, f"{zip_path.name} holds no .pt or .onnx graph: not an ML Commons archive")


def digest(path: Path) -> tuple[str, int]:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest(), path.stat().st_size


def package_folder(folder: Path, kind: str, out_dir: Path, *, model_format: str, pooling_mode: str,
                   normalize: bool, max_seq_length: int | None) -> tuple[Path, dict[str, Any]]:
    """Trace ``folder`` into ``out_dir/<name>.zip`` with ``workers/export.py`` (which verifies what it
    traced); returns the zip and the ``model_config`` to register."""
    try:
        from workers.export import ExportMismatch, export_huggingface_transformer, export_sentence_transformer
    except ImportError as exc:
        raise ClientError(Exit.PACKAGING, f"packaging a model folder needs torch and transformers: {exc}") from None
    out = out_dir / f"{folder.resolve().name or 'model'}.zip"
    try:
        if kind == "sentence_transformers":
            info = export_sentence_transformer(folder, out, max_seq_length=max_seq_length, model_format=model_format)
        else:
            if model_format != "TORCH_SCRIPT":
                raise usage("a Hugging Face folder is packaged as TORCH_SCRIPT only; ONNX needs a "
                            "sentence-transformers folder")
            info = export_huggingface_transformer(folder, out, pooling_mode=pooling_mode, normalize=normalize,
                                                  max_seq_length=max_seq_length)
    except ClientError:
        raise
    except ExportMismatch as exc:
        raise ClientError(Exit.PACKAGING, f"the traced model does not match {folder.name}: {exc}") from None
    except ImportError as exc:
        raise ClientError(Exit.PACKAGING, f"packaging {folder.name} needs a package that is missing: {exc}") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise ClientError(Exit.PACKAGING, f"cannot package {folder.name}: {exc}") from None
    return out, dict(info["model_config"])


def probe_archive(zip_path: Path, model_format: str) -> dict[str, Any]:
    """A text-embedding ``model_config`` read off an archive whose graph pools by itself (as
    opensearch-py-ml traces a SentenceTransformer): extracted as a node extracts it and loaded by
    the workers' runtime, its ``embedding_dimension`` is measured, and the graph is known to pool
    by itself when two pooling modes give the same vectors. A graph that returns token embeddings
    leaves pooling and normalisation unknown: that archive needs ``--model-config``.
    ``model_type`` is not in an archive: it is ``unknown`` unless ``--model-config`` names it."""
    try:
        import numpy as np

        from workers.extract import safe_extract
        from workers.runtimes import load_runtime
    except ImportError as exc:
        raise ClientError(Exit.PACKAGING, f"reading an archive without --model-config needs torch: {exc}") from None
    from mlcommons.errors import MLError, NodeError

    texts = ["A first sentence to embed.", "a second, longer sentence, so that the batch is padded and the "
             "pooling over its tokens shows"]
    vectors = []
    with tempfile.TemporaryDirectory(prefix="mlc-probe-") as tmp:
        try:
            safe_extract(zip_path, Path(tmp) / "model")
            for pooling in ("CLS", "MEAN"):
                doc = {"function_name": "TEXT_EMBEDDING", "model_format": model_format,
                       "model_config": {"pooling_mode": pooling, "normalize_result": False}}
                runtime = load_runtime(Path(tmp) / "model", doc, prepack=False)
                try:
                    vectors.append(np.asarray(runtime.embed(texts), dtype=np.float64))
                finally:
                    runtime.close()
        except (MLError, NodeError) as exc:
            raise ClientError(Exit.PACKAGING, f"cannot load {zip_path.name}: {exc}") from None
    if not np.allclose(vectors[0], vectors[1], rtol=1e-5, atol=1e-6):
        raise usage(f"{zip_path.name}'s graph returns token embeddings, so its pooling and normalisation are not "
                    "in the archive: give them with --model-config (pooling_mode, normalize_result, model_type, "
                    "embedding_dimension, framework_type huggingface_transformers)")
    return {"model_type": "unknown", "embedding_dimension": int(vectors[0].shape[1]),
            "framework_type": "sentence_transformers"}


def upload(conn: Connection, package: Package, advance: Callable[[int], None]) -> str:
    """Register the archive's meta and send its chunks in order; the model id. A failed upload
    deletes the half-registered model, so nothing stays REGISTERING."""
    answer = conn.post(f"{ML}/models/_register_meta", package.register_body())
    model_id = answer.get("model_id") if isinstance(answer, dict) else None
    if not isinstance(model_id, str) or not model_id:
        raise ServerError(200, "invalid_response", f"_register_meta answered no model_id: {answer!r}"[:500])
    try:
        with open(package.zip_path, "rb") as f:
            for number in range(package.total_chunks):
                chunk = f.read(CHUNK_BYTES)
                conn.post(f"{ML}/models/{quote(model_id)}/upload_chunk/{number}", data=chunk,
                          content_type="application/octet-stream")
                advance(len(chunk))
    except BaseException:
        try:
            conn.delete(f"{ML}/models/{quote(model_id)}")
        except ClientError:
            pass
        raise
    return model_id
