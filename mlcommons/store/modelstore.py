"""The model store: a registered model's archive kept as numbered chunks, plus hashing helpers.

One interface; Redis is the backend today (a filesystem backend for archives too large to keep in
Redis would implement the same four methods). Chunks are raw bytes, numbered from 0.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

import redis

from mlcommons.keys import Keys


class ModelStore(ABC):
    @abstractmethod
    def put_chunk(self, model_id: str, number: int, data: bytes) -> None: ...

    @abstractmethod
    def get_chunk(self, model_id: str, number: int) -> bytes | None: ...

    @abstractmethod
    def sizes(self, model_id: str, total: int) -> list[int | None]:
        """Size of chunks 0..total-1, None for a missing one."""

    @abstractmethod
    def delete_chunks(self, model_id: str, total: int | None) -> int: ...

    @abstractmethod
    def copy_chunks(self, source_id: str, target_id: str, total: int) -> None: ...


class RedisModelStore(ModelStore):
    def __init__(self, client: redis.Redis, keys: Keys):
        self.client = client
        self.keys = keys

    def put_chunk(self, model_id: str, number: int, data: bytes) -> None:
        self.client.set(self.keys.chunk(model_id, number), data)

    def get_chunk(self, model_id: str, number: int) -> bytes | None:
        return self.client.get(self.keys.chunk(model_id, number))

    def sizes(self, model_id: str, total: int) -> list[int | None]:
        pipe = self.client.pipeline(transaction=False)
        for n in range(total):
            pipe.exists(self.keys.chunk(model_id, n))
            pipe.strlen(self.keys.chunk(model_id, n))
        raw = pipe.execute()
        return [raw[2 * n + 1] if raw[2 * n] else None for n in range(total)]

    def delete_chunks(self, model_id: str, total: int | None) -> int:
        """Delete chunks 0..total-1; with ``total`` None (a write that died midway, count unknown),
        every chunk from 0 up to the first missing one: chunks are always written in order."""
        if total is not None:
            keys = [self.keys.chunk(model_id, n) for n in range(total)]
            return self.client.delete(*keys) if keys else 0
        deleted, start, batch = 0, 0, 64
        while True:
            count = self.client.delete(*[self.keys.chunk(model_id, n) for n in range(start, start + batch)])
            deleted += count
            if count < batch:
                return deleted
            start += batch

    def copy_chunks(self, source_id: str, target_id: str, total: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for n in range(total):
            pipe.copy(self.keys.chunk(source_id, n), self.keys.chunk(target_id, n), replace=True)
        if not all(pipe.execute()):
            raise KeyError(f"chunks of [{source_id}] are missing")


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
    ``on_chunk(n)`` is called after chunk ``n`` (it may raise to stop)."""
    digest = hashlib.sha256()
    size = 0
    for number in range(total_chunks):
        chunk = store.get_chunk(model_id, number)
        if chunk is None:
            raise KeyError(f"chunk {number} of {total_chunks} is missing")
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)
        if on_chunk is not None:
            on_chunk(number)
    return Digest(size=size, sha256=digest.hexdigest(), total_chunks=total_chunks)
