"""Sparse outputs from OpenSearch archives: ``SPARSE_ENCODING`` (a traced model) and
``SPARSE_TOKENIZE`` (a tokenizer and an IDF table, no model).

Both return one vocabulary-sized float32 row per text from ``forward``; ``to_sparse(row)`` turns a
row into ``{token: weight}`` with the positive weights only, special tokens left out. Token strings
are the tokenizer's own (``id_to_token``), which is what ML Commons' ``decode`` of one id gives for
the WordPiece vocabularies these models use.

- SPARSE_ENCODING archives (opensearch-py-ml's ``NeuralSparseModel``) hold a ``*.pt`` traced with a
  dict ``{input_ids, attention_mask}`` returning ``{"output": (n, vocab)}``: the max over tokens of
  ``log(1 + relu(MLM logits))``, masked. A model returning raw MLM logits (n, seq, vocab) is pooled
  that way here.
- SPARSE_TOKENIZE archives hold ``tokenizer.json`` and an optional ``idf.json``; each token of a
  text weighs its IDF (1.0 when absent), as opensearch-py-ml's ``SparseTokenizeModel`` does.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from mlcommons.errors import NodeError
from mlcommons.types import FunctionName
from workers.runtimes.base import Encoded, Runtime
from workers.runtimes.jit import (
    WARM_UP_TEXT,
    TorchRuntime,
    first_tensor,
    read_tokenizer_json,
    unsupported_output,
)
from workers.runtimes.torchscript import find_model_files

log = logging.getLogger(__name__)

IDF_FILE = "idf.json"
_OUTPUT_KEYS = ("output", "sparse_embedding")


def to_sparse_dict(row: np.ndarray, tokens: Sequence[str], skip: np.ndarray) -> dict[str, float]:
    """``{token: weight}`` for the positive entries of ``row`` whose ids are not in ``skip`` (a
    boolean mask over ids) and have a token string."""
    ids = np.flatnonzero(np.asarray(row) > 0)
    ids = ids[ids < min(len(tokens), len(skip))]
    ids = ids[~skip[ids]]
    return {tokens[i]: float(row[i]) for i in ids}


def check_vocabulary_width(out: np.ndarray, vocab_size: int) -> None:
    """The warm-up output of a sparse model must be one row as wide as the vocabulary (an MLM head
    padded wider is tolerated: ids past the vocabulary are dropped)."""
    if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] < vocab_size:
        raise unsupported_output(
            f"shape {out.shape} for one text; expected (1, {vocab_size}), one weight per vocabulary token"
        )
    if out.shape[1] > vocab_size:
        log.warning("the sparse model returns %d weights per text for a vocabulary of %d tokens",
                    out.shape[1], vocab_size)


def splade_pool(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """MLM logits (n, seq, vocab) to weights (n, vocab): max over real tokens of log(1+relu(x))."""
    weights = torch.log1p(torch.relu(logits.float()))
    weights = weights * attention_mask.unsqueeze(-1).to(weights.dtype)
    return weights.max(dim=1).values


class _TokenizerVocab:
    """The id -> token table and special-token mask of a ``tokenizer.json``."""

    def __init__(self, tokenizer: Tokenizer):
        # Not get_vocab_size(): that counts entries, and a vocabulary may skip ids.
        size = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1
        self.tokens: list[str] = [tokenizer.id_to_token(i) or "" for i in range(size)]
        self.special = np.zeros(size, dtype=bool)
        for token_id, added in tokenizer.get_added_tokens_decoder().items():
            if added.special and token_id < size:
                self.special[token_id] = True
        self.special |= np.array([t == "" for t in self.tokens], dtype=bool)


class TorchScriptSparseEncoding(TorchRuntime):
    """A neural sparse encoder: texts to vocabulary-sized weights."""

    function_name = FunctionName.SPARSE_ENCODING
    task_type = "sparse_encoding"

    def __init__(self, model_dir: Path, model_config: dict | None = None, *, device: str = "cpu"):
        model_config = model_config or {}
        pt_path, tokenizer_path = find_model_files(Path(model_dir))
        raw, self._tokenizer = read_tokenizer_json(tokenizer_path, model_config)
        self._vocab = _TokenizerVocab(raw)
        super().__init__(pt_path, device=device)
        self.embedding_dimension = 0
        out = self._warm_up(self.tokenize([WARM_UP_TEXT]))
        check_vocabulary_width(out, len(self._vocab.tokens))
        self.embedding_dimension = int(out.shape[1])

    def tokenize(self, texts: Sequence[str]) -> Encoded:
        return self._tokenizer.encode(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._tokenizer.count(texts)

    def forward(self, enc: Encoded) -> np.ndarray:
        """float32 (len(enc), vocab)."""
        if len(enc) == 0:
            return np.zeros((0, self.embedding_dimension), dtype=np.float32)
        return self._run(enc, vocabulary_weights)

    def to_sparse(self, row: np.ndarray) -> dict[str, float]:
        return to_sparse_dict(row, self._vocab.tokens, self._vocab.special)

    def sparse(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """``to_sparse`` of each row of ``embed(texts)``."""
        return [self.to_sparse(row) for row in self.embed(texts)]


def vocabulary_weights(out, attention_mask: torch.Tensor) -> torch.Tensor:
    """(n, vocab) weights from a sparse model's output: taken as they are, or pooled from raw MLM
    logits (n, tokens, vocab) as SPLADE/ELSER pool them."""
    weights = first_tensor(out, _OUTPUT_KEYS)
    if weights.dim() == 3:
        return splade_pool(weights, attention_mask)
    if weights.dim() != 2:
        raise unsupported_output(f"a tensor of shape {tuple(weights.shape)}; expected (n, vocab)")
    return weights


class SparseTokenize(Runtime):
    """Query-side sparse "encoding" without a model: each token of a text weighs its IDF."""

    function_name = FunctionName.SPARSE_TOKENIZE
    task_type = "sparse_tokenize"

    def __init__(self, model_dir: Path, model_config: dict | None = None, *, device: str = "cpu"):
        model_dir = Path(model_dir)
        self.device = "cpu"  # nothing runs on an accelerator
        tokenizer_path = _regular_file(model_dir, "tokenizer.json")
        if tokenizer_path is None:
            raise NodeError("no tokenizer.json in the model archive")
        raw, self._tokenizer = read_tokenizer_json(tokenizer_path, model_config or {})
        self._vocab = _TokenizerVocab(raw)
        self.embedding_dimension = len(self._vocab.tokens)
        self._weights = np.ones(self.embedding_dimension, dtype=np.float32)
        idf_path = _regular_file(model_dir, IDF_FILE)
        if idf_path is not None:
            for token, weight in _read_idf(idf_path).items():
                token_id = raw.token_to_id(token)
                if token_id is not None and token_id < self.embedding_dimension:
                    self._weights[token_id] = weight
        self._closed = False

    def tokenize(self, texts: Sequence[str]) -> Encoded:
        return self._tokenizer.encode(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._tokenizer.count(texts)

    def forward(self, enc: Encoded) -> np.ndarray:
        """float32 (len(enc), vocab): the IDF weight at each id the text holds, else 0."""
        if self._closed:
            raise NodeError("the model runtime is closed")
        out = np.zeros((len(enc), self.embedding_dimension), dtype=np.float32)
        rows, cols = np.nonzero(enc.attention_mask)
        ids = enc.input_ids[rows, cols]
        keep = (ids < self.embedding_dimension) & ~self._vocab.special[np.minimum(ids, self.embedding_dimension - 1)]
        out[rows[keep], ids[keep]] = self._weights[ids[keep]]
        return out

    def to_sparse(self, row: np.ndarray) -> dict[str, float]:
        return to_sparse_dict(row, self._vocab.tokens, self._vocab.special)

    def sparse(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [self.to_sparse(row) for row in self.embed(texts)]

    def close(self) -> None:
        self._closed = True


def _regular_file(model_dir: Path, name: str) -> Path | None:
    """``name`` at the top of the archive or one folder down, never through a symlink."""
    for path in [model_dir / name, *sorted(model_dir.glob(f"*/{name}"))]:
        if path.is_file() and not path.is_symlink():
            return path
    return None


def _read_idf(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NodeError(f"cannot read {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise NodeError(f"{path.name} must be an object of token to weight")
    try:
        return {str(k): float(v) for k, v in data.items()}
    except (TypeError, ValueError):
        raise NodeError(f"{path.name} must map tokens to numbers") from None
