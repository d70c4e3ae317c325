"""The benchmark suite: one command that starts its own stack and measures, in the same run,
each served figure against its in-process baseline.

    .venv/bin/python bench/run.py            # about 10 minutes on 2 cores
    .venv/bin/python bench/run.py --quick    # a smaller run, to see that it all works

Figures (each printed with its ratio to the baseline measured in this run):
  (a) in-process ceiling: sentence-transformers encode at batch 32, and the deployed runtime
      called directly at batch 32;
  (b) served throughput through HTTP _predict, 1/8/32/64 concurrent clients x 1 and 16 docs;
  (c) latency p50/p99 of one-doc requests on an idle server vs the in-process forward, and the
      median of each hop (mlcommons.predict.trace_timings, X-MLCommons-Timing); then in turns
      (bench/idle.py): one forward in process, the same document served, the next, so that both
      sides see the same moment of the machine;
  (d) deploy time, POST _deploy to COMPLETED, vs loading the same archive from local disk: cold
      (read from the model store) and from the node-local model cache; and a cold deploy to its
      first prediction's answer (the node packs the weights and calibrates meanwhile);
  (e) control-plane rate: deploy and undeploy tasks per second on a tiny model, vs rq's own
      round trip for a job that does nothing;
  (f) one worker node vs two on one deployment (on 2 cores expect no gain; nothing may be lost
      or answered twice);
  (g) allocations as threads in one process vs a process per allocation: docs/s and memory;
  (h) the same MiniLM exported as ONNX and served by onnxruntime, vs sentence-transformers and
      vs onnxruntime called directly at batch 32;
  (i) a peer started in the same run and loaded by the same load generator (bench/peer.py):
      infinity-emb in its own virtual environment, or the naive one-request-one-forward server
      where infinity-emb does not install; 32 clients x 1 doc and idle latency.
  (j) mlcommons.deploy.linear_precision: bfloat16 (opt-in), where the CPU multiplies bfloat16
      natively: served 32 clients x 1 doc and 1 x 1 against sentence-transformers and against
      float32 served in the same run, and the cosine of its vectors to float32's.
Every served figure also gives the CPU milliseconds each request cost in each process (worker,
API, Redis, the load generator; read from /proc) and the mean batch the worker ran.
Writes bench/results/report.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import redis  # noqa: E402
from rq import Queue  # noqa: E402

from bench.chaos import Api, wait  # noqa: E402
from bench.processes import StackCPU, settled_counters  # noqa: E402
from bench.workload import sentences  # noqa: E402
from mlcommons.core.tasks.allowed import SERIALIZER
from mlcommons.stack.procutil import free_port
from mlcommons.store.keys import Keys

ML = "/_plugins/_ml"
WARMUP = 64  # bench/loadgen.py's default warm-up, in requests
KEYS = Keys("mlc")  # the default mlcommons.redis.key_prefix
MINILM = {"name": "huggingface/sentence-transformers/all-MiniLM-L6-v2", "version": "1.0.1",
          "model_format": "TORCH_SCRIPT"}
MINILM_ONNX = {**MINILM, "model_format": "ONNX"}


def sh(args: list[str], **kw) -> dict:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=True, **kw)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Stack:
    def __init__(self, workdir: Path, env: dict):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The control-plane figure registers an archive of its own by file:// from the work folder.
        # The timing marks cost a few microseconds a request; (c) breaks the latency down with them.
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLCOMMONS_MLCOMMONS_MODEL_STORE_URL_FILE_ROOTS": str(workdir),
                    "MLCOMMONS_MLCOMMONS_PREDICT_TRACE_TIMINGS": "true", **env}
        self.log = open(workdir / "serve.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "mlcommons", "serve", "--port", str(self.port),
                                      "--workers", "1", "--data-dir", str(workdir / "data"), "--dashboard-port",
                                      "0"], cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.api = Api(self.url)
        self.extra: list[subprocess.Popen] = []
        if not wait(lambda: self.api.call("GET", "/")[0] == 200, 120):
            raise RuntimeError(f"the stack did not start; see {workdir / 'serve.log'}")
        # serve keeps the embedded Redis' URL (with its password) in a 0600 file; the log shows it redacted
        self.redis_url = (workdir / "data" / "redis" / "url").read_text().strip()
        self.redis = redis.Redis.from_url(self.redis_url)
        self.cpu = StackCPU(self.proc.pid)

    def add_worker(self) -> None:
        log = open(self.workdir / "worker-extra.log", "wb")
        self.extra.append(subprocess.Popen([sys.executable, "-m", "mlcommons", "worker", "--redis-url",
                                            self.redis_url, "--data-dir", str(self.workdir / "extra-node")],
                                           cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def stop(self) -> None:
        for proc in self.extra:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(120)


def finished(api: Api, task_id: str) -> dict | None:
    task = api.ok("GET", f"{ML}/tasks/{task_id}")
    return task if task["state"] not in ("CREATED", "RUNNING") else None


def register_minilm(api: Api, body: dict = MINILM) -> str:
    task_id = api.ok("POST", f"{ML}/models/_register", body)["task_id"]
    task = wait(lambda: finished(api, task_id), 300, 0.05)
    return task["model_id"]


def deploy_and_wait(api: Api, model_id: str, poll: float = 0.005) -> tuple[float, dict]:
    started = time.perf_counter()
    task_id = api.ok("POST", f"{ML}/models/{model_id}/_deploy")["task_id"]
    task = wait(lambda: finished(api, task_id), 300, poll)
    return time.perf_counter() - started, task


def dump_archive(redis_url: str, model_id: str, model: dict, path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    with open(path, "wb") as out:
        for n in range(model["total_chunks"]):
            out.write(client.get(KEYS.chunk(model_id, n)))


def loadgen(url: str, model_id: str, concurrency: int, per_request: int, docs: int, peer: bool = False) -> dict:
    target = ["/embeddings", "--api", "openai", "--model", model_id] if peer else [f"{ML}/models/{model_id}/_predict"]
    return sh(["bench/loadgen.py", url, *target, "--concurrency", str(concurrency),
               "--docs-per-request", str(per_request), "--total-docs", str(docs)], timeout=1800)


def peer_figures(workdir: Path, prefer: str, docs: int, latency_docs: int) -> dict:
    """(i): the peer's 32 x 1 throughput and idle latency, measured as ours are."""
    from bench import peer as peers

    server, how = peers.start(free_port(), workdir, prefer)
    if server is None:
        return {"peer": None, "how": how}
    try:
        return {"peer": server.kind, "how": how,
                "served": loadgen(server.url, peers.MODEL_NAME, 32, 1, docs, peer=True),
                "latency": loadgen(server.url, peers.MODEL_NAME, 1, 1, latency_docs, peer=True)}
    finally:
        server.stop()


def measured_load(stack: "Stack", model_id: str, concurrency: int, per_request: int, docs: int) -> dict:
    """A loadgen run with what it cost: CPU ms per request in each process, and the mean batch."""
    counters = settled_counters(stack.redis, KEYS, model_id)
    before = stack.cpu.snapshot()
    result = loadgen(stack.url, model_id, concurrency, per_request, docs)
    after = stack.cpu.snapshot()
    done = settled_counters(stack.redis, KEYS, model_id)
    # the warm-up requests are in the CPU and the counters too
    requests = result["requests"] + -(-WARMUP // per_request)
    result["cpu_ms_per_request"] = {**StackCPU.per_request(before, after, requests),
                                    "loadgen": result["loadgen_cpu_ms_per_request"]}
    batches = done[1] - counters[1]
    result["mean_batch"] = round((done[0] - counters[0]) / batches, 2) if batches else None
    return result


def inference_total(api: Api, model_id: str) -> int:
    profile = api.ok("GET", f"{ML}/profile/models/{model_id}")
    return sum(entry["model_inference_stats"]["count"]
               for node in profile.get("nodes", {}).values() for m, entry in node["models"].items())


def settled_total(api: Api, model_id: str) -> int:
    """The inference count once the heartbeats have caught up: two reads a few heartbeats apart agree."""
    last = inference_total(api, model_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(2.5)
        now = inference_total(api, model_id)
        if now == last:
            return now
        last = now
    return last


def onnx_figures(stack: Stack, workdir: Path, torch_model_id: str, docs: int, latency_docs: int) -> dict:
    """MiniLM as ONNX: served 32 x 1 and idle latency, against onnxruntime in process. The
    TorchScript deployment is undeployed meanwhile, so that the two do not share the cores."""
    api = stack.api
    api.ok("POST", f"{ML}/models/{torch_model_id}/_undeploy")
    model_id = register_minilm(api, MINILM_ONNX)
    _, task = deploy_and_wait(api, model_id)
    assert task["state"] == "COMPLETED", task
    model = api.ok("GET", f"{ML}/models/{model_id}")
    archive = workdir / "minilm-onnx.zip"
    dump_archive(stack.redis_url, model_id, model, archive)
    base = sh(["bench/inprocess.py", str(archive), "--model-config", json.dumps(model["model_config"]),
               "--format", "ONNX", "--runtime-only", "--docs", str(docs), "--latency-docs", str(latency_docs)],
              timeout=1800)
    served = measured_load(stack, model_id, 32, 1, docs)
    latency = loadgen(stack.url, model_id, 1, 1, latency_docs)
    api.ok("POST", f"{ML}/models/{model_id}/_undeploy")
    _, task = deploy_and_wait(api, torch_model_id)
    assert task["state"] == "COMPLETED", task
    return {"in_process": base, "served": served, "latency": latency}


def predictors(api: Api, model_id: str) -> list[str]:
    nodes = api.ok("GET", f"{ML}/profile/models/{model_id}").get("nodes", {})
    return [n["models"][model_id]["predictor"] for n in nodes.values() if model_id in n["models"]]


def bfloat16_figures(stack: Stack, model_id: str, docs: int, latency_docs: int) -> dict:
    """The deployment again with its linear layers packed in bfloat16 (a dynamic setting, read by
    the next deploy): served 32 x 1 and 1 x 1 against float32 served just before, and how close
    its vectors stay. Skipped where the node packs in float32 (no native bfloat16)."""
    api, name = stack.api, "mlcommons.deploy.linear_precision"
    texts = sentences(64, seed=3)
    float32 = {"served": measured_load(stack, model_id, 32, 1, docs),
               "latency": loadgen(stack.url, model_id, 1, 1, latency_docs)}
    reference = np.array([r["output"][0]["data"] for r in api.ok(
        "POST", f"{ML}/models/{model_id}/_predict", {"text_docs": texts})["inference_results"]], dtype=np.float32)
    api.ok("PUT", "/_cluster/settings", {"transient": {name: "bfloat16"}})
    try:
        api.ok("POST", f"{ML}/models/{model_id}/_undeploy")
        _, task = deploy_and_wait(api, model_id)
        assert task["state"] == "COMPLETED", task
        found = wait(lambda: (p := predictors(api, model_id)) and all("packed" in x for x in p) and p, 60, 0.1)
        if not found or not all("bfloat16" in x for x in found):
            return {"skipped": f"the node packed its linear layers as {found}: no native bfloat16 here"}
        got = np.array([r["output"][0]["data"] for r in api.ok(
            "POST", f"{ML}/models/{model_id}/_predict", {"text_docs": texts})["inference_results"]], dtype=np.float32)
        cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
        narrow = {"served": measured_load(stack, model_id, 32, 1, docs),
                  "latency": loadgen(stack.url, model_id, 1, 1, latency_docs)}
    finally:
        api.ok("PUT", "/_cluster/settings", {"transient": {name: None}})
        api.ok("POST", f"{ML}/models/{model_id}/_undeploy")
        _, task = deploy_and_wait(api, model_id)
        assert task["state"] == "COMPLETED", task
    return {"float32": float32, "bfloat16": narrow, "predictor": found[0],
            "cosine_to_float32": {"min": round(float(cosine.min()), 6), "mean": round(float(cosine.mean()), 6)}}


def control_plane(stack: Stack, cycles: int) -> dict:
    """Deploy/undeploy cycles of a tiny model, and rq's floor: ping jobs through the same worker."""
    from tests.modelkit import tiny_archive

    api = stack.api
    zip_path, info = tiny_archive(stack.workdir / "tiny")
    api.ok("PUT", "/_cluster/settings", {"persistent": {"plugins.ml_commons.allow_registering_model_via_url": True}})
    body = {"name": "tiny", "model_format": "TORCH_SCRIPT", "function_name": "TEXT_EMBEDDING",
            "model_content_hash_value": info["model_content_hash_value"], "model_config": info["model_config"],
            "url": zip_path.resolve().as_uri()}
    task_id = api.ok("POST", f"{ML}/models/_register", body)["task_id"]
    model_id = wait(lambda: finished(api, task_id), 120, 0.01)["model_id"]
    started = time.perf_counter()
    for _ in range(cycles):
        _, task = deploy_and_wait(api, model_id, poll=0.002)
        assert task["state"] == "COMPLETED", task
        api.ok("POST", f"{ML}/models/{model_id}/_undeploy")
    elapsed = time.perf_counter() - started
    node = api.ok("GET", "/_nodes")["nodes"]
    queue = Queue(KEYS.node_queue(next(iter(node))), connection=redis.Redis.from_url(stack.redis_url),
                  serializer=SERIALIZER)  # jobs are JSON (core/tasks/allowed.py)
    pings = cycles * 2
    started = time.perf_counter()
    for _ in range(pings):
        job = queue.enqueue("tasks.ping.ping")
        deadline = time.monotonic() + 30
        while job.get_status(refresh=True) != "finished" and time.monotonic() < deadline:
            time.sleep(0.002)
    ping_elapsed = time.perf_counter() - started
    return {"tasks_per_second": round(cycles * 2 / elapsed, 2),
            "rq_noop_jobs_per_second": round(pings / ping_elapsed, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer documents and rounds")
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "report.json"))
    parser.add_argument("--only", default="abcdefghij",
                        help="the figures to run, as letters (a, the baselines, always runs): --only ad")
    parser.add_argument("--peer", choices=["infinity", "naive", "none"], default="infinity",
                        help="the peer of figure (i); infinity falls back to naive when it does not install")
    args = parser.parse_args()
    docs = 400 if args.quick else 2000
    latency_docs = 60 if args.quick else 300
    workdir = Path(tempfile.mkdtemp(prefix="mlcommons-bench-"))
    stack = Stack(workdir, {})
    report: dict = {"quick": args.quick, "docs": docs}
    want = set(args.only) | {"a"}
    try:
        api = stack.api
        model_id = register_minilm(api)
        _, task = deploy_and_wait(api, model_id)
        assert task["state"] == "COMPLETED", task
        model = api.ok("GET", f"{ML}/models/{model_id}")
        archive = workdir / "minilm.zip"
        dump_archive(stack.redis_url, model_id, model, archive)

        print("(a) in-process baselines ...", flush=True)
        base = sh(["bench/inprocess.py", str(archive), "--model-config", json.dumps(model["model_config"]),
                   "--docs", str(docs), "--latency-docs", str(latency_docs)], timeout=1800)
        report["in_process"] = base

        if "b" in want:
            print("(b) served throughput ...", flush=True)
            served = []
            for per_request in (1, 16):
                for concurrency in (1, 8, 32, 64):
                    n = docs if concurrency > 1 else max(per_request * 20, docs // 4)
                    result = measured_load(stack, model_id, concurrency, per_request, n)
                    served.append(result)
                    print(f"    {concurrency:>2} clients x {per_request:>2} docs: {result['docs_per_second']:7.1f} docs/s, "
                          f"mean batch {result['mean_batch']}, CPU ms/request {result['cpu_ms_per_request']}", flush=True)
            report["served"] = served

        if "c" in want:
            print("(c) idle latency ...", flush=True)
            report["latency"] = loadgen(stack.url, model_id, 1, 1, latency_docs)
            report["latency_in_turns"] = sh(["bench/idle.py", stack.url, model_id, str(archive), "--model-config",
                                             json.dumps(model["model_config"]), "--docs", str(latency_docs)],
                                            timeout=1800)

        if "h" in want:
            print("(h) ONNX ...", flush=True)
            report["onnx"] = onnx_figures(stack, workdir, model_id, docs, latency_docs)

        if "d" in want:
            print("(d) deploy time ...", flush=True)
            cold, warm, first = [], [], []
            for _ in range(3):
                for use_cache, times in ((False, cold), (True, warm)):
                    api.ok("POST", f"{ML}/models/{model_id}/_undeploy")
                    if not use_cache:  # empty the node-local model caches: the deploy reads the store
                        for cache in workdir.glob("**/models"):
                            shutil.rmtree(cache, ignore_errors=True)
                    started = time.perf_counter()
                    elapsed, task = deploy_and_wait(api, model_id)
                    assert task["state"] == "COMPLETED", task
                    times.append(elapsed)
                    if not use_cache:  # what a client sees: the first answer after a cold deploy
                        api.ok("POST", f"{ML}/models/{model_id}/_predict",
                               {"text_docs": ["the first document after a deploy"]})
                        first.append(time.perf_counter() - started)
            report["deploy_seconds"] = round(statistics.median(cold), 3)
            report["deploy_cached_seconds"] = round(statistics.median(warm), 3)
            report["deploy_first_prediction_seconds"] = round(statistics.median(first), 3)

        if "e" in want:
            print("(e) control plane ...", flush=True)
            report["control_plane"] = control_plane(stack, 5 if args.quick else 20)

        if "j" in want:
            print("(j) bfloat16 linear layers ...", flush=True)
            report["bfloat16"] = bfloat16_figures(stack, model_id, docs, latency_docs)  # one node: before (f)

        if "f" in want:
            print("(f) one node vs two ...", flush=True)
            one = next((r for r in report.get("served", []) if r["concurrency"] == 32 and r["docs_per_request"] == 1),
                       None) or loadgen(stack.url, model_id, 32, 1, docs)
            stack.add_worker()
            wait(lambda: api.ok("GET", f"{ML}/models/{model_id}")["current_worker_node_count"] == 2, 180, 0.2)
            before = settled_total(api, model_id)
            two = loadgen(stack.url, model_id, 32, 1, docs)
            # The counts travel in heartbeats: wait until they account for what was sent, or a deadline.
            sent = docs + WARMUP  # loadgen's warm-up requests are computed too
            computed = wait(lambda: (n := inference_total(api, model_id) - before) >= sent and n, 15, 0.2) \
                or inference_total(api, model_id) - before
            report["two_nodes"] = {"one_node_docs_per_second": one["docs_per_second"],
                                   "two_nodes_docs_per_second": two["docs_per_second"],
                                   "docs_sent": sent, "docs_computed": computed,
                                   "every_request_answered_once": two["every_request_answered_once"],
                                   "all_ok": two["all_ok"]}

        if "g" in want:
            print("(g) allocations as threads or processes (in-process) ...", flush=True)
            report["allocations"] = sh(["bench/allocations.py", str(archive), "--model-config",
                                        json.dumps(model["model_config"]), "--docs", str(docs // 2 if args.quick else 1600)],
                                       timeout=1800)
    finally:
        stack.stop()
    if args.peer != "none" and "i" in want:  # after the stack stopped: the peer has the cores to itself, as we had
        print("(i) peer ...", flush=True)
        report["peer"] = peer_figures(workdir, args.peer, docs, latency_docs)
    summary = summarize(report)
    report["summary"] = summary
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2))
    print()
    for line in summary["lines"]:
        print(line)
    print(f"\nreport written to {args.report}")
    return 0


def summarize(report: dict) -> dict:
    """The table printed at the end: each figure that ran, with its baseline and ratio."""
    base = report["in_process"]
    st, rt = base["st_encode_docs_per_second"], base["runtime_docs_per_second"]
    lines = [f"{'figure':<44} {'value':>12} {'baseline':>12} {'ratio':>7}",
             f"{'(a) runtime direct, batch 32 (docs/s)':<44} {rt:>12.1f} {st:>12.1f} {rt / st:>7.2f}  vs ST encode"]
    for r in report.get("served", []):
        name = f"(b) served {r['concurrency']:>2} clients x {r['docs_per_request']:>2} docs (docs/s)"
        lines.append(f"{name:<44} {r['docs_per_second']:>12.1f} {rt:>12.1f} {r['docs_per_second'] / rt:>7.2f}"
                     f"  vs runtime; {r['docs_per_second'] / st:.2f} vs ST")
    inproc = base["runtime_latency_ms"]
    if "latency" in report:
        lat = report["latency"]["latency_ms"]
        lines.append(f"{'(c) one-doc latency p50 (ms)':<44} {lat['p50']:>12.2f} {inproc['p50']:>12.2f} "
                     f"{lat['p50'] / inproc['p50']:>7.2f}  added {lat['p50'] - inproc['p50']:.2f} ms")
        lines.append(f"{'(c) one-doc latency p99 (ms)':<44} {lat['p99']:>12.2f} {inproc['p99']:>12.2f} "
                     f"{lat['p99'] / inproc['p99']:>7.2f}  added {lat['p99'] - inproc['p99']:.2f} ms")
        for hop, ms in report["latency"].get("hops_ms_p50", {}).items():
            lines.append(f"      {hop:<38} {ms:>12.3f}  (p50 of each hop, ms)")
    turns = report.get("latency_in_turns")
    if turns:
        lines.append(f"{'(c) in turns: served / in-process p50 (ms)':<44} {turns['served_ms']['p50']:>12.2f} "
                     f"{turns['in_process_ms']['p50']:>12.2f} "
                     f"{turns['served_ms']['p50'] / turns['in_process_ms']['p50']:>7.2f}  added "
                     f"{turns['added_ms']['p50']:.2f} ms (p50 of the pairs); served forward - in-process "
                     f"{turns.get('served_forward_minus_in_process_ms_p50', 'n/a')} ms")
    local = base["local_load_seconds"]
    if "deploy_seconds" in report:
        dep, warm = report["deploy_seconds"], report["deploy_cached_seconds"]
        lines.append(f"{'(d) deploy, POST to COMPLETED (s)':<44} {dep:>12.3f} {local:>12.3f} {dep / local:>7.2f}"
                     "  vs local load")
        lines.append(f"{'(d) deploy from the node cache (s)':<44} {warm:>12.3f} {local:>12.3f} {warm / local:>7.2f}"
                     "  vs local load")
        if "deploy_first_prediction_seconds" in report:
            first = report["deploy_first_prediction_seconds"]
            lines.append(f"{'(d) cold deploy, POST to a first answer (s)':<44} {first:>12.3f} {local:>12.3f} "
                         f"{first / local:>7.2f}  vs local load (the node packs and calibrates meanwhile)")
    if "control_plane" in report:
        cp = report["control_plane"]
        lines.append(f"{'(e) deploy+undeploy tasks per second':<44} {cp['tasks_per_second']:>12.2f} "
                     f"{cp['rq_noop_jobs_per_second']:>12.2f} "
                     f"{cp['tasks_per_second'] / cp['rq_noop_jobs_per_second']:>7.2f}  vs rq no-op jobs")
    if "two_nodes" in report:
        two = report["two_nodes"]
        lines.append(f"{'(f) two nodes, 32 clients x 1 doc (docs/s)':<44} {two['two_nodes_docs_per_second']:>12.1f} "
                     f"{two['one_node_docs_per_second']:>12.1f} "
                     f"{two['two_nodes_docs_per_second'] / two['one_node_docs_per_second']:>7.2f}  vs one node; "
                     f"computed {two['docs_computed']}/{two['docs_sent']}, "
                     f"answered once: {two['every_request_answered_once']}")
    onnx = report.get("onnx")
    if onnx:
        ort, served = onnx["in_process"]["runtime_docs_per_second"], onnx["served"]["docs_per_second"]
        lines.append(f"{'(h) ONNX runtime direct, batch 32 (docs/s)':<44} {ort:>12.1f} {st:>12.1f} {ort / st:>7.2f}"
                     "  vs ST encode")
        lines.append(f"{'(h) ONNX served 32 clients x 1 doc (docs/s)':<44} {served:>12.1f} {ort:>12.1f} "
                     f"{served / ort:>7.2f}  vs ONNX direct; {served / st:.2f} vs ST")
        lat, o_inproc = onnx["latency"]["latency_ms"], onnx["in_process"]["runtime_latency_ms"]
        lines.append(f"{'(h) ONNX one-doc latency p50 (ms)':<44} {lat['p50']:>12.2f} {o_inproc['p50']:>12.2f} "
                     f"{lat['p50'] / o_inproc['p50']:>7.2f}  added {lat['p50'] - o_inproc['p50']:.2f} ms")
    peer = report.get("peer")
    if peer and peer.get("peer"):
        theirs = peer["served"]["docs_per_second"]
        ours = next((r for r in report.get("served", []) if r["concurrency"] == 32 and r["docs_per_request"] == 1),
                    None)
        vs = (f"; ours {ours['docs_per_second'] / st:.2f} vs ST, {ours['docs_per_second'] / theirs:.2f} x the peer"
              if ours else "")
        lines.append(f"{'(i) peer 32 clients x 1 doc (docs/s)':<44} {theirs:>12.1f} {st:>12.1f} {theirs / st:>7.2f}"
                     f"  vs ST ({peer['peer']}){vs}")
        lat = peer["latency"]["latency_ms"]
        lines.append(f"{'(i) peer one-doc latency p50 (ms)':<44} {lat['p50']:>12.2f} {inproc['p50']:>12.2f} "
                     f"{lat['p50'] / inproc['p50']:>7.2f}  added {lat['p50'] - inproc['p50']:.2f} ms")
    elif peer:
        lines.append(f"(i) no peer: {peer['how']}")
    bf16 = report.get("bfloat16")
    if bf16 and "skipped" in bf16:
        lines.append(f"(j) bfloat16: {bf16['skipped']}")
    elif bf16:
        narrow, wide = bf16["bfloat16"]["served"]["docs_per_second"], bf16["float32"]["served"]["docs_per_second"]
        lines.append(f"{'(j) bfloat16 served 32 clients x 1 doc':<44} {narrow:>12.1f} {wide:>12.1f} "
                     f"{narrow / wide:>7.2f}  vs float32 served; {narrow / st:.2f} vs ST")
        lat, wide_lat = bf16["bfloat16"]["latency"]["latency_ms"], bf16["float32"]["latency"]["latency_ms"]
        lines.append(f"{'(j) bfloat16 one-doc latency p50 (ms)':<44} {lat['p50']:>12.2f} {wide_lat['p50']:>12.2f} "
                     f"{lat['p50'] / wide_lat['p50']:>7.2f}  vs float32 served")
        cos = bf16["cosine_to_float32"]
        lines.append(f"      vectors' cosine to float32's: min {cos['min']}, mean {cos['mean']}")
    measured = report.get("served", []) + ([dict(onnx["served"], onnx=True)] if onnx else [])
    if measured:
        lines.append("CPU ms per request by process, and the mean batch:")
    for r in measured:
        name = f"  {'ONNX ' if r.get('onnx') else ''}{r['concurrency']:>2} clients x {r['docs_per_request']:>2} docs"
        cost = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_request"].items())
        lines.append(f"{name:<30} {cost}; mean batch {r['mean_batch']}")
    for layout in report.get("allocations", {}).get("layouts", []):
        ref = report["allocations"]["layouts"][0]
        name = f"(g) {layout['layout']} {layout['allocations']} alloc x {layout['threads_per_allocation']} thr (docs/s)"
        lines.append(f"{name:<44} {layout['docs_per_second']:>12.1f} {ref['docs_per_second']:>12.1f} "
                     f"{layout['docs_per_second'] / ref['docs_per_second']:>7.2f}  RSS {layout['rss_mb_after']} MB "
                     f"(loaded {layout['rss_mb_loaded']} MB)")
    return {"lines": lines}


if __name__ == "__main__":
    sys.exit(main())
