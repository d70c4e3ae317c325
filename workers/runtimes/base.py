"""The one interface every runtime implements: texts in, float32 vectors out.

A runtime owns a loaded model and its tokenizer. Tokenizing and running the model are separate
steps so that the inference loop can tokenize (cheap, Rust) to decide how to batch, then run the
model once per batch. Text embedding is the first runtime; sparse encoding and text similarity
(cross-encoder scores) implement the same shape, with ``forward`` returning their own arrays.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcommons.types import FunctionName


@dataclass(frozen=True, eq=False)
class Encoded:
    """A tokenized batch, padded on the right to its longest text.

    Every array is int64 with shape (n, longest); ``token_counts`` (shape (n,)) is the number of
    real (non-padding) tokens of each text, after truncation.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    token_counts: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def padded_length(self) -> int:
        return int(self.input_ids.shape[1])

    def select(self, rows: Sequence[int] | np.ndarray) -> Encoded:
        """The given rows, in that order, re-padded to the longest of them: lets a caller
        tokenize once, plan batches from ``token_counts``, and run each batch without re-tokenizing."""
        rows = np.asarray(rows, dtype=np.intp)
        counts = self.token_counts[rows]
        width = int(counts.max()) if len(rows) else 0
        return Encoded(
            input_ids=self.input_ids[rows, :width],
            attention_mask=self.attention_mask[rows, :width],
            token_type_ids=self.token_type_ids[rows, :width],
            token_counts=counts,
        )


class Runtime(ABC):
    """A loaded model that turns texts into vectors.

    Attributes every implementation sets: ``function_name`` (what the model does), ``device``
    (where its weights live, e.g. ``"cpu"``) and ``embedding_dimension`` (the width of each
    output row).
    """

    function_name: FunctionName
    device: str
    embedding_dimension: int

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> Encoded:
        """Tokenize ``texts`` with truncation, padded to the longest of them."""

    @abstractmethod
    def forward(self, enc: Encoded) -> np.ndarray:
        """Run the model on a tokenized batch: float32, shape (len(enc), embedding_dimension)."""

    @abstractmethod
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text will cost after truncation; cheap enough to plan batches with."""

    @abstractmethod
    def close(self) -> None:
        """Drop every reference to the weights so their memory can be freed; idempotent."""

    # Whether a batch may run on more threads than its allocation's, on the wide lane
    # (workers/inference.py): torch's runtimes take their count from torch.set_num_threads per
    # batch; onnxruntime's make the lane a session of its own (use_threads), once.
    borrows_threads = True

    def use_threads(self, threads: int) -> None:
        """Called by each allocation thread, before it serves, with its threads per allocation
        (torch's runtimes take theirs from ``torch.set_num_threads``; onnxruntime's need a session)."""

    # What the linear layers multiply in once prepack() has packed them ("float32", "bfloat16");
    # None while they run as loaded.
    prepacked_precision: str | None = None

    def prepack(self, precision: str = "float32") -> int:
        """Make the loaded model cheaper to run where that keeps its output (TorchScript on the CPU:
        workers/runtimes/prepack.py; ``precision`` "bfloat16" lets its linear layers multiply in
        bfloat16); how many layers changed. Called once, after loading."""
        return 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``forward(tokenize(texts))``: one row per text, in the order given."""
        return self.forward(self.tokenize(texts))

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TokenizedByFile:
    """A runtime's tokenizing half, over the ``TextTokenizer`` it keeps in ``self._tokenizer``
    (listed before :class:`Runtime` among a runtime's bases)."""

    _tokenizer: Any

    @property
    def max_length(self) -> int:
        return self._tokenizer.max_length

    def tokenize(self, texts: Sequence[str]) -> Encoded:
        return self._tokenizer.encode(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._tokenizer.count(texts)
