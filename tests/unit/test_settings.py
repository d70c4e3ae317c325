"""Settings: the documented file matches the code, and values resolve in the documented order."""
from __future__ import annotations

import pytest
import yaml

from mlcommons.errors import BadRequest
from mlcommons.settings import (
    SETTINGS,
    default_config_path,
    env_name,
    load_file,
    render_file,
    static_values,
    validate_update,
)


def test_config_file_is_the_generated_one():
    assert default_config_path().read_text() == render_file(), "run: python -m mlcommons.settings > config/mlcommons.yml"


def test_config_file_documents_every_setting_with_its_default():
    path = default_config_path()
    assert path is not None and path.name == "mlcommons.yml"
    values = load_file(path)
    assert set(values) == set(SETTINGS)
    for name, raw in values.items():
        assert SETTINGS[name].parse(raw) == SETTINGS[name].default, name
    text = path.read_text()
    for name in SETTINGS:  # each setting has a comment right above it
        before = text.split(f"\n{name}:")[0].rstrip().splitlines()[-1]
        assert before.startswith("#"), name


def test_resolution_order(tmp_path):
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({"plugins": {"ml_commons": {"max_model_on_node": 4}},
                                      "mlcommons.predict.queue_capacity": 50}))
    values = static_values(config, environ={})
    assert values["plugins.ml_commons.max_model_on_node"] == 4
    assert values["mlcommons.predict.queue_capacity"] == 50
    env = {env_name("plugins.ml_commons.max_model_on_node"): "3", "mlcommons.predict.queue_capacity": "60"}
    assert env_name("plugins.ml_commons.max_model_on_node") == "MLCOMMONS_PLUGINS_ML_COMMONS_MAX_MODEL_ON_NODE"
    values = static_values(config, environ=env)
    assert values["plugins.ml_commons.max_model_on_node"] == 3
    assert values["mlcommons.predict.queue_capacity"] == 60


def test_unknown_setting_in_file_is_refused(tmp_path):
    config = tmp_path / "c.yml"
    config.write_text("plugins.ml_commons.no_such: 1\n")
    with pytest.raises(ValueError):
        static_values(config, environ={})


def test_validate_update():
    assert validate_update("persistent", {"plugins.ml_commons.allow_registering_model_via_url": "true"}) == {
        "plugins.ml_commons.allow_registering_model_via_url": True}
    with pytest.raises(BadRequest, match="not recognized"):
        validate_update("persistent", {"nope": 1})
    with pytest.raises(BadRequest, match="not dynamically updateable"):
        validate_update("transient", {"mlcommons.redis.key_prefix": "x"})
    with pytest.raises(BadRequest, match="must be <="):
        validate_update("persistent", {"plugins.ml_commons.native_memory_threshold": 101})
    with pytest.raises(BadRequest):
        validate_update("persistent", {"plugins.ml_commons.trusted_url_regex": "("})
