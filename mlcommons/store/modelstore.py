"""The model store: a registered model's archive kept as numbered chunks, plus hashing helpers.

One interface; Redis is the backend today (a filesystem backend for archives too large to keep in
Redis would implement the same five methods). Chunks are raw bytes, numbered from 0.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

import redis

from mlcommons.store.keys import Keys

READERS = 2  # chunks read from Redis at once while a deploy hashes and writes the one before
READ_AHEAD = 3  # chunks asked for ahead of the one being written (each at most chunk_size bytes)


class ModelStore(ABC):
    @abstractmethod
    def put_chunk(self, model_id: str, number: int, data: bytes) -> None: ...

    @abstractmethod
    def get_chunk(self, model_id: str, number: int) -> bytes | None: ...

    @abstractmethod
    def sizes(self, model_id: str) -> dict[int, int]:
        """Chunk number -> size of every chunk stored for the model."""

    @abstractmethod
    def delete_chunks(self, model_id: str) -> int:
        """Delete every chunk stored for the model; returns how many there were."""

    @abstractmethod
    def copy_chunks(self, source_id: str, target_id: str) -> int:
        """Copy every chunk of ``source_id`` to ``target_id``; returns how many."""


class RedisModelStore(ModelStore):
    """Each chunk is one string key; a hash per model (``Keys.chunk_index``) records the number
    and size of every chunk written, in the same MULTI, so that completeness is one HLEN and
    deletion reads what is there instead of walking a count that a client declared."""

    def __init__(self, client: redis.Redis, keys: Keys):
        self.client = client
        self.keys = keys

    def put_chunk(self, model_id: str, number: int, data: bytes) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.chunk(model_id, number), data)
        pipe.hset(self.keys.chunk_index(model_id), str(number), len(data))
        pipe.execute()

    def get_chunk(self, model_id: str, number: int) -> bytes | None:
        return self.client.get(self.keys.chunk(model_id, number))

    def sizes(self, model_id: str) -> dict[int, int]:
        raw = self.client.hgetall(self.keys.chunk_index(model_id))
        return {int(number): int(size) for number, size in raw.items()}

    def delete_chunks(self, model_id: str) -> int:
        index = self.keys.chunk_index(model_id)
        numbers = [int(n) for n in self.client.hkeys(index)]
        for start in range(0, len(numbers), 500):
            self.client.delete(*[self.keys.chunk(model_id, n) for n in numbers[start:start + 500]])
        self.client.delete(index)
        if numbers:
            return len(numbers)
        # Chunks written before the index existed: from 0 up to the first one that is not there.
        deleted, batch = 0, 64
        while count := self.client.delete(*[self.keys.chunk(model_id, n) for n in range(deleted, deleted + batch)]):
            deleted += count
            if count < batch:
                break
        return deleted

    def copy_chunks(self, source_id: str, target_id: str) -> int:
        numbers = list(self.sizes(source_id))
        pipe = self.client.pipeline(transaction=False)
        for n in numbers:
            pipe.copy(self.keys.chunk(source_id, n), self.keys.chunk(target_id, n), replace=True)
        pipe.copy(self.keys.chunk_index(source_id), self.keys.chunk_index(target_id), replace=True)
        if not numbers or not all(pipe.execute()):
            raise KeyError(f"chunks of [{source_id}] are missing")
        return len(numbers)


def missing_chunks(sizes: dict[int, int], total: int, limit: int = 10) -> list[int]:
    """The first ``limit`` chunk numbers below ``total`` that ``sizes`` lacks (``total`` was
    bounded when it was accepted)."""
    missing = []
    for number in range(total):
        if number not in sizes:
            missing.append(number)
            if len(missing) == limit:
                break
    return missing


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    total_chunks: int


def iter_chunks(stream: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    """Read ``stream`` in pieces of exactly ``chunk_size`` bytes (the last may be shorter)."""
    while True:
        parts, have = [], 0
        while have < chunk_size:
            part = stream.read(chunk_size - have)
            if not part:
                break
            parts.append(part)
            have += len(part)
        if not parts:
            return
        yield b"".join(parts)
        if have < chunk_size:
            return


def write_chunks(store: ModelStore, model_id: str, stream: BinaryIO, chunk_size: int,
                 *, max_size: int | None = None) -> Digest:
    """Split ``stream`` into the store while hashing it. Raises ValueError past ``max_size``."""
    digest = hashlib.sha256()
    size = count = 0
    for chunk in iter_chunks(stream, chunk_size):
        size += len(chunk)
        if max_size is not None and size > max_size:
            raise ValueError(f"model file is larger than the limit of {max_size} bytes")
        digest.update(chunk)
        store.put_chunk(model_id, count, chunk)
        count += 1
    return Digest(size=size, sha256=digest.hexdigest(), total_chunks=count)


def read_chunks(store: ModelStore, model_id: str, total_chunks: int, out: BinaryIO,
                on_chunk: Callable[[int], None] | None = None) -> Digest:
    """Stream every chunk into ``out`` while hashing; a missing chunk raises KeyError.
    ``on_chunk(n)`` is called after chunk ``n`` (it may raise to stop).

    The next chunks are read from Redis (two at a time, :data:`READ_AHEAD` ahead) while this one
    is hashed and written, and the hashing runs on a thread of its own beside the write (both
    release the GIL on large buffers: SHA-256 of a chunk overlaps the extractor's CRC-32 and file
    writes): a cold deploy waits for the slowest of the three, not for their sum."""
    digest = hashlib.sha256()
    size = 0
    hashed = None  # the update of the chunk before: at most one chunk waits for the hasher
    with ThreadPoolExecutor(READERS, thread_name_prefix="chunk-reader") as pool, \
            ThreadPoolExecutor(1, thread_name_prefix="chunk-hasher") as hasher:
        ahead = deque(pool.submit(store.get_chunk, model_id, n) for n in range(min(READ_AHEAD, total_chunks)))
        try:
            for number in range(total_chunks):
                chunk = ahead.popleft().result()
                if number + READ_AHEAD < total_chunks:
                    ahead.append(pool.submit(store.get_chunk, model_id, number + READ_AHEAD))
                if chunk is None:
                    raise KeyError(f"chunk {number} of {total_chunks} is missing")
                if hashed is not None:
                    hashed.result()
                hashed = hasher.submit(digest.update, chunk)  # one thread: updates stay in order
                out.write(chunk)
                size += len(chunk)
                if on_chunk is not None:
                    on_chunk(number)
            if hashed is not None:
                hashed.result()
        finally:
            for future in ahead:  # a stop or a failure: nothing more is read
                future.cancel()
    return Digest(size=size, sha256=digest.hexdigest(), total_chunks=total_chunks)
