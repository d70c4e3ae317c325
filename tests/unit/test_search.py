"""Tests for mlcommons.opensearch.search: the in-memory OpenSearch query DSL evaluator."""
from __future__ import annotations

import pytest

from mlcommons.errors import BadRequest, ParseError
from mlcommons.opensearch.search import search

INDEX = ".plugins-ml-model"

DOCS = [
    ("m1", {
        "name": "all-MiniLM-L6-v2", "model_state": "DEPLOYED", "model_version": "1",
        "algorithm": "TEXT_EMBEDDING", "description": "A sentence transformer for semantic search",
        "model_config": {"model_type": "bert", "embedding_dimension": 384},
        "tags": ["nlp", "embedding"], "created_time": 1000, "is_enabled": True,
        "model_group_id": "g1",
    }),
    ("m2", {
        "name": "msmarco-distilbert", "model_state": "REGISTERED", "model_version": "2",
        "algorithm": "TEXT_EMBEDDING", "description": "Distilled BERT, tuned for search ranking",
        "model_config": {"model_type": "distilbert", "embedding_dimension": 768},
        "tags": ["nlp"], "created_time": 3000, "is_enabled": False, "model_group_id": "g1",
    }),
    ("m3", {
        "name": "sparse-encoder", "model_state": "DEPLOY_FAILED", "model_version": "10",
        "algorithm": "SPARSE_ENCODING", "description": "Sparse neural search encoder",
        "tags": [], "created_time": 2000, "model_group_id": "g2",
    }),
    ("m4", {
        "name": "cross-encoder", "model_state": "DEPLOYED", "algorithm": "TEXT_SIMILARITY",
        "created_time": None, "model_group_id": None,
        "chunks": [{"id": 1, "size": 10}, {"id": 2, "size": 30}],
    }),
]


def run(body, docs=DOCS, **kw):
    return search(docs, body, index=INDEX, **kw)


def ids(body, docs=DOCS, **kw):
    return [hit["_id"] for hit in run(body, docs, **kw)["hits"]["hits"]]


def q(query, **body):
    return {"query": query, **body}


# ---- response shape ----------------------------------------------------------------------------

def test_response_shape():
    result = run(None)
    assert isinstance(result["took"], int) and result["took"] >= 0
    assert result["timed_out"] is False
    assert result["_shards"] == {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
    assert result["hits"]["total"] == {"value": 4, "relation": "eq"}
    assert result["hits"]["max_score"] == 1.0
    first = result["hits"]["hits"][0]
    assert first == {
        "_index": INDEX, "_id": "m1", "_version": 1, "_seq_no": 0, "_primary_term": 1,
        "_score": 1.0, "_source": DOCS[0][1],
    }
    assert "sort" not in first


@pytest.mark.parametrize("body", [None, {}, {"query": {"match_all": {}}}])
def test_empty_body_is_match_all_in_input_order(body):
    assert ids(body) == ["m1", "m2", "m3", "m4"]


def test_no_docs():
    result = run({"query": {"match_all": {}}}, docs=[])
    assert result["hits"] == {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}


def test_docs_may_be_any_iterable():
    assert ids(None, docs=iter(DOCS)) == ["m1", "m2", "m3", "m4"]


def test_track_total_hits_is_accepted():
    assert run({"track_total_hits": True})["hits"]["total"]["value"] == 4


# ---- leaf queries ------------------------------------------------------------------------------

def test_match_all_boost():
    result = run(q({"match_all": {"boost": 2.5}}))
    assert {hit["_score"] for hit in result["hits"]["hits"]} == {2.5}
    assert result["hits"]["max_score"] == 2.5


def test_match_none():
    result = run(q({"match_none": {}}))
    assert result["hits"]["total"]["value"] == 0 and result["hits"]["max_score"] is None


@pytest.mark.parametrize("query", [
    {"term": {"model_state": "DEPLOYED"}},
    {"term": {"model_state": {"value": "DEPLOYED"}}},
    {"term": {"model_state.keyword": "DEPLOYED"}},
    {"term": {"model_state": {"value": "DEPLOYED", "boost": 1.0}}},
])
def test_term_forms(query):
    assert ids(q(query)) == ["m1", "m4"]


def test_term_is_exact_and_case_sensitive():
    assert ids(q({"term": {"model_state": "deployed"}})) == []
    assert ids(q({"term": {"model_state": "DEPLOY"}})) == []
    assert ids(q({"term": {"name": "cross-encoder"}})) == ["m4"]


def test_term_on_numbers_and_booleans():
    assert ids(q({"term": {"created_time": 3000}})) == ["m2"]
    assert ids(q({"term": {"created_time": "3000"}})) == ["m2"]  # coerced, as OpenSearch does
    assert ids(q({"term": {"model_version": 10}})) == ["m3"]
    assert ids(q({"term": {"model_config.embedding_dimension": 384.0}})) == ["m1"]
    assert ids(q({"term": {"is_enabled": True}})) == ["m1"]
    assert ids(q({"term": {"is_enabled": "false"}})) == ["m2"]


def test_term_boost_scores():
    hits = run(q({"term": {"model_state": {"value": "DEPLOYED", "boost": 3}}}))["hits"]["hits"]
    assert [hit["_score"] for hit in hits] == [3.0, 3.0]


def test_term_on_array_matches_any_element():
    assert ids(q({"term": {"tags": "embedding"}})) == ["m1"]
    assert ids(q({"term": {"tags": "nlp"}})) == ["m1", "m2"]


def test_term_on_id():
    assert ids(q({"term": {"_id": "m3"}})) == ["m3"]
    assert ids(q({"terms": {"_id": ["m3", "m1", "nope"]}})) == ["m1", "m3"]


def test_term_null_values_never_match():
    assert ids(q({"term": {"model_group_id": "None"}})) == []


def test_terms():
    assert ids(q({"terms": {"model_state": ["DEPLOYED", "REGISTERED"]}})) == ["m1", "m2", "m4"]
    assert ids(q({"terms": {"model_state": []}})) == []
    assert ids(q({"terms": {"tags": ["embedding", "other"]}})) == ["m1"]
    hits = run(q({"terms": {"model_state": ["REGISTERED"], "boost": 2}}))["hits"]["hits"]
    assert hits[0]["_score"] == 2.0


def test_match_is_case_insensitive_word_match():
    assert ids(q({"match": {"description": "SEARCH"}})) == ["m1", "m2", "m3"]
    assert ids(q({"match": {"name": "minilm"}})) == ["m1"]  # "all-MiniLM-L6-v2" splits on "-"
    assert ids(q({"match": {"description": "sear"}})) == []  # whole words only


def test_match_default_operator_is_or_and_scores_matched_words():
    result = run(q({"match": {"description": "sparse semantic transformer"}}))
    scores = {hit["_id"]: hit["_score"] for hit in result["hits"]["hits"]}
    assert scores == {"m1": 2.0, "m3": 1.0}
    assert ids(q({"match": {"description": "sparse semantic transformer"}})) == ["m1", "m3"]
    assert result["hits"]["max_score"] == 2.0


def test_match_and_operator():
    body = q({"match": {"description": {"query": "search BERT", "operator": "and"}}})
    assert ids(body) == ["m2"]
    body = q({"match": {"description": {"query": "search bert", "operator": "OR"}}})
    assert ids(body) == ["m2", "m1", "m3"]  # m2 has both words


def test_match_minimum_should_match():
    body = q({"match": {"description": {"query": "sparse neural bert", "minimum_should_match": 2}}})
    assert ids(body) == ["m3"]
    body = q({"match": {"description": {"query": "sparse neural bert", "minimum_should_match": "67%"}}})
    assert ids(body) == ["m3"]
    body = q({"match": {"description": {"query": "sparse neural bert", "minimum_should_match": "60%"}}})
    assert ids(body) == ["m3", "m2"]  # 60% of 3 words rounds down to 1


def test_match_on_arrays_dotted_paths_and_numbers():
    assert ids(q({"match": {"tags": "EMBEDDING"}})) == ["m1"]
    assert ids(q({"match": {"model_config.model_type": "Bert"}})) == ["m1"]
    assert ids(q({"match": {"created_time": 2000}})) == ["m3"]


def test_match_with_no_words_matches_nothing():
    assert ids(q({"match": {"description": "  ,.;  "}})) == []


def test_match_boost():
    hits = run(q({"match": {"description": {"query": "search sparse", "boost": 2}}}))["hits"]["hits"]
    assert hits[0]["_id"] == "m3" and hits[0]["_score"] == 4.0


def test_match_phrase():
    assert ids(q({"match_phrase": {"description": "Semantic Search"}})) == ["m1"]
    assert ids(q({"match_phrase": {"description": "search semantic"}})) == []
    assert ids(q({"match_phrase": {"description": {"query": "sparse neural"}}})) == ["m3"]
    assert ids(q({"match_phrase": {"description": "search"}})) == ["m1", "m2", "m3"]
    hits = run(q({"match_phrase": {"description": "neural search encoder"}}))["hits"]["hits"]
    assert hits[0]["_score"] == 3.0


def test_match_phrase_does_not_span_array_elements():
    docs = [("a", {"tags": ["new york", "city"]}), ("b", {"tags": ["new", "york city"]})]
    assert ids(q({"match_phrase": {"tags": "york city"}}), docs=docs) == ["b"]
    assert ids(q({"match_phrase": {"tags": "new york"}}), docs=docs) == ["a"]


def test_prefix():
    assert ids(q({"prefix": {"name": "msmarco"}})) == ["m2"]
    assert ids(q({"prefix": {"model_state": {"value": "DEPLOY"}}})) == ["m1", "m3", "m4"]
    assert ids(q({"prefix": {"name": "MSMARCO"}})) == []
    assert ids(q({"prefix": {"name": "a.l"}})) == []  # regex characters are literal
    assert ids(q({"prefix": {"tags": "emb"}})) == ["m1"]


def test_wildcard():
    assert ids(q({"wildcard": {"name": "*encoder"}})) == ["m3", "m4"]
    assert ids(q({"wildcard": {"name": {"value": "?parse-*"}}})) == ["m3"]
    assert ids(q({"wildcard": {"name": {"wildcard": "cross-enc?der"}}})) == ["m4"]
    assert ids(q({"wildcard": {"model_state": "DEPLOY*"}})) == ["m1", "m3", "m4"]
    assert ids(q({"wildcard": {"model_state": "DEPLOY"}})) == []  # the whole value must match
    assert ids(q({"wildcard": {"name": "all-MiniLM-L6-v2"}})) == ["m1"]


def test_wildcard_escapes_and_literal_regex_characters():
    docs = [("a", {"f": "x*y"}), ("b", {"f": "xzy"}), ("c", {"f": "a.b(c)"})]
    assert ids(q({"wildcard": {"f": "x\\*y"}}), docs=docs) == ["a"]
    assert ids(q({"wildcard": {"f": "x*y"}}), docs=docs) == ["a", "b"]
    assert ids(q({"wildcard": {"f": "a.b(*)"}}), docs=docs) == ["c"]


def test_exists():
    assert ids(q({"exists": {"field": "model_config"}})) == ["m1", "m2"]
    assert ids(q({"exists": {"field": "model_config.model_type"}})) == ["m1", "m2"]
    assert ids(q({"exists": {"field": "created_time"}})) == ["m1", "m2", "m3"]  # null is missing
    assert ids(q({"exists": {"field": "tags"}})) == ["m1", "m2"]  # an empty array is missing
    assert ids(q({"exists": {"field": "chunks.size"}})) == ["m4"]


def test_range_numbers():
    assert ids(q({"range": {"created_time": {"gte": 2000}}})) == ["m2", "m3"]
    assert ids(q({"range": {"created_time": {"gt": 2000}}})) == ["m2"]
    assert ids(q({"range": {"created_time": {"lt": 2000}}})) == ["m1"]
    assert ids(q({"range": {"created_time": {"gte": 1000, "lte": 2000}}})) == ["m1", "m3"]
    assert ids(q({"range": {"created_time": {"gt": "1500"}}})) == ["m2", "m3"]
    assert ids(q({"range": {"model_config.embedding_dimension": {"gt": 500}}})) == ["m2"]


def test_range_strings_compare_as_keywords():
    assert ids(q({"range": {"name": {"gte": "m", "lt": "t"}}})) == ["m2", "m3"]
    # keyword order, as OpenSearch orders a keyword field: "10" < "2"
    assert ids(q({"range": {"model_version": {"gte": "2"}}})) == ["m2"]


def test_range_on_array_matches_any_element():
    assert ids(q({"range": {"chunks.size": {"gt": 20}}})) == ["m4"]
    assert ids(q({"range": {"chunks.size": {"gt": 40}}})) == []


def test_range_without_bounds_matches_docs_with_the_field():
    assert ids(q({"range": {"created_time": {"gte": None}}})) == ["m1", "m2", "m3"]


def test_ids():
    assert ids(q({"ids": {"values": ["m4", "m2", "zz"]}})) == ["m2", "m4"]
    assert ids(q({"ids": {"values": []}})) == []


def test_dotted_keys_in_the_source_are_found_too():
    docs = [("a", {"model_config.model_type": "bert"}),
            ("b", {"model_config": {"model_type": "bert"}})]
    assert ids(q({"term": {"model_config.model_type": "bert"}}), docs=docs) == ["a", "b"]


def test_arrays_of_objects_are_flattened():
    assert ids(q({"term": {"chunks.id": 2}})) == ["m4"]
    assert ids(q({"term": {"chunks.id": 3}})) == []


# ---- bool --------------------------------------------------------------------------------------

def test_bool_must_and_filter_accept_object_or_list():
    body = q({"bool": {"must": {"term": {"model_state": "DEPLOYED"}},
                       "filter": [{"exists": {"field": "tags"}}]}})
    assert ids(body) == ["m1"]


def test_bool_must_not():
    body = q({"bool": {"must_not": [{"term": {"model_state": "DEPLOYED"}},
                                    {"ids": {"values": ["m3"]}}]}})
    assert ids(body) == ["m2"]


def test_bool_should_needs_one_match_without_must_or_filter():
    body = q({"bool": {"should": [{"term": {"name": "sparse-encoder"}},
                                  {"term": {"name": "cross-encoder"}}]}})
    assert ids(body) == ["m3", "m4"]


def test_bool_should_is_optional_beside_must_and_adds_score():
    body = q({"bool": {"must": [{"term": {"algorithm": "TEXT_EMBEDDING"}}],
                       "should": [{"match": {"description": "bert ranking"}}]}})
    result = run(body)
    assert [(h["_id"], h["_score"]) for h in result["hits"]["hits"]] == [("m2", 3.0), ("m1", 1.0)]


def test_bool_should_is_optional_beside_filter():
    body = q({"bool": {"filter": {"term": {"model_group_id": "g1"}},
                       "should": {"term": {"model_state": "REGISTERED"}}}})
    assert ids(body) == ["m2", "m1"]


ALL_SHOULD, TWO_SHOULD, THREE_SHOULD = ["m1", "m2", "m4", "m5"], ["m1", "m5"], ["m1"]


@pytest.mark.parametrize("msm, expected", [
    (None, ALL_SHOULD), (1, ALL_SHOULD), (-2, ALL_SHOULD), ("-67%", ALL_SHOULD),
    (2, TWO_SHOULD), ("2", TWO_SHOULD), (-1, TWO_SHOULD), ("67%", TWO_SHOULD), ("-34%", TWO_SHOULD),
    (3, THREE_SHOULD), (5, THREE_SHOULD), ("100%", THREE_SHOULD),
    # with no must or filter, one should clause must match even when the minimum is 0
    (0, ALL_SHOULD), ("33%", ALL_SHOULD),
])
def test_bool_minimum_should_match(msm, expected):
    should = [{"term": {"model_group_id": "g1"}}, {"term": {"tags": "embedding"}},
              {"term": {"model_state": "DEPLOYED"}}]
    body = {"bool": {"should": should}}
    if msm is not None:
        body["bool"]["minimum_should_match"] = msm
    docs = DOCS + [("m5", {"model_group_id": "g1", "model_state": "DEPLOYED"})]
    assert sorted(ids(q(body), docs=docs)) == expected


def test_bool_minimum_should_match_with_must():
    body = q({"bool": {"must": {"exists": {"field": "model_group_id"}},
                       "should": [{"term": {"tags": "nlp"}}, {"term": {"is_enabled": True}}],
                       "minimum_should_match": 1}})
    assert ids(body) == ["m1", "m2"]


def test_filter_only_scores_zero():
    result = run(q({"bool": {"filter": {"term": {"model_state": "DEPLOYED"}}}}))
    assert [h["_score"] for h in result["hits"]["hits"]] == [0.0, 0.0]
    assert result["hits"]["max_score"] == 0.0
    result = run(q({"bool": {"must_not": {"term": {"model_state": "DEPLOYED"}}}}))
    assert [h["_score"] for h in result["hits"]["hits"]] == [0.0, 0.0]


def test_empty_bool_matches_all():
    assert ids(q({"bool": {}})) == ["m1", "m2", "m3", "m4"]


def test_bool_boost_and_score_sum():
    body = q({"bool": {"must": [{"match": {"description": "search"}}, {"match_all": {"boost": 2}}],
                       "boost": 2}})
    assert {h["_score"] for h in run(body)["hits"]["hits"]} == {6.0}


def test_nested_bool():
    body = q({"bool": {
        "filter": [{"bool": {"should": [{"term": {"model_group_id": "g2"}},
                                        {"bool": {"must": [{"term": {"model_group_id": "g1"}},
                                                           {"term": {"is_enabled": True}}]}}]}}],
        "must_not": {"bool": {"filter": {"prefix": {"name": "sparse"}}}},
    }})
    assert ids(body) == ["m1"]


def test_should_ranks_by_number_of_matches():
    body = q({"bool": {"should": [{"term": {"tags": "nlp"}}, {"term": {"model_state": "REGISTERED"}},
                                  {"term": {"is_enabled": False}}]}})
    result = run(body)
    assert [(h["_id"], h["_score"]) for h in result["hits"]["hits"]] == [("m2", 3.0), ("m1", 1.0)]


# ---- sort --------------------------------------------------------------------------------------

def test_sort_field_forms():
    for sort in ["created_time", {"created_time": "asc"}, {"created_time": {"order": "asc"}},
                 ["created_time"], [{"created_time": {"order": "ASC"}}]]:
        assert ids({"sort": sort}) == ["m1", "m3", "m2", "m4"], sort
    assert ids({"sort": {"created_time": "desc"}}) == ["m2", "m3", "m1", "m4"]


def test_sort_hides_score_and_adds_sort_values():
    result = run({"query": {"match": {"description": "search"}}, "sort": {"created_time": "desc"}})
    assert result["hits"]["max_score"] is None
    assert [(h["_id"], h["_score"], h["sort"]) for h in result["hits"]["hits"]] == [
        ("m2", None, [3000]), ("m3", None, [2000]), ("m1", None, [1000])]


def test_sort_missing_last_by_default_in_both_directions():
    assert ids({"sort": "model_version"})[-1] == "m4"
    assert ids({"sort": {"model_version": "desc"}})[-1] == "m4"


def test_sort_missing_first():
    for order, expected in [("desc", ["m4", "m2", "m3", "m1"]), ("asc", ["m4", "m1", "m3", "m2"])]:
        assert ids({"sort": {"created_time": {"order": order, "missing": "_first"}}}) == expected


def test_sort_missing_value():
    assert ids({"sort": {"created_time": {"order": "asc", "missing": 1500}}}) == ["m1", "m4", "m3", "m2"]


def test_sort_missing_value_is_none_in_sort_values():
    hits = run({"sort": "created_time"})["hits"]["hits"]
    assert hits[-1]["sort"] == [None]


def test_sort_keyword_strings():
    assert ids({"sort": "name.keyword"}) == ["m1", "m4", "m2", "m3"]
    # keyword order: "1" < "10" < "2"
    assert ids({"sort": "model_version"}) == ["m1", "m3", "m2", "m4"]


def test_multi_key_sort():
    body = {"sort": [{"model_group_id": "asc"}, {"created_time": "desc"}]}
    result = run(body)
    assert [(h["_id"], h["sort"]) for h in result["hits"]["hits"]] == [
        ("m2", ["g1", 3000]), ("m1", ["g1", 1000]), ("m3", ["g2", 2000]), ("m4", [None, None])]


def test_sort_on_score():
    body = {"query": {"match": {"description": "sparse semantic transformer"}}, "sort": ["_score"]}
    result = run(body)
    assert [(h["_id"], h["_score"], h["sort"]) for h in result["hits"]["hits"]] == [
        ("m1", 2.0, [2.0]), ("m3", 1.0, [1.0])]
    assert result["hits"]["max_score"] == 2.0
    body["sort"] = [{"_score": "asc"}]
    assert ids(body) == ["m3", "m1"]


def test_sort_on_id():
    assert ids({"sort": {"_id": "desc"}}) == ["m4", "m3", "m2", "m1"]
    assert run({"sort": "_id"})["hits"]["hits"][0]["sort"] == ["m1"]


def test_sort_on_array_uses_min_ascending_and_max_descending():
    docs = [("a", {"v": [1, 10]}), ("b", {"v": [5]}), ("c", {"v": 3})]
    assert ids({"sort": "v"}, docs=docs) == ["a", "c", "b"]
    assert ids({"sort": {"v": "desc"}}, docs=docs) == ["a", "b", "c"]


def test_sort_ties_keep_input_order():
    assert ids({"sort": "model_state"}) == ["m1", "m4", "m3", "m2"]


def test_sort_mixed_types_does_not_fail():
    docs = [("a", {"v": "x"}), ("b", {"v": 2}), ("c", {"v": 1})]
    assert ids({"sort": "v"}, docs=docs) == ["c", "b", "a"]


def test_default_order_is_score_then_input_order():
    body = q({"bool": {"should": [{"term": {"model_state": "DEPLOYED"}},
                                  {"match_all": {"boost": 0.5}}]}})
    assert ids(body) == ["m1", "m4", "m2", "m3"]


# ---- from / size -------------------------------------------------------------------------------

def test_size_and_from():
    assert ids({"size": 2}) == ["m1", "m2"]
    assert ids({"size": 2, "from": 1}) == ["m2", "m3"]
    assert ids({"from": 3}) == ["m4"]
    assert ids({"from": 10}) == []
    assert ids({"size": "3"}) == ["m1", "m2", "m3"]


def test_total_counts_all_matches():
    result = run({"size": 1, "from": 1})
    assert result["hits"]["total"]["value"] == 4 and len(result["hits"]["hits"]) == 1


def test_size_zero():
    result = run({"size": 0})
    assert result["hits"]["hits"] == [] and result["hits"]["total"]["value"] == 4


def test_default_size():
    docs = [(str(i), {"n": i}) for i in range(25)]
    assert len(run(None, docs=docs)["hits"]["hits"]) == 10
    assert len(run(None, docs=docs, default_size=20)["hits"]["hits"]) == 20
    assert len(run({"size": 1000}, docs=docs)["hits"]["hits"]) == 25


def test_from_applies_after_sort():
    assert ids({"sort": {"created_time": "desc"}, "from": 1, "size": 1}) == ["m3"]


@pytest.mark.parametrize("field", ["size", "from"])
def test_negative_size_or_from_is_bad_request(field):
    with pytest.raises(BadRequest, match=rf"\[{field}\]") as info:
        run({field: -1})
    assert not isinstance(info.value, ParseError)
    assert info.value.status == 400


@pytest.mark.parametrize("value", ["ten", 1.5, True, [1]])
def test_non_integer_size_is_parse_error(value):
    with pytest.raises(ParseError, match=r"\[size\]"):
        run({"size": value})


# ---- _source -----------------------------------------------------------------------------------

def source_of(spec, doc_id="m1"):
    hits = run({"query": {"ids": {"values": [doc_id]}}, "_source": spec})["hits"]["hits"]
    return hits[0].get("_source", "<absent>")


def test_source_true_and_false():
    assert source_of(True) == DOCS[0][1]
    assert source_of(False) == "<absent>"


def test_source_string_and_list():
    assert source_of("name") == {"name": "all-MiniLM-L6-v2"}
    assert source_of(["name", "model_state"]) == {"name": "all-MiniLM-L6-v2", "model_state": "DEPLOYED"}
    assert source_of([]) == DOCS[0][1]


def test_source_wildcards():
    assert source_of("model_*") == {
        "model_state": "DEPLOYED", "model_version": "1",
        "model_config": {"model_type": "bert", "embedding_dimension": 384}, "model_group_id": "g1"}
    assert source_of("*_time") == {"created_time": 1000}
    assert source_of("*.model_type") == {"model_config": {"model_type": "bert"}}


def test_source_dotted_include():
    assert source_of("model_config.embedding_dimension") == {
        "model_config": {"embedding_dimension": 384}}
    assert source_of("model_config") == {"model_config": DOCS[0][1]["model_config"]}
    assert source_of("model_config.nothing") == {}


def test_source_includes_and_excludes():
    assert source_of({"includes": ["model_*"], "excludes": ["model_config"]}) == {
        "model_state": "DEPLOYED", "model_version": "1", "model_group_id": "g1"}
    assert source_of({"excludes": "model_config.embedding_dimension", "includes": "model_config"}) == {
        "model_config": {"model_type": "bert"}}
    excluded = source_of({"excludes": ["description", "tags", "model_config.*"]})
    assert set(excluded) == {"name", "model_state", "model_version", "algorithm", "model_config",
                             "created_time", "is_enabled", "model_group_id"}
    assert excluded["model_config"] == {}


def test_source_on_arrays_of_objects():
    assert source_of("chunks.size", "m4") == {"chunks": [{"size": 10}, {"size": 30}]}
    spec = {"excludes": ["chunks.id", "name", "model_*", "algorithm", "created_time"]}
    assert source_of(spec, "m4") == {"chunks": [{"size": 10}, {"size": 30}]}


def test_source_filter_does_not_change_the_stored_doc():
    before = repr(DOCS)
    source_of({"includes": ["model_config.model_type"], "excludes": ["name"]})
    assert repr(DOCS) == before


# ---- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["aggs", "highlight", "query_string"])
def test_unknown_top_level_key(key):
    with pytest.raises(ParseError, match=rf"\[{key}\]"):
        run({key: {}})


def test_unknown_query_type():
    with pytest.raises(ParseError, match=r"unknown query \[xyz\]"):
        run(q({"xyz": {"f": 1}}))
    with pytest.raises(ParseError, match=r"unknown query \[fuzzy\]"):
        run(q({"bool": {"must": [{"term": {"a": 1}}, {"fuzzy": {"a": "b"}}]}}))


@pytest.mark.parametrize("query", [
    {},
    {"term": {"a": 1}, "match": {"a": "b"}},
    [{"term": {"a": 1}}],
    "match_all",
    {"term": "a"},
    {"term": {}},
    {"term": {"a": 1, "b": 2}},
    {"term": {"a": [1, 2]}},
    {"term": {"a": {"value": {"x": 1}}}},
    {"term": {"a": {"val": 1}}},
    {"term": {"a": {"value": 1, "boost": "high"}}},
    {"term": {"a": None}},
    {"terms": {"a": "b"}},
    {"terms": {"a": ["b"], "c": ["d"]}},
    {"terms": {"a": [{"x": 1}]}},
    {"match": {"a": {"query": "x", "operator": "xor"}}},
    {"match": {"a": {"query": "x", "fuzziness": 2}}},
    {"match": {"a": {"query": "x", "minimum_should_match": "1<50%"}}},
    {"match_phrase": {"a": {"query": "x", "slop": 2}}},
    {"match_all": {"x": 1}},
    {"exists": {}},
    {"exists": {"field": 3}},
    {"range": {"a": 5}},
    {"range": {"a": {"gte": 1}, "b": {"lt": 2}}},
    {"range": {"a": {"between": 1}}},
    {"range": {"a": {"gte": [1]}}},
    {"ids": {"values": "m1"}},
    {"bool": {"must": "x"}},
    {"bool": {"must": ["x"]}},
    {"bool": {"should": [{}]}},
    {"bool": {"unknown": []}},
    {"bool": {"should": [{"term": {"a": 1}}], "minimum_should_match": "many"}},
])
def test_malformed_queries_are_parse_errors(query):
    with pytest.raises(ParseError):
        run({"query": query})


@pytest.mark.parametrize("sort", [
    {"created_time": "up"}, {"created_time": {"order": "sideways"}}, {"created_time": 1},
    [1], {"created_time": {"mode": "avg"}}, [{}],
])
def test_malformed_sort(sort):
    with pytest.raises(ParseError):
        run({"sort": sort})


@pytest.mark.parametrize("spec", [1, {"includes": [1]}, {"fields": ["a"]}, {"includes": {"a": 1}}])
def test_malformed_source(spec):
    with pytest.raises(ParseError):
        run({"_source": spec})


def test_body_must_be_an_object():
    with pytest.raises(ParseError):
        run(["query"])


def test_errors_are_400s():
    with pytest.raises(ParseError) as info:
        run(q({"nope": {}}))
    assert info.value.status == 400
    assert info.value.body()["error"]["type"] == "parse_exception"


def test_errors_are_raised_even_with_no_docs():
    with pytest.raises(ParseError):
        run(q({"nope": {}}), docs=[])


# ---- a large compound query -------------------------------------------------------------------------------------

def test_ten_thousand_docs_compound_query():
    states = ["DEPLOYED", "REGISTERED", "DEPLOY_FAILED", "UNDEPLOYED"]
    docs = [(f"id{i}", {"name": f"model-{i} text embedding", "model_state": states[i % 4],
                        "created_time": i, "model_config": {"model_type": "bert" if i % 2 else "t5"},
                        "tags": ["a", "b", str(i % 7)]})
            for i in range(10_000)]
    body = {
        "query": {"bool": {
            "must": [{"match": {"name": "text embedding"}}],
            "filter": [{"terms": {"model_state": ["DEPLOYED", "REGISTERED"]}},
                       {"range": {"created_time": {"gte": 100}}},
                       {"wildcard": {"name": "model-*"}}],
            "should": [{"term": {"model_config.model_type": "bert"}}, {"prefix": {"tags": "3"}}],
            "must_not": [{"exists": {"field": "deleted"}}],
        }},
        "sort": [{"created_time": "desc"}], "size": 50, "_source": {"excludes": ["tags"]},
    }
    result = search(docs, body, index=INDEX)
    assert result["hits"]["total"]["value"] == 4950
    assert result["hits"]["hits"][0]["_id"] == "id9997"
    assert "tags" not in result["hits"]["hits"][0]["_source"]


# ---- hostile input: every search is bounded (issue 9) ----------------------------------------------------------

def nested_bools(depth, leaf=None):
    query = leaf or {"match_all": {}}
    for _ in range(depth):
        query = {"bool": {"must": [query]}}
    return query


def test_wildcard_with_thousands_of_stars_matches_at_once():
    """The probe's repro: 5000 stars became 5000 ``.*`` for a backtracking regex and hung the API."""
    assert ids(q({"wildcard": {"name": {"value": "*" * 5000 + "r"}}})) == ["m3", "m4"]
    assert ids(q({"wildcard": {"name": {"value": "*" * 5000 + "b"}}})) == []
    docs = [("a", {"f": "a" * 20_000}), ("b", {"f": "a" * 19_999 + "b"})]
    assert ids(q({"wildcard": {"f": "*a" * 2000 + "*b"}}), docs=docs) == ["b"]
    assert ids(q({"wildcard": {"f": "*" + "a?" * 2000 + "*b"}}), docs=docs) == ["b"]
    assert ids(q({"wildcard": {"f": "?" * 20_000}}), docs=docs) == ["a", "b"]


def test_wildcard_question_marks_between_stars():
    docs = [("a", {"f": "xaxbxc"}), ("b", {"f": "abc"}), ("c", {"f": "a?c"})]
    assert ids(q({"wildcard": {"f": "*a?b*"}}), docs=docs) == ["a"]
    assert ids(q({"wildcard": {"f": "*a\\?c"}}), docs=docs) == ["c"]
    assert ids(q({"wildcard": {"f": "a*?*c"}}), docs=docs) == ["b", "c"]


@pytest.mark.parametrize("query", [
    {"wildcard": {"name": "*" * 32_767}},
    {"wildcard": {"name": {"value": "é" * 16_384}}},  # 32,768 bytes in UTF-8
    {"prefix": {"name": "a" * 40_000}},
])
def test_patterns_longer_than_a_lucene_term_are_refused(query):
    with pytest.raises(BadRequest, match=r"has exceeded the allowed maximum of \[32766\] bytes"):
        run(q(query))


def test_pattern_at_the_length_limit_is_accepted():
    assert ids(q({"wildcard": {"name": "*" * 32_765 + "r"}})) == ["m3", "m4"]


def test_long_source_pattern_is_refused():
    with pytest.raises(BadRequest, match=r"\[_source\]"):
        run({"_source": ["*" * 40_000]})


@pytest.mark.parametrize("depth", [21, 300, 5000])
def test_deeply_nested_bool_is_a_400(depth):
    with pytest.raises(BadRequest) as info:
        run(q(nested_bools(depth)))
    assert info.value.status == 400 and info.value.error_type == "illegal_argument_exception"
    assert info.value.reason == ("The nested depth of the query exceeds the maximum nested depth for bool "
                                 "queries set in [indices.query.bool.max_nested_depth]")


def test_twenty_nested_bools_are_accepted():
    assert ids(q(nested_bools(20, {"term": {"model_state": "DEPLOYED"}}))) == ["m1", "m4"]


def test_nesting_counts_bools_in_every_clause_kind():
    query = {"match_all": {}}
    for i in range(21):
        query = {"bool": {_OCCUR_CYCLE[i % 4]: query}}
    with pytest.raises(BadRequest, match="max_nested_depth"):
        run(q(query))


_OCCUR_CYCLE = ("must", "filter", "should", "must_not")


def test_one_bool_with_too_many_clauses():
    should = [{"term": {"name": str(i)}} for i in range(1025)]
    with pytest.raises(BadRequest) as info:
        run(q({"bool": {"should": should}}))
    assert info.value.reason == "maxClauseCount is set to 1024"
    assert info.value.error_type == "too_many_clauses" and info.value.status == 400
    assert ids(q({"bool": {"should": should[:1024]}})) == []


def test_too_many_clauses_across_nested_bools():
    half = [{"term": {"name": str(i)}} for i in range(600)]
    body = q({"bool": {"must": [{"bool": {"should": half}}, {"bool": {"should": half}}]}})
    with pytest.raises(BadRequest) as info:
        run(body)
    assert info.value.reason == "Query contains too many nested clauses; maxClauseCount is set to 1024"
    assert info.value.error_type == "too_many_nested_clauses"


def test_match_counts_a_clause_per_word():
    with pytest.raises(BadRequest, match="too many nested clauses"):
        run(q({"match": {"description": " ".join(f"w{i}" for i in range(1025))}}))
    assert ids(q({"match": {"description": " ".join(f"w{i}" for i in range(1023)) + " sparse"}})) == ["m3"]


def test_empty_bools_count_as_clauses():
    with pytest.raises(BadRequest, match="too many nested clauses"):
        run(q({"bool": {"should": [{"bool": {"should": [{"bool": {}}] * 1000}}] * 2}}))


def test_terms_and_ids_lists_are_bounded():
    with pytest.raises(BadRequest) as info:
        run(q({"terms": {"name": ["x"] * 65_537}}))
    assert info.value.reason.startswith("The number of terms [65537] used in the Terms Query request has "
                                        "exceeded the allowed maximum of [65536].")
    with pytest.raises(BadRequest, match=r"\[65536\]"):
        run(q({"ids": {"values": ["x"] * 65_537}}))
    assert ids(q({"terms": {"name": ["sparse-encoder"] * 65_536}})) == ["m3"]


@pytest.mark.parametrize("body, window", [
    ({"size": 10_001}, 10_001), ({"from": 9_995}, 10_005), ({"from": 5_000, "size": 5_001}, 10_001),
    ({"size": 2**63}, 2**63),
])
def test_result_window_above_ten_thousand_is_a_400(body, window):
    with pytest.raises(BadRequest) as info:
        run(body)
    assert info.value.reason == (
        f"Result window is too large, from + size must be less than or equal to: [10000] but was [{window}]. "
        "See the scroll api for a more efficient way to request large data sets. This limit can be set by "
        "changing the [index.max_result_window] index level setting.")
    assert info.value.error_type == "illegal_argument_exception"


def test_result_window_of_ten_thousand_is_accepted():
    assert ids({"size": 10_000}) == ["m1", "m2", "m3", "m4"]
    assert ids({"from": 9_999, "size": 1}) == []


def test_size_as_a_huge_string_is_a_parse_error():
    with pytest.raises(ParseError, match=r"\[size\]"):
        run({"size": "9" * 5000})


def test_sort_on_an_unknown_field_is_a_400():
    with pytest.raises(BadRequest) as info:
        run({"sort": [{"no_such_field": "asc"}]})
    assert info.value.reason == "No mapping found for [no_such_field] in order to sort on"
    assert info.value.error_type == "query_shard_exception" and info.value.status == 400
    with pytest.raises(BadRequest, match=r"No mapping found for \[nope\]"):
        run({"sort": ["created_time", "nope"]}, docs=[])


def test_sort_on_an_unknown_field_with_unmapped_type():
    result = run({"sort": [{"no_such_field": {"order": "asc", "unmapped_type": "long"}}]})
    assert [h["_id"] for h in result["hits"]["hits"]] == ["m1", "m2", "m3", "m4"]
    assert result["hits"]["hits"][0]["sort"] == [None]


def test_sort_on_mapped_fields_no_document_has():
    """ML Commons' mapping holds them, so OpenSearch sorts (all missing), not a 400."""
    assert ids({"sort": [{"last_deployed_time": "desc"}]}) == ["m1", "m2", "m3", "m4"]
    assert ids({"sort": "model_config.additional_config.space_type"}) == ["m1", "m2", "m3", "m4"]
    assert search(DOCS, {"sort": [{"create_time": "asc"}]}, index=".plugins-ml-task")["hits"]["total"][
        "value"] == 4
    assert search(DOCS, {"sort": [{"latest_version": "asc"}]}, index=".plugins-ml-model-group")["hits"][
        "total"]["value"] == 4
    with pytest.raises(BadRequest, match="No mapping found"):
        search(DOCS, {"sort": [{"latest_version": "asc"}]}, index=".plugins-ml-task")


def test_sort_on_fields_documents_carry_and_builtins():
    assert ids({"sort": "chunks.size"})[0] == "m4"
    assert ids({"sort": {"_doc": "desc"}}) == ["m4", "m3", "m2", "m1"]
    assert ids({"sort": ["model_state.keyword", {"_id": "desc"}]}) == ["m4", "m1", "m3", "m2"]


@pytest.mark.parametrize("missing", [{"x": 1}, [1]])
def test_sort_missing_must_be_a_value(missing):
    with pytest.raises(ParseError, match="missing"):
        run({"sort": {"created_time": {"missing": missing}}})


def test_sort_and_source_lists_are_bounded():
    with pytest.raises(BadRequest, match=r"\[sort\]"):
        run({"sort": ["created_time"] * 1025})
    with pytest.raises(BadRequest, match=r"\[_source\]"):
        run({"_source": ["name"] * 1025})


class DocClock:
    """A clock that reads the number of documents handed out: a search's time is measured in
    documents, so a budget test needs no wall clock."""

    def __init__(self, docs):
        self.now, self._docs = 0.0, docs

    def __call__(self):
        return self.now

    def docs(self):
        for i, doc in enumerate(self._docs):
            self.now = float(i)
            yield doc


def test_budget_stops_the_search_and_answers_the_hits_so_far():
    clock = DocClock(DOCS)
    result = search(clock.docs(), None, index=INDEX, timeout=2.5, clock=clock)
    assert result["timed_out"] is True
    assert [h["_id"] for h in result["hits"]["hits"]] == ["m1", "m2", "m3"]
    assert result["hits"]["total"] == {"value": 3, "relation": "eq"}


def test_body_timeout_shortens_the_budget_but_cannot_lengthen_it():
    clock = DocClock(DOCS)
    result = search(clock.docs(), {"timeout": "1500ms"}, index=INDEX, timeout=10, clock=clock)
    assert result["timed_out"] is True and [h["_id"] for h in result["hits"]["hits"]] == ["m1", "m2"]
    clock = DocClock(DOCS)
    result = search(clock.docs(), {"timeout": "1m"}, index=INDEX, timeout=1.5, clock=clock)
    assert result["timed_out"] is True and [h["_id"] for h in result["hits"]["hits"]] == ["m1", "m2"]


def test_budget_applies_with_a_sort():
    clock = DocClock(DOCS)
    result = search(clock.docs(), {"sort": {"created_time": "desc"}}, index=INDEX, timeout=2.5, clock=clock)
    assert result["timed_out"] is True and [h["_id"] for h in result["hits"]["hits"]] == ["m2", "m3", "m1"]


class TickClock:
    """A clock that moves one second each time it is read: a budget of n seconds runs out at the
    n-th check, wherever that check is."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1
        return self.now


def test_budget_can_run_out_at_any_check():
    body = {"query": {"bool": {"should": [{"wildcard": {"name": "*-*"}}, {"match": {"description": "search"}},
                                          {"terms": {"tags": ["nlp"]}}]}},
            "sort": [{"created_time": "desc"}, "_id"], "_source": ["name", "model_*"]}
    full = run(body)
    assert full["timed_out"] is False and full["hits"]["total"]["value"] == 4
    outcomes = set()
    for seconds in range(60):
        result = run(body, timeout=seconds, clock=TickClock())
        if not result["timed_out"]:
            assert result["hits"] == full["hits"]
        else:
            assert result["hits"]["total"]["value"] <= 4
            hits = {h["_id"]: h for h in full["hits"]["hits"]}
            assert all(hit == hits[hit["_id"]] for hit in result["hits"]["hits"])
        outcomes.add((result["timed_out"], result["hits"]["total"]["value"], len(result["hits"]["hits"])))
    assert (False, 4, 4) in outcomes and (True, 0, 0) in outcomes
    assert any(timed_out and total for timed_out, total, _ in outcomes)  # stopped midway, some hits found


@pytest.mark.parametrize("timeout", ["0ms", "0", 0, "0s"])
def test_zero_timeout_times_out_at_once(timeout):
    result = run({"timeout": timeout})
    assert result["timed_out"] is True and result["hits"]["hits"] == []


@pytest.mark.parametrize("timeout", ["-1", -1, "10s", " 2 m", "10000000000nanos", "5000000micros", "1h", "1d", "1S"])
def test_timeout_values_that_leave_time(timeout):
    result = run({"timeout": timeout})
    assert result["timed_out"] is False and len(result["hits"]["hits"]) == 4


@pytest.mark.parametrize("timeout, reason", [
    ("5", "failed to parse setting [timeout] with value [5] as a time value: unit is missing or unrecognized"),
    ("1M", "failed to parse setting [timeout] with value [1M] as a time value: unit is missing or unrecognized"),
    ("1.5s", "failed to parse [1.5s], fractional time values are not supported"),
    ("-2s", "failed to parse setting [timeout] with value [-2s] as a time value: negative durations are not "
            "supported"),
    ("abcs", "failed to parse [abcs]"),
    ("9" * 50 + "s", "failed to parse [" + "9" * 50 + "s]"),
])
def test_bad_timeouts(timeout, reason):
    with pytest.raises(BadRequest) as info:
        run({"timeout": timeout})
    assert info.value.reason == reason


@pytest.mark.parametrize("timeout", [True, {"s": 1}, [1]])
def test_timeout_must_be_a_value(timeout):
    with pytest.raises(ParseError, match=r"\[timeout\]"):
        run({"timeout": timeout})


def deep_list(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("query", [
    {"term": {"name": deep_list(5000)}},
    {"term": {"name": {"value": deep_list(5000)}}},
    {"range": {"name": {"gte": deep_list(5000)}}},
    {"match": {"name": {"query": "x", "operator": deep_list(5000)}}},
    {"bool": {"minimum_should_match": deep_list(5000), "should": {"match_all": {}}}},
    deep_list(5000),
])
def test_errors_on_deeply_nested_values_do_not_recurse(query):
    with pytest.raises(ParseError) as info:
        run(q(query))
    assert len(info.value.reason) < 400


def test_error_messages_do_not_echo_huge_values():
    with pytest.raises(ParseError) as info:
        run(q({"term": {"x" * 100_000: {"val": 1}}}))
    assert len(info.value.reason) < 400


def test_minimum_should_match_with_a_huge_number():
    with pytest.raises(ParseError, match="minimum_should_match"):
        run(q({"bool": {"should": [{"match_all": {}}], "minimum_should_match": "9" * 5000}}))


def test_long_field_paths_cost_what_the_document_holds():
    field = ".".join(["a"] * 50_000)
    assert ids(q({"term": {field: "x"}})) == []
    docs = [("a", {"a": {"a": {"a": "x"}}}), ("b", {"a.a": {"a": "x"}}), ("c", {"a": "x"})]
    assert ids(q({"term": {"a.a.a": "x"}}), docs=docs) == ["a", "b"]


def test_long_phrase_against_a_long_value():
    docs = [("a", {"f": "w " * 50_000 + "end"})]
    assert ids(q({"match_phrase": {"f": "w " * 20_000 + "end"}}), docs=docs) == ["a"]
    assert ids(q({"match_phrase": {"f": "w " * 20_000 + "nope"}}), docs=docs) == []
