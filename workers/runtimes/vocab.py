"""Tokenizers for models uploaded through Elasticsearch's trained-model API.

Elasticsearch ships no tokenizer file: a model comes with a vocabulary upload
(``{"vocabulary": [...], "merges": [...]?, "scores": [...]?}``, token ids being list positions) and
a ``tokenization`` config (``{"bert"|"mpnet"|"roberta"|"xlm_roberta": {...}}``). From the two we
build a ``tokenizers.Tokenizer`` the way Elasticsearch tokenizes:

- ``bert``: WordPiece, BERT normalisation (lower-casing and accent stripping with
  ``do_lower_case``), ``[CLS] a [SEP] b [SEP]`` with token types 0 then 1.
- ``mpnet``: the same WordPiece pipeline with ``<s> a </s></s> b </s>``.
- ``roberta``: byte-level BPE from vocabulary + merges, ``<s> a </s></s> b </s>``.
- ``xlm_roberta``: Unigram from vocabulary + scores with SentencePiece-style (``▁``) splitting.
  NFKC stands in for the SentencePiece model's own normalisation table, which is not uploaded.

Truncation follows ``truncate``: ``first``/``second`` cut that sequence of a pair (a single text is
cut either way), ``none`` refuses a text longer than ``max_sequence_length`` with Elasticsearch's
"Input too large" error. ``span`` (windowing long texts) is read but not applied.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from mlcommons.errors import BadRequest, NodeError
from workers.runtimes.base import Encoded
from workers.runtimes.tokenizer import TextTokenizer

TOKENIZATIONS = ("bert", "mpnet", "roberta", "xlm_roberta")
TRUNCATE = ("first", "second", "none")
DEFAULT_MAX_SEQUENCE_LENGTH = 512


class InputTooLarge(BadRequest):
    """A text (or pair) does not fit ``max_sequence_length`` and may not be truncated."""

    error_type = "status_exception"


@dataclass(frozen=True)
class Specials:
    cls: str
    sep: str
    pad: str
    unk: str
    mask: str
    pair_seps: int  # separators between the two texts of a pair: 1 for BERT, 2 for RoBERTa-likes

    @property
    def required(self) -> tuple[str, ...]:
        return (self.cls, self.sep, self.pad, self.unk)


_BERT_SPECIALS = Specials("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", 1)
_ROBERTA_SPECIALS = Specials("<s>", "</s>", "<pad>", "<unk>", "<mask>", 2)
SPECIALS = {
    "bert": _BERT_SPECIALS,
    "mpnet": _ROBERTA_SPECIALS,
    "roberta": _ROBERTA_SPECIALS,
    "xlm_roberta": _ROBERTA_SPECIALS,
}


@dataclass(frozen=True)
class Tokenization:
    """One Elasticsearch tokenization config, defaults filled in."""

    kind: str = "bert"
    do_lower_case: bool = False
    max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH
    truncate: str = "first"
    span: int = -1
    with_special_tokens: bool = True
    add_prefix_space: bool = False  # roberta only

    @classmethod
    def parse(cls, config: dict | None) -> Tokenization:
        """From ``{"bert": {...}}``; ``None`` or ``{}`` means BERT with every default."""
        if not config:
            return cls()
        if not isinstance(config, dict) or len(config) != 1:
            raise NodeError(f"tokenization must hold exactly one of {', '.join(TOKENIZATIONS)}")
        kind, opts = next(iter(config.items()))
        if kind not in TOKENIZATIONS:
            raise NodeError(f"unsupported tokenization [{kind}]; expected one of {', '.join(TOKENIZATIONS)}")
        opts = dict(opts or {})
        truncate = str(opts.get("truncate") or "first").lower()
        if truncate not in TRUNCATE:
            raise NodeError(f"[truncate] must be one of {', '.join(TRUNCATE)}, got [{truncate}]")
        max_length = opts.get("max_sequence_length")
        max_length = DEFAULT_MAX_SEQUENCE_LENGTH if max_length is None else max_length
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
            raise NodeError(f"[max_sequence_length] must be a positive integer, got [{max_length}]")
        with_special = opts.get("with_special_tokens")
        return cls(
            kind=kind,
            do_lower_case=bool(opts.get("do_lower_case", False)),
            max_sequence_length=max_length,
            truncate=truncate,
            span=int(-1 if opts.get("span") is None else opts["span"]),
            with_special_tokens=True if with_special is None else bool(with_special),
            add_prefix_space=bool(opts.get("add_prefix_space", False)),
        )

    @property
    def specials(self) -> Specials:
        return SPECIALS[self.kind]

    @property
    def pair_extra_tokens(self) -> int:
        """Special tokens a pair adds: [CLS] a [SEP] b [SEP] is 3, <s> a </s></s> b </s> is 4."""
        return 2 + self.specials.pair_seps if self.with_special_tokens else 0


def build_tokenizer(upload: dict, settings: Tokenization) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` (special tokens added, no truncation or padding) for the upload."""
    vocabulary = _vocabulary(upload)
    ids = {token: i for i, token in enumerate(vocabulary)}  # a repeated token keeps its last id, as in ES
    specials = settings.specials
    missing = [t for t in specials.required if t not in ids]
    if missing:
        raise NodeError(f"the vocabulary lacks the {settings.kind} special tokens {missing}")
    try:
        tokenizer = Tokenizer(_model(settings, vocabulary, ids, upload))
    except NodeError:
        raise
    except Exception as exc:
        raise NodeError(f"cannot build a {settings.kind} tokenizer from the vocabulary: {exc}") from exc
    if settings.kind in ("bert", "mpnet"):
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=settings.do_lower_case
        )
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
    elif settings.kind == "roberta":
        if settings.do_lower_case:
            tokenizer.normalizer = normalizers.Lowercase()
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=settings.add_prefix_space)
        tokenizer.decoder = decoders.ByteLevel()
    else:
        steps = [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
        if settings.do_lower_case:
            steps.append(normalizers.Lowercase())
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.add_special_tokens([t for t in (*specials.required, specials.mask) if t in ids])
    tokenizer.post_processor = _template(settings, ids)
    return tokenizer


def load_vocab_tokenizer(upload: dict, tokenization: dict | None) -> VocabTokenizer:
    """Parse ``tokenization`` and build the tokenizer for the vocabulary ``upload``."""
    settings = Tokenization.parse(tokenization)
    return VocabTokenizer(build_tokenizer(upload, settings), settings, _vocabulary(upload))


class VocabTokenizer:
    """Single texts and (first, second) pairs into right-padded :class:`Encoded` batches, with
    Elasticsearch's truncation rules; maps token ids back to vocabulary strings.

    Three clones of one tokenizer, each configured once (a shared tokenizer must not be
    reconfigured per call: allocations tokenize from several threads): singles, pairs, and an
    untruncated one for counting and error messages.
    """

    def __init__(self, tokenizer: Tokenizer, settings: Tokenization, vocabulary: Sequence[str]):
        self.settings = settings
        self.max_length = settings.max_sequence_length
        self.vocabulary: list[str] = list(vocabulary)
        specials = settings.specials
        pad_id = tokenizer.token_to_id(specials.pad)
        self.special_ids = np.array(
            sorted({i for t in (*specials.required, specials.mask) if (i := tokenizer.token_to_id(t)) is not None}),
            dtype=np.int64,
        )
        self._raw = _clone(tokenizer)
        # "none" still truncates, one token past the limit, so that too long is visible in the counts.
        limit = self.max_length + 1 if settings.truncate == "none" else self.max_length
        single = _clone(tokenizer)
        single.enable_truncation(max_length=limit, strategy="longest_first")
        single.enable_padding(pad_id=pad_id, pad_token=specials.pad)
        pair = _clone(tokenizer)
        strategy = {"first": "only_first", "second": "only_second"}.get(settings.truncate, "longest_first")
        pair.enable_truncation(max_length=limit, strategy=strategy)
        pair.enable_padding(pad_id=pad_id, pad_token=specials.pad)
        self._single = TextTokenizer(single, max_length=limit)
        self._pair = TextTokenizer(pair, max_length=limit)

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def id_to_token(self, token_id: int) -> str:
        return self.vocabulary[token_id]

    # -- single texts ----------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> Encoded:
        enc = self._single.encode(texts)
        self._refuse_too_long(enc, lambda i: self._raw.encode(texts[i]))
        return enc

    def count(self, texts: Sequence[str]) -> list[int]:
        return self._single.count(texts)

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Whether each text loses tokens to truncation (Elasticsearch's ``is_truncated``)."""
        return [len(e) > self.max_length for e in self._raw.encode_batch(list(texts))]

    # -- pairs -----------------------------------------------------------------------------------

    def encode_pairs(self, firsts: Sequence[str], seconds: Sequence[str]) -> Encoded:
        pairs = self._pairs(firsts, seconds)
        try:
            enc = self._pair.encode(pairs)
        except Exception:  # only_first / only_second could not cut enough
            enc = self._pair.encode(self._fit_pairs(pairs))
        self._refuse_too_long(enc, lambda i: self._raw.encode(*pairs[i]))
        return enc

    def count_pairs(self, firsts: Sequence[str], seconds: Sequence[str]) -> list[int]:
        pairs = self._pairs(firsts, seconds)
        try:
            return self._pair.count(pairs)
        except Exception:
            return self._pair.count(self._fit_pairs(pairs))

    def truncated_pairs(self, firsts: Sequence[str], seconds: Sequence[str]) -> list[bool]:
        return [len(e) > self.max_length for e in self._raw.encode_batch(self._pairs(firsts, seconds))]

    # -- internals -------------------------------------------------------------------------------

    def _pairs(self, firsts: Sequence[str], seconds: Sequence[str]) -> list[tuple[str, str]]:
        if isinstance(firsts, str) or isinstance(seconds, str):
            raise TypeError("expected sequences of texts, got a single str")
        if len(firsts) != len(seconds):
            raise ValueError(f"{len(firsts)} first texts but {len(seconds)} second texts")
        if not self.settings.with_special_tokens:
            raise BadRequest("Unable to do sequence pair tokenization without special tokens")
        return list(zip(firsts, seconds))

    def _refuse_too_long(self, enc: Encoded, full) -> None:
        if self.settings.truncate != "none" or not len(enc):
            return
        over = np.flatnonzero(enc.token_counts > self.max_length)
        if len(over):
            raise InputTooLarge(
                f"Input too large. The tokenized input length [{len(full(int(over[0])))}] "
                f"exceeds the maximum sequence length [{self.max_length}]"
            )

    def _fit_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Elasticsearch's rule where ``tokenizers`` refuses: the sequence that is not cut must fit
        beside the special tokens (else "Attempting truncation" error); the other may be cut to
        nothing, which ``tokenizers`` will not do, so it is replaced by an empty text."""
        room = self.max_length - self.settings.pair_extra_tokens
        kept = 1 if self.settings.truncate == "first" else 0
        fitted = []
        for pair in pairs:
            n = len(self._raw.encode(pair[kept], add_special_tokens=False))
            if n > room:
                raise InputTooLarge(
                    f"Attempting truncation [{self.settings.truncate}] but input is too large for the "
                    f"{'second' if kept == 1 else 'first'} sequence. The tokenized input length [{n}] "
                    f"exceeds the maximum sequence length [{room}], when taking special tokens into account"
                )
            if n == room:
                pair = ("", pair[1]) if kept == 1 else (pair[0], "")
            fitted.append(pair)
        return fitted


def _vocabulary(upload: dict) -> list[str]:
    vocabulary = upload.get("vocabulary") if isinstance(upload, dict) else None
    if not isinstance(vocabulary, list) or not vocabulary or not all(isinstance(t, str) for t in vocabulary):
        raise NodeError("the vocabulary upload must hold a non-empty [vocabulary] list of strings")
    return vocabulary


def _model(settings: Tokenization, vocabulary: list[str], ids: dict[str, int], upload: dict):
    unk = settings.specials.unk
    if settings.kind in ("bert", "mpnet"):
        return models.WordPiece(ids, unk_token=unk, max_input_chars_per_word=100)
    if settings.kind == "roberta":
        merges = upload.get("merges")
        if not isinstance(merges, list) or not all(isinstance(m, str) for m in merges):
            raise NodeError("a roberta vocabulary needs [merges]: a list of 'left right' strings")
        pairs = []
        for merge in merges:
            parts = merge.split(" ")
            if len(parts) != 2:
                raise NodeError(f"malformed merge {merge!r}: expected two tokens separated by one space")
            pairs.append((parts[0], parts[1]))
        return models.BPE(ids, pairs, unk_token=None)
    scores = upload.get("scores")
    if not isinstance(scores, list) or len(scores) != len(vocabulary):
        raise NodeError("an xlm_roberta vocabulary needs [scores]: one number per vocabulary entry")
    return models.Unigram([(t, float(s)) for t, s in zip(vocabulary, scores)], unk_id=ids[unk])


def _template(settings: Tokenization, ids: dict[str, int]) -> processors.TemplateProcessing:
    s = settings.specials
    if not settings.with_special_tokens:
        return processors.TemplateProcessing(single="$A", pair="$A $B:1", special_tokens=[])
    if settings.kind == "bert":
        single, pair = f"{s.cls} $A {s.sep}", f"{s.cls} $A {s.sep} $B:1 {s.sep}:1"
    else:  # RoBERTa-likes have one token type: every id 0
        single, pair = f"{s.cls} $A {s.sep}", f"{s.cls} $A {s.sep} {s.sep} $B {s.sep}"
    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(s.cls, ids[s.cls]), (s.sep, ids[s.sep])]
    )


def _clone(tokenizer: Tokenizer) -> Tokenizer:
    return Tokenizer.from_str(tokenizer.to_str())
