"""Runtimes: an extracted model folder plus its model document in, a :class:`Runtime` out.

Only torch, onnxruntime, tokenizers and numpy are imported here; sentence-transformers and transformers are
for export tooling, not for serving.
"""
from __future__ import annotations

from pathlib import Path

from mlcommons.errors import NodeError
from mlcommons.types import FrameworkType, FunctionName, ModelFormat
from workers.runtimes.base import Encoded, Runtime

__all__ = ["Encoded", "Runtime", "load_runtime"]


def load_runtime(model_dir: Path, model: dict, *, device: str = "cpu", prepack: bool = True) -> Runtime:
    """Load the model in ``model_dir`` as described by its model document ``model``; with
    ``prepack``, let the runtime make itself cheaper to run where that keeps its output
    (``Runtime.prepack``; ``mlcommons.deploy.prepack_weights``).

    Raises :class:`NodeError` for a format or function we cannot serve, a broken archive, or an
    ``embedding_dimension`` that disagrees with what the model actually returns.
    """
    function = _enum(FunctionName, model.get("function_name") or model.get("algorithm"), "function_name")
    model_format = _enum(ModelFormat, model.get("model_format"), "model_format")
    config = model.get("model_config") or {}
    if not isinstance(config, dict):
        raise NodeError("model_config must be an object")
    if config.get("framework_type"):
        _enum(FrameworkType, config["framework_type"], "model_config.framework_type")

    if function is FunctionName.TEXT_EMBEDDING and model_format is ModelFormat.TORCH_SCRIPT:
        from workers.runtimes.torchscript import TorchScriptTextEmbedding

        runtime: Runtime = TorchScriptTextEmbedding(Path(model_dir), config, device=device)
    elif function is FunctionName.TEXT_EMBEDDING and model_format is ModelFormat.ONNX:
        from workers.runtimes.onnx import OnnxTextEmbedding

        runtime = OnnxTextEmbedding(Path(model_dir), config, device=device)
    elif function is FunctionName.SPARSE_ENCODING and model_format is ModelFormat.TORCH_SCRIPT:
        from workers.runtimes.sparse import TorchScriptSparseEncoding

        runtime = TorchScriptSparseEncoding(Path(model_dir), config, device=device)
    elif function is FunctionName.SPARSE_TOKENIZE:
        # No model to run: a tokenizer.json and an idf.json, whatever format the archive claims.
        from workers.runtimes.sparse import SparseTokenize

        runtime = SparseTokenize(Path(model_dir), config, device=device)
    elif function is FunctionName.TEXT_SIMILARITY and model_format is ModelFormat.TORCH_SCRIPT:
        from workers.runtimes.similarity import TorchScriptTextSimilarity

        runtime = TorchScriptTextSimilarity(Path(model_dir), config, device=device)
    else:
        raise NodeError(
            f"unsupported model: function_name {function.value} in format {model_format.value} "
            "(supported as TORCH_SCRIPT: TEXT_EMBEDDING, SPARSE_ENCODING, SPARSE_TOKENIZE, TEXT_SIMILARITY; "
            "as ONNX: TEXT_EMBEDDING)"
        )

    declared = config.get("embedding_dimension")
    if (function is FunctionName.TEXT_EMBEDDING and declared is not None
            and _as_int(declared) != runtime.embedding_dimension):
        runtime.close()
        raise NodeError(
            f"model_config.embedding_dimension is {declared} but the model returns "
            f"{runtime.embedding_dimension}-dimensional embeddings"
        )
    if prepack:
        runtime.prepack()
    return runtime


def _enum(kind, value, field: str):
    if not value:
        raise NodeError(f"the model document has no {field}")
    try:
        return kind(str(value).strip().upper())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise NodeError(f"unknown {field} {value!r}; expected one of {allowed}") from None


def _as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
