"""Property-based fuzzing of the search DSL (issue 9): whatever body a client sends, ``search``
answers a response that can be sent, or raises an MLError (a 4xx), never anything else (a 500) and
never a hang.

Bodies are what the API's JSON parser (orjson) can hand over: 64-bit integers, finite floats,
strings without lone surrogates. The strategies mix real query names and parameters with junk, deep
nesting and long patterns. Examples are derandomized, so CI runs the same ones every time.
"""
from __future__ import annotations

import re

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlcommons.errors import MLError
from mlcommons.opensearch.search import search

INDEX = ".plugins-ml-model"
# A small time budget, so that no example can run long even if a limit were missing.
BUDGET = 1.0

DOCS = [
    ("m1", {"name": "all-MiniLM-L6-v2", "model_state": "DEPLOYED", "model_version": "1",
            "description": "A sentence transformer for semantic search", "created_time": 1000,
            "model_config": {"model_type": "bert", "embedding_dimension": 384}, "tags": ["nlp", "x"],
            "is_enabled": True}),
    ("m2", {"name": "msmarco-distilbert", "model_state": "REGISTERED", "created_time": 3000.5,
            "model_config.model_type": "distilbert", "tags": [], "chunks": [{"id": 1}, {"id": "2"}]}),
    ("m3", {"name": "?*\\ sparse " * 40, "model_state": None, "created_time": "2000", "deep": [[["a"]]]}),
    ("m4", {}),
]

FIELDS = ["name", "name.keyword", "model_state", "model_version", "description", "created_time",
          "model_config.model_type", "model_config", "tags", "chunks.id", "deep", "_id", "_score", "_doc",
          "last_deployed_time", "nope", ""]
QUERY_NAMES = ["match_all", "match_none", "term", "terms", "match", "match_phrase", "prefix", "wildcard",
               "exists", "range", "ids", "bool", "regexp", "fuzzy", "query_string"]

EXAMPLES = settings(max_examples=200, deadline=2000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(["DEPLOYED", "bert", "search", "1", "0", "-1", "75%", "-25%", "1s", "0ms", "-1",
                     "asc", "desc", "and", "or", "_last", "_first"]),
)
junk = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
fields = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12))
patterns = st.one_of(
    st.text(alphabet="ab*?\\. é", max_size=30),
    st.builds(lambda n, tail: "*" * n + tail, st.integers(0, 6000), st.sampled_from(["b", "r", "?", "\\"])),
    st.builds(lambda n: "*a?" * n + "*", st.integers(0, 3000)),
)
# Mostly valid, so that bodies get past the first checks; one_of picks its branches evenly.
numbers = st.one_of(st.integers(0, 20), st.integers(0, 20), st.integers(-5, 20_000),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(["10", "-1", "x", "9" * 30]), junk)
time_values = st.one_of(st.sampled_from(["0", "0ms", "-1", "1s", "1m", "5", "1.5s", "-2s", "10nanos"]), junk)


def value_or_object(values, keys):
    """``{field: value}`` or ``{field: {key: value, boost, ...}}``, sometimes with junk."""
    spec = st.one_of(values, st.fixed_dictionaries(
        {}, optional={**{key: values for key in keys}, "boost": numbers, "_name": junk, "junk": junk}))
    return st.dictionaries(fields, spec, min_size=0, max_size=2)


def leaf_queries():
    return st.one_of(
        st.builds(lambda p: {"match_all": p}, st.one_of(st.just({}), st.fixed_dictionaries(
            {}, optional={"boost": numbers, "x": junk}))),
        st.just({"match_none": {}}),
        st.builds(lambda p: {"term": p}, value_or_object(scalars, ["value"])),
        st.builds(lambda f, v: {"terms": {f: v}}, fields, st.one_of(st.lists(scalars, max_size=5), junk)),
        st.builds(lambda p: {"match": p}, value_or_object(
            st.one_of(st.text(max_size=40), scalars), ["query", "operator", "minimum_should_match"])),
        st.builds(lambda p: {"match_phrase": p}, value_or_object(st.text(max_size=40), ["query", "slop"])),
        st.builds(lambda p: {"prefix": p}, value_or_object(patterns, ["value"])),
        st.builds(lambda p: {"wildcard": p}, value_or_object(patterns, ["value", "wildcard"])),
        st.builds(lambda f: {"exists": {"field": f}}, st.one_of(fields, junk)),
        st.builds(lambda f, b: {"range": {f: b}}, fields, st.fixed_dictionaries(
            {}, optional={"gt": scalars, "gte": scalars, "lt": scalars, "lte": numbers, "format": junk})),
        st.builds(lambda v: {"ids": {"values": v}}, st.one_of(st.lists(scalars, max_size=5), junk)),
        st.builds(lambda k, v: {k: v}, st.sampled_from(QUERY_NAMES), junk),
    )


def bools(children):
    clause = st.one_of(children, st.lists(children, max_size=4), junk)
    return st.builds(lambda p: {"bool": p}, st.fixed_dictionaries({}, optional={
        "must": clause, "filter": clause, "should": clause, "must_not": clause,
        "minimum_should_match": st.one_of(numbers, st.sampled_from(["75%", "-1", "2"])), "boost": numbers}))


def deep_bool(depth: int, occur: str) -> dict:
    query: dict = {"match_all": {}}
    for _ in range(depth):
        query = {"bool": {occur: query}}
    return query


# The shapes the outside probe used, and their neighbours: deep and wide bools, long patterns on
# fields that hold long values, long lists and long texts.
real_fields = st.sampled_from(["name", "description", "tags", "model_state"])
hostile = st.one_of(
    st.builds(deep_bool, st.integers(0, 400), st.sampled_from(["must", "filter", "should", "must_not"])),
    st.builds(lambda f, p: {"wildcard": {f: {"value": p}}}, real_fields, patterns),
    st.builds(lambda f, n, tail: {"wildcard": {f: "*" * n + tail}}, real_fields, st.integers(1000, 40_000),
              st.sampled_from(["b", "?" * 50, "r*"])),
    st.builds(lambda f, p: {"prefix": {f: p}}, real_fields, st.builds(lambda n: "a" * n, st.integers(0, 40_000))),
    st.builds(lambda n, occur: {"bool": {occur: [{"term": {"name": str(i)}} for i in range(n)]}},
              st.integers(1000, 1100), st.sampled_from(["must", "should", "filter"])),
    st.builds(lambda n: {"match": {"description": " ".join(f"w{i}" for i in range(n))}}, st.integers(1000, 1100)),
    st.builds(lambda n: {"terms": {"name": ["x"] * n}}, st.integers(65_530, 65_540)),
)
queries = st.one_of(st.recursive(leaf_queries(), bools, max_leaves=12), hostile, junk)
sorts = st.one_of(
    fields,
    st.lists(st.one_of(fields, st.dictionaries(fields, st.one_of(
        st.sampled_from(["asc", "desc"]),
        st.fixed_dictionaries({}, optional={"order": junk, "missing": junk, "unmapped_type": junk,
                                            "format": junk, "mode": junk})), max_size=2)), max_size=4),
    junk,
)
sources = st.one_of(st.booleans(), patterns, st.lists(patterns, max_size=4), st.fixed_dictionaries(
    {}, optional={"includes": st.lists(patterns, max_size=3), "excludes": st.one_of(patterns, junk),
                  "fields": junk}), junk)
well_formed = st.fixed_dictionaries({}, optional={
    "query": queries, "size": numbers, "from": numbers, "sort": sorts, "_source": sources,
    "timeout": time_values, "track_total_hits": junk})
# Nine well-formed bodies in ten; the rest is junk (None among it).
bodies = st.integers(0, 9).flatmap(lambda i: junk if i == 0 else well_formed)


def answers_or_refuses(body) -> dict | None:
    try:
        result = search(iter(DOCS), body, index=INDEX, timeout=BUDGET)
    except MLError as exc:
        assert 400 <= exc.status < 500, exc
        orjson.dumps(exc.body())  # the error body can be sent
        return None
    assert isinstance(result, dict) and isinstance(result["hits"]["hits"], list)
    orjson.dumps(result)  # and so can the response
    return result


@EXAMPLES
@given(bodies)
@example({"query": {"wildcard": {"name": {"value": "*" * 5000 + "b"}}}})  # the probe's hang
@example({"size": 10_001})
@example({"sort": [{"no_such_field": "asc"}]})
def test_any_body_is_answered_or_refused_with_a_4xx(body):
    answers_or_refuses(body)


@EXAMPLES
@given(queries)
def test_any_query_in_a_bool_is_answered_or_refused(query):
    answers_or_refuses({"query": {"bool": {"must_not": [query], "should": [query]}}})


def reference(pattern: str, text: str) -> bool:
    """The wildcard as a regular expression (safe here: the patterns are a few characters)."""
    out, chars = [], iter(pattern)
    for c in chars:
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(next(chars, "\\") if c == "\\" else c))
    return re.fullmatch("".join(out), text, re.DOTALL) is not None


@settings(max_examples=500, deadline=2000, derandomize=True, database=None)
@given(st.text(alphabet="ab*?\\", max_size=10), st.lists(st.text(alphabet="ab*?\\", max_size=12), max_size=3))
def test_wildcard_matches_as_the_regular_expression_would(pattern, values):
    docs = [("d", {"f": values})]
    hits = search(docs, {"query": {"wildcard": {"f": pattern}}}, index=INDEX)["hits"]["hits"]
    assert bool(hits) == any(reference(pattern, value) for value in values)
