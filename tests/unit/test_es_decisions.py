"""The Elasticsearch dialect's pure decisions, without a cluster: _start's parameters, time and
byte values, trained-model configs and inference endpoints. The integration tests cover the same
rules through elasticsearch-py; these pin each rule where it is made."""
from __future__ import annotations

import pytest

from mlcommons.core import limits
from mlcommons.elasticsearch import deployments, endpoints, trained_models
from mlcommons.errors import BadRequest


def refusal(fn, *args) -> BadRequest:
    with pytest.raises(BadRequest) as exc:
        fn(*args)
    return exc.value


def test_start_defaults():
    assert deployments.validate_start({}, None) == {
        "threads_per_allocation": 1, "queue_capacity": 10_000, "number_of_allocations": 1, "priority": "normal",
        "timeout": 30.0, "wait_for": "started"}


def test_start_takes_query_strings_as_numbers_and_lists_every_problem():
    out = deployments.validate_start({"threads_per_allocation": "2", "number_of_allocations": "3",
                                      "queue_capacity": "50", "timeout": "1m", "cache_size": "1kb"}, None)
    assert (out["threads_per_allocation"], out["number_of_allocations"], out["queue_capacity"]) == (2, 3, 50)
    assert (out["timeout"], out["cache_size"]) == (60.0, 1024)
    exc = refusal(deployments.validate_start, {"threads_per_allocation": 3, "queue_capacity": 0,
                                               "wait_for": "soon"}, None)
    assert exc.error_type == "action_request_validation_exception"
    assert exc.reason.startswith("Validation Failed: 1: [threads_per_allocation] must be a power of 2")
    assert "2: [queue_capacity] must be a positive integer;" in exc.reason
    assert "3: [wait_for] must be one of starting, started, fully_allocated;" in exc.reason


@pytest.mark.parametrize("params, adaptive, message", [
    ({"number_of_allocations": 257}, None, "[number_of_allocations] must be less than or equal to 256"),
    ({"number_of_allocations": "１"}, None, "[number_of_allocations] must be a positive integer"),
    ({}, {"enabled": True, "max_number_of_allocations": 10**6},
     "[max_number_of_allocations] must be less than or equal to 256"),
    ({}, [1], "[adaptive_allocations] must be an object"),
    ({"priority": "low", "threads_per_allocation": 2}, None, "[threads_per_allocation] must be 1 when [priority] is low"),
])
def test_start_refusals(params, adaptive, message):
    assert message in refusal(deployments.validate_start, params, adaptive).reason


def test_adaptive_start_begins_at_its_minimum():
    out = deployments.validate_start({}, {"enabled": True, "min_number_of_allocations": 2,
                                          "max_number_of_allocations": 4})
    assert out["number_of_allocations"] == 2
    assert out["adaptive_allocations"] == {"enabled": True, "min_number_of_allocations": 2,
                                           "max_number_of_allocations": 4}


@pytest.mark.parametrize("value, seconds", [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0),
                                            (1500, 1.5), ("0", 0.0), ("-1", -0.001)])
def test_time_values(value, seconds):
    assert deployments.parse_time(value, "timeout") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["30", "s", "１s", "9" * 19 + "s", 10**30, "1.5.5s", "30 seconds"])
def test_time_values_refused(value):
    assert refusal(deployments.parse_time, value, "timeout").error_type == "illegal_argument_exception"


@pytest.mark.parametrize("value, size", [("10mb", 10 * 2**20), ("1.5kb", 1536), ("7", 7), (7, 7), ("2GB", 2 * 2**30)])
def test_byte_values(value, size):
    assert deployments.parse_bytes(value, "cache_size") == size


@pytest.mark.parametrize("value", ["-1", "１kb", "1zb", 2**63, -5])
def test_byte_values_refused(value):
    assert refusal(deployments.parse_bytes, value, "cache_size").error_type == "parse_exception"


CONFIG = {"inference_config": {"text_embedding": {}}, "input": {"field_names": ["text_field"]}}


def test_trained_model_config_fills_elasticsearch_defaults():
    config = trained_models.parse_config("m", CONFIG)
    bert = config["inference_config"]["text_embedding"]["tokenization"]["bert"]
    assert bert == {"do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 512,
                    "truncate": "first", "span": -1}
    assert (config["model_type"], config["tags"], config["metadata"], config["description"]) == \
        ("pytorch", [], {}, "")


@pytest.mark.parametrize("change, message", [
    ({"model_type": "tree_ensemble"}, "[model_type] must be [pytorch]"),
    ({"input": [1]}, "[input.field_names] must be a non-empty list of field names"),
    ({"inference_config": {"text_embedding": [1]}}, "[inference_config.text_embedding] must be an object"),
    ({"inference_config": {"text_embedding": {"tokenization": {"bert": [1]}}}}, "[tokenization] must be one of"),
    ({"tags": "t"}, "[tags] must be a list of strings"),
    ({"metadata": [1]}, "[metadata] must be an object"),
    ({"metadata": {"k": "v" * limits.MAX_OBJECT_BYTES}}, "[metadata] must encode to at most 65536 bytes"),
    ({"description": "d" * 10_001}, "[description] must be at most 10000 characters long"),
])
def test_trained_model_config_refusals(change, message):
    assert message in refusal(trained_models.parse_config, "m", {**CONFIG, **change}).reason


ENDPOINT = {"service": "elasticsearch", "service_settings": {"model_id": "m", "num_threads": 1, "num_allocations": 1}}


def test_an_endpoint_that_names_no_deployment_owns_its_own():
    endpoint = endpoints.parse("e1", "text_embedding", ENDPOINT)
    assert endpoints.owned_deployment(endpoint) == "e1" and endpoints.serving_unit(endpoint) == "e1"
    reuse = endpoints.parse("e2", "text_embedding", {**ENDPOINT, "service_settings": {"deployment_id": "d",
                                                                                       "num_threads": 1}})
    assert endpoints.owned_deployment(reuse) is None and endpoints.serving_unit(reuse) == "d"


@pytest.mark.parametrize("task_type, body, message", [
    ("translation", ENDPOINT, "Unknown task_type [translation]"),
    ("text_embedding", {**ENDPOINT, "service": "watsonxai"}, "Unknown service [watsonxai]"),
    ("text_embedding", {**ENDPOINT, "service_settings": [1]}, "does not contain the required setting"),
    ("text_embedding", {**ENDPOINT, "service_settings": {"model_id": "m", "num_allocations": 1}},
     "does not contain the required setting [num_threads]"),
    ("text_embedding", {**ENDPOINT, "service_settings": {"model_id": "m", "num_threads": 1}},
     "does not contain one of the required settings [num_allocations, adaptive_allocations]"),
    ("text_embedding", {**ENDPOINT, "task_settings": {"top_n": 1}}, "unknown to the [elasticsearch] service"),
])
def test_endpoint_refusals(task_type, body, message):
    assert message in refusal(endpoints.parse, "e", task_type, body).reason


def test_an_endpoint_s_deployment_is_bounded_like_any_start():
    endpoint = endpoints.parse("e", "text_embedding", {**ENDPOINT, "service_settings": {
        "model_id": "m", "num_threads": 1, "num_allocations": 10**9}})
    assert "[number_of_allocations] must be less than or equal to 256" in \
        refusal(endpoints.start_settings, endpoint).reason
