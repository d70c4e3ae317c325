"""Documents in Redis: one hash per document, every field value JSON-encoded.

A document is a flat mapping of top-level fields; nested values (lists, objects) are stored as JSON
in their field. Each index keeps a sorted set of its document ids scored by creation time, which
the searches walk. Updates that depend on what is stored run inside :meth:`DocumentStore.transact`
(WATCH/MULTI with retries), so concurrent writers never lose each other's changes.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import orjson
import redis

from mlcommons.ids import now_ms
from mlcommons.store.keys import Keys

_DELETE = object()


def encode(doc: dict[str, Any]) -> dict[str, bytes]:
    return {k: orjson.dumps(v) for k, v in doc.items() if v is not None}


def decode(raw: dict) -> dict[str, Any]:
    return {(k.decode() if isinstance(k, bytes) else k): orjson.loads(v) for k, v in raw.items()}


class Conflict(Exception):
    """Raised inside a transaction body to abort it without writing."""


class Tx:
    """What a transaction body sees: reads are immediate (under WATCH), writes are queued."""

    def __init__(self, store: "DocumentStore", pipe: redis.client.Pipeline):
        self.store = store
        self.keys = store.keys
        self.pipe = pipe
        self._writes: list[Callable[[redis.client.Pipeline], None]] = []

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        key = self.keys.doc(index, doc_id)
        self.pipe.watch(key)
        raw = self.pipe.hgetall(key)
        return decode(raw) if raw else None

    def hgetall(self, key: str) -> dict:
        self.pipe.watch(key)
        return self.pipe.hgetall(key)

    def put(self, index: str, doc_id: str, doc: dict[str, Any], *, created: int | None = None) -> None:
        self.store.check(index, doc)
        key = self.keys.doc(index, doc_id)
        data = encode(doc)

        def write(p):
            p.delete(key)
            if data:
                p.hset(key, mapping=data)
            p.zadd(self.keys.index(index), {doc_id: created if created is not None else now_ms()}, nx=True)

        self._writes.append(write)

    def update(self, index: str, doc_id: str, fields: dict[str, Any]) -> None:
        self.store.check(index, fields)
        key = self.keys.doc(index, doc_id)
        sets = {k: orjson.dumps(v) for k, v in fields.items() if v is not None}
        dels = [k for k, v in fields.items() if v is None]

        def write(p):
            if sets:
                p.hset(key, mapping=sets)
            if dels:
                p.hdel(key, *dels)

        self._writes.append(write)

    def delete(self, index: str, doc_id: str) -> None:
        def write(p):
            p.delete(self.keys.doc(index, doc_id))
            p.zrem(self.keys.index(index), doc_id)

        self._writes.append(write)

    def call(self, fn: Callable[[redis.client.Pipeline], Any]) -> None:
        """Queue any other write (a raw Redis command) to run in the same MULTI."""
        self._writes.append(fn)


class DocumentStore:
    """``check(index, fields)``: called with every write, to refuse fields an index does not
    declare (the application passes ``store/schema.py``'s; the store itself knows no shapes)."""

    def __init__(self, client: redis.Redis, keys: Keys, check: Callable[[str, dict], None] | None = None):
        self.client = client
        self.keys = keys
        self.check = check or (lambda index, fields: None)

    # --- plain reads and writes -------------------------------------------------------
    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        raw = self.client.hgetall(self.keys.doc(index, doc_id))
        return decode(raw) if raw else None

    def get_many(self, index: str, doc_ids: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        ids = list(doc_ids)
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            pipe = self.client.pipeline(transaction=False)
            for doc_id in part:
                pipe.hgetall(self.keys.doc(index, doc_id))
            for doc_id, raw in zip(part, pipe.execute()):
                if raw:
                    yield doc_id, decode(raw)

    def exists(self, index: str, doc_id: str) -> bool:
        return bool(self.client.exists(self.keys.doc(index, doc_id)))

    def ids(self, index: str) -> list[str]:
        return [i.decode() for i in self.client.zrange(self.keys.index(index), 0, -1)]

    def all(self, index: str) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.get_many(index, self.ids(index))

    def create(self, index: str, doc_id: str, doc: dict[str, Any]) -> None:
        def body(tx: Tx):
            if tx.get(index, doc_id) is not None:
                raise Conflict(doc_id)
            tx.put(index, doc_id, doc)

        self.transact(body)

    def update(self, index: str, doc_id: str, fields: dict[str, Any]) -> None:
        """Set fields (None removes one) on an existing document; unconditional."""
        self.check(index, fields)
        sets = {k: orjson.dumps(v) for k, v in fields.items() if v is not None}
        dels = [k for k, v in fields.items() if v is None]
        pipe = self.client.pipeline(transaction=True)
        if sets:
            pipe.hset(self.keys.doc(index, doc_id), mapping=sets)
        if dels:
            pipe.hdel(self.keys.doc(index, doc_id), *dels)
        pipe.execute()

    def delete(self, index: str, doc_id: str) -> bool:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.doc(index, doc_id))
        pipe.zrem(self.keys.index(index), doc_id)
        deleted, _ = pipe.execute()
        return bool(deleted)

    # --- transactions --------------------------------------------------------------------
    def transact(self, body: Callable[[Tx], Any], *, retries: int = 100) -> Any:
        """Run ``body`` under optimistic locking: every key it reads is watched, and its writes
        apply atomically only if none of them changed; otherwise it runs again."""
        for _ in range(retries):
            with self.client.pipeline(transaction=True) as pipe:
                tx = Tx(self, pipe)
                try:
                    result = body(tx)
                    pipe.multi()
                    for write in tx._writes:
                        write(pipe)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue
        raise RuntimeError("transaction kept conflicting; gave up")
