"""Chunking and hashing, against a real Redis."""
from __future__ import annotations

import hashlib
import io
import os

import pytest

from mlcommons.keys import Keys
from mlcommons.store.modelstore import RedisModelStore, iter_chunks, read_chunks, write_chunks


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
    assert store.sizes("m1", 4) == [10_000, 10_000, 5_000, None]
    out = io.BytesIO()
    assert read_chunks(store, "m1", 3, out) == digest
    assert out.getvalue() == data
    store.copy_chunks("m1", "m2", 3)
    assert store.get_chunk("m2", 2) == data[20_000:]
    assert store.delete_chunks("m1", 3) == 3
    with pytest.raises(KeyError):
        read_chunks(store, "m1", 3, io.BytesIO())


def test_write_refuses_past_the_limit(redis_client, prefix):
    store = RedisModelStore(redis_client, Keys(prefix))
    with pytest.raises(ValueError):
        write_chunks(store, "big", io.BytesIO(b"x" * 30), 10, max_size=25)
