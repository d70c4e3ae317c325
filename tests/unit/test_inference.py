"""The worker's batching: whatever the limits, every text gets the vector it gets alone."""
from __future__ import annotations

import numpy as np
import pytest
import redis

from mlcommons.settings import Settings, static_values
from mlcommons.store.keys import Keys
from mlcommons.types import ModelFormat
from tests.harness import wait_for
from tests.modelkit import model_doc, tiny_archive
from workers.extract import safe_extract
from workers.inference import DeploymentServer
from workers.runtimes import load_runtime


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inference")
    zip_path, info = tiny_archive(tmp)
    safe_extract(zip_path, tmp / "model")
    rt = load_runtime(tmp / "model", model_doc(info))
    yield rt
    rt.close()


@pytest.mark.parametrize("max_batch, max_tokens", [(32, 16384), (3, 16384), (1, 16384), (32, 40), (4, 1)])
def test_batches_respect_limits_and_keep_order(runtime, redis_url, max_batch, max_tokens):
    static = static_values(environ={})
    static["mlcommons.predict.max_batch_size"] = max_batch
    static["mlcommons.predict.max_batch_tokens"] = max_tokens
    server = DeploymentServer(redis.Redis.from_url(redis_url), Keys("unit"), Settings(static), "n", "d", runtime)
    texts = [("word " * n).strip() for n in (12, 1, 30, 3, 7, 1, 20, 2, 9)]
    calls = []
    forward = runtime.forward

    def counting(enc):
        calls.append((len(enc), enc.padded_length))
        return forward(enc)

    runtime.forward = counting
    try:
        got = server.infer(texts)
    finally:
        del runtime.forward
    alone = np.stack([runtime.embed([t])[0] for t in texts])
    assert np.allclose(got, alone, atol=1e-5)
    assert all(n <= max_batch for n, _ in calls)
    assert all(n * width <= max_tokens for n, width in calls if n > 1)


def test_allocations_resize_and_every_request_is_answered(runtime, redis_url):
    """Allocation threads can be added and removed while requests flow; a removed allocation hands
    back nothing unanswered."""
    import threading

    import msgpack

    from mlcommons.core.serving import dataplane as dp

    client = redis.Redis.from_url(redis_url)
    keys = Keys("resize")
    static = static_values(environ={})
    server = DeploymentServer(client, keys, Settings(static), "n", "d", runtime, allocations=1, block_seconds=0.05)
    server.start()
    reply_key = keys.replies("test")
    sent = 0
    try:
        for count in (3, 1, 2, 0, 1):
            server.set_allocations(count)
            for _ in range(20):
                sent += 1
                client.rpush(keys.predict_queue("d"),
                             msgpack.packb([sent, reply_key, 0, dp.OP_TEXT_EMBEDDING, [f"text {sent}"], None]))
            if count:
                wait_for(lambda: client.llen(reply_key) == sent, 30, 0.01, f"{sent} replies")

            def allocation_threads():
                return len([t for t in threading.enumerate() if t.name.startswith("infer-d-")])

            wait_for(lambda: allocation_threads() == count, 5, 0.01, f"{count} allocation threads")
    finally:
        server.stop()
    replies = [msgpack.unpackb(r) for r in client.lrange(reply_key, 0, -1)]
    assert sorted(r[0] for r in replies) == list(range(1, sent + 1))
    assert all(r[1] == dp.OK for r in replies)
    assert not list(client.scan_iter("resize:inflight:*"))


def threads_of_lone_requests(server: DeploymentServer, client, keys: Keys, threads_now) -> list:
    """Start ``server``, let it prepare, send it three one-document requests one after another,
    and return what ``threads_now()`` said in each of its forward passes (calibration's first)."""
    import msgpack

    from mlcommons.core.serving import dataplane as dp

    runtime = server.runtime
    seen = []
    forward = runtime.forward

    def counting(enc):
        seen.append(threads_now())
        return forward(enc)

    runtime.forward = counting
    server.start()
    reply_key = keys.replies("test")
    try:
        assert server.prepared.wait(60)
        for n in range(1, 4):
            client.rpush(keys.predict_queue("d"),
                         msgpack.packb([n, reply_key, 0, dp.OP_TEXT_EMBEDDING, [f"lone {n}"], None]))
            wait_for(lambda: client.llen(reply_key) == n, 30, 0.01, f"reply {n}")
    finally:
        server.stop()
        del runtime.forward
    return seen


@pytest.mark.parametrize("borrow, expect", [(True, 2), (False, 1)])
def test_a_lone_request_borrows_the_idle_allocations_threads(runtime, redis_url, borrow, expect):
    """Two allocations of one thread each: a request that finds the other allocation idle runs
    its forward on both allocations' threads (mlcommons.predict.borrow_idle_threads); torch's
    count is per thread, so the idle allocation's own setting is untouched."""
    import torch

    client = redis.Redis.from_url(redis_url)
    keys = Keys(f"borrow{borrow}")
    static = static_values(environ={})
    static["mlcommons.predict.borrow_idle_threads"] = borrow
    server = DeploymentServer(client, keys, Settings(static), "n", "d", runtime, allocations=2,
                              threads_per_allocation=1, block_seconds=0.05)
    assert threads_of_lone_requests(server, client, keys, torch.get_num_threads)[-3:] == [expect] * 3


def test_an_onnx_model_borrows_through_a_session_of_the_lanes_own(redis_url, tmp_path):
    """onnxruntime fixes a session's threads when it is made: the wide lane gets one session of
    both allocations' threads, made when the deployment starts, and a lone request runs on it."""
    zip_path, info = tiny_archive(tmp_path, kind="onnx")
    safe_extract(zip_path, tmp_path / "model")
    runtime = load_runtime(tmp_path / "model", model_doc(info, ModelFormat.ONNX))
    client = redis.Redis.from_url(redis_url)
    keys = Keys("borrow-onnx")
    server = DeploymentServer(client, keys, Settings(static_values(environ={})), "n", "d", runtime, allocations=2,
                              threads_per_allocation=1, block_seconds=0.05)

    def session_threads():
        session = getattr(runtime._local, "session", None)
        return session.get_session_options().intra_op_num_threads if session is not None else 1

    try:
        assert threads_of_lone_requests(server, client, keys, session_threads)[-3:] == [2, 2, 2]
    finally:
        runtime.close()
