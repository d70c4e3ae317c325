"""Documents and transactions against a real Redis: concurrent writers lose nothing."""
from __future__ import annotations

import threading

import pytest
import redis

from mlcommons.store.documents import Conflict, DocumentStore
from mlcommons.store.keys import Keys


def test_put_get_update_delete(redis_url, prefix):
    store = DocumentStore(redis.Redis.from_url(redis_url), Keys(prefix))
    store.create("model", "a", {"name": "x", "nested": {"k": [1, 2]}, "none": None})
    assert store.get("model", "a") == {"name": "x", "nested": {"k": [1, 2]}}
    with pytest.raises(Conflict):
        store.create("model", "a", {"name": "y"})
    store.update("model", "a", {"name": "z", "nested": None})
    assert store.get("model", "a") == {"name": "z"}
    assert store.ids("model") == ["a"]
    assert store.delete("model", "a") and store.get("model", "a") is None and store.ids("model") == []


def test_concurrent_transactions_lose_no_update(redis_url, prefix):
    keys = Keys(prefix)
    DocumentStore(redis.Redis.from_url(redis_url), keys).create("task", "t", {"count": 0, "nodes": []})

    def worker(name: str):
        store = DocumentStore(redis.Redis.from_url(redis_url), keys)
        for i in range(25):
            def body(tx):
                doc = tx.get("task", "t")
                tx.update("task", "t", {"count": doc["count"] + 1, "nodes": doc["nodes"] + [f"{name}{i}"]})
            store.transact(body)

    threads = [threading.Thread(target=worker, args=(n,)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = DocumentStore(redis.Redis.from_url(redis_url), keys).get("task", "t")
    assert doc["count"] == 100 and len(set(doc["nodes"])) == 100


def test_the_application_store_refuses_a_field_its_index_does_not_declare(redis_url, prefix):
    from mlcommons.store import schema

    store = DocumentStore(redis.Redis.from_url(redis_url), Keys(prefix), check=schema.check)
    store.create("model", "a", {"name": "x", "model_state": "REGISTERED"})
    with pytest.raises(schema.UnknownField, match="model_stat"):
        store.update("model", "a", {"model_stat": "DEPLOYED"})
    with pytest.raises(schema.UnknownField):
        store.transact(lambda tx: tx.update("task", "t", {"state": "RUNNING", "nodes": []}))
    assert store.get("model", "a") == {"name": "x", "model_state": "REGISTERED"}
