"""Connectors' decisions (core/remote/): validation in ML Commons' order and words, the bounds we
add, trusted URLs and private addresses, and credentials sealed under the master key."""
from __future__ import annotations

import os
import stat

import pytest

from mlcommons.core.remote import connectors, urls
from mlcommons.core.remote.secrets import MasterKey, MissingKey, create_key_file
from mlcommons.errors import BadRequest
from mlcommons.settings import SETTINGS, TRUSTED_CONNECTOR_ENDPOINTS

OPENAI = {
    "name": "OpenAI embeddings", "description": "text-embedding-3-small", "version": 1, "protocol": "http",
    "parameters": {"model": "text-embedding-3-small", "dimensions": 256},
    "credential": {"openAI_key": "sk-secret-value"},
    "actions": [{"action_type": "predict", "method": "POST", "url": "https://api.openai.com/v1/embeddings",
                 "headers": {"Authorization": "Bearer ${credential.openAI_key}"},
                 "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }',
                 "pre_process_function": "connector.pre_process.openai.embedding",
                 "post_process_function": "connector.post_process.openai.embedding"}],
}


def without(key):
    return {k: v for k, v in OPENAI.items() if k != key}


def test_a_connector_is_normalised_as_ml_commons_stores_it():
    doc = connectors.parse(OPENAI)
    assert doc["version"] == "1" and doc["parameters"]["dimensions"] == "256"
    assert doc["actions"][0]["action_type"] == "PREDICT"
    assert "client_config" not in doc
    with_config = connectors.parse({**OPENAI, "client_config": {"max_retry_times": -1}})
    assert with_config["client_config"] == {"max_connection": 30, "connection_timeout": 30, "read_timeout": 30,
                                            "retry_backoff_millis": 200, "retry_timeout_seconds": 30,
                                            "max_retry_times": -1, "retry_backoff_policy": "constant"}


@pytest.mark.parametrize("body, message", [
    (without("name"), "Connector name is null"),
    (without("version"), "Connector version is null"),
    (without("protocol"), "Connector protocol is null"),
    (without("credential"), "Connector credential is null or empty list"),
    ({**OPENAI, "credential": {}}, "Connector credential is null or empty list"),
    ({**OPENAI, "protocol": "grpc"}, "Unsupported connector protocol. Please use one of [aws_sigv4, http]"),
    (without("actions"), "No actions configured for this connector"),
    ({**OPENAI, "actions": [{"method": "POST", "url": "https://x"}]}, "action type can't be null"),
    ({**OPENAI, "actions": [{"action_type": "predict", "method": "POST"}]}, "url can't be null"),
    ({**OPENAI, "actions": [{"action_type": "predict", "url": "https://x"}]}, "method can't be null"),
    ({**OPENAI, "actions": [{"action_type": "train", "method": "POST", "url": "https://x"}]},
     "No enum constant org.opensearch.ml.common.connector.ConnectorAction.ActionType.TRAIN"),
    ({**OPENAI, "actions": [{"action_type": "predict", "method": "POST", "url": "https://x",
                             "headers": {"Authorization": "${parameters.token}"}}]},
     "Header 'Authorization' cannot use ${parameters.*} placeholders for security reasons. Use ${credential.*} "
     "instead."),
    ({**OPENAI, "name": "bad <name>"}, "Model connector name can only contain letters, numbers, spaces"),
    ({**OPENAI, "protocol": "aws_sigv4"}, "Missing credential"),
    ({**OPENAI, "protocol": "aws_sigv4", "credential": {"access_key": "a", "secret_key": "s"}}, "Missing service name"),
    ({**OPENAI, "protocol": "aws_sigv4", "credential": {"access_key": "a", "secret_key": "s"},
      "parameters": {"service_name": "bedrock"}}, "Missing region"),
    ({**OPENAI, "client_config": {"retry_backoff_policy": "linear"}}, "Unsupported retry backoff policy"),
    ({**OPENAI, "client_config": {"max_connection": 10**9}}, "[client_config.max_connection] must be an integer"),
    ({**OPENAI, "client_config": {"read_timeout": -5}}, "[client_config.read_timeout] must be an integer"),
    ({**OPENAI, "actions": [OPENAI["actions"][0]] * 17}, "[actions] may hold at most 16 actions"),
])
def test_refusals_in_ml_commons_order_and_words(body, message):
    with pytest.raises(BadRequest) as refused:
        connectors.parse(body)
    assert message in refused.value.reason


def test_urls_must_match_a_trusted_pattern_once_filled():
    patterns = list(TRUSTED_CONNECTOR_ENDPOINTS)
    urls.check_trusted("https://api.openai.com/v1/embeddings", patterns)
    url = urls.fill("https://bedrock-runtime.${parameters.region}.amazonaws.com/model/x/invoke",
                    {"region": "us-east-1"})
    urls.check_trusted(url, patterns)
    for bad in ("http://127.0.0.1:8000/embeddings", "https://api.openai.com.evil.example/v1",
                "https://evil.example/?https://api.openai.com/"):
        with pytest.raises(BadRequest, match="Connector URL is not matching the trusted connector endpoint regex"):
            urls.check_trusted(bad, patterns)
    with pytest.raises(BadRequest, match="Trusted connector endpoints regex is not configured"):
        urls.check_trusted("https://api.openai.com/v1", [])


def test_private_addresses_are_refused_unless_allowed():
    for url in ("http://127.0.0.1:7997/embeddings", "http://localhost:7997/x", "http://10.1.2.3/x",
                "http://[::1]:80/x", "http://169.254.169.254/latest/meta-data"):
        with pytest.raises(BadRequest, match="Remote inference host name has private ip address"):
            urls.check_host(url, private_ip_enabled=False)
        urls.check_host(url, private_ip_enabled=True)
    with pytest.raises(BadRequest, match="Protocol is not http or https: file"):
        urls.check_host("file:///etc/passwd", private_ip_enabled=True)


def test_trusted_patterns_are_bounded():
    setting = SETTINGS["plugins.ml_commons.trusted_connector_endpoints_regex"]
    assert setting.parse('["^https://a/.*$"]') == ["^https://a/.*$"]
    with pytest.raises(BadRequest, match="may cause ReDoS"):
        setting.parse(["^(a+)+$"])
    with pytest.raises(BadRequest, match="too long"):
        setting.parse(["a" * 300])
    with pytest.raises(BadRequest, match="Invalid regex pattern"):
        setting.parse(["(unclosed"])


def test_credentials_are_sealed_and_only_the_right_key_opens_them(tmp_path):
    path = create_key_file(tmp_path / "master.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert create_key_file(path).read_text() == path.read_text()  # made once
    key = MasterKey.load(path)
    sealed = key.seal({"api_key": "sk-secret-value"})
    assert "sk-secret" not in sealed["api_key"] and sealed["api_key"].startswith(f"mlc1:{key.key_id}:")
    assert sealed != key.seal({"api_key": "sk-secret-value"})  # a fresh nonce each time
    assert key.open(sealed) == {"api_key": "sk-secret-value"}
    other = MasterKey.load(create_key_file(tmp_path / "other.key"))
    with pytest.raises(MissingKey, match=f"encrypted with master key \\[{key.key_id}\\].*holds master key "
                                         f"\\[{other.key_id}\\]"):
        other.open(sealed)
    tampered = sealed["api_key"][:-4] + ("AAAA" if not sealed["api_key"].endswith("AAAA") else "BBBB")
    with pytest.raises(MissingKey, match="integrity"):
        key.decrypt(tampered)
