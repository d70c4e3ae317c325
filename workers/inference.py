"""Inference loops: each allocation of a deployment is a thread that takes batches of requests
from the deployment's Redis queue, runs them through the runtime, and pushes the replies.

There is no fixed batching window: a thread takes whatever is queued (up to the batch limits),
so an idle server answers a lone request at once and a busy one fills its batches. Allocations
are threads over one copy of the weights (measured against a process per allocation: see
DESIGN.md); each runs its forward passes on ``threads_per_allocation`` torch threads.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import redis
import torch

from mlcommons import failpoints
from mlcommons.core.serving import dataplane as dp
from mlcommons.core.serving import timing
from mlcommons.metrics import buckets
from mlcommons.settings import Settings
from mlcommons.store.keys import Keys
from workers import batching
from workers.runtimes import Runtime

log = logging.getLogger(__name__)


class WideLane:
    """The one thread of the process that runs forwards on borrowed threads.

    libgomp cuts its threads' spinning between parallel regions to almost nothing once the
    process holds more OpenMP threads than it has cores, and each thread that runs torch on more
    than one thread keeps a team of its own. So if every allocation thread borrowed, the teams
    would add up past the cores, and every forward, the lone ones included, would lose most of what
    the borrowed threads give (MiniLM, one document, two threads: 8 ms from one team, 10 ms with
    two teams in the process, 10.5 ms on one thread). Borrowed forwards run here instead, one at a
    time; an allocation that finds the lane taken runs its batch on its own threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pool = None
        self._made = weakref.WeakKeyDictionary()  # runtime -> the thread count its lane session got

    def _executor(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="infer-wide",
                                            initializer=torch.get_num_threads)  # torch's per-thread init
        return self._pool

    def prepare(self, runtime: Runtime, threads: int) -> None:
        """Make ``runtime``'s session for the lane now, in the background (onnxruntime's take a
        while to make; torch's runtimes need none), rather than on the first lone request."""
        with self._lock:
            self._executor().submit(self._on_threads, threads, runtime, None)

    def run(self, threads: int, runtime: Runtime, fn, *args):
        """``fn(*args)`` on the lane's thread with ``threads`` threads; None when the lane is busy."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._executor().submit(self._on_threads, threads, runtime, fn, *args).result()
        finally:
            self._lock.release()

    def _on_threads(self, threads: int, runtime: Runtime, fn, *args):
        torch.set_num_threads(threads)
        if runtime not in self._made:  # once: an onnxruntime session's thread count stays as made
            runtime.use_threads(threads)
            self._made[runtime] = threads
        return fn(*args) if fn is not None else None


WIDE = WideLane()

# An allocation that waited on an empty queue at least this long serves the request that woke it
# alone rather than asking the queue for more first (see _loop).
FOLLOW_UP_SECONDS = 0.002


@dataclass
class Counters:
    """What a deployment did on this node; read by the heartbeat and the stats APIs."""

    inference_count: int = 0
    error_count: int = 0
    timeout_count: int = 0
    batches: int = 0
    inference_ms_total: float = 0.0
    last_access_ms: int = 0
    # fixed buckets (mlcommons/metrics/buckets.py), for GET /_prometheus/metrics
    batch_size: buckets.Histogram = field(default_factory=lambda: buckets.Histogram(buckets.BATCH_SIZE))
    inference_seconds: buckets.Histogram = field(
        default_factory=lambda: buckets.Histogram(buckets.INFERENCE_SECONDS))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict:
        with self.lock:
            return {"inference_count": self.inference_count, "error_count": self.error_count,
                    "timeout_count": self.timeout_count, "batches": self.batches,
                    "inference_ms_total": round(self.inference_ms_total, 3),
                    "last_access_ms": self.last_access_ms,
                    "batch_size": self.batch_size.snapshot(), "inference_seconds": self.inference_seconds.snapshot()}


class DeploymentServer:
    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings, node_id: str,
                 deployment_id: str, runtime: Runtime, *, allocations: int = 1, threads_per_allocation: int = 1,
                 block_seconds: float = 0.5, prepack: bool = False, precision: str = "float32"):
        self.client = client
        self.keys = keys
        self.settings = settings
        self.node_id = node_id
        self.deployment_id = deployment_id
        self.runtime = runtime
        self.threads_per_allocation = max(1, threads_per_allocation)
        self.block_seconds = block_seconds
        self.counters = Counters()
        self._stop = threading.Event()
        self._threads: dict[int, threading.Thread] = {}
        self._wanted = 0
        self._resize = threading.Lock()
        self._take = client.register_script(dp.TAKE_SCRIPT)
        self._queue = keys.predict_queue(deployment_id)
        self.prepack = prepack  # runtime.prepack() on the preparing thread (_prepare)
        self.precision = precision  # what the packed linear layers may multiply in
        self.overhead_tokens: float | None = None  # measured on the preparing thread
        self.prepared = threading.Event()  # set once _prepare is done (packed where asked, cost measured)
        self._preparer: threading.Thread | None = None
        self._wanted = max(0, allocations)
        self._busy = 0  # allocations running a batch now (borrow_idle_threads)
        self._busy_lock = threading.Lock()

    @property
    def allocations(self) -> int:
        return self._wanted

    def start(self, prepare: bool = True) -> None:
        """Start the allocation threads (and have the wide lane ready for this runtime), and with
        ``prepare`` the preparing thread (else :meth:`prepare` starts it: a node does once its
        deploy has answered, since packing holds the GIL for a while)."""
        if (self.runtime.borrows_threads and self._wanted > 1
                and self.settings.get("mlcommons.predict.borrow_idle_threads")):
            WIDE.prepare(self.runtime, self.threads_per_allocation * self._wanted)
        self.set_allocations(self._wanted)
        if prepare:
            self.prepare()

    def prepare(self) -> None:
        """Start the preparing thread (:meth:`_prepare`), once."""
        with self._resize:
            if self._preparer is None and not self._stop.is_set():
                self._preparer = threading.Thread(target=self._prepare, daemon=True,
                                                  name=f"prepare-{self.deployment_id}")
                self._preparer.start()

    def set_allocations(self, count: int) -> None:
        """Run ``count`` allocation threads; extra ones finish their batch and stop."""
        with self._resize:
            self._wanted = max(0, count)
            if self._stop.is_set():
                return
            for allocation in range(self._wanted):
                thread = self._threads.get(allocation)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(target=self._loop, args=(allocation,), daemon=True,
                                              name=f"infer-{self.deployment_id}-{allocation}")
                    self._threads[allocation] = thread
                    thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work; a batch in progress is finished and answered first."""
        self._stop.set()
        with self._resize:
            preparer = self._preparer
        for thread in [*self._threads.values(), *([preparer] if preparer else [])]:
            thread.join(timeout)
        # Anything still recorded in flight was never answered: put it back for others.
        for allocation in list(self._threads):
            self._hand_back(allocation)
        self._threads.clear()

    def _prepare(self) -> None:
        """Beside the allocations, which serve meanwhile (planning with the default pass cost):
        pack the runtime's weights (with ``prepack``: workers/runtimes/prepack.py; the swap is
        atomic, a forward under way finishes on the weights it began with), then measure a
        forward pass's fixed cost on what the allocations now serve with, on their thread count.
        Neither the deploy nor the first requests wait for this (about 0.1 s and 0.2 s for MiniLM
        on one thread)."""
        torch.get_num_threads()  # torch's per-thread start, then our count (see _loop)
        torch.set_num_threads(self.threads_per_allocation)
        try:
            if self.prepack and not self._stop.is_set():
                try:
                    self.runtime.prepack(self.precision)
                except Exception:  # serve what was loaded
                    log.exception("deployment %s: could not pack the model's weights", self.deployment_id)
            if self._stop.is_set():
                return
            try:
                self.overhead_tokens = batching.calibrate(self.runtime, cpu=self.runtime.device == "cpu")
            except Exception:  # a runtime that cannot run the sample: the default model of costs
                log.exception("deployment %s: could not measure a forward pass", self.deployment_id)
                self.overhead_tokens = batching.DEFAULT_OVERHEAD_TOKENS
            log.info("deployment %s: a forward pass costs as much as %.0f tokens of a row",
                     self.deployment_id, self.overhead_tokens)
        finally:
            self.prepared.set()

    def _hand_back(self, allocation: int) -> None:
        inflight = self.keys.inflight(self.node_id, self.deployment_id, allocation)
        while self.client.lmove(inflight, self._queue, "RIGHT", "LEFT"):
            pass

    # --- the loop ------------------------------------------------------------------------
    def _loop(self, allocation: int) -> None:
        # torch's thread count is per thread, but a thread's first parallel operation sets it to
        # the last count any thread set: have that happen now, then set ours.
        torch.get_num_threads()
        torch.set_num_threads(self.threads_per_allocation)
        self.runtime.use_threads(self.threads_per_allocation)
        inflight = self.keys.inflight(self.node_id, self.deployment_id, allocation)
        while not self._stop.is_set() and allocation < self._wanted:
            try:
                max_requests = self.settings.get("mlcommons.predict.max_batch_size")
                items = self._take(keys=[self._queue, inflight], args=[max_requests])
                if not items:
                    waited = time.perf_counter()
                    first = self.client.blmove(self._queue, inflight, self.block_seconds, "LEFT", "RIGHT")
                    if first is None:
                        continue
                    items = [first]
                    # A request that woke an allocation which had waited on an empty queue is served
                    # at once: asking for more costs a round trip (about 0.1 ms) that finds nothing
                    # unless requests are arriving faster than that, when the wait was short.
                    if max_requests > 1 and time.perf_counter() - waited < FOLLOW_UP_SECONDS:
                        items += self._take(keys=[self._queue, inflight], args=[max_requests - 1])
                with self._busy_lock:
                    self._busy += 1
                try:
                    self._serve(items, inflight)
                finally:
                    with self._busy_lock:
                        self._busy -= 1
            except redis.exceptions.ConnectionError as exc:
                log.warning("deployment %s: Redis unavailable (%s); retrying", self.deployment_id, exc)
                self._stop.wait(0.5)
            except Exception:  # a bug must not kill the allocation
                log.exception("deployment %s: inference loop error", self.deployment_id)
                self._stop.wait(0.1)
        if not self._stop.is_set():
            self._hand_back(allocation)  # scaled down: nothing of ours stays in flight

    def _serve(self, items: list[bytes], inflight: str) -> None:
        taken_us = timing.now_us()
        now = taken_us // 1000
        requests, replies = [], {}
        for raw in items:
            req = dp.decode_request(raw)
            if req.deadline_ms and req.deadline_ms < now:
                expired = dp.Failure(req.request_id, dp.ERROR, 408, "the request expired in the queue")
                self._reply(replies, req, expired)
                with self.counters.lock:
                    self.counters.timeout_count += 1
            else:
                requests.append(req)
        for op in {req.op for req in requests}:
            self._serve_op(op, [req for req in requests if req.op == op], replies, taken_us)
        # The replies and the end of the in-flight record go in one round trip.
        dp.push_replies(self.client, replies, done=inflight)

    def _serve_op(self, op: str, requests: list[dp.Request], replies: dict, taken_us: int) -> None:
        """One forward plan for every request of one kind; each request gets its own rows back.
        ``taken_us``: when the batch was taken off the queue (microseconds of the wall clock)."""
        now = taken_us // 1000
        if op == dp.OP_TEXT_SIMILARITY:
            items = [(req.payload[0], text) for req in requests for text in req.payload[1]]
        else:
            items = [t for req in requests for t in req.payload]
        sizes = [len(req.texts) for req in requests]
        started = time.perf_counter()
        try:
            # A test's slow model: timed as inference, as the adaptive allocations scaler must see it.
            failpoints.hit("predict.batch")
            if op not in (dp.OP_TEXT_EMBEDDING, dp.OP_TEXT_SIMILARITY, dp.OP_SPARSE):
                raise ValueError(f"unknown operation [{op}]")
            if op == dp.OP_SPARSE and not hasattr(self.runtime, "to_sparse"):
                raise ValueError("this model does not produce sparse embeddings")
            if op == dp.OP_TEXT_SIMILARITY and not hasattr(self.runtime, "tokenize_pairs"):
                raise ValueError("this model does not score text pairs")
            forward_us = timing.now_us()
            out = self._forward(items)
        except Exception as exc:
            status = getattr(exc, "status", 500) if isinstance(getattr(exc, "status", None), int) else 500
            if status == 500 and not isinstance(exc, ValueError):
                log.exception("deployment %s: inference failed", self.deployment_id)
            else:
                status = 400 if status == 500 else status
            for req in requests:
                failure = dp.Failure(req.request_id, dp.ERROR, status, f"inference failed: {exc}")
                self._reply(replies, req, failure)
            with self.counters.lock:
                self.counters.error_count += len(requests)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        stamps = [taken_us, forward_us, timing.now_us()]
        start = 0
        for req, n in zip(requests, sizes):
            rows = out[start:start + n]
            start += n
            if op == dp.OP_SPARSE:
                maps = [self.runtime.to_sparse(row) for row in rows]
                self._reply(replies, req, dp.Sparse(req.request_id, dp.OK, maps))
            else:
                width = 1 if rows.ndim == 1 else rows.shape[1]
                data = np.ascontiguousarray(rows, np.float32).tobytes()
                if req.options and req.options.get("trace"):  # a benchmark asked (core/serving/timing.py)
                    self._reply(replies, req, dp.TracedVectors(req.request_id, dp.OK, n, width, data, stamps))
                else:
                    self._reply(replies, req, dp.Vectors(req.request_id, dp.OK, n, width, data))
        with self.counters.lock:
            self.counters.inference_count += len(items)
            self.counters.batches += 1
            self.counters.inference_ms_total += elapsed_ms
            self.counters.last_access_ms = now
            self.counters.batch_size.observe(len(items))
            self.counters.inference_seconds.observe(elapsed_ms / 1000)

    def _forward(self, items: list) -> np.ndarray:
        """``infer(items)`` on this allocation's threads, or, when idle allocations lend theirs
        and the wide lane is free, on the wide lane with theirs too."""
        threads = self._threads_now() if self.runtime.borrows_threads else self.threads_per_allocation
        if threads > self.threads_per_allocation:
            out = WIDE.run(threads, self.runtime, self.infer, items)
            if out is not None:
                return out
        return self.infer(items)

    def _threads_now(self) -> int:
        """This batch's torch threads: its allocation's, plus those of the deployment's allocations
        that are idle now (``mlcommons.predict.borrow_idle_threads``). An idle node runs a lone
        request on every core the deployment has (MiniLM, one document: 7.6 ms on two threads
        against 10.5 on one); a busy one runs each batch on one allocation's threads."""
        if not self.settings.get("mlcommons.predict.borrow_idle_threads"):
            return self.threads_per_allocation
        idle = max(0, self._wanted - self._busy)
        return self.threads_per_allocation * (1 + idle)

    @staticmethod
    def _reply(replies: dict, req: dp.Request, reply: dp.Reply) -> None:
        replies.setdefault(req.reply_key, []).append(dp.encode(reply))

    def infer(self, texts: list) -> np.ndarray:
        """Run ``texts`` (or text pairs, for a similarity model) in the forward passes that cost
        least (workers/batching.py: sorted by length, cut where padding would cost more than a
        pass), within the batch limits. They are tokenized once; each pass is re-padded to its
        own longest input. One output row per input, in the order given."""
        max_batch = self.settings.get("mlcommons.predict.max_batch_size")
        max_tokens = self.settings.get("mlcommons.predict.max_batch_tokens")
        with torch.inference_mode():
            enc = self.runtime.tokenize(texts)
            overhead = self.overhead_tokens if self.overhead_tokens is not None else batching.DEFAULT_OVERHEAD_TOKENS
            groups = batching.plan(enc.token_counts, max_batch, max_tokens, overhead)
            if len(groups) == 1:
                return self.runtime.forward(enc)
            out = None
            for rows in groups:
                result = self.runtime.forward(enc.select(rows))
                if out is None:
                    out = np.empty((len(texts),) + result.shape[1:], dtype=result.dtype)
                out[rows] = result
            return out
