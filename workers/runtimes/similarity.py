"""Cross-encoder scores (``TEXT_SIMILARITY``) from an OpenSearch TorchScript archive.

opensearch-py-ml traces a Hugging Face sequence-classification model with the keyword inputs
``input_ids, attention_mask, token_type_ids`` (BGE rerankers included, fed zeros for the types);
others trace ``(input_ids, attention_mask)``. The module returns logits, bare, in a tuple or as a
dict's ``logits``; the score of a (query, text) pair is its first logit, as ML Commons reports it.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlcommons.types import FunctionName
from workers.runtimes.base import Encoded
from workers.runtimes.jit import (
    WARM_UP_TEXT,
    TorchRuntime,
    first_tensor,
    read_tokenizer_json,
    unsupported_output,
)
from workers.runtimes.torchscript import find_model_files

Pair = tuple[str, str]


def first_logit(out, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scores (n,) from a classifier's output: logits (n, k) -> column 0; (n,) as is."""
    logits = first_tensor(out, ("logits",))
    if logits.dim() == 2 and logits.shape[1] >= 1:
        return logits[:, 0]
    if logits.dim() == 1:
        return logits
    raise unsupported_output(f"logits of shape {tuple(logits.shape)}; expected (n, k)")


def split_pairs(pairs: Sequence[Pair]) -> tuple[list[str], list[str]]:
    """``[(query, text), ...]`` into the list of queries and the list of texts."""
    if isinstance(pairs, str):
        raise TypeError("a similarity model scores (query, text) pairs, not a single str")
    queries, texts = [], []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2:
            raise TypeError("a similarity model scores (query, text) pairs; use tokenize_pairs(queries, texts)")
        queries.append(pair[0])
        texts.append(pair[1])
    return queries, texts


class PairScorer:
    """What every cross-encoder runtime shares, over its own ``tokenize_pairs`` and ``_run``:
    pairs in for the batching loop, the first logit out, and scores against one query."""

    function_name = FunctionName.TEXT_SIMILARITY
    task_type = "text_similarity"
    embedding_dimension = 1

    def tokenize(self, pairs: Sequence[Pair]) -> Encoded:
        return self.tokenize_pairs(*split_pairs(pairs))

    def forward(self, enc: Encoded) -> np.ndarray:
        """float32 (len(enc),): the first logit of each pair."""
        if len(enc) == 0:
            return np.zeros((0,), dtype=np.float32)
        return self._run(enc, first_logit)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Scores of ``texts`` against one ``query`` (ML Commons' ``{query_text, text_docs}``)."""
        return self.forward(self.tokenize_pairs([query] * len(texts), texts))

    def _check_warm_up(self) -> None:
        out = self._warm_up(self.tokenize_pairs([WARM_UP_TEXT], [WARM_UP_TEXT]))
        if out.shape != (1,):
            raise unsupported_output(f"shape {out.shape} for one pair; expected (1,)")


class TorchScriptTextSimilarity(PairScorer, TorchRuntime):
    """A cross-encoder: (query, text) pairs in, one float32 score per pair out.

    ``tokenize`` and ``count_tokens`` take a sequence of (query, text) pairs, so the generic
    tokenize-then-batch loop works unchanged; ``embedding_dimension`` is 1.
    """

    def __init__(self, model_dir: Path, model_config: dict | None = None, *, device: str = "cpu"):
        pt_path, tokenizer_path = find_model_files(Path(model_dir))
        _, self._tokenizer = read_tokenizer_json(tokenizer_path, model_config or {})
        super().__init__(pt_path, device=device)
        self._check_warm_up()

    def tokenize_pairs(self, queries: Sequence[str], texts: Sequence[str]) -> Encoded:
        if len(queries) != len(texts):
            raise ValueError(f"{len(queries)} queries but {len(texts)} texts")
        return self._tokenizer.encode(list(zip(queries, texts)))

    def count_tokens(self, pairs: Sequence[Pair]) -> list[int]:
        queries, texts = split_pairs(pairs)
        return self._tokenizer.count(list(zip(queries, texts)))
