"""Wildcard patterns, matched in time linear in the value and never with a regular expression.

Clients send the patterns (``wildcard`` and ``prefix`` queries, ``_source`` field patterns), and a
regular expression built from one backtracks without end: ``*****...b`` became ``.*`` five thousand
times, and ``re.fullmatch`` held the interpreter lock until the API was killed. Lucene matches a
wildcard with an automaton, in linear time; :class:`Glob` does too, in its own way.
"""
from __future__ import annotations

from mlcommons.errors import BadRequest

# Lucene's longest indexed term (IndexWriter.MAX_TERM_LENGTH), in UTF-8 bytes: the longest
# pattern accepted. It bounds what a match costs, whatever a client sends.
MAX_PATTERN_BYTES = 32_766


def bounded(pattern: str, where: str) -> str:
    """``pattern``, or a 400 when it is longer than :data:`MAX_PATTERN_BYTES`."""
    size = len(pattern.encode("utf-8", "surrogatepass"))
    if size > MAX_PATTERN_BYTES:
        raise BadRequest(f"The length of the pattern [{size}] used in [{where}] has exceeded the allowed "
                         f"maximum of [{MAX_PATTERN_BYTES}] bytes")
    return pattern


class _Segment:
    """The characters between two stars of a pattern; ``None`` stands for ``?`` (any one)."""

    def __init__(self, chars: list):
        self.length = len(chars)
        self.literal = None if None in chars else "".join(chars)
        # The runs of plain characters with their offsets, to test one position; and one bit mask
        # per character (bit i: position i accepts it), to scan for the segment.
        self.runs: list[tuple[int, str]] = []
        begin = None
        for i, c in enumerate([*chars, None]):
            if c is not None and begin is None:
                begin = i
            elif c is None and begin is not None:
                self.runs.append((begin, "".join(chars[begin:i])))
                begin = None
        self.anything = sum(1 << i for i, c in enumerate(chars) if c is None)
        self.masks: dict[str, int] = {}
        for i, c in enumerate(chars):
            if c is not None:
                self.masks[c] = self.masks.get(c, self.anything) | 1 << i

    def at(self, text: str, i: int) -> bool:
        if self.literal is not None:
            return text.startswith(self.literal, i)
        return i + self.length <= len(text) and all(text.startswith(run, i + at) for at, run in self.runs)

    def find(self, text: str, start: int, stop: int) -> int:
        """The leftmost position of this segment within ``text[start:stop]``, or -1."""
        if self.literal is not None:
            return text.find(self.literal, start, stop)
        # Shift-And: bit i of state says the last i + 1 characters match the segment's first i + 1.
        masks, anything, top, state = self.masks, self.anything, 1 << (self.length - 1), 0
        for i in range(start, stop):
            state = ((state << 1) | 1) & masks.get(text[i], anything)
            if state & top:
                return i - self.length + 1
        return -1


class Glob:
    """A wildcard pattern: ``*`` is any run of characters, ``?`` any one, ``\\`` escapes the next;
    with ``simple`` (``_source`` patterns) only ``*`` is special.

    No regular expression: the pattern is split at its stars into segments of fixed length. The
    first must start the value and the last must end it; each one between is taken at its leftmost
    place after the one before. Leftmost is always right for star-separated segments, so nothing is
    ever retried: a match costs time linear in the value.
    """

    def __init__(self, pattern: str, *, simple: bool = False):
        segments: list[list] = [[]]
        chars = iter(pattern)
        for c in chars:
            if c == "*":
                segments.append([])
            elif c == "?" and not simple:
                segments[-1].append(None)
            else:
                segments[-1].append(next(chars, "\\") if c == "\\" and not simple else c)
        self.whole = _Segment(segments[0]) if len(segments) == 1 else None
        self.first, self.last = _Segment(segments[0]), _Segment(segments[-1])
        self.inner = [_Segment(s) for s in segments[1:-1] if s]  # a run of stars is one star

    def matches(self, text: str) -> bool:
        if self.whole is not None:
            return len(text) == self.whole.length and self.whole.at(text, 0)
        first, last = self.first, self.last
        stop = len(text) - last.length
        if stop < first.length or not first.at(text, 0) or not last.at(text, stop):
            return False
        start = first.length
        for segment in self.inner:
            found = segment.find(text, start, stop)
            if found < 0:
                return False
            start = found + segment.length
        return True
