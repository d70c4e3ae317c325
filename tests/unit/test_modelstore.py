"""Chunking and hashing, against a real Redis."""
from __future__ import annotations

import hashlib
import io
import os

import pytest

from mlcommons.store.keys import Keys
from mlcommons.store.modelstore import RedisModelStore, iter_chunks, missing_chunks, read_chunks, write_chunks


class Trickle(io.BytesIO):
    """A stream that returns fewer bytes than asked, as sockets do."""

    def read(self, n=-1):
        return super().read(min(n, 7) if n and n > 0 else n)


@pytest.mark.parametrize("size, chunk, expected", [(0, 10, 0), (1, 10, 1), (10, 10, 1), (11, 10, 2), (95, 10, 10)])
def test_iter_chunks_exact_sizes(size, chunk, expected):
    data = os.urandom(size)
    pieces = list(iter_chunks(Trickle(data), chunk))
    assert len(pieces) == expected
    assert all(len(p) == chunk for p in pieces[:-1])
    assert b"".join(pieces) == data


def test_write_then_read_round_trip(redis_client, prefix):
    store = RedisModelStore(redis_client, Keys(prefix))
    data = os.urandom(25_000)
    digest = write_chunks(store, "m1", io.BytesIO(data), 10_000)
    assert (digest.size, digest.total_chunks) == (25_000, 3)
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert store.sizes("m1") == {0: 10_000, 1: 10_000, 2: 5_000}
    assert missing_chunks(store.sizes("m1"), 4) == [3]
    out = io.BytesIO()
    assert read_chunks(store, "m1", 3, out) == digest
    assert out.getvalue() == data
    assert store.copy_chunks("m1", "m2") == 3
    assert store.get_chunk("m2", 2) == data[20_000:]
    assert store.sizes("m2") == store.sizes("m1")
    assert store.delete_chunks("m1") == 3
    assert store.sizes("m1") == {}
    with pytest.raises(KeyError):
        read_chunks(store, "m1", 3, io.BytesIO())


def test_delete_reads_what_is_stored_not_a_count(redis_client, prefix):
    """Chunks out of order and far apart are all deleted, in as many steps as there are chunks."""
    store = RedisModelStore(redis_client, Keys(prefix))
    for number in (7, 0, 100_000):
        store.put_chunk("sparse", number, b"x" * (number % 7 + 1))
    assert sorted(store.sizes("sparse")) == [0, 7, 100_000]
    assert store.delete_chunks("sparse") == 3
    assert redis_client.keys(f"{prefix}:chunk*") == []


def test_delete_of_chunks_written_before_the_index(redis_client, prefix):
    keys = Keys(prefix)
    for number in range(70):
        redis_client.set(keys.chunk("old", number), b"x")
    assert RedisModelStore(redis_client, keys).delete_chunks("old") == 70
    assert redis_client.keys(f"{prefix}:chunk*") == []


def test_write_refuses_past_the_limit(redis_client, prefix):
    store = RedisModelStore(redis_client, Keys(prefix))
    with pytest.raises(ValueError):
        write_chunks(store, "big", io.BytesIO(b"x" * 30), 10, max_size=25)
