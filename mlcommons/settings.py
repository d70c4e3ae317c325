"""Every setting, documented once, and how a value is resolved.

Resolution order, lowest first: the default below, ``config/mlcommons.yml`` (or ``--config``),
the environment (the dotted name itself, or ``MLCOMMONS_`` + the name upper-cased with dots and
dashes turned into underscores), then the cluster settings stored in Redis by
``PUT /_cluster/settings`` (``persistent``, then ``transient``) for the settings marked dynamic.
Names follow ML Commons where ML Commons has the setting.
"""
from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from mlcommons.errors import BadRequest
from mlcommons.setting_table import SETTINGS, TRUSTED_CONNECTOR_ENDPOINTS, Setting, _coerce  # noqa: F401

_ENV_PREFIX = "MLCOMMONS_"


def env_name(name: str) -> str:
    return _ENV_PREFIX + re.sub(r"[.\-]", "_", name).upper()


def load_file(path: Path) -> dict[str, Any]:
    """Read a settings file: flat dotted keys (nested mappings are flattened)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    return flatten(data)


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in sorted(flat.items()):
        node = out
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def default_config_path() -> Path | None:
    env = os.environ.get("MLCOMMONS_CONFIG")
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parent.parent / "config" / "mlcommons.yml"
    return candidate if candidate.exists() else None


def static_values(config_path: Path | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Defaults, then the settings file, then the environment."""
    environ = os.environ if environ is None else environ
    values = {name: s.default for name, s in SETTINGS.items()}
    path = config_path if config_path is not None else default_config_path()
    if path is not None:
        for name, raw in load_file(path).items():
            setting = SETTINGS.get(name)
            if setting is None:
                raise ValueError(f"{path}: unknown setting [{name}]")
            values[name] = setting.parse(raw)
    for name, setting in SETTINGS.items():
        for key in (name, env_name(name), short_env_name(name)):
            if key and key in environ:
                values[name] = setting.parse(environ[key])
    return values


def short_env_name(name: str) -> str | None:
    """``mlcommons.security.enabled`` may also come as ``MLCOMMONS_SECURITY_ENABLED``."""
    return env_name(name.removeprefix("mlcommons.")) if name.startswith("mlcommons.") else None


class Settings:
    """Resolved settings for one process.

    Dynamic overrides live in two Redis hashes (persistent and transient). A process that passes
    ``redis`` refreshes them when they are older than ``refresh_seconds``; the API instead calls
    :meth:`apply_overrides` from its own asynchronous refresher so that reads never block its loop.
    """

    def __init__(self, static: dict[str, Any] | None = None, *, redis=None, keys=None,
                 refresh_seconds: float = 1.0):
        self.static = dict(static) if static is not None else static_values()
        self._redis = redis
        self._keys = keys
        self._refresh_seconds = refresh_seconds
        self._overrides: dict[str, dict[str, Any]] = {"persistent": {}, "transient": {}}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        if self._redis is not None and time.monotonic() - self._loaded_at > self._refresh_seconds:
            self.refresh()
        transient = self._overrides["transient"]
        if name in transient:
            return transient[name]
        persistent = self._overrides["persistent"]
        if name in persistent:
            return persistent[name]
        return self.static[name]

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def refresh(self, client=None) -> None:
        """Read the overrides now. ``client``: the Redis to read them from in a process that has no
        refresher of its own here (the API): control-plane calls whose limits must hold the instant
        after a ``PUT /_cluster/settings`` on any process (a lowered max_model_size) read them so."""
        started = time.monotonic()
        pipe = (client or self._redis).pipeline(transaction=False)
        pipe.hgetall(self._keys.settings("persistent"))
        pipe.hgetall(self._keys.settings("transient"))
        persistent, transient = pipe.execute()
        self.apply_overrides(persistent, transient, read_at=started)

    def apply_overrides(self, persistent: dict, transient: dict, *, read_at: float | None = None) -> None:
        """``read_at``: when the read of these values began (``time.monotonic()``). Values read
        before the ones applied last are dropped, so a slow periodic refresh never undoes a fresher one."""
        read_at = time.monotonic() if read_at is None else read_at
        with self._lock:
            if read_at < self._loaded_at:
                return
            self._overrides = {"persistent": decode_overrides(persistent),
                               "transient": decode_overrides(transient)}
            self._loaded_at = read_at

    def overrides(self, scope: str) -> dict[str, Any]:
        return dict(self._overrides[scope])


def decode_overrides(raw: dict) -> dict[str, Any]:
    out = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else key
        setting = SETTINGS.get(name)
        if setting is not None and setting.dynamic:
            out[name] = setting.parse(orjson.loads(value))
    return out


def validate_update(scope: str, body: dict) -> dict[str, Any]:
    """Check a ``PUT /_cluster/settings`` section; returns name -> parsed value (None = reset)."""
    out: dict[str, Any] = {}
    for name, raw in flatten(body).items():
        setting = SETTINGS.get(name)
        if setting is None:
            raise BadRequest(f"{scope} setting [{name}], not recognized")
        if not setting.dynamic:
            raise BadRequest(f"{scope} setting [{name}], not dynamically updateable")
        out[name] = None if raw is None else setting.parse(raw)
    return out


def render_value(value: Any) -> str:
    """Cluster settings answer with strings, as OpenSearch does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


_FILE_HEADER = """\
# mlcommons settings: every setting, its default, and what it does.
# Generated from mlcommons/settings.py: `python -m mlcommons.settings > config/mlcommons.yml`.
#
# Resolution order, lowest first: the defaults below, this file (or the file given with --config or
# MLCOMMONS_CONFIG), the environment (the dotted name itself, or MLCOMMONS_ + the name in upper case
# with dots turned into underscores, e.g. MLCOMMONS_PLUGINS_ML_COMMONS_MAX_MODEL_ON_NODE=4), and for
# settings marked dynamic, PUT /_cluster/settings (persistent, then transient; kept in Redis, so they
# survive restarts). Names follow ML Commons where ML Commons has the setting.
"""


def render_file() -> str:
    """The documented settings file, every setting at its default."""
    import json
    import textwrap

    lines = [_FILE_HEADER]
    for setting in SETTINGS.values():
        doc = setting.doc + (" Dynamic." if setting.dynamic else " Static: read at process start.")
        lines.extend("# " + line for line in textwrap.wrap(doc, 98))
        value = setting.default
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (str, list)):
            text = json.dumps(value)
        else:
            text = repr(value)
        lines.append(f"{setting.name}: {text}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_file(), end="")
