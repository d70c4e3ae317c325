"""The query clauses of the search DSL, compiled into matchers (used by mlcommons/opensearch/search.py).

A query is compiled once into a matcher: a function of ``(doc_id, source)`` that returns the
document's score, or ``None`` when the document does not match. Fields are compared as OpenSearch
compares ``keyword`` fields: ``term`` is exact, ``match`` looks for lower-cased words. A list value
matches when any element matches.

Compiling bounds what a client can ask for, with the limits and error texts of OpenSearch (or
Elasticsearch): the nesting of ``bool`` queries, the number of clauses, the length of value lists
and patterns. Matchers call a time check as they read values, so that a search's time budget holds
inside one costly document too.
"""
from __future__ import annotations

import operator
import re
import reprlib
from typing import Any, Callable, Iterable

from mlcommons.core.wildcards import Glob, bounded
from mlcommons.errors import BadRequest, ParseError

Matcher = Callable[[str, dict], "float | None"]
Getter = Callable[[str, dict], list]

_COMMON = ("boost", "_name")  # accepted by every query
_TOKEN = re.compile(r"\w+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_OCCURS = ("must", "filter", "should", "must_not")
_RANGE_OPS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}

# Limits, at the defaults of the settings that hold them in OpenSearch (or Elasticsearch).
MAX_CLAUSE_COUNT = 1024  # indices.query.bool.max_clause_count: leaf clauses of a query, and of one bool
MAX_NESTED_DEPTH = 20  # Elasticsearch 7's indices.query.bool.max_nested_depth (OpenSearch has none)
MAX_TERMS_COUNT = 65_536  # index.max_terms_count: values of a terms (and here an ids) query


class OutOfTime(Exception):
    """Raised by a search's time check, inside a matcher or between documents."""


def compile_query(query: Any, check: Callable[[], None]) -> Matcher:
    """The matcher of ``query``; its matchers call ``check``, which raises :class:`OutOfTime` once
    the search's time is spent."""
    return _Compiler(check).compile(query)


def show(value: Any) -> str:
    """A client value for an error message, bounded in depth and length: echoing a hostile body
    whole could recurse past Python's limit or make a message as large as the body."""
    if isinstance(value, str):
        return value if len(value) <= 120 else value[:120] + "..."
    return _SHOW.repr(value)


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother = 3, 120, 120


# ---- field access ------------------------------------------------------------------------------

def getter(field: str) -> Getter:
    """Values at a dotted path, lists flattened and nulls dropped; ``_id`` is the document id.

    A dotted path may be spelled as nested objects or as keys that hold dots, so at each object the
    document's own keys are tried against the rest of the path: the work follows the document, not
    the length of the path a client sent.
    """
    field = field.removesuffix(".keyword")
    if field == "_id":
        return lambda doc_id, source: [doc_id]
    end = len(field)

    def collect(node: Any, start: int, out: list) -> None:
        """``start`` is where the rest of the path begins in ``field``; -1 once it is all consumed."""
        if isinstance(node, list):
            for item in node:
                collect(item, start, out)
        elif start < 0:
            if node is not None and node != {}:
                out.append(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                stop = start + len(key)
                if field.startswith(key, start) and (stop == end or stop < end and field[stop] == "."):
                    collect(value, -1 if stop == end else stop + 1, out)

    def get(doc_id: str, source: dict) -> list:
        out: list = []
        collect(source, 0, out)
        return out

    return get


def _text(value: Any) -> str | None:
    """A scalar as the string a keyword field indexes; None for objects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, (str, int, float)) else None


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


# ---- queries -----------------------------------------------------------------------------------

class _Compiler:
    """Compiles one query, counting what OpenSearch bounds: the nesting of ``bool`` queries and the
    leaf clauses of the whole query (a ``match`` counts one per word, an empty ``bool`` one, as
    Lucene counts the clauses of the query it builds)."""

    def __init__(self, check: Callable[[], None]):
        self.check, self.depth, self.clauses = check, 0, 0

    def compile(self, query: Any) -> Matcher:
        if not isinstance(query, dict) or len(query) != 1:
            raise ParseError(f"query malformed, expected an object holding one query, found [{show(query)}]")
        (kind, params), = query.items()
        build = _BUILDERS.get(kind)
        if build is None:
            raise ParseError(f"unknown query [{show(kind)}]")
        if not isinstance(params, dict):
            raise ParseError(f"[{kind}] query malformed, no start_object after query name")
        if kind != "bool":
            self.count(1)
        return build(self, params)

    def count(self, clauses: int) -> None:
        self.clauses += clauses
        if self.clauses > MAX_CLAUSE_COUNT:
            raise BadRequest("Query contains too many nested clauses; maxClauseCount is set to "
                             f"{MAX_CLAUSE_COUNT}", error_type="too_many_nested_clauses")


def _check_keys(kind: str, params: dict, allowed: Iterable[str]) -> float:
    """Refuse unknown parameters; returns the query's boost."""
    for key in params:
        if key not in _COMMON and key not in allowed:
            raise ParseError(f"[{kind}] query does not support [{show(key)}]")
    boost = params.get("boost", 1.0)
    if isinstance(boost, bool) or not isinstance(boost, (int, float)):
        raise ParseError(f"[{kind}] query: [boost] must be a number, found [{show(boost)}]")
    return float(boost)


def _field_query(kind: str, params: dict, value_keys: tuple, allowed: tuple = ()):
    """Split ``{field: value}`` or ``{field: {value_key: value, ...}}`` into
    ``(field, value, options, boost)``."""
    if len(params) != 1:
        raise ParseError(f"[{kind}] query requires exactly one field, found {show(list(params))}")
    (field, spec), = params.items()
    if isinstance(spec, dict):
        boost = _check_keys(kind, spec, value_keys + allowed)
        present = [key for key in value_keys if key in spec]
        if not present:
            raise ParseError(f"[{kind}] query requires [{value_keys[0]}] for field [{show(field)}]")
        value, opts = spec[present[0]], spec
    else:
        value, opts, boost = spec, {}, 1.0
    if _text(value) is None:
        raise ParseError(f"[{kind}] query does not support value [{show(value)}] for field [{show(field)}]")
    return field, value, opts, boost


def _constant(score: float | None) -> Matcher:
    return lambda doc_id, source: score


def _any_value(c: _Compiler, get: Getter, test: Callable[[str], Any], boost: float) -> Matcher:
    """Matches, scoring ``boost``, when the text of any value at the field passes ``test``. The time
    budget is checked at each value: a long pattern or phrase over a long value is the costliest
    test there is."""
    def match(doc_id: str, source: dict) -> float | None:
        for value in get(doc_id, source):
            c.check()
            text = _text(value)
            if text is not None and test(text):
                return boost
        return None
    return match


def _build_match_all(c: _Compiler, params: dict) -> Matcher:
    return _constant(_check_keys("match_all", params, ()))


def _build_match_none(c: _Compiler, params: dict) -> Matcher:
    _check_keys("match_none", params, ())
    return _constant(None)


def _build_term(c: _Compiler, params: dict) -> Matcher:
    field, value, _, boost = _field_query("term", params, ("value",))
    return _any_value(c, getter(field), {_text(value)}.__contains__, boost)


def _build_terms(c: _Compiler, params: dict) -> Matcher:
    fields = [key for key in params if key not in _COMMON]
    if len(fields) != 1:
        raise ParseError(f"[terms] query requires exactly one field, found {show(fields)}")
    values = params[fields[0]]
    if not isinstance(values, list):
        raise ParseError(f"[terms] query requires an array of values for field [{show(fields[0])}]")
    if len(values) > MAX_TERMS_COUNT:
        raise BadRequest(f"The number of terms [{len(values)}] used in the Terms Query request has exceeded "
                         f"the allowed maximum of [{MAX_TERMS_COUNT}]. This maximum can be set by changing "
                         "the [index.max_terms_count] index level setting.")
    wanted = {_text(value) for value in values}
    if None in wanted:
        raise ParseError(f"[terms] query supports only scalar values, found {show(values)}")
    return _any_value(c, getter(fields[0]), wanted.__contains__, _check_keys("terms", params, fields))


def _build_prefix(c: _Compiler, params: dict) -> Matcher:
    field, value, _, boost = _field_query("prefix", params, ("value",))
    prefix = bounded(_text(value), "prefix")
    return _any_value(c, getter(field), lambda text: text.startswith(prefix), boost)


def _build_wildcard(c: _Compiler, params: dict) -> Matcher:
    field, value, _, boost = _field_query("wildcard", params, ("value", "wildcard"))
    return _any_value(c, getter(field), Glob(bounded(_text(value), "wildcard")).matches, boost)


def _build_exists(c: _Compiler, params: dict) -> Matcher:
    boost = _check_keys("exists", params, ("field",))
    if not isinstance(params.get("field"), str) or not params["field"]:
        raise ParseError("[exists] must be provided with a [field]")
    get = getter(params["field"])
    return lambda doc_id, source: boost if get(doc_id, source) else None


def _build_range(c: _Compiler, params: dict) -> Matcher:
    if len(params) != 1 or not isinstance(next(iter(params.values())), dict):
        raise ParseError("[range] query requires exactly one field with an object of bounds")
    (field, spec), = params.items()
    boost = _check_keys("range", spec, (*_RANGE_OPS, "format", "time_zone", "relation"))
    # Each bound as (comparison, bound for numeric values, bound for string values): a number is
    # compared as a number, a string as a string, as OpenSearch does for numeric and keyword fields.
    bounds = []
    for key, bound in spec.items():
        if key in _RANGE_OPS and bound is not None:
            if isinstance(bound, bool) or _text(bound) is None:
                raise ParseError(f"[range] query does not support [{key}] value [{show(bound)}]")
            as_number = bound if not isinstance(bound, str) else (
                float(bound) if _NUMBER.fullmatch(bound) else None)
            bounds.append((_RANGE_OPS[key], as_number, str(bound)))
    get = getter(field)

    def match(doc_id: str, source: dict) -> float | None:
        for value in get(doc_id, source):
            if isinstance(value, str):
                slot = 2
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                slot = 1
            else:
                continue
            if all(b[slot] is not None and b[0](value, b[slot]) for b in bounds):
                return boost
        return None
    return match


def _build_ids(c: _Compiler, params: dict) -> Matcher:
    boost = _check_keys("ids", params, ("values", "type"))
    if not isinstance(params.get("values"), list):
        raise ParseError("[ids] query requires an array of [values]")
    if len(params["values"]) > MAX_TERMS_COUNT:
        raise BadRequest(f"The number of ids [{len(params['values'])}] used in the [ids] query has exceeded "
                         f"the allowed maximum of [{MAX_TERMS_COUNT}]")
    wanted = {_text(value) for value in params["values"]}
    return lambda doc_id, source: boost if doc_id in wanted else None


def _min_should_match(spec: Any, count: int, default: int) -> int:
    """OpenSearch's ``minimum_should_match``: 2, -1, "2", "75%", "-25%"; clamped to [0, count]."""
    if spec is None:
        wanted = default
    elif isinstance(spec, int) and not isinstance(spec, bool):
        wanted = spec if spec >= 0 else count + spec
    elif isinstance(spec, str) and (m := re.fullmatch(r"\s*(-?)(\d{1,10})(%?)\s*", spec)):
        amount = int(m[2]) if not m[3] else count * int(m[2]) // 100
        wanted = count - amount if m[1] else amount
    else:
        raise ParseError(f"unsupported [minimum_should_match] value [{show(spec)}]")
    return max(0, min(wanted, count))


def _build_match(c: _Compiler, params: dict) -> Matcher:
    field, value, opts, boost = _field_query(
        "match", params, ("query",), ("operator", "minimum_should_match"))
    tokens = list(dict.fromkeys(_tokens(_text(value))))
    c.count(max(len(tokens), 1) - 1)  # a clause per word; compile() counted one
    op = opts.get("operator", "or")
    if not isinstance(op, str) or op.lower() not in ("and", "or"):
        raise ParseError(f"[match] query: unknown operator [{show(op)}], expected and|or")
    op = op.lower()
    if op == "and":
        need = len(tokens)
    else:
        need = max(1, _min_should_match(opts.get("minimum_should_match"), len(tokens), 1))
    if not tokens:
        return _constant(None)  # as OpenSearch's default zero_terms_query "none"
    get = getter(field)

    def match(doc_id: str, source: dict) -> float | None:
        c.check()  # a document's words are read anew for each match clause
        words: set[str] = set()
        for item in get(doc_id, source):
            text = _text(item)
            if text is not None:
                words.update(_tokens(text))
        found = sum(1 for token in tokens if token in words)
        return found * boost if found >= need else None
    return match


def _build_match_phrase(c: _Compiler, params: dict) -> Matcher:
    field, value, _, boost = _field_query("match_phrase", params, ("query",))
    phrase = _tokens(_text(value))
    if not phrase:
        return _constant(None)
    # Words are runs of \w, so with single spaces around and between them, a phrase is a substring
    # of a value's words exactly when it is a run of them (a linear search, whatever the lengths).
    wanted = f" {' '.join(phrase)} "

    def contains(text: str) -> bool:
        # Called per array element, so a phrase never spans two elements (as in OpenSearch).
        return wanted in f" {' '.join(_tokens(text))} "
    return _any_value(c, getter(field), contains, len(phrase) * boost)


def _clauses(c: _Compiler, name: str, spec: Any) -> list[Matcher]:
    if spec is None:
        return []
    if isinstance(spec, dict):
        return [c.compile(spec)]
    if isinstance(spec, list) and all(isinstance(item, dict) for item in spec):
        return [c.compile(item) for item in spec]
    raise ParseError(f"[bool] malformed [{name}] clause, expected an object or an array of objects")


def _build_bool(c: _Compiler, params: dict) -> Matcher:
    boost = _check_keys("bool", params, (*_OCCURS, "minimum_should_match"))
    c.depth += 1
    if c.depth > MAX_NESTED_DEPTH:
        raise BadRequest("The nested depth of the query exceeds the maximum nested depth for bool queries "
                         "set in [indices.query.bool.max_nested_depth]")
    specs = [params.get(name) for name in _OCCURS]
    if sum(len(spec) if isinstance(spec, list) else 1 for spec in specs if spec is not None) > MAX_CLAUSE_COUNT:
        raise BadRequest(f"maxClauseCount is set to {MAX_CLAUSE_COUNT}", error_type="too_many_clauses")
    must, filters, should, must_not = (_clauses(c, name, spec) for name, spec in zip(_OCCURS, specs))
    c.depth -= 1
    if not (must or filters or should or must_not):
        c.count(1)  # Lucene's match-all leaf
        return _constant(boost)  # an empty bool matches everything
    need = _min_should_match(params.get("minimum_should_match"), len(should), 0)
    if should and not (must or filters):
        need = max(need, 1)  # as in Lucene: with no required clause, one should clause must match

    def match(doc_id: str, source: dict) -> float | None:
        if any(clause(doc_id, source) is None for clause in filters):
            return None
        if any(clause(doc_id, source) is not None for clause in must_not):
            return None
        score = 0.0
        for clause in must:
            s = clause(doc_id, source)
            if s is None:
                return None
            score += s
        matched = 0
        for clause in should:
            s = clause(doc_id, source)
            if s is not None:
                matched, score = matched + 1, score + s
        return score * boost if matched >= need else None
    return match


_BUILDERS: dict[str, Callable[[_Compiler, dict], Matcher]] = {
    "match_all": _build_match_all, "match_none": _build_match_none, "term": _build_term,
    "terms": _build_terms, "match": _build_match, "match_phrase": _build_match_phrase,
    "prefix": _build_prefix, "wildcard": _build_wildcard, "exists": _build_exists,
    "range": _build_range, "ids": _build_ids, "bool": _build_bool,
}
