"""Text tokenization over the ``tokenizers`` library (Rust; reads tokenizer.json, never a pickle).

ML Commons archives ship a ``tokenizer.json`` that was often saved with fixed padding (pad every
text to 128 or 512 tokens). That wastes most of the model's work on short texts, so fixed padding
is switched off and every batch is padded, here with numpy, to its own longest text.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from workers.runtimes.base import Encoded

DEFAULT_MAX_LENGTH = 512
_PAD_TOKENS = ("[PAD]", "<pad>")


class TextTokenizer:
    """Tokenizes batches of texts into right-padded int64 arrays.

    Truncation comes from tokenizer.json when the file sets it, else ``max_length``.
    """

    def __init__(self, tokenizer: Tokenizer, *, max_length: int = DEFAULT_MAX_LENGTH):
        padding = tokenizer.padding
        tokenizer.no_padding()
        if tokenizer.truncation is None:
            tokenizer.enable_truncation(max_length=int(max_length))
        self._tokenizer = tokenizer
        self.max_length: int = int(tokenizer.truncation["max_length"])
        if padding is not None:
            self.pad_id = int(padding["pad_id"])
            self.pad_type_id = int(padding.get("pad_type_id", 0))
        else:
            self.pad_id = next(
                (i for i in map(tokenizer.token_to_id, _PAD_TOKENS) if i is not None), 0
            )
            self.pad_type_id = 0

    @classmethod
    def from_file(cls, path: Path | str, *, max_length: int = DEFAULT_MAX_LENGTH) -> TextTokenizer:
        return cls(Tokenizer.from_file(str(path)), max_length=max_length)

    def encode(self, texts: Sequence[str]) -> Encoded:
        texts = _as_list(texts)
        encodings = self._tokenizer.encode_batch(texts)
        n = len(encodings)
        counts = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=n)
        longest = int(counts.max()) if n else 0
        total = int(counts.sum())
        # Row-major boolean indexing fills each row's leading ``count`` cells in text order, so
        # the flat token stream drops straight into the padded array without a Python loop.
        mask = np.arange(longest) < counts[:, None]
        input_ids = np.full((n, longest), self.pad_id, dtype=np.int64)
        input_ids[mask] = np.fromiter(
            itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total
        )
        token_type_ids = np.full((n, longest), self.pad_type_id, dtype=np.int64)
        token_type_ids[mask] = np.fromiter(
            itertools.chain.from_iterable(e.type_ids for e in encodings), dtype=np.int64, count=total
        )
        return Encoded(
            input_ids=input_ids,
            attention_mask=mask.astype(np.int64),
            token_type_ids=token_type_ids,
            token_counts=counts,
        )

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(e) for e in self._tokenizer.encode_batch(_as_list(texts))]


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got a single str")
    return texts if isinstance(texts, list) else list(texts)
