"""Evaluate a subset of the OpenSearch query DSL over documents held in memory.

The ``_search`` endpoints for models, model groups and tasks load plain dicts from Redis and hand
them to :func:`search`, which answers with the body of an OpenSearch search response.

A query is compiled once into a matcher: a function of ``(doc_id, source)`` that returns the
document's score, or ``None`` when the document does not match. Fields are compared as OpenSearch
compares ``keyword`` fields: ``term`` is exact, ``match`` looks for lower-cased words. A list value
matches when any element matches.
"""
from __future__ import annotations

import operator
import re
import time
from typing import Any, Callable, Iterable, NamedTuple

from mlcommons.errors import BadRequest, ParseError

Matcher = Callable[[str, dict], "float | None"]
Getter = Callable[[str, dict], list]

_BODY_KEYS = ("query", "size", "from", "sort", "_source", "track_total_hits")
_COMMON = ("boost", "_name")  # accepted by every query
_TOKEN = re.compile(r"\w+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_OCCURS = ("must", "filter", "should", "must_not")
_RANGE_OPS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def search(
    docs: Iterable[tuple[str, dict]], body: dict | None, *, index: str, default_size: int = 10
) -> dict:
    """Run the search ``body`` over ``docs`` (``(doc_id, source)`` pairs) and build the response.

    Scores are simple and deterministic, not BM25: ``match_all`` and the other non-text queries
    score 1.0 (times ``boost``); ``match`` and ``match_phrase`` score the number of query words
    they matched; ``bool`` sums its ``must`` and ``should`` clauses, so a filter-only query scores
    0.0. Without ``sort``, hits are ordered by score, ties keeping the order of ``docs``.
    """
    started = time.monotonic()
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise ParseError("request body must be a JSON object")
    for key, value in body.items():
        if key not in _BODY_KEYS:
            token = {dict: "START_OBJECT", list: "START_ARRAY"}.get(type(value), "VALUE")
            raise ParseError(f"Unknown key for a {token} in [{key}].")
    size = _non_negative(body, "size", default_size)
    offset = _non_negative(body, "from", 0)
    matcher = _compile(body["query"]) if body.get("query") is not None else _constant(1.0)
    sort_keys = _parse_sort(body["sort"]) if body.get("sort") else None
    project = _source_filter(body.get("_source", True))

    rows = []
    for doc_id, source in docs:
        score = matcher(doc_id, source)
        if score is not None:
            rows.append((doc_id, source, float(score)))
    if sort_keys is None:
        rows.sort(key=lambda row: row[2], reverse=True)  # stable: ties keep the input order
        sort_values, scored = None, True
    else:
        rows, sort_values = _sort(rows, sort_keys)
        scored = any(key.field == "_score" for key in sort_keys)

    hits = []
    for i in range(offset, min(offset + size, len(rows))):
        doc_id, source, score = rows[i]
        hit = {"_index": index, "_id": doc_id, "_version": 1, "_seq_no": 0, "_primary_term": 1,
               "_score": score if scored else None}
        if project is not None:
            hit["_source"] = project(source)
        if sort_values is not None:
            hit["sort"] = sort_values[i]
        hits.append(hit)
    return {
        "took": int((time.monotonic() - started) * 1000),
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": len(rows), "relation": "eq"},
            "max_score": max(row[2] for row in rows) if scored and rows and size else None,
            "hits": hits,
        },
    }


def _non_negative(body: dict, key: str, default: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError(f"[{key}] must be an integer, found [{value}]")
    if value < 0:
        raise BadRequest(f"[{key}] parameter cannot be negative, found [{value}]")
    return value


# ---- field access ------------------------------------------------------------------------------

def _getter(field: str) -> Getter:
    """Values at a dotted path, lists flattened and nulls dropped; ``_id`` is the document id."""
    field = field.removesuffix(".keyword")
    if field == "_id":
        return lambda doc_id, source: [doc_id]
    parts = field.split(".")
    end = len(parts)
    # A dotted path may be spelled as nested objects or as keys that hold dots; try both.
    spans = [[(".".join(parts[i:j]), j) for j in range(i + 1, end + 1)] for i in range(end)]

    def collect(node: Any, i: int, out: list) -> None:
        if isinstance(node, list):
            for item in node:
                collect(item, i, out)
        elif i == end:
            if node is not None and node != {}:
                out.append(node)
        elif isinstance(node, dict):
            for key, j in spans[i]:
                if key in node:
                    collect(node[key], j, out)

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

def _compile(query: Any) -> Matcher:
    if not isinstance(query, dict) or len(query) != 1:
        raise ParseError(f"query malformed, expected an object holding one query, found [{query}]")
    (kind, params), = query.items()
    build = _BUILDERS.get(kind)
    if build is None:
        raise ParseError(f"unknown query [{kind}]")
    if not isinstance(params, dict):
        raise ParseError(f"[{kind}] query malformed, no start_object after query name")
    return build(params)


def _check_keys(kind: str, params: dict, allowed: Iterable[str]) -> float:
    """Refuse unknown parameters; returns the query's boost."""
    for key in params:
        if key not in _COMMON and key not in allowed:
            raise ParseError(f"[{kind}] query does not support [{key}]")
    boost = params.get("boost", 1.0)
    if isinstance(boost, bool) or not isinstance(boost, (int, float)):
        raise ParseError(f"[{kind}] query: [boost] must be a number, found [{boost}]")
    return float(boost)


def _field_query(kind: str, params: dict, value_keys: tuple, allowed: tuple = ()):
    """Split ``{field: value}`` or ``{field: {value_key: value, ...}}`` into
    ``(field, value, options, boost)``."""
    if len(params) != 1:
        raise ParseError(f"[{kind}] query requires exactly one field, found {list(params)}")
    (field, spec), = params.items()
    if isinstance(spec, dict):
        boost = _check_keys(kind, spec, value_keys + allowed)
        present = [key for key in value_keys if key in spec]
        if not present:
            raise ParseError(f"[{kind}] query requires [{value_keys[0]}] for field [{field}]")
        value, opts = spec[present[0]], spec
    else:
        value, opts, boost = spec, {}, 1.0
    if _text(value) is None:
        raise ParseError(f"[{kind}] query does not support value [{value}] for field [{field}]")
    return field, value, opts, boost


def _constant(score: float | None) -> Matcher:
    return lambda doc_id, source: score


def _any_value(get: Getter, test: Callable[[str], Any], boost: float) -> Matcher:
    """Matches, scoring ``boost``, when the text of any value at the field passes ``test``."""
    def match(doc_id: str, source: dict) -> float | None:
        for value in get(doc_id, source):
            text = _text(value)
            if text is not None and test(text):
                return boost
        return None
    return match


def _build_match_all(params: dict) -> Matcher:
    return _constant(_check_keys("match_all", params, ()))


def _build_match_none(params: dict) -> Matcher:
    _check_keys("match_none", params, ())
    return _constant(None)


def _build_term(params: dict) -> Matcher:
    field, value, _, boost = _field_query("term", params, ("value",))
    return _any_value(_getter(field), {_text(value)}.__contains__, boost)


def _build_terms(params: dict) -> Matcher:
    fields = [key for key in params if key not in _COMMON]
    if len(fields) != 1:
        raise ParseError(f"[terms] query requires exactly one field, found {fields}")
    values = params[fields[0]]
    if not isinstance(values, list):
        raise ParseError(f"[terms] query requires an array of values for field [{fields[0]}]")
    wanted = {_text(value) for value in values}
    if None in wanted:
        raise ParseError(f"[terms] query supports only scalar values, found {values}")
    return _any_value(_getter(fields[0]), wanted.__contains__, _check_keys("terms", params, fields))


def _build_prefix(params: dict) -> Matcher:
    field, value, _, boost = _field_query("prefix", params, ("value",))
    return _any_value(_getter(field), re.compile(re.escape(_text(value))).match, boost)


def _wildcard_regex(pattern: str) -> re.Pattern:
    """``*`` is any run of characters, ``?`` one character, ``\\`` escapes the next."""
    parts, chars = [], iter(pattern)
    for c in chars:
        if c in "*?":
            parts.append(".*" if c == "*" else ".")
        else:
            parts.append(re.escape(next(chars, "\\") if c == "\\" else c))
    return re.compile("".join(parts), re.DOTALL)


def _build_wildcard(params: dict) -> Matcher:
    field, value, _, boost = _field_query("wildcard", params, ("value", "wildcard"))
    return _any_value(_getter(field), _wildcard_regex(_text(value)).fullmatch, boost)


def _build_exists(params: dict) -> Matcher:
    boost = _check_keys("exists", params, ("field",))
    if not isinstance(params.get("field"), str) or not params["field"]:
        raise ParseError("[exists] must be provided with a [field]")
    get = _getter(params["field"])
    return lambda doc_id, source: boost if get(doc_id, source) else None


def _build_range(params: dict) -> Matcher:
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
                raise ParseError(f"[range] query does not support [{key}] value [{bound}]")
            as_number = bound if not isinstance(bound, str) else (
                float(bound) if _NUMBER.fullmatch(bound) else None)
            bounds.append((_RANGE_OPS[key], as_number, str(bound)))
    get = _getter(field)

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


def _build_ids(params: dict) -> Matcher:
    boost = _check_keys("ids", params, ("values", "type"))
    if not isinstance(params.get("values"), list):
        raise ParseError("[ids] query requires an array of [values]")
    wanted = {str(value) for value in params["values"]}
    return lambda doc_id, source: boost if doc_id in wanted else None


def _min_should_match(spec: Any, count: int, default: int) -> int:
    """OpenSearch's ``minimum_should_match``: 2, -1, "2", "75%", "-25%"; clamped to [0, count]."""
    if spec is None:
        wanted = default
    elif isinstance(spec, int) and not isinstance(spec, bool):
        wanted = spec if spec >= 0 else count + spec
    elif isinstance(spec, str) and (m := re.fullmatch(r"\s*(-?)(\d+)(%?)\s*", spec)):
        amount = int(m[2]) if not m[3] else count * int(m[2]) // 100
        wanted = count - amount if m[1] else amount
    else:
        raise ParseError(f"unsupported [minimum_should_match] value [{spec}]")
    return max(0, min(wanted, count))


def _build_match(params: dict) -> Matcher:
    field, value, opts, boost = _field_query(
        "match", params, ("query",), ("operator", "minimum_should_match"))
    tokens = list(dict.fromkeys(_tokens(_text(value))))
    op = str(opts.get("operator", "or")).lower()
    if op not in ("and", "or"):
        raise ParseError(f"[match] query: unknown operator [{opts['operator']}], expected and|or")
    if op == "and":
        need = len(tokens)
    else:
        need = max(1, _min_should_match(opts.get("minimum_should_match"), len(tokens), 1))
    if not tokens:
        return _constant(None)  # as OpenSearch's default zero_terms_query "none"
    get = _getter(field)

    def match(doc_id: str, source: dict) -> float | None:
        words: set[str] = set()
        for item in get(doc_id, source):
            text = _text(item)
            if text is not None:
                words.update(_tokens(text))
        found = sum(1 for token in tokens if token in words)
        return found * boost if found >= need else None
    return match


def _build_match_phrase(params: dict) -> Matcher:
    field, value, _, boost = _field_query("match_phrase", params, ("query",))
    phrase = _tokens(_text(value))
    if not phrase:
        return _constant(None)
    n = len(phrase)

    def contains(text: str) -> bool:
        # Called per array element, so a phrase never spans two elements (as in OpenSearch).
        words = _tokens(text)
        return any(words[i:i + n] == phrase for i in range(len(words) - n + 1))
    return _any_value(_getter(field), contains, n * boost)


def _clauses(name: str, spec: Any) -> list[Matcher]:
    if spec is None:
        return []
    if isinstance(spec, dict):
        return [_compile(spec)]
    if isinstance(spec, list) and all(isinstance(item, dict) for item in spec):
        return [_compile(item) for item in spec]
    raise ParseError(f"[bool] malformed [{name}] clause, expected an object or an array of objects")


def _build_bool(params: dict) -> Matcher:
    boost = _check_keys("bool", params, (*_OCCURS, "minimum_should_match"))
    must, filters, should, must_not = (_clauses(name, params.get(name)) for name in _OCCURS)
    if not (must or filters or should or must_not):
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


_BUILDERS: dict[str, Callable[[dict], Matcher]] = {
    "match_all": _build_match_all, "match_none": _build_match_none, "term": _build_term,
    "terms": _build_terms, "match": _build_match, "match_phrase": _build_match_phrase,
    "prefix": _build_prefix, "wildcard": _build_wildcard, "exists": _build_exists,
    "range": _build_range, "ids": _build_ids, "bool": _build_bool,
}


# ---- sort --------------------------------------------------------------------------------------

class _SortKey(NamedTuple):
    field: str
    desc: bool
    missing: Any  # "_last", "_first" or a value that stands in for a missing one
    get: Getter


def _parse_sort(spec: Any) -> list[_SortKey]:
    keys = []
    for item in spec if isinstance(spec, list) else [spec]:
        if not (isinstance(item, str) or isinstance(item, dict) and item):
            raise ParseError(f"malformed sort, expected a field name or an object, found [{item}]")
        for field, opts in [(item, {})] if isinstance(item, str) else item.items():
            opts = {"order": opts} if isinstance(opts, str) else opts
            if not isinstance(opts, dict):
                raise ParseError(f"malformed sort for [{field}], expected an order or an object")
            for key in opts:
                if key not in ("order", "missing", "unmapped_type", "format"):
                    raise ParseError(f"[{field}] sort does not support [{key}]")
            order = str(opts.get("order", "desc" if field == "_score" else "asc")).lower()
            if order not in ("asc", "desc"):
                raise ParseError(f"unknown sort order [{opts['order']}] for [{field}]")
            missing = opts.get("missing", "_last")
            keys.append(_SortKey(field, order == "desc", missing, _getter(field)))
    return keys


def _order(value: Any) -> tuple:
    """Numbers before strings, so a field that holds both still sorts."""
    return (1, value) if isinstance(value, str) else (0, value)


def _sort_value(key: _SortKey, row: tuple) -> Any:
    doc_id, source, score = row
    if key.field == "_score":
        return score
    values = [v for v in key.get(doc_id, source) if isinstance(v, (str, int, float))]
    if not values:
        return None if key.missing in ("_last", "_first") else key.missing
    # Of an array, ascending order uses the smallest value and descending the largest.
    return (max if key.desc else min)(values, key=_order)


def _sort(rows: list[tuple], keys: list[_SortKey]) -> tuple[list[tuple], list[list]]:
    """The rows in sort order, and each row's sort values in that order."""
    entries = [(row, [_sort_value(key, row) for key in keys]) for row in rows]
    # Stable sorts from the last key to the first give the multi-key order. Missing values are
    # set aside at each step, so that "_last" and "_first" hold in either direction.
    for k in reversed(range(len(keys))):
        present = [e for e in entries if e[1][k] is not None]
        absent = [e for e in entries if e[1][k] is None]
        present.sort(key=lambda e: _order(e[1][k]), reverse=keys[k].desc)
        entries = absent + present if keys[k].missing == "_first" else present + absent
    return [e[0] for e in entries], [e[1] for e in entries]


# ---- _source filtering -------------------------------------------------------------------------

class _Pattern:
    """A ``_source`` field pattern: a dotted path in which ``*`` matches any run of characters."""

    def __init__(self, pattern: str):
        regex = ".*".join(map(re.escape, pattern.split("*")))
        self.matches = re.compile(regex, re.DOTALL).fullmatch
        self.literal, self.wild = pattern.split("*")[0], "*" in pattern

    def may_match_below(self, path: str) -> bool:
        below = path + "."
        return self.literal.startswith(below) or (self.wild and below.startswith(self.literal))


def _source_filter(spec: Any) -> Callable[[dict], Any] | None:
    """A function that filters a source, or None when hits carry no ``_source`` at all."""
    if spec is False:
        return None
    if spec is None or spec is True:
        includes, excludes = [], []
    elif isinstance(spec, (str, list)):
        includes, excludes = spec, []
    elif isinstance(spec, dict):
        for key in spec:
            if key not in ("includes", "excludes", "include", "exclude"):
                raise ParseError(f"[_source] does not support [{key}]")
        includes = spec.get("includes", spec.get("include", []))
        excludes = spec.get("excludes", spec.get("exclude", []))
    else:
        raise ParseError(f"[_source] must be a boolean, string, array or object, found [{spec}]")
    includes, excludes = ([p] if isinstance(p, str) else p for p in (includes, excludes))
    patterns = (includes, excludes)
    if not all(isinstance(ps, list) and all(isinstance(p, str) for p in ps) for ps in patterns):
        raise ParseError("[_source] field patterns must be strings")
    if not includes and not excludes:
        return lambda source: source
    inc, exc = [_Pattern(p) for p in includes], [_Pattern(p) for p in excludes]
    return lambda source: _filter(source, inc, exc, "", not inc)


def _filter(node: Any, inc: list[_Pattern], exc: list[_Pattern], path: str, whole: bool) -> Any:
    """``node`` at ``path`` less excluded fields and, unless ``whole``, only included ones."""
    if isinstance(node, list):
        kept = [_filter(item, inc, exc, path, whole) if isinstance(item, (dict, list)) else item
                for item in node if whole or isinstance(item, (dict, list))]
        return kept if whole else [item for item in kept if item]
    out = {}
    for key, value in node.items():
        child = f"{path}.{key}" if path else key
        if any(p.matches(child) for p in exc):
            continue
        nested = isinstance(value, (dict, list))
        child_whole = whole or any(p.matches(child) for p in inc)
        if not child_whole and not (nested and any(p.may_match_below(child) for p in inc)):
            continue
        if nested and (not child_whole or any(p.may_match_below(child) for p in exc)):
            value = _filter(value, inc, exc, child, child_whole)
            if not child_whole and not value:
                continue  # nothing below was asked for: drop the emptied object, as OpenSearch does
        out[key] = value
    return out
