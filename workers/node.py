"""A worker node: the long-lived process that holds models in memory and serves them.

It runs four things:
- an rq ``SimpleWorker`` (no fork: a model loaded by a deploy job stays in this process) on the
  node's own queue (deploys, undeploys), in the main thread;
- a second one on the shared queue (registers, which may download for minutes), in a thread
  (workers/shared_worker.py), so that a slow download never holds up a deploy or an undeploy;
- a heartbeat thread that announces the node (id, boot id, roles, memory, models held);
- one :class:`~workers.inference.DeploymentServer` per deployed model, whose allocation threads
  serve predictions from the deployment's Redis queue.
"""
from __future__ import annotations

import gc
import logging
import os
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.timeouts import JobTimeoutException

from mlcommons import failpoints
from mlcommons.core import departures, nodes
from mlcommons.core.context import Context
from mlcommons.core.serving import dataplane as dp
from mlcommons.core.serving import deploy as deploys
from mlcommons.core.serving import undeploy as undeploys
from mlcommons.core.serving import units
from mlcommons.core.serving.spec import ServingSpec
from mlcommons.core.tasks import allowed, jobs, replies
from mlcommons.errors import MLError, NodeError
from mlcommons.ids import new_id, new_node_id, now_ms
from mlcommons.store import keys as K
from mlcommons.types import FunctionName
from workers.fetch import chunk_bytes_read, fetch_and_extract, fetch_definition
from workers.inference import DeploymentServer
from workers.modelcache import ModelCache
from workers.remote import RemoteServer
from workers.runtimes import Runtime, load_runtime
from workers.shared_worker import ThreadWorker
from workers.shared_worker import serve as serve_shared_queue

log = logging.getLogger(__name__)

_current: "WorkerNode | None" = None

# How long a stopping node waits for its shared-queue worker's job (a download sees the stop at its
# next read); a job still running after it is closed by the liveness round that sees the node gone.
SHARED_STOP_SECONDS = 5.0


def current() -> "WorkerNode":
    """The node this process runs; rq job functions reach it through here."""
    if _current is None:
        raise RuntimeError("no worker node runs in this process")
    return _current


def stable_node_id(data_dir: Path) -> str:
    """The node id kept in the data folder, created on first start, so a restart is the same node."""
    path = data_dir / "node.id"
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    data_dir.mkdir(parents=True, exist_ok=True)
    value = new_node_id()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value + "\n")
    os.replace(tmp, path)
    return value


@dataclass
class Hosted:
    model_id: str
    sha256: str
    runtime: Runtime | None  # None for a remote model
    server: DeploymentServer | RemoteServer
    loaded_at: int = field(default_factory=now_ms)

    def stop(self) -> None:
        self.server.stop()
        if self.runtime is not None:
            self.runtime.close()


class DeployCancelled(NodeError):
    pass


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class WorkerNode:
    def __init__(self, ctx: Context, data_dir: Path, node_id: str | None = None, name: str | None = None,
                 boot_id: str | None = None):
        self.ctx = ctx
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.node_id = node_id or stable_node_id(self.data_dir)
        self.name = name or f"{socket.gethostname()}-{self.node_id[:6]}"
        self.boot_id = boot_id or new_id()
        self.device = _device()
        self.hosted: dict[str, Hosted] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        self._shared_stopped = threading.Event()
        self._shared_thread: threading.Thread | None = None
        self.started_at = now_ms()
        self.cache = ModelCache(self.data_dir / "models", ctx.settings.get("mlcommons.node.model_cache_bytes"))

    # --- life cycle -----------------------------------------------------------------------
    def run(self) -> None:
        global _current
        _current = self
        self._clean_start()
        self._heartbeat_once()
        self._heartbeat_thread = threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeat")
        self._heartbeat_thread.start()
        self._shared_thread = threading.Thread(target=serve_shared_queue, args=(self._shared_worker,
                                               self._shared_stopped), daemon=True, name="shared-queue")
        self._shared_thread.start()
        log.info("node %s (%s) ready on device %s", self.node_id, self.name, self.device)
        try:
            while True:
                worker = SimpleWorker([self.ctx.queue(self.ctx.keys.node_queue(self.node_id))],
                                      connection=self.ctx.redis, name=jobs.worker_name(self.node_id, self.boot_id),
                                      serializer=allowed.SERIALIZER, job_class=allowed.ProjectJob)
                worker.work(with_scheduler=False, logging_level="WARNING")
                # rq's loop also ends on an error it does not handle (Redis away for longer than the
                # client's retries, as in a slow failover); only a requested stop ends the node.
                # (SIGTERM/SIGINT: rq's handler dates the request, whether it stopped mid-job or idle;
                # one arriving during the pause raises StopRequested there)
                try:
                    if worker._shutdown_requested_date is not None or self._stopping.wait(1.0):
                        break
                except StopRequested:
                    break
                log.warning("node %s: its queue worker stopped (Redis unreachable?); starting it again", self.node_id)
        finally:
            self.shutdown()

    def _shared_worker(self, stopped: threading.Event) -> ThreadWorker:
        return ThreadWorker([self.ctx.queue(self.ctx.keys.shared_queue())], connection=self.ctx.redis,
                            name=jobs.worker_name(self.node_id, self.boot_id, jobs.SHARED), stopped=stopped,
                            serializer=allowed.SERIALIZER, job_class=allowed.ProjectJob)

    def stopping(self) -> bool:
        """The node is shutting down: long jobs (a download) stop at their next step."""
        return self._stopping.is_set()

    def _clean_start(self) -> None:
        """A node starts holding nothing: close the books on what an earlier run of this node id
        was doing when it stopped, and forget what it claimed to hold."""
        previous = self.ctx.redis.hget(self.ctx.keys.node(self.node_id), "boot_id")
        departures.run_ended(self.ctx, self.node_id, orjson.loads(previous) if previous else None,
                           "the node restarted while working on it", restarting=True)
        shutil.rmtree(self.data_dir / "work", ignore_errors=True)

    def shutdown(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._shared_stopped.set()
        if self._shared_thread is not None:
            self._shared_thread.join(SHARED_STOP_SECONDS)
        with self._lock:
            held = list(self.hosted.values())
            self.hosted.clear()
        try:
            for hosted in held:
                hosted.stop()
            if held:
                deploys.node_left(self.ctx, self.node_id, "the node stopped", fail_open_parts=False)
            nodes.leave(self.ctx, self.node_id, self.boot_id)
        except redis.exceptions.ConnectionError as exc:
            # Redis went first; the next start of this node id cleans up after us.
            log.warning("node %s stopped without Redis: %s", self.node_id, exc)
        log.info("node %s stopped", self.node_id)

    # --- heartbeat ------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        with self._lock:
            models = {m: {"loaded_at": h.loaded_at, "allocations": h.server.allocations,
                          "predictor": _predictor(h.runtime), **h.server.counters.snapshot()}
                      for m, h in self.hosted.items()}
        return {"name": self.name, "roles": [nodes.ML_ROLE], "host": socket.gethostname(), "pid": os.getpid(),
                "device": self.device, "started_at": self.started_at, "models": models,
                "memory": memory_info(), "chunk_bytes_read": chunk_bytes_read()}

    def _beat(self) -> bool:
        """One heartbeat; False when the cluster has fenced this run."""
        return nodes.heartbeat(self.ctx, self.node_id, self.boot_id, self.info(),
                               self.ctx.settings.get("mlcommons.node.heartbeat_expiry_seconds"))

    def _heartbeat_once(self) -> None:
        if not self._beat():
            self._start_again()

    def _announce(self) -> None:
        """A heartbeat now, off the loop's clock, after a change of what this node holds: the
        profile is built from heartbeats, and ML Commons' profile (which asks the nodes) shows a
        deploy or an undeploy as soon as it is answered. Fencing is left to the loop."""
        try:
            self._beat()
        except Exception as exc:  # Redis away for a moment: the loop's next beat carries it
            log.warning("heartbeat after a change failed: %s", exc)

    def _start_again(self) -> None:
        """Fencing: the cluster declared this run gone while it could not reach Redis (a network
        partition longer than the heartbeat expiry) and gave its work to others. What it holds
        may no longer be wanted, and its jobs were closed, so it keeps nothing: the process
        replaces itself with a fresh start of the same command (same node id, new boot id), which
        joins as any restarted node does and is given its models again by the redeploy."""
        log.warning("node %s: the cluster declared run %s gone while Redis was out of reach; "
                    "dropping everything it held and starting again", self.node_id, self.boot_id)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

    def _follow_serving_changes(self) -> None:
        """Resize allocation threads to what each hosted unit's ``_serving`` asks for now
        (an Elasticsearch ``_update`` or the adaptive allocations scaler changed it)."""
        with self._lock:
            held = list(self.hosted.items())
        for unit_id, hosted in held:
            _, doc = units.lookup(self.ctx.docs, unit_id)
            if doc is None or ServingSpec.of(doc) is None:
                continue
            allocations, _ = self.layout(doc)
            if allocations != hosted.server.allocations:
                log.info("deployment %s: %d -> %d allocations", unit_id, hosted.server.allocations, allocations)
                hosted.server.set_allocations(allocations)

    def _heartbeat_loop(self) -> None:
        interval = self.ctx.settings.get("mlcommons.node.heartbeat_interval_seconds")
        while not self._stopping.wait(interval):
            try:
                self._follow_serving_changes()
                self._heartbeat_once()
            except Exception as exc:  # Redis away for a moment: keep trying
                log.warning("heartbeat failed: %s", exc)

    # --- control-plane jobs ---------------------------------------------------------------
    def deploy(self, task_id: str, model_id: str) -> dict[str, Any]:
        """Run this node's part of a deploy task. ``model_id`` names the serving unit: a model, or
        an Elasticsearch deployment of one (mlcommons/core/serving/units.py); the node hosts it by that id."""
        if not deploys.mark_running(self.ctx, task_id, self.node_id):
            return {"node": self.node_id, "result": "skipped: this node's part of the task is over"}
        try:
            # A deploy takes the settings as they are when it starts (a PUT _cluster/settings
            # the instant before counts), not as last read: one read, once a deploy.
            self.ctx.settings.refresh(self.ctx.redis)
            index, unit = units.lookup(self.ctx.docs, model_id)
            source_id = units.model_id_of(index, model_id, unit) if unit else model_id
            model = unit if index == K.MODEL else self.ctx.docs.get(K.MODEL, source_id)
            if unit is None or model is None:
                raise NodeError("Failed to find model")
            with self._lock:
                hosted = self.hosted.get(model_id)
            if hosted is not None and hosted.sha256 == model.get("model_content_hash_value"):
                result = "already deployed"
            elif model.get("algorithm") == FunctionName.REMOTE.value:
                self._check_capacity(model_id)
                self._install_remote(task_id, model_id, model)
                result = "deployed"
            else:
                self._check_capacity(model_id)
                self._install(task_id, model_id, source_id, model, unit)
                result = "deployed"
            if not deploys.part_is_open(self.ctx, task_id, self.node_id):
                # Undeployed (or timed out) while we were loading: do not keep what nobody wants.
                if result == "deployed":
                    self._drop(model_id)
                raise DeployCancelled("the deploy was cancelled while the node was loading the model")
        except Exception as exc:
            if isinstance(exc, JobTimeoutException):
                limit = self.ctx.settings.get("plugins.ml_commons.ml_task_timeout_in_seconds")
                message = f"timed out after {limit} seconds"
            elif isinstance(exc, NodeError):
                message = str(exc)
            else:
                message = f"{type(exc).__name__}: {exc}"
            with self._lock:
                holds = model_id in self.hosted
            deploys.report_deploy(self.ctx, task_id, model_id, self.node_id, message, holds_model=holds)
            if isinstance(exc, DeployCancelled):
                return {"node": self.node_id, "result": message}
            raise
        self._announce()
        deploys.report_deploy(self.ctx, task_id, model_id, self.node_id, "", holds_model=True)
        with self._lock:
            hosted = self.hosted.get(model_id)
        if hosted is not None:
            hosted.server.prepare()  # pack the weights and measure a pass, while it serves
        return {"node": self.node_id, "result": result}

    def _check_capacity(self, model_id: str) -> None:
        settings = self.ctx.settings
        with self._lock:
            others = [m for m in self.hosted if m != model_id]
        if len(others) >= settings.get("plugins.ml_commons.max_model_on_node"):
            raise NodeError("Exceed max local model per node limit")
        threshold = settings.get("plugins.ml_commons.native_memory_threshold")
        if threshold < 100 and memory_info()["used_percent"] > threshold:
            raise NodeError("Native Memory Circuit Breaker is open, please check your resources!")
        free = shutil.disk_usage(self.data_dir).free
        if free < settings.get("plugins.ml_commons.disk_free_space_threshold"):
            raise NodeError("Disk Circuit Breaker is open, please check your resources!")

    def _install(self, task_id: str, model_id: str, source_id: str, model: dict, unit: dict) -> None:
        total = int(model.get("total_chunks") or 0)

        def on_chunk(number: int) -> None:
            deploys.set_progress(self.ctx, task_id, self.node_id, f"downloading {number + 1}/{total}")
            failpoints.hit("fetch.chunk")
            if not deploys.part_is_open(self.ctx, task_id, self.node_id):
                raise DeployCancelled("the deploy was cancelled while the node was downloading the model")

        sha256 = (model.get("model_content_hash_value") or "").lower()
        started = time.perf_counter()
        cached = self.cache.get(sha256)
        folder = None
        fetched = started
        try:
            if cached is None:
                fetch = fetch_definition if model.get("_es") else fetch_and_extract
                folder = fetch(self.ctx.blobs, source_id, model, self.data_dir / "work", on_chunk=on_chunk)
                cached = self.cache.put(sha256, folder / "model")
                fetched = time.perf_counter()
            deploys.set_progress(self.ctx, task_id, self.node_id,
                                 "loading" if folder is not None else "loading from the node's model cache")
            failpoints.hit("deploy.load")
            try:
                runtime = self._load(cached or folder / "model", model)
            except Exception:
                self.cache.drop(sha256)  # next time from the model store, not from this copy
                raise
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        loaded = time.perf_counter()
        log.info("model %s: %s in %.3f s, loaded in %.3f s", model_id,
                 "fetched and extracted" if folder is not None else "found in the node's model cache",
                 fetched - started, loaded - fetched)
        allocations, threads = self.layout(unit)
        server = DeploymentServer(self.ctx.redis, self.ctx.keys, self.ctx.settings, self.node_id, model_id,
                                  runtime, allocations=allocations, threads_per_allocation=threads,
                                  prepack=bool(self.ctx.settings.get("mlcommons.deploy.prepack_weights")),
                                  precision=self.ctx.settings.get("mlcommons.deploy.linear_precision"))
        with self._lock:
            old = self.hosted.pop(model_id, None)
            self.hosted[model_id] = Hosted(model_id, model.get("model_content_hash_value", ""), runtime, server)
        server.start(prepare=False)  # deploy() has it prepare once the deploy has answered
        deploys.set_progress(self.ctx, task_id, self.node_id, "serving")
        if old is not None:
            old.stop()

    def _install_remote(self, task_id: str, model_id: str, model: dict) -> None:
        """A remote model: nothing to fetch; its connector (its own, or the one it names) with the
        credential opened by this node's master key, and a server that calls the provider."""
        connector = model.get("connector")
        if connector is None:
            connector = self.ctx.docs.get(K.CONNECTOR, model.get("connector_id") or "")
            if connector is None:
                raise NodeError(f"Failed to find connector:{model.get('connector_id')}")
        try:
            credential = self.ctx.secrets.open(connector.get("credential") or {})
        except MLError as exc:
            raise NodeError(f"cannot open the connector's credential on node {self.node_id}: {exc.reason}") from None
        server = RemoteServer(self.ctx.redis_url, self.ctx.keys, self.ctx.settings, self.node_id, model_id,
                              connector, credential, client_name=self.ctx.client_name)
        with self._lock:
            old = self.hosted.pop(model_id, None)
            self.hosted[model_id] = Hosted(model_id, model.get("model_content_hash_value", ""), None, server)
        server.start()
        deploys.set_progress(self.ctx, task_id, self.node_id, "serving")
        if old is not None:
            old.stop()

    def _load(self, path: Path, model: dict) -> Runtime:
        """The runtime, loaded and warmed up; its weights are packed later, by its server's
        preparing thread once the deploy has answered (DeploymentServer ``prepack``)."""
        if model.get("_es"):  # uploaded through Elasticsearch's API, traced as Eland traces
            from workers.runtimes.eland import load_eland_runtime

            return load_eland_runtime(path, model["_es"]["inference_config"], device=self.device, prepack=False)
        return load_runtime(path, model, device=self.device, prepack=False)

    def layout(self, model: dict) -> tuple[int, int]:
        """(allocations, threads per allocation) for a deployment on this node: the deployment's
        own, else the settings, where 0 allocations means one per usable core. An Elasticsearch
        deployment's own 0 is meant: scaled to zero, it stays loaded and runs no allocation."""
        serving = ServingSpec.of(model) or ServingSpec()
        threads = int(serving.threads_per_allocation
                      or self.ctx.settings.get("mlcommons.deploy.threads_per_allocation"))
        if serving.es and serving.number_of_allocations is not None:
            return max(0, int(serving.number_of_allocations)), threads
        allocations = int(serving.number_of_allocations
                          or self.ctx.settings.get("mlcommons.deploy.number_of_allocations"))
        if allocations <= 0:
            allocations = max(1, usable_cores() // threads)
        return allocations, threads

    def _drop(self, model_id: str) -> bool:
        with self._lock:
            hosted = self.hosted.pop(model_id, None)
        if hosted is None:
            return False
        hosted.stop()
        return True

    def undeploy(self, request_id: str, model_ids: list[str]) -> dict[str, Any]:
        stats = {}
        dropped = []
        for model_id in model_ids:
            if self._drop(model_id):
                dropped.append(model_id)
                stats[model_id] = "undeployed"
            else:
                stats[model_id] = "not_found"
        if dropped:
            self._announce()
            undeploys.report(self.ctx, self.node_id, dropped)
            for model_id in dropped:
                if self.ctx.redis.hget(self.ctx.keys.route(model_id), "workers") in (b"0", None):
                    dp.drain_with_error(self.ctx.redis, self.ctx.keys.predict_queue(model_id), 400,
                                        "Model not ready yet. Please deploy the model first.")
            gc.collect()
        reply = {"node": self.node_id, "stats": stats}
        replies.send(self.ctx.redis, self.ctx.keys.job_reply(request_id), reply)
        return reply


def _predictor(runtime: Runtime | None) -> str:
    """What serves a deployment, for the profile API: the runtime's class, and how its linear
    layers run once its server has packed them (workers/runtimes/prepack.py)."""
    if runtime is None:
        return "RemoteModel"
    name, precision = type(runtime).__name__, runtime.prepacked_precision
    return f"{name} (linear layers packed, {precision})" if precision else name


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def memory_info() -> dict[str, Any]:
    """Host memory from /proc/meminfo and this process's resident size."""
    total = available = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                elif line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = 0
    try:
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pass
    used = (total - available) / total * 100 if total else 0.0
    return {"total_bytes": total, "available_bytes": available, "used_percent": round(used, 1), "rss_bytes": rss}
