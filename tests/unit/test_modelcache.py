"""The node-local model cache: content-addressed, crash-safe, bounded, least recently used out."""
from __future__ import annotations

import os
import time

from workers.modelcache import ModelCache


def _model(tmp_path, name: str, size: int):
    folder = tmp_path / "work" / name / "model"
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"x" * size)
    return folder


def test_put_get_and_least_recently_used_eviction(tmp_path):
    cache = ModelCache(tmp_path / "cache", max_bytes=2500)
    a, b, c = ("a" * 64, "b" * 64, "c" * 64)
    assert cache.get(a) is None
    assert (cache.put(a, _model(tmp_path, "a", 1000)) / "weights.bin").read_bytes() == b"x" * 1000
    cache.put(b, _model(tmp_path, "b", 1000))
    old = time.time() - 100
    os.utime(tmp_path / "cache" / a / "ready", (old, old))
    os.utime(tmp_path / "cache" / b / "ready", (old - 50, old - 50))
    assert cache.get(a) is not None  # a is now the most recently used
    cache.put(c, _model(tmp_path, "c", 1000))
    assert cache.entries() == [a, c]


def test_too_big_off_bad_keys_and_leftovers(tmp_path):
    assert ModelCache(tmp_path / "small", max_bytes=10).put("d" * 64, _model(tmp_path, "d", 100)) is None
    assert (tmp_path / "work" / "d" / "model").exists()  # left for the caller to remove
    off = ModelCache(tmp_path / "off", max_bytes=0)
    assert off.put("e" * 64, _model(tmp_path, "e", 10)) is None and off.get("e" * 64) is None
    cache = ModelCache(tmp_path / "cache", max_bytes=10_000)
    assert cache.put("../../etc", _model(tmp_path, "f", 10)) is None
    # A folder without its marker (a crash mid-copy) is not a hit, and goes at the next start.
    (tmp_path / "cache" / ("9" * 64) / "model").mkdir(parents=True)
    assert cache.get("9" * 64) is None
    ModelCache(tmp_path / "cache", max_bytes=10_000)
    assert not (tmp_path / "cache" / ("9" * 64)).exists()
