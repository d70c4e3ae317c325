"""Evaluate a subset of the OpenSearch query DSL over documents held in memory.

The ``_search`` endpoints for models, model groups and tasks load plain dicts from Redis and hand
them to :func:`search`, which answers with the body of an OpenSearch search response. The query
clauses live in :mod:`mlcommons.opensearch.queries`.

Any client can send a body, and a search runs on one of the API's threads, so every search is
bounded: the result window, the query (see queries) and the lengths of lists and patterns are
capped with OpenSearch's limits and error texts; patterns are matched without regular expressions
(see wildcards); and a time budget stops a search, which then answers the hits found so far with
``timed_out: true``.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterable, NamedTuple

from mlcommons.core.wildcards import Glob, bounded
from mlcommons.errors import BadRequest, ParseError
from mlcommons.opensearch.queries import Getter, Matcher, OutOfTime, compile_query, getter, show
from mlcommons.settings import SETTINGS
from mlcommons.store import keys as K

_BODY_KEYS = ("query", "size", "from", "sort", "_source", "track_total_hits", "timeout")

MAX_RESULT_WINDOW = 10_000  # OpenSearch's index.max_result_window: from + size
MAX_LIST_LENGTH = 1024  # sort fields, and _source patterns (OpenSearch sets no limit; ours)

_TIMEOUT_SETTING = "mlcommons.search.timeout_seconds"


def search(
    docs: Iterable[tuple[str, dict]], body: dict | None, *, index: str, default_size: int = 10,
    timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Run the search ``body`` over ``docs`` (``(doc_id, source)`` pairs) and build the response.

    Scores are simple and deterministic, not BM25: ``match_all`` and the other non-text queries
    score 1.0 (times ``boost``); ``match`` and ``match_phrase`` score the number of query words
    they matched; ``bool`` sums its ``must`` and ``should`` clauses, so a filter-only query scores
    0.0. Without ``sort``, hits are ordered by score, ties keeping the order of ``docs``.

    ``timeout`` is the server's time budget in seconds (the ``mlcommons.search.timeout_seconds``
    default when None); a ``timeout`` in the body may shorten it, never lengthen it. A search past
    its budget stops and answers the hits found so far with ``timed_out: true``, as OpenSearch does
    past a search's ``timeout``. The budget is measured on ``clock``.
    """
    started = clock()
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise ParseError("request body must be a JSON object")
    for key, value in body.items():
        if key not in _BODY_KEYS:
            token = {dict: "START_OBJECT", list: "START_ARRAY"}.get(type(value), "VALUE")
            raise ParseError(f"Unknown key for a {token} in [{show(key)}].")
    size = _non_negative(body, "size", default_size)
    offset = _non_negative(body, "from", 0)
    if offset + size > MAX_RESULT_WINDOW:
        raise BadRequest(
            f"Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] "
            f"but was [{offset + size}]. See the scroll api for a more efficient way to request large data "
            "sets. This limit can be set by changing the [index.max_result_window] index level setting.")
    budget = _Budget(started, _budget_seconds(body.get("timeout"), timeout), clock)
    query = body.get("query")
    matcher = compile_query({"match_all": {}} if query is None else query, budget.check)
    sort_keys = _parse_sort(body["sort"]) if body.get("sort") else None
    project = _source_filter(body.get("_source", True))
    # Sort fields outside ML Commons' mapping must be carried by some document (a dynamic mapping).
    unmapped = [key for key in sort_keys or () if key.checked and not _mapped(index, key.field)]

    rows, timed_out = _match(docs, matcher, budget, unmapped)
    if unmapped and not timed_out:
        raise BadRequest(f"No mapping found for [{show(unmapped[0].field)}] in order to sort on",
                         error_type="query_shard_exception")
    # Sorting and fetching the page get a budget of their own, as OpenSearch's timeout bounds the
    # query phase only: the hits found before a time-out still come back in order, and no search
    # holds its thread past twice its budget.
    fetch = _Budget(clock(), budget.seconds, clock)
    if sort_keys is None:
        rows.sort(key=lambda row: row[2], reverse=True)  # stable: ties keep the input order
        sort_values, scored = None, True
    else:
        rows, sort_values, complete = _sort(rows, sort_keys, fetch)
        timed_out = timed_out or not complete
        scored = any(key.field == "_score" for key in sort_keys)

    hits = []
    for i in range(offset, min(offset + size, len(rows))):
        if fetch.expired():
            timed_out = True
            break
        doc_id, source, score, _ = rows[i]
        hit = {"_index": index, "_id": doc_id, "_version": 1, "_seq_no": 0, "_primary_term": 1,
               "_score": score if scored else None}
        if project is not None:
            hit["_source"] = project(source)
        if sort_values is not None:
            hit["sort"] = sort_values[i]
        hits.append(hit)
    return {
        "took": int((clock() - started) * 1000),
        "timed_out": timed_out,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": len(rows), "relation": "eq"},
            "max_score": max(row[2] for row in rows) if scored and rows and size else None,
            "hits": hits,
        },
    }


def _match(docs: Iterable[tuple[str, dict]], matcher: Matcher, budget: "_Budget",
           unmapped: list["_SortKey"]) -> tuple[list[tuple], bool]:
    """The matching documents as ``(doc_id, source, score, position)`` rows, and whether the budget
    ran out first. A sort key leaves ``unmapped`` once a document carries a value for its field."""
    rows: list[tuple] = []
    try:
        for position, (doc_id, source) in enumerate(docs):
            if budget.expired():
                return rows, True
            if unmapped:
                unmapped[:] = [key for key in unmapped if not _scalars(key.get(doc_id, source))]
            score = matcher(doc_id, source)
            if score is not None:
                rows.append((doc_id, source, float(score), position))
    except OutOfTime:
        return rows, True
    return rows, False


def _non_negative(body: dict, key: str, default: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParseError(f"[{key}] must be an integer, found [{show(value)}]")
    if value < 0:
        raise BadRequest(f"[{key}] parameter cannot be negative, found [{value}]")
    return value


# ---- time budget -------------------------------------------------------------------------------

class _Budget:
    """The moment a search must stop by."""

    def __init__(self, started: float, seconds: float, clock: Callable[[], float]):
        self.seconds, self.deadline, self.clock = seconds, started + seconds, clock

    def expired(self) -> bool:
        return self.clock() >= self.deadline

    def check(self) -> None:
        if self.expired():
            raise OutOfTime


def _budget_seconds(requested: Any, server: float | None) -> float:
    limit = SETTINGS[_TIMEOUT_SETTING].default if server is None else server
    asked = None if requested is None else _time_value(requested, "timeout")
    return limit if asked is None else min(limit, asked)


_TIME_UNITS = (("nanos", 1e-9), ("micros", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0),
               ("h", 3600.0), ("d", 86400.0))


def _time_value(raw: Any, name: str) -> float | None:
    """OpenSearch's time value (``500ms``, ``2s``, ``1m``, ``0``) in seconds; None for ``-1``, no
    time-out. Errors carry OpenSearch's texts."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ParseError(f"[{name}] must be a time value, found [{show(raw)}]")
    text = str(raw)
    normalized = text.strip().lower()
    for suffix, scale in _TIME_UNITS:
        # Minutes are a lower-case "m" only, as in OpenSearch ("M" is no unit).
        if (text.strip() if suffix == "m" else normalized).endswith(suffix):
            number = normalized[:-len(suffix)].strip()
            if re.fullmatch(r"[+-]?\d{1,18}", number):
                value = int(number)
                if value < -1:
                    raise BadRequest(f"failed to parse setting [{name}] with value [{show(text)}] as a time "
                                     "value: negative durations are not supported")
                return None if value == -1 else value * scale
            if len(number) <= 40 and re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", number):
                raise BadRequest(f"failed to parse [{show(text)}], fractional time values are not supported")
            raise BadRequest(f"failed to parse [{show(text)}]")
    if re.fullmatch(r"-0*1", normalized):
        return None
    if re.fullmatch(r"0+", normalized):
        return 0.0
    raise BadRequest(f"failed to parse setting [{name}] with value [{show(text)}] as a time value: unit is "
                     "missing or unrecognized")


def _scalars(values: list) -> bool:
    return any(isinstance(value, (str, int, float)) for value in values)


# ---- sort --------------------------------------------------------------------------------------

class _SortKey(NamedTuple):
    field: str
    desc: bool
    missing: Any  # "_last", "_first" or a value that stands in for a missing one
    get: Getter
    checked: bool  # False when unmapped_type says how to sort a field no document has


def _parse_sort(spec: Any) -> list[_SortKey]:
    keys: list[_SortKey] = []
    for item in spec if isinstance(spec, list) else [spec]:
        if not (isinstance(item, str) or isinstance(item, dict) and item):
            raise ParseError(f"malformed sort, expected a field name or an object, found [{show(item)}]")
        for field, opts in [(item, {})] if isinstance(item, str) else item.items():
            if len(keys) == MAX_LIST_LENGTH:
                raise BadRequest(f"[sort] holds more than [{MAX_LIST_LENGTH}] fields")
            opts = {"order": opts} if isinstance(opts, str) else opts
            if not isinstance(opts, dict):
                raise ParseError(f"malformed sort for [{show(field)}], expected an order or an object")
            for key in opts:
                if key not in ("order", "missing", "unmapped_type", "format"):
                    raise ParseError(f"[{show(field)}] sort does not support [{show(key)}]")
            order = opts.get("order", "desc" if field == "_score" else "asc")
            if not isinstance(order, str) or order.lower() not in ("asc", "desc"):
                raise ParseError(f"unknown sort order [{show(order)}] for [{show(field)}]")
            missing = opts.get("missing")
            if isinstance(missing, (dict, list)):
                raise ParseError(f"[{show(field)}] sort: [missing] must be a value, found [{show(missing)}]")
            unmapped_type = opts.get("unmapped_type")
            if unmapped_type is not None and not isinstance(unmapped_type, str):
                raise ParseError(f"[{show(field)}] sort: [unmapped_type] must be a type name")
            keys.append(_SortKey(field, order.lower() == "desc", "_last" if missing is None else missing,
                                 getter(field), unmapped_type is None))
    return keys


def _order(value: Any) -> tuple:
    """Numbers before strings, so a field that holds both still sorts."""
    return (1, value) if isinstance(value, str) else (0, value)


def _sort_value(key: _SortKey, row: tuple) -> Any:
    doc_id, source, score, position = row
    if key.field == "_score":
        return score
    if key.field == "_doc":
        return position
    values = [v for v in key.get(doc_id, source) if isinstance(v, (str, int, float))]
    if not values:
        return None if key.missing in ("_last", "_first") else key.missing
    # Of an array, ascending order uses the smallest value and descending the largest.
    return (max if key.desc else min)(values, key=_order)


def _sort(rows: list[tuple], keys: list[_SortKey], budget: _Budget
          ) -> tuple[list[tuple], list[list], bool]:
    """The rows in sort order, each row's sort values in that order, and False when the budget ran
    out before the last key was sorted on."""
    entries = [(row, [_sort_value(key, row) for key in keys]) for row in rows]
    # Stable sorts from the last key to the first give the multi-key order. Missing values are
    # set aside at each step, so that "_last" and "_first" hold in either direction.
    for k in reversed(range(len(keys))):
        if budget.expired():
            return [e[0] for e in entries], [e[1] for e in entries], False
        present = [e for e in entries if e[1][k] is not None]
        absent = [e for e in entries if e[1][k] is None]
        present.sort(key=lambda e: _order(e[1][k]), reverse=keys[k].desc)
        entries = absent + present if keys[k].missing == "_first" else present + absent
    return [e[0] for e in entries], [e[1] for e in entries], True


def _fields(names: str) -> frozenset[str]:
    return frozenset(names.split())


_USER = "user.name user.backend_roles user.roles user.custom_attribute_names"

# The fields of ML Commons' index mappings (common/src/main/resources/index-mappings/*.json), as
# (fields, prefixes of flat_object fields, whose every sub-path is a field).
_MAPPINGS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    K.WIRE_INDEX[K.MODEL]: (_fields(
        "algorithm name version model_version model_group_id model_content chunk_number total_chunks "
        "model_id description model_format model_state model_content_size_in_bytes "
        "planning_worker_node_count current_worker_node_count planning_worker_nodes deploy_to_all_nodes "
        "is_hidden tenant_id provisioned_by model_config.model_type model_config.embedding_dimension "
        "model_config.framework_type model_config.pooling_mode model_config.normalize_result "
        "model_config.model_max_length model_config.all_config is_enabled is_controller_enabled "
        "model_content_hash_value auto_redeploy_retry_times created_time last_updated_time "
        "last_registered_time last_deployed_time last_undeployed_time "
        "guardrails.input_guardrail.regex guardrails.input_guardrail.stop_words.index_name "
        "guardrails.input_guardrail.stop_words.source_fields guardrails.output_guardrail.regex "
        "guardrails.output_guardrail.stop_words.index_name guardrails.output_guardrail.stop_words.source_fields "
        "connector.name connector.version connector.description connector.protocol " + _USER),
        ("model_config.additional_config.", "deploy_setting.", "rate_limiter.", "interface.",
         "connector.parameters.", "connector.credential.", "connector.client_config.", "connector.actions.")),
    K.WIRE_INDEX[K.MODEL_GROUP]: (_fields(
        "name description latest_version model_group_id backend_roles access owner.name "
        "owner.backend_roles owner.roles owner.custom_attribute_names created_time last_updated_time"), ()),
    K.WIRE_INDEX[K.CONNECTOR]: (_fields(
        "name version description protocol created_time last_updated_time backend_roles owner.name "
        "owner.backend_roles owner.roles access tenant_id"),
        ("parameters.", "actions.", "client_config.")),
    K.WIRE_INDEX[K.TASK]: (_fields(
        "model_id task_type function_name state input_type progress output_index worker_node create_time "
        "last_update_time error is_async " + _USER), ("remote_job.",)),
}


def _mapped(index: str, field: str) -> bool:
    """Whether ML Commons maps ``field`` in ``index`` (or is a built-in sort). A ``.keyword`` sub-field
    is taken as mapped with its field, as a dynamic mapping maps strings."""
    if field in ("_score", "_doc", "_id"):
        return True
    fields, flat = _MAPPINGS.get(index, (frozenset(), ()))
    base = field.removesuffix(".keyword")
    return base in fields or base.startswith(flat)


# ---- _source filtering -------------------------------------------------------------------------

class _Pattern:
    """A ``_source`` field pattern: a dotted path in which ``*`` matches any run of characters."""

    def __init__(self, pattern: str):
        self.matches = Glob(bounded(pattern, "_source"), simple=True).matches
        self.literal, self.wild = pattern.partition("*")[0], "*" in pattern

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
                raise ParseError(f"[_source] does not support [{show(key)}]")
        includes = spec.get("includes", spec.get("include", []))
        excludes = spec.get("excludes", spec.get("exclude", []))
    else:
        raise ParseError(f"[_source] must be a boolean, string, array or object, found [{show(spec)}]")
    includes, excludes = ([p] if isinstance(p, str) else p for p in (includes, excludes))
    patterns = (includes, excludes)
    if not all(isinstance(ps, list) and all(isinstance(p, str) for p in ps) for ps in patterns):
        raise ParseError("[_source] field patterns must be strings")
    if len(includes) + len(excludes) > MAX_LIST_LENGTH:
        raise BadRequest(f"[_source] holds more than [{MAX_LIST_LENGTH}] field patterns")
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
