"""Runtimes for models uploaded through Elasticsearch's trained-model API (as Eland uploads them).

A deployed Elasticsearch model is a folder holding

- ``model.pt``: the definition parts concatenated, a TorchScript archive as Eland traces it,
  called positionally as ``model(input_ids, attention_mask, token_type_ids, position_ids)``
  (position ids ``arange`` per row; a module taking fewer or dict inputs is called by its schema);
- ``vocabulary.json``: the vocabulary upload, ``{"vocabulary": [...], "merges"?, "scores"?}``.

The ``inference_config`` (``{task: {"tokenization": {...}, ...}}``) names the task and how to
tokenize. Tasks: ``text_embedding`` (the module returns the pooled embedding, (n, dim)),
``text_expansion`` (ELSER-style vocabulary weights, (n, vocab)) and ``text_similarity`` (a
cross-encoder over (query, text) pairs, the first logit as score).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlcommons.errors import NodeError
from mlcommons.types import FunctionName
from workers.runtimes.base import Encoded, Runtime
from workers.runtimes.jit import WARM_UP_TEXT, TorchRuntime, first_tensor, unsupported_output
from workers.runtimes.similarity import Pair, PairScorer, split_pairs
from workers.runtimes.sparse import check_vocabulary_width, to_sparse_dict, vocabulary_weights
from workers.runtimes.vocab import VocabTokenizer, load_vocab_tokenizer

MODEL_FILE = "model.pt"
VOCABULARY_FILE = "vocabulary.json"


def load_eland_runtime(model_dir: Path, inference_config: dict, *, device: str = "cpu",
                       prepack: bool = True) -> Runtime:
    """Load ``model_dir/model.pt`` with ``model_dir/vocabulary.json`` for the one task in
    ``inference_config`` (``prepack`` as for ``load_runtime``). Raises :class:`NodeError` for
    anything we cannot serve."""
    if not isinstance(inference_config, dict) or len(inference_config) != 1:
        raise NodeError(f"inference_config must hold exactly one task: one of {', '.join(RUNTIMES)}")
    task, settings = next(iter(inference_config.items()))
    if task not in RUNTIMES:
        raise NodeError(f"unsupported inference_config [{task}]; supported: {', '.join(RUNTIMES)}")
    settings = dict(settings or {})
    model_dir = Path(model_dir)
    tokenizer = load_vocab_tokenizer(_read_vocabulary(model_dir / VOCABULARY_FILE), settings.get("tokenization"))
    runtime = RUNTIMES[task](model_dir / MODEL_FILE, tokenizer, settings, device=device)
    if prepack:
        runtime.prepack()
    return runtime


def _read_vocabulary(path: Path) -> dict:
    if not path.is_file() or path.is_symlink():
        raise NodeError(f"no {path.name} in the model folder: was the vocabulary uploaded?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NodeError(f"cannot read {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise NodeError(f"{path.name} must hold the vocabulary upload object")
    return data


class ElandRuntime(TorchRuntime):
    """The shared part: a traced module, its :class:`VocabTokenizer`, and the task settings."""

    task_type: str

    def __init__(self, pt_path: Path, tokenizer: VocabTokenizer, settings: dict, *, device: str = "cpu"):
        self.tokenizer = tokenizer
        self.settings = settings
        super().__init__(pt_path, device=device)

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_length

    def tokenize(self, texts: Sequence[str]) -> Encoded:
        return self.tokenizer.encode(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.tokenizer.count(texts)

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Whether each text loses tokens to truncation (``is_truncated`` in ``_infer``)."""
        return self.tokenizer.truncated(texts)


class ElandTextEmbedding(ElandRuntime):
    """``text_embedding``: one float32 (dim,) vector per text."""

    function_name = FunctionName.TEXT_EMBEDDING
    task_type = "text_embedding"

    def __init__(self, pt_path: Path, tokenizer: VocabTokenizer, settings: dict, *, device: str = "cpu"):
        super().__init__(pt_path, tokenizer, settings, device=device)
        self.embedding_dimension = 0
        out = self._warm_up(self.tokenize([WARM_UP_TEXT]))
        if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] == 0:
            raise unsupported_output(f"shape {out.shape} for one text; expected (1, dim)")
        self.embedding_dimension = int(out.shape[1])
        declared = settings.get("embedding_size")
        if declared is not None and declared != self.embedding_dimension:
            self.close()
            raise NodeError(
                f"inference_config.text_embedding.embedding_size is {declared} but the model returns "
                f"{self.embedding_dimension}-dimensional embeddings"
            )

    def forward(self, enc: Encoded) -> np.ndarray:
        """float32 (len(enc), embedding_dimension)."""
        if len(enc) == 0:
            return np.zeros((0, self.embedding_dimension), dtype=np.float32)
        return self._run(enc, _embedding)


def _embedding(out, attention_mask: torch.Tensor) -> torch.Tensor:
    emb = first_tensor(out, ("sentence_embedding",))
    if emb.dim() != 2:
        raise unsupported_output(f"a tensor of shape {tuple(emb.shape)}; expected (n, dim)")
    return emb


class ElandTextExpansion(ElandRuntime):
    """``text_expansion``: vocabulary-sized weights per text; ``to_sparse`` gives ``{token: w}``."""

    function_name = FunctionName.SPARSE_ENCODING
    task_type = "text_expansion"

    def __init__(self, pt_path: Path, tokenizer: VocabTokenizer, settings: dict, *, device: str = "cpu"):
        super().__init__(pt_path, tokenizer, settings, device=device)
        self._skip = np.zeros(tokenizer.vocab_size, dtype=bool)
        self._skip[tokenizer.special_ids] = True
        self.embedding_dimension = 0
        out = self._warm_up(self.tokenize([WARM_UP_TEXT]))
        check_vocabulary_width(out, tokenizer.vocab_size)
        self.embedding_dimension = int(out.shape[1])

    def forward(self, enc: Encoded) -> np.ndarray:
        """float32 (len(enc), vocab)."""
        if len(enc) == 0:
            return np.zeros((0, self.embedding_dimension), dtype=np.float32)
        return self._run(enc, vocabulary_weights)

    def to_sparse(self, row: np.ndarray) -> dict[str, float]:
        """The positive weights of one row keyed by vocabulary token, special tokens left out."""
        return to_sparse_dict(row, self.tokenizer.vocabulary, self._skip)

    def sparse(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [self.to_sparse(row) for row in self.embed(texts)]


class ElandTextSimilarity(PairScorer, ElandRuntime):
    """``text_similarity``: a cross-encoder; (query, text) pairs in, one float32 score each.

    The query is the first sequence of each pair, so ``truncate: first`` cuts the query and
    ``second`` the text, as in Elasticsearch. ``tokenize`` and ``count_tokens`` take pairs.
    """

    def __init__(self, pt_path: Path, tokenizer: VocabTokenizer, settings: dict, *, device: str = "cpu"):
        super().__init__(pt_path, tokenizer, settings, device=device)
        self._check_warm_up()

    def tokenize_pairs(self, queries: Sequence[str], texts: Sequence[str]) -> Encoded:
        return self.tokenizer.encode_pairs(queries, texts)

    def count_tokens(self, pairs: Sequence[Pair]) -> list[int]:
        return self.tokenizer.count_pairs(*split_pairs(pairs))

    def truncated(self, pairs: Sequence[Pair]) -> list[bool]:
        return self.tokenizer.truncated_pairs(*split_pairs(pairs))


RUNTIMES: dict[str, type[ElandRuntime]] = {
    "text_embedding": ElandTextEmbedding,
    "text_expansion": ElandTextExpansion,
    "text_similarity": ElandTextSimilarity,
}
