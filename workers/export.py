"""Export models to ML Commons TorchScript archives: ``<name>.pt`` + ``tokenizer.json`` in a zip.

``export_sentence_transformer`` traces a whole SentenceTransformer the way opensearch-py-ml's
``save_as_pt`` does (one dict argument, a dict result with ``sentence_embedding``);
``export_huggingface_transformer`` traces a bare ``AutoModel`` as
``forward(input_ids, attention_mask) -> last_hidden_state`` for the runtime to pool.

Tracing records one path through Python code, so every export is checked before it is written:
the archive's files are loaded by the serving runtime and compared with the eager model on texts
of several lengths and batch sizes (including one past the truncation length).

sentence-transformers and transformers are imported inside the functions: serving never needs them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from workers.runtimes.tokenizer import DEFAULT_MAX_LENGTH, TextTokenizer

log = logging.getLogger(__name__)

MIN_COSINE = 0.9999
_ST_POOLING = {
    "cls": "CLS",
    "max": "MAX",
    "mean": "MEAN",
    "mean_sqrt_len_tokens": "MEAN_SQRT_LEN",
    "weightedmean": "WEIGHTED_MEAN",
    "lasttoken": "LAST_TOKEN",
}
_TRACE_TEXTS = [
    "A short one.",
    "Tracing needs a batch with padding, so these sample texts differ in length from each other.",
    "Medium length sample text for the tracer.",
]


class ExportMismatch(RuntimeError):
    """The traced module does not reproduce the eager model; the archive was not written."""


def export_sentence_transformer(
    model_path: str | Path,
    out_zip: Path,
    *,
    name: str | None = None,
    max_seq_length: int | None = None,
    model_format: str = "TORCH_SCRIPT",
) -> dict:
    """Trace the SentenceTransformer at ``model_path`` into the zip ``out_zip``: as TorchScript
    (the whole model, pooling and normalisation inside, as opensearch-py-ml traces it) or, with
    ``model_format="ONNX"``, its transformer alone as ONNX, pooled and normalised by the runtime
    from ``model_config``.

    Returns ``model_content_hash_value``, ``model_content_size_in_bytes`` and ``model_config``
    (model_type, embedding_dimension, framework_type, pooling_mode, normalize_result, all_config).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    model = SentenceTransformer(str(model_path), device="cpu")
    model.eval()
    if max_seq_length is not None:
        model.max_seq_length = int(max_seq_length)
    modules = list(model.children())
    if not modules or not isinstance(modules[0], Transformer):
        raise ValueError("only SentenceTransformers whose first module is a Transformer can be traced")
    transformer = modules[0]
    limit = _position_limit(transformer.auto_model.config)
    seq_len = min(_sane(model.max_seq_length) or limit, limit)
    model.max_seq_length = seq_len  # the eager reference must truncate where the archive does
    tokenizer_json = _tokenizer_json(model.tokenizer, seq_len)
    pooling = next((m for m in modules if isinstance(m, Pooling)), None)
    model_config = {
        "model_type": transformer.auto_model.config.model_type,
        "embedding_dimension": None,
        "framework_type": "sentence_transformers",
        "pooling_mode": _st_pooling_mode(pooling),
        "normalize_result": any(isinstance(m, Normalize) for m in modules),
        "all_config": transformer.auto_model.config.to_json_string(use_diff=False),
    }

    def reference(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=len(texts), convert_to_numpy=True)

    def trace(sample: dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
        # strict=False: the module returns a dict; only the two inputs opensearch-py-ml passes.
        inputs = {"input_ids": sample["input_ids"], "attention_mask": sample["attention_mask"]}
        return torch.jit.trace(model, (inputs,), strict=False)

    if str(model_format).upper() == "ONNX":
        if model_config["pooling_mode"] is None:
            raise ValueError("an ONNX export needs a pooling mode the runtime knows")
        write = _onnx(_LastHiddenState(transformer.auto_model))
    else:
        write = _torchscript(trace)
    return _export(write, reference, tokenizer_json, model_config, out_zip, name or _name_of(model_path))


def export_huggingface_transformer(
    model_path: str | Path,
    out_zip: Path,
    *,
    name: str | None = None,
    pooling_mode: str = "MEAN",
    normalize: bool = True,
    max_seq_length: int | None = None,
) -> dict:
    """Trace a bare Hugging Face ``AutoModel`` as ``forward(input_ids, attention_mask)`` returning
    its last hidden state; the runtime pools it with ``pooling_mode`` and L2-normalises it when
    ``normalize``. Returns the same dict as :func:`export_sentence_transformer`."""
    from transformers import AutoModel, AutoTokenizer

    from workers.runtimes.torchscript import parse_pooling_mode, pool

    mode = parse_pooling_mode(pooling_mode)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    hf_model = AutoModel.from_pretrained(str(model_path))
    hf_model.eval()
    limit = _position_limit(hf_model.config)
    seq_len = int(max_seq_length or min(_sane(hf_tokenizer.model_max_length) or limit, limit))
    tokenizer_json = _tokenizer_json(hf_tokenizer, seq_len)
    model_config = {
        "model_type": hf_model.config.model_type,
        "embedding_dimension": None,
        "framework_type": "huggingface_transformers",
        "pooling_mode": mode.value,
        "normalize_result": bool(normalize),
        "all_config": hf_model.config.to_json_string(use_diff=False),
    }

    def reference(texts: list[str]) -> np.ndarray:
        batch = hf_tokenizer(
            texts, padding=True, truncation=True, max_length=seq_len, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = hf_model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state
            emb = pool(hidden, batch["attention_mask"], mode)
            if normalize:
                emb = torch.nn.functional.normalize(emb, p=2.0, dim=-1)
        return emb.numpy()

    def trace(sample: dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
        wrapper = _LastHiddenState(hf_model).eval()
        return torch.jit.trace(wrapper, (sample["input_ids"], sample["attention_mask"]))

    return _export(_torchscript(trace), reference, tokenizer_json, model_config, out_zip, name or _name_of(model_path))


class _LastHiddenState(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


# -- shared steps -----------------------------------------------------------------------------


def _torchscript(trace: Callable[[dict[str, torch.Tensor]], torch.jit.ScriptModule]) -> Writer:
    """A writer that traces with ``trace`` and saves the TorchScript module as ``<name>.pt``."""
    def write(sample: dict[str, torch.Tensor], staging: Path, name: str) -> Path:
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            traced = trace(sample)
        for w in caught:
            if issubclass(w.category, torch.jit.TracerWarning):
                log.debug("tracer: %s (%s:%s)", w.message, w.filename, w.lineno)
        path = staging / f"{name}.pt"
        traced.save(str(path))
        return path

    return write


def _onnx(module: torch.nn.Module) -> Writer:
    """A writer that exports ``module`` (``forward(input_ids, attention_mask)`` returning token
    embeddings) as ``<name>.onnx``, batch and sequence dynamic, as ML Commons' ONNX archives hold."""
    def write(sample: dict[str, torch.Tensor], staging: Path, name: str) -> Path:
        path = staging / f"{name}.onnx"
        names = ["input_ids", "attention_mask"]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (sample["input_ids"], sample["attention_mask"]), str(path),
                              dynamo=False, input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
                              opset_version=17)
        return path

    return write


Writer = Callable[[dict[str, torch.Tensor], Path, str], Path]


def _export(
    write: Writer,
    reference: Callable[[list[str]], np.ndarray],
    tokenizer_json: str,
    model_config: dict,
    out_zip: Path,
    name: str,
) -> dict:
    out_zip = Path(out_zip)
    with tempfile.TemporaryDirectory(prefix="mlc-export-") as tmp:
        staging = Path(tmp)
        (staging / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        # Trace on what the runtime will feed: our tokenizer over the saved tokenizer.json.
        tokenizer = TextTokenizer.from_file(staging / "tokenizer.json")
        enc = tokenizer.encode(_TRACE_TEXTS)
        sample = {k: torch.from_numpy(getattr(enc, k)) for k in ("input_ids", "attention_mask")}
        graph = write(sample, staging, name)
        model_config["embedding_dimension"] = _verify(staging, model_config, reference, tokenizer.max_length)
        _write_zip(out_zip, [graph, staging / "tokenizer.json"])

    digest = hashlib.sha256()
    with open(out_zip, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {
        "model_content_hash_value": digest.hexdigest(),
        "model_content_size_in_bytes": out_zip.stat().st_size,
        "model_config": model_config,
    }


def verification_texts(max_length: int) -> list[list[str]]:
    """Batches of varied sizes and lengths; one text runs past the truncation length."""
    long_text = " ".join(f"token{i % 97} and word{i % 13}" for i in range(max_length))
    texts = [
        "Hello world.",
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "Embeddings map texts to vectors so that similar meanings end up close together, "
        "which is what semantic search relies on.",
        "a",
        long_text,
        "Zürich, São Paulo and Kraków: accents and punctuation!?",
        "Numbers 1234 5678 and symbols #@$% mixed in.",
        "One more sentence of moderate length to fill the batch.",
    ]
    return [texts[1:2], texts[:3], texts, [texts[4], texts[3]]]


def _verify(staging: Path, model_config: dict, reference, max_length: int) -> int:
    if any(staging.glob("*.onnx")):
        from workers.runtimes.onnx import OnnxTextEmbedding as Exported
    else:
        from workers.runtimes.torchscript import TorchScriptTextEmbedding as Exported

    runtime = Exported(staging, model_config)
    try:
        for batch in verification_texts(max_length):
            got = runtime.embed(batch)
            want = np.asarray(reference(batch), dtype=np.float32)
            if got.shape != want.shape:
                raise ExportMismatch(f"traced output shape {got.shape} != eager {want.shape}")
            cosine = _cosine(got, want)
            worst = int(np.argmin(cosine))
            if cosine[worst] < MIN_COSINE:
                raise ExportMismatch(
                    f"traced model disagrees with the eager model (cosine {cosine[worst]:.6f} "
                    f"on text {worst} of a batch of {len(batch)})"
                )
        return runtime.embedding_dimension
    finally:
        runtime.close()


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(axis=1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return num / np.maximum(den, 1e-30)


def _write_zip(out_zip: Path, files: Sequence[Path]) -> None:
    """ZIP_STORED (weights do not compress; stored entries extract faster), written atomically."""
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out_zip.name + ".", suffix=".part", dir=out_zip.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for path in files:
                zf.write(path, arcname=path.name)
        os.replace(tmp, out_zip)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tokenizer_json(hf_tokenizer, max_length: int) -> str:
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("the model needs a fast (tokenizer.json) tokenizer to be exported")
    data = json.loads(backend.to_str())
    data["truncation"] = {
        "direction": "Right",
        "max_length": int(max_length),
        "strategy": "LongestFirst",
        "stride": 0,
    }
    data["padding"] = None
    return json.dumps(data, ensure_ascii=False)


def _st_pooling_mode(pooling) -> str | None:
    if pooling is None:
        return None
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None and hasattr(pooling, "get_pooling_mode_str"):  # sentence-transformers < 6
        mode = pooling.get_pooling_mode_str()
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    return "+".join(_ST_POOLING.get(m, str(m).upper()) for m in modes)


def _position_limit(config) -> int:
    from workers.runtimes.torchscript import usable_positions

    return usable_positions(config.to_dict()) or DEFAULT_MAX_LENGTH


def _sane(model_max_length) -> int | None:
    """HF uses a huge sentinel for 'no limit'."""
    if isinstance(model_max_length, int) and 0 < model_max_length < 1_000_000:
        return model_max_length
    return None


def _name_of(model_path: str | Path) -> str:
    base = Path(str(model_path).rstrip("/\\")).name or "model"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base)
