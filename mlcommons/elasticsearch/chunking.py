"""Elasticsearch ``chunking_settings``: validation as Elasticsearch does it, and the chunkers.

Validation reproduces Elasticsearch 8.16-9.x (``ChunkingSettingsBuilder`` and the
``*ChunkingSettings.fromMap`` methods): the same checks in the same order, the same messages,
gathered into one ``Validation Failed: 1: ...;2: ...;`` reason with type ``validation_exception``.
A missing or unknown ``strategy`` is an ``illegal_argument_exception``, as there. The
``recursive`` strategy is recognised but refused: it needs separator lists this service lacks.

Chunks are ``(start, end)`` character offsets into the text, end exclusive. As in Elasticsearch,
the first chunk starts at 0 and the last one ends at ``len(text)``; a chunk that begins inside a
sentence begins right after the word before it (so it carries the whitespace between them) and
one that ends inside a sentence ends at its last word. Text without words, empty or blank
included, is one chunk ``[(0, len(text))]``: Elasticsearch returns the whole input too.

Words and sentences come from small rules rather than ICU: a word is a run of letters, digits,
``_`` and combining marks, joined across ``'``, ``’`` and ``.`` ("don't", "3.14", "e.g"); each
CJK ideograph or kana counts as a word on its own. Scripts written without spaces and without
those characters (Thai, Khmer, ...) count a whole phrase as one word.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum

from mlcommons.errors import BadRequest

SCOPE = "chunking_settings"
_JAVA_INT = range(-(2**31), 2**31)


class ChunkingStrategy(str, Enum):
    WORD = "word"
    SENTENCE = "sentence"
    NONE = "none"


@dataclass(frozen=True)
class ChunkingSettings:
    """Validated chunking settings; build them with :func:`parse_chunking_settings`."""

    strategy: ChunkingStrategy
    """How text is cut: by word windows, by whole sentences, or not at all."""
    max_chunk_size: int | None = None
    """Most words in one chunk (word and sentence)."""
    overlap: int | None = None
    """Words a word chunk repeats from the one before it (word only)."""
    sentence_overlap: int | None = None
    """1: a sentence chunk starts with the previous chunk's last sentence; 0: no overlap."""

    def to_dict(self) -> dict:
        """The form GET _inference shows: ``strategy`` and only the fields of that strategy."""
        out: dict = {"strategy": self.strategy.value}
        if self.strategy is ChunkingStrategy.WORD:
            out.update(max_chunk_size=self.max_chunk_size, overlap=self.overlap)
        elif self.strategy is ChunkingStrategy.SENTENCE:
            out.update(max_chunk_size=self.max_chunk_size, sentence_overlap=self.sentence_overlap)
        return out


DEFAULT_CHUNKING_SETTINGS = ChunkingSettings(ChunkingStrategy.SENTENCE, max_chunk_size=250, sentence_overlap=1)
"""What ``"chunking_settings": {}`` means (Elasticsearch 8.16 and later)."""
LEGACY_CHUNKING_SETTINGS = ChunkingSettings(ChunkingStrategy.WORD, max_chunk_size=250, overlap=100)
"""What Elasticsearch applies to endpoints created before 8.16 that stored no settings."""


# --- validation ------------------------------------------------------------------------------


def parse_chunking_settings(raw: dict | None) -> ChunkingSettings | None:
    """Validate a request's ``chunking_settings`` object; ``raw`` is left untouched.

    None (the field is absent) gives None, and ``{}`` gives :data:`DEFAULT_CHUNKING_SETTINGS`.
    Anything invalid raises :class:`BadRequest` carrying Elasticsearch's message.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest(f"[{SCOPE}] must be an object")
    if not raw:
        return DEFAULT_CHUNKING_SETTINGS
    if raw.get("strategy") is None:
        raise BadRequest("Can't generate Chunker without ChunkingStrategy provided")
    name = _java_str(raw["strategy"])
    if name == "recursive":
        _fail(["chunking strategy [recursive] is not supported by this service; "
               "use [sentence], [word] or [none]"])
    try:
        strategy = ChunkingStrategy(name)
    except ValueError:
        raise BadRequest(f"Invalid chunkingStrategy {name}") from None

    errors: list[str] = []
    if strategy is ChunkingStrategy.NONE:
        _unknown_keys(raw, {"strategy"},
                      "When chunking is disabled (none), settings can not have the following: ", errors)
        _raise_if(errors)
        return ChunkingSettings(strategy)

    if strategy is ChunkingStrategy.WORD:
        _unknown_keys(raw, {"strategy", "max_chunk_size", "overlap"},
                      "Word based chunking settings can not have the following settings: ", errors)
        max_size = _int_between(raw, "max_chunk_size", 10, 300, errors)
        overlap = None
        if max_size is not None:  # Elasticsearch checks the overlap only against a valid size
            overlap = _positive_int(raw, "overlap", errors)
            if overlap is not None and overlap > max_size // 2:
                errors.append(_above_max("overlap", overlap, max_size // 2))
        _raise_if(errors)
        return ChunkingSettings(strategy, max_chunk_size=max_size, overlap=overlap)

    _unknown_keys(raw, {"strategy", "max_chunk_size", "sentence_overlap"},
                  "Sentence based chunking settings can not have the following settings: ", errors)
    max_size = _int_between(raw, "max_chunk_size", 20, 300, errors)
    sentence_overlap = 1
    if raw.get("sentence_overlap") is not None:
        value = raw["sentence_overlap"]
        if not _is_java_int(value):
            errors.append(_wrong_type("sentence_overlap", value))
        elif value not in (0, 1):
            errors.append(f"sentence_overlap[{value}] must be either 0 or 1")
        else:
            sentence_overlap = value
    _raise_if(errors)
    return ChunkingSettings(strategy, max_chunk_size=max_size, sentence_overlap=sentence_overlap)


def _fail(errors: list[str]):
    reason = "Validation Failed: " + "".join(f"{i}: {e};" for i, e in enumerate(errors, 1))
    raise BadRequest(reason, error_type="validation_exception")


def _raise_if(errors: list[str]) -> None:
    if errors:
        _fail(errors)


def _unknown_keys(raw: dict, allowed: set[str], prefix: str, errors: list[str]) -> None:
    unknown = [key for key in raw if key not in allowed]
    if unknown:
        errors.append(prefix + "[" + ", ".join(unknown) + "]")


def _positive_int(raw: dict, key: str, errors: list[str]) -> int | None:
    """The required positive Java ``int`` at ``key``, or None with one error added."""
    value = raw.get(key)
    if value is None:
        errors.append(f"[{SCOPE}] does not contain the required setting [{key}]")
    elif not _is_java_int(value):
        errors.append(_wrong_type(key, value))
    elif value <= 0:
        errors.append(f"[{SCOPE}] Invalid value [{value}]. [{key}] must be a positive integer")
    else:
        return value
    return None


def _int_between(raw: dict, key: str, low: int, high: int, errors: list[str]) -> int | None:
    value = _positive_int(raw, key, errors)
    if value is not None and value < low:
        errors.append(f"[{SCOPE}] Invalid value [{_java_double(value)}]. [{key}] "
                      f"must be a greater than or equal to [{_java_double(low)}]")
        return None
    if value is not None and value > high:
        errors.append(_above_max(key, value, high))
        return None
    return value


def _above_max(key: str, value: int, high: int) -> str:
    return (f"[{SCOPE}] Invalid value [{_java_double(value)}]. [{key}] "
            f"must be a less than or equal to [{_java_double(high)}]")


def _wrong_type(key: str, value) -> str:
    return (f"field [{key}] is not of the expected type. "
            f"The value [{_java_str(value)}] cannot be converted to a [Integer]")


def _is_java_int(value) -> bool:
    """JSON numbers Elasticsearch reads as ``Integer``: no floats, booleans or longs."""
    return isinstance(value, int) and not isinstance(value, bool) and value in _JAVA_INT


def _java_double(value: int) -> str:
    """``Double.toString`` of an int, as Elasticsearch's range messages print it (5 -> 5.0)."""
    if abs(value) < 10**7:
        return f"{value}.0"
    digits = str(abs(value))
    mantissa = digits.rstrip("0")
    return f"{'-' if value < 0 else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{len(digits) - 1}"


def _java_str(value) -> str:
    """How Java's ``toString`` prints a parsed JSON value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 10**7:
        return f"{int(value)}.0"
    if isinstance(value, list):
        return "[" + ", ".join(map(_java_str, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_str(v)}" for k, v in value.items()) + "}"
    return str(value)


# --- words and sentences ---------------------------------------------------------------------


def _combining_marks() -> str:
    """Regex class ranges of the Basic Multilingual Plane's combining marks (Mn, Mc, Me)."""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x300, 0x10000):
        if unicodedata.category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD_CHAR = rf"(?:[^\W{_CJK}]|[{_combining_marks()}])"
_WORD = re.compile(rf"[{_CJK}]|{_WORD_CHAR}+(?:['’.]{_WORD_CHAR}+)*")
_SENTENCE_END = re.compile(
    r"(?P<latin>[.!?…]+[\"'’”»)\]]*\s+)"  # checked by _ends_sentence
    r"|[。！？]+[」』”’)）]*\s*"            # CJK terminators need no space after them
    r"|\n[ \t\r]*\n\s*"                   # a blank line ends a paragraph
)
_OPENERS = "\"'“‘«([¿¡"
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs e.g i.e cf fig no nos approx dept est vol ca".split()
)


def word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every word in ``text``, in order; words never contain whitespace."""
    return [m.span() for m in _WORD.finditer(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentences as ``(start, end)`` offsets that tile ``text`` exactly, from 0 to ``len(text)``.

    Each sentence keeps the whitespace after it. A sentence ends at ``.``, ``!``, ``?`` or ``…``
    (with any closing quotes or brackets) followed by whitespace and then a capital, an uncased
    letter, a digit, or an opening quote or bracket; not after a common abbreviation ("Dr.",
    "e.g.") or a capital initial ("J. Smith"). ``。！？`` and blank lines always end one.
    Empty text is one empty sentence.
    """
    cuts = [0]
    for m in _SENTENCE_END.finditer(text):
        if m.end() < len(text) and (not m.group("latin") or _ends_sentence(text, m)):
            cuts.append(m.end())
    cuts.append(len(text))
    return list(zip(cuts, cuts[1:])) if len(text) else [(0, 0)]


def _ends_sentence(text: str, m: re.Match) -> bool:
    gap = m.group()
    if gap.count("\n") >= 2:
        return True
    if gap[0] == "." and gap[1:2] != ".":  # a single period: maybe an abbreviation
        start = m.start()
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        token = text[start:m.start()].lstrip(_OPENERS)
        if token.lower() in _ABBREVIATIONS or (len(token) == 1 and token.isupper() and token != "I"):
            return False
    nxt = text[m.end()]
    return nxt in _OPENERS or nxt.isdigit() or (nxt.isalpha() and not nxt.islower())


# --- chunkers --------------------------------------------------------------------------------


def chunk(text: str, settings: ChunkingSettings) -> list[tuple[int, int]]:
    """Cut ``text`` into chunks of at most ``settings.max_chunk_size`` words.

    Guarantees: at least one chunk; the first starts at 0 and the last ends at ``len(text)``;
    starts never decrease and ends increase; no chunk cuts a word; every word lies whole in some
    chunk; and no chunk holds more than ``max_chunk_size`` words (``none``: one chunk, all of it).
    """
    if settings.strategy is ChunkingStrategy.NONE:
        return [(0, len(text))]
    words = word_spans(text)
    if settings.strategy is ChunkingStrategy.WORD:
        return _word_chunks(text, words, settings.max_chunk_size, settings.overlap or 0)
    if settings.strategy is ChunkingStrategy.SENTENCE:
        return _sentence_chunks(text, words, settings.max_chunk_size, bool(settings.sentence_overlap))
    raise ValueError(f"no chunker for strategy [{settings.strategy}]")


def _windows(count: int, size: int, overlap: int):
    """Word index ranges ``[i, j)`` of ``size`` words, each starting ``size - overlap`` after the
    last, until one reaches ``count``; a single ``(0, 0)`` when there are no words."""
    step = max(1, size - overlap)
    i = 0
    while True:
        j = min(i + size, count)
        yield i, j
        if j >= count:
            return
        i += step


def _span(words, lo: int, hi: int, start: int, end: int, i: int, j: int) -> tuple[int, int]:
    """Offsets of ``words[i:j]`` within the region ``words[lo:hi]`` = ``text[start:end]``: a window
    at the region's edge takes the edge, else it begins after the word before and ends at its last."""
    return (start if i == lo else words[i - 1][1]), (end if j == hi else words[j - 1][1])


def _word_chunks(text: str, words, size: int, overlap: int) -> list[tuple[int, int]]:
    """Chunk ``k`` holds words ``[k*(size-overlap), k*(size-overlap)+size)``."""
    return [_span(words, 0, len(words), 0, len(text), i, j) for i, j in _windows(len(words), size, overlap)]


def _sentence_chunks(text: str, words, size: int, overlap: bool) -> list[tuple[int, int]]:
    """Pack whole sentences into chunks of at most ``size`` words.

    With ``overlap``, a chunk after the first starts with the last words of the previous chunk's
    last sentence: all of them when they fit, at most min(size/2, 20), and never so many that the
    next sentence no longer fits, so a sentence of at most ``size`` words is never split. A longer
    sentence (with any overlap before it) is cut into word windows overlapping by
    min(20, (size-1)//2) words; its last window stays open for the sentences after it.
    """
    cap = min(size // 2, 20)
    long_overlap = min(20, (size - 1) // 2)
    chunks: list[tuple[int, int]] = []
    start = end = first = 0  # the open chunk: text[start:end], its first word index
    prev = None  # (start offset, first word, end word) of the last sentence taken
    w = 0
    for s_start, s_end in sentence_spans(text):
        a = w
        while w < len(words) and words[w][0] < s_end:
            w += 1
        b = w
        if b - first > size and a > first:  # the sentence does not fit a chunk that has words
            chunks.append((start, end))
            old_first, start, first = first, s_start, a
            if overlap and prev is not None:
                p_start, pa, pb = prev
                room = cap if b - a > size else min(cap, size - (b - a))
                kept = min(room, pb - max(pa, old_first))
                if kept > 0:
                    first = pb - kept
                    start = p_start if first == pa else words[first - 1][1]
        if b - first > size:  # a sentence too long for any chunk: cut it by words
            windows = list(_windows(b - first, size, long_overlap))
            for i, j in windows[:-1]:
                chunks.append(_span(words, first, b, start, s_end, first + i, first + j))
            i = windows[-1][0]
            start, first = _span(words, first, b, start, s_end, first + i, b)[0], first + i
        end = s_end
        prev = (s_start, a, b)
    chunks.append((start, len(text)))
    return chunks
