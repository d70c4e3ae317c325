"""Tests for mlcommons.core.search: the in-memory OpenSearch query DSL evaluator."""
from __future__ import annotations


import pytest

from mlcommons.core.search import search
from mlcommons.errors import BadRequest, ParseError

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
