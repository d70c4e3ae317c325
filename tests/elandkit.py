"""Tiny models for the Elasticsearch (Eland) and the extra OpenSearch runtimes, built offline.

Everything is random (fixed seeds) over a hand-written vocabulary of about a hundred tokens, so a
model has a few tens of thousands of parameters and builds, traces and runs in well under a second.

- :func:`eland_model` traces as Eland does: ``forward(input_ids, attention_mask, token_type_ids,
  position_ids)``, saved with ``torch.jit.save``; returns the bytes Eland would upload as definition
  parts, the vocabulary upload and the ``inference_config``.
- :func:`opensearch_archive` zips what opensearch-py-ml exports for SPARSE_ENCODING (a dict-input
  ``NeuralSparseModel``), SPARSE_TOKENIZE (``tokenizer.json`` + ``idf.json``) and TEXT_SIMILARITY
  (a sequence classifier traced with keyword inputs).
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from pathlib import Path

import torch

from mlcommons.types import FunctionName, ModelFormat

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDS = (
    "the a an and or of to in on for with is are was be it this that as at by from hello world "
    "quick brown fox jumps over lazy dog search vector sparse dense model text query document "
    "elastic open embedding token weight score cross encoder river bank money city new york "
    "what who where when how why red blue green one two three four five six seven eight nine ten"
).split()
_SUFFIXES = ["##s", "##ing", "##ed", "##er", "##ly", "##es", "##y", "##n"]
_PUNCT = list(".,!?;:'\"()-")
_LETTERS = list("abcdefghijklmnopqrstuvwxyz") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
TASK_TYPES = ("text_embedding", "text_expansion", "text_similarity")
HIDDEN = 32
SEED = 0


def tiny_vocabulary() -> list[str]:
    """A small WordPiece vocabulary: BERT's specials first, then words, suffixes, punctuation and
    single letters (so every lower-case ASCII word tokenizes without [UNK])."""
    return list(dict.fromkeys(BERT_SPECIALS + _WORDS + _SUFFIXES + _PUNCT + _LETTERS))


def vocabulary_upload(kind: str = "bert") -> dict:
    """A tiny vocabulary upload for each Elasticsearch tokenization: WordPiece for ``bert`` and
    ``mpnet``, byte-level BPE with merges for ``roberta``, Unigram with scores for
    ``xlm_roberta``. Each tokenizes "hello world" to two whole-word tokens."""
    if kind == "bert":
        return {"vocabulary": tiny_vocabulary()}
    roberta_specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    if kind == "mpnet":
        return {"vocabulary": roberta_specials + tiny_vocabulary()[len(BERT_SPECIALS):]}
    if kind == "roberta":
        from tokenizers import pre_tokenizers

        merges = ["h e", "l l", "he ll", "hell o", "\u0120 w", "o r", "\u0120w or", "l d", "\u0120wor ld"]
        merged = [m.replace(" ", "") for m in merges]
        alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
        return {"vocabulary": roberta_specials + alphabet + merged, "merges": merges}
    if kind == "xlm_roberta":
        pieces = {"\u2581": -3.0, "\u2581hello": -2.0, "\u2581world": -2.0, "\u2581he": -4.0, "llo": -4.0}
        pieces.update({c: -6.0 for c in "helowrd"})
        return {"vocabulary": roberta_specials + list(pieces), "scores": [0.0] * 5 + list(pieces.values())}
    raise ValueError(f"unknown tokenization {kind!r}")


def tokenization(max_sequence_length: int = 64, truncate: str = "first", **extra) -> dict:
    """A BERT tokenization config as ``PUT _ml/trained_models`` stores it."""
    return {"bert": {"do_lower_case": True, "max_sequence_length": max_sequence_length,
                     "truncate": truncate, "span": -1, "with_special_tokens": True, **extra}}


def eland_model(tmp_dir: Path, task_type: str, *, seed: int = SEED) -> tuple[bytes, dict, dict]:
    """``(definition_bytes, vocabulary_upload, inference_config)`` for one Eland task."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}; expected one of {TASK_TYPES}")
    vocab = tiny_vocabulary()
    module = _eland_module(task_type, len(vocab), seed)
    upload = {"vocabulary": vocab}
    settings: dict = {"tokenization": tokenization()}
    if task_type == "text_embedding":
        settings["embedding_size"] = HIDDEN
    sample = _sample(upload, settings["tokenization"], pairs=task_type == "text_similarity")
    positions = torch.arange(sample.input_ids.shape[1]).expand(sample.input_ids.shape)
    args = tuple(torch.from_numpy(a) for a in (sample.input_ids, sample.attention_mask, sample.token_type_ids))
    definition = _save(_trace(module, (*args, positions.contiguous())))
    # Eland writes the traced model to a file and uploads that file's bytes in parts.
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    (Path(tmp_dir) / f"eland-{task_type}-s{seed}.pt").write_bytes(definition)
    return definition, upload, {task_type: settings}


def write_eland_folder(folder: Path, definition: bytes, vocabulary: dict) -> Path:
    """The folder :func:`workers.runtimes.eland.load_eland_runtime` reads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pt").write_bytes(definition)
    (folder / "vocabulary.json").write_text(json.dumps(vocabulary), encoding="utf-8")
    return folder


def opensearch_archive(tmp_dir: Path, function_name: str | FunctionName, *, seed: int = SEED) -> tuple[Path, dict]:
    """Zip a tiny SPARSE_ENCODING, SPARSE_TOKENIZE or TEXT_SIMILARITY model as opensearch-py-ml
    does; returns the zip and ``model_content_hash_value``, ``model_content_size_in_bytes``,
    ``model_config`` (None for the sparse functions, as their registrations carry none) and
    ``idf`` (the IDF table, SPARSE_TOKENIZE only)."""
    function = FunctionName(str(getattr(function_name, "value", function_name)).upper())
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    name = f"tiny-{function.value.lower().replace('_', '-')}"
    files: dict[str, bytes] = {"tokenizer.json": opensearch_tokenizer_json().encode()}
    info: dict = {"model_config": None}
    if function is FunctionName.SPARSE_TOKENIZE:
        idf = {"hello": 3.5, "world": 2.25, "search": 4.0, "the": 0.5, "##s": 1.5}
        files["idf.json"] = json.dumps(idf).encode()
        info["idf"] = idf
    elif function is FunctionName.SPARSE_ENCODING:
        vocab = tiny_vocabulary()
        model = _NeuralSparse(_bert("mlm", len(vocab), seed), [vocab.index(t) for t in BERT_SPECIALS]).eval()
        sample = _sample({"vocabulary": vocab}, tokenization(), pairs=False)
        features = {"input_ids": torch.from_numpy(sample.input_ids),
                    "attention_mask": torch.from_numpy(sample.attention_mask)}
        files[f"{name}.pt"] = _save(_trace(model, (features,), strict=False))
    elif function is FunctionName.TEXT_SIMILARITY:
        vocab = tiny_vocabulary()
        model = _bert("classifier", len(vocab), seed)
        sample = _sample({"vocabulary": vocab}, tokenization(), pairs=True)
        kwargs = {k: torch.from_numpy(getattr(sample, k)) for k in ("input_ids", "attention_mask", "token_type_ids")}
        files[f"{name}.pt"] = _save(_trace(model, None, strict=False, example_kwarg_inputs=kwargs))
        info["model_config"] = {"model_type": "bert", "embedding_dimension": 1,
                                "framework_type": "huggingface_transformers",
                                "all_config": model.config.to_json_string(use_diff=False)}
    else:
        raise ValueError(f"no tiny archive for {function.value}")
    out = tmp_dir / f"{name}-s{seed}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for arcname, data in files.items():
            zf.writestr(arcname, data)
    info["model_content_hash_value"] = hashlib.sha256(out.read_bytes()).hexdigest()
    info["model_content_size_in_bytes"] = out.stat().st_size
    return out, info


def opensearch_model_doc(function_name: str | FunctionName, info: dict) -> dict:
    """The model document a deploy hands to ``load_runtime`` for :func:`opensearch_archive`."""
    return {
        "function_name": str(getattr(function_name, "value", function_name)).upper(),
        "model_format": ModelFormat.TORCH_SCRIPT.value,
        "model_config": info.get("model_config"),
    }


def opensearch_tokenizer_json(max_length: int = 64) -> str:
    """A BERT ``tokenizer.json`` over :func:`tiny_vocabulary` with truncation set, as archives ship."""
    from workers.runtimes.vocab import Tokenization, build_tokenizer

    tok = build_tokenizer({"vocabulary": tiny_vocabulary()}, Tokenization.parse(tokenization(max_length)))
    tok.enable_truncation(max_length=max_length)
    return tok.to_str()


# -- building blocks ------------------------------------------------------------------------------


def _bert(head: str, vocab_size: int, seed: int):
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

    config = BertConfig(
        vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=HIDDEN * 2, max_position_embeddings=128, num_labels=1,
        initializer_range=0.3, attn_implementation="eager",
    )
    cls = {"base": BertModel, "mlm": BertForMaskedLM, "classifier": BertForSequenceClassification}[head]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


class _ElandEmbedding(torch.nn.Module):
    """Eland's sentence-transformer wrapper: the mean-pooled embedding."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids, position_ids):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, position_ids=position_ids)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class _ElandExpansion(torch.nn.Module):
    """ELSER-style: max over tokens of log(1 + relu(MLM logits)), padding masked."""

    def __init__(self, mlm):
        super().__init__()
        self.mlm = mlm

    def forward(self, input_ids, attention_mask, token_type_ids, position_ids):
        logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids, position_ids=position_ids)[0]
        weights = torch.log1p(torch.relu(logits)) * attention_mask.unsqueeze(-1).to(logits.dtype)
        return weights.max(dim=1).values


class _ElandSimilarity(torch.nn.Module):
    """A cross-encoder returning its logits in a tuple, as ``torchscript=True`` models do."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids, attention_mask, token_type_ids, position_ids):
        return self.classifier(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids, position_ids=position_ids,
                               return_dict=False)


class _NeuralSparse(torch.nn.Module):
    """opensearch-py-ml's NeuralSparseModel: dict in, ``{"output": (n, vocab)}`` out."""

    def __init__(self, mlm, special_ids: list[int]):
        super().__init__()
        self.mlm = mlm
        self.special_ids = special_ids

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask = features["attention_mask"]
        logits = self.mlm(input_ids=features["input_ids"], attention_mask=mask)[0]
        values, _ = torch.max(logits * mask.unsqueeze(-1), dim=1)
        values = torch.log(1 + torch.relu(values))
        values[:, self.special_ids] = 0
        return {"output": values}


def _eland_module(task_type: str, vocab_size: int, seed: int) -> torch.nn.Module:
    if task_type == "text_embedding":
        return _ElandEmbedding(_bert("base", vocab_size, seed)).eval()
    if task_type == "text_expansion":
        return _ElandExpansion(_bert("mlm", vocab_size, seed)).eval()
    return _ElandSimilarity(_bert("classifier", vocab_size, seed)).eval()


def _sample(upload: dict, tokenization_config: dict, *, pairs: bool):
    """A padded batch to trace with (tracing with padding keeps the attention-mask path)."""
    from workers.runtimes.vocab import load_vocab_tokenizer

    tok = load_vocab_tokenizer(upload, tokenization_config)
    texts = ["hello world", "the quick brown fox jumps over the lazy dog in the city"]
    if pairs:
        return tok.encode_pairs(["what is search", "who"], texts)
    return tok.encode(texts)


def _trace(module, args, **kwargs):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args is None:
            return torch.jit.trace(module, **kwargs)
        return torch.jit.trace(module, args, **kwargs)


def _save(traced) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    return buf.getvalue()


UPLOAD_PART = 4096  # Eland uploads 1 MiB parts; the tiny models are split in a few small ones


def upload_to_elasticsearch(es, model_id: str, model: tuple[bytes, dict, dict]) -> None:
    """Upload :func:`eland_model`'s output as Eland does: config, base64 definition parts, vocabulary."""
    import base64
    import math

    definition, vocabulary, inference_config = model
    es.ml.put_trained_model(model_id=model_id, model_type="pytorch", inference_config=inference_config,
                            input={"field_names": ["text_field"]})
    total = math.ceil(len(definition) / UPLOAD_PART)
    for part in range(total):
        piece = definition[part * UPLOAD_PART:(part + 1) * UPLOAD_PART]
        es.ml.put_trained_model_definition_part(model_id=model_id, part=part,
                                                definition=base64.b64encode(piece).decode(),
                                                total_definition_length=len(definition), total_parts=total)
    es.ml.put_trained_model_vocabulary(model_id=model_id, **vocabulary)


def load_eland(model: tuple[bytes, dict, dict], tmp_dir: Path):
    """The runtime a worker would load for :func:`eland_model`'s output (the caller closes it)."""
    from workers.runtimes.eland import load_eland_runtime

    definition, vocabulary, inference_config = model
    return load_eland_runtime(write_eland_folder(Path(tmp_dir) / "m", definition, vocabulary), inference_config)
