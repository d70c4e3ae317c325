"""Chaos rounds against a running mlcommons stack: kill a part (SIGKILL, as a crash does; Redis is
restarted with SIGTERM, see below), let the supervisor bring it back, and check that nothing was
stuck, lost or hung.

    .venv/bin/python bench/chaos.py --rounds 50                  # starts its own stack
    .venv/bin/python bench/chaos.py --url http://127.0.0.1:9200 --data-dir ./data --rounds 50
        (add --dashboard-url http://127.0.0.1:9181 to check that stack's dashboard too)

It registers two copies of the bundled all-MiniLM-L6-v2, deploys them, keeps a prediction load
running, and in each round kills one of: an idle worker, a worker in the middle of a deploy, a
worker in the middle of predictions, the API process, or Redis. After each round it waits until
every model is DEPLOYED again with true worker-node lists and every task has ended, and checks
that rq-dashboard (which its own stack runs) still answers. At the end it prints rounds, tasks
created, tasks stuck, models lost, requests hung, and the longest time from a restart to
DEPLOYED, and writes a JSON report.

Redis rounds restart Redis gracefully (SIGTERM, then the supervisor starts it again from its
append-only file): with appendfsync everysec, a SIGKILL of Redis itself may lose the last second
of writes, which is Redis's own durability contract, not ours to test.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlcommons.stack.procutil import free_port
from mlcommons.stack.supervisor import pid_of

ML = "/_plugins/_ml"
MINILM = {"name": "huggingface/sentence-transformers/all-MiniLM-L6-v2", "version": "1.0.1",
          "model_format": "TORCH_SCRIPT"}
FAST = {
    "MLCOMMONS_MLCOMMONS_NODE_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "MLCOMMONS_MLCOMMONS_NODE_HEARTBEAT_EXPIRY_SECONDS": "2.5",
    "MLCOMMONS_MLCOMMONS_CLUSTER_WATCHER_INTERVAL_SECONDS": "0.25",
    "MLCOMMONS_MLCOMMONS_CLUSTER_LEADER_LEASE_SECONDS": "2",
    "MLCOMMONS_PLUGINS_ML_COMMONS_SYNC_UP_JOB_INTERVAL_IN_SECONDS": "2",
    "MLCOMMONS_MLCOMMONS_PREDICT_TIMEOUT_SECONDS": "20",
}
PREDICT_TIMEOUT = 20.0
KINDS = ["worker-idle", "worker-deploying", "worker-predicting", "api", "redis"]


class Api:
    def __init__(self, base: str, authorization: str = ""):
        self.base = base.rstrip("/")
        self.headers = {"Content-Type": "application/json", **({"Authorization": authorization} if authorization
                                                                 else {})}

    def call(self, method: str, path: str, body=None, timeout: float = 30.0):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def ok(self, method: str, path: str, body=None, timeout: float = 30.0):
        status, reply = self.call(method, path, body, timeout)
        if status != 200:
            raise RuntimeError(f"{method} {path} -> {status} {reply}")
        return reply


def wait(predicate, timeout: float, interval: float = 0.1):
    """Poll until predicate() is truthy (API errors while a part restarts count as 'not yet')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (urllib.error.URLError, ConnectionError, OSError, RuntimeError, KeyError):
            pass
        time.sleep(interval)
    return None


class Load:
    """One-document predictions from a few client threads, counting what happens to each."""

    def __init__(self, api: Api, model_ids: list[str], clients: int = 3):
        self.api = api
        self.model_ids = model_ids
        self.clients = clients
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "error": 0, "refused": 0, "hung": 0}
        # the round under way: each request is counted in the round it ended in (what happened
        # then decided its fate: a request begun just before an API round dies with that process)
        self.round = 0
        self.by_round: dict[int, dict[str, int]] = {}
        self.errors: dict[str, int] = {}  # "status reason" -> count, over the whole run
        self.round_errors: dict[int, dict[str, int]] = {}
        self.slowest = 0.0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(PREDICT_TIMEOUT + 20)

    def _run(self, i: int):
        n = 0
        while not self.stop.is_set():
            model_id = self.model_ids[n % len(self.model_ids)]
            n += 1
            started = time.monotonic()
            error = None
            try:
                # A request must be answered (or refused) before its deadline plus a margin;
                # past that, it hung.
                status, body = self.api.call("POST", f"{ML}/models/{model_id}/_predict",
                                             {"text_docs": [f"client {i} request {n}"]}, timeout=PREDICT_TIMEOUT + 10)
                kind = "ok" if status == 200 else "error"
                if kind == "error":
                    found = body.get("error") if isinstance(body, dict) else None
                    reason = found.get("reason") if isinstance(found, dict) else str(body)
                    error = f"{status} {str(reason)[:160]}"
            except (TimeoutError, urllib.error.URLError) as exc:
                reason = getattr(exc, "reason", exc)
                kind = "hung" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else "refused"
                error = f"{kind}: {str(reason)[:120]}"
            except (ConnectionError, OSError) as exc:
                kind, error = "refused", f"refused: {type(exc).__name__}"
            elapsed = time.monotonic() - started
            round_no = self.round
            with self.lock:
                self.counts[kind] += 1
                counts = self.by_round.setdefault(round_no, {"ok": 0, "error": 0, "refused": 0, "hung": 0})
                counts[kind] += 1
                if error is not None:
                    self.errors[error] = self.errors.get(error, 0) + 1
                    per_round = self.round_errors.setdefault(round_no, {})
                    per_round[error] = per_round.get(error, 0) + 1
                if kind != "refused":
                    self.slowest = max(self.slowest, elapsed)
            if kind == "refused":
                time.sleep(0.2)


class Chaos:
    def __init__(self, api: Api, data_dir: Path, workers: int, rng: random.Random, dashboard: Api | None = None):
        self.api = api
        self.dashboard = dashboard
        self.data_dir = data_dir
        self.workers = workers
        self.rng = rng
        self.models: list[str] = []  # every model, each of which must be DEPLOYED again after a round
        self.rounds: list[dict] = []

    @property
    def served(self) -> list[str]:
        """The models under the prediction load."""
        return self.models[:2]

    @property
    def spare(self) -> str:
        return self.models[2]

    # --- observations -----------------------------------------------------------------
    def task_total(self) -> int:
        return self.api.ok("POST", f"{ML}/tasks/_search", {"size": 0})["hits"]["total"]["value"]

    def open_tasks(self) -> list[str]:
        body = self.api.ok("POST", f"{ML}/tasks/_search", {"size": 1000, "query": {"terms": {
            "state": ["CREATED", "RUNNING"]}}})
        return [h["_id"] for h in body["hits"]["hits"]]

    def settled(self) -> bool:
        """Every model DEPLOYED on every live node, worker lists true, no task open."""
        nodes = self.api.ok("GET", "/_nodes")["nodes"]
        if len(nodes) < self.workers:
            return False
        for model_id in self.models:
            model = self.api.ok("GET", f"{ML}/models/{model_id}")
            holders = sorted(n for n, info in nodes.items() if model_id in info["models"])
            if model["model_state"] != "DEPLOYED" or model.get("current_worker_nodes") != holders \
                    or len(holders) != self.workers:
                return False
        return not self.open_tasks()

    def dashboard_answers(self) -> bool:
        return self.dashboard is None or self.dashboard.call("GET", "/0/data/queues.json", timeout=10)[0] == 200

    # --- the rounds -------------------------------------------------------------------
    def setup(self) -> None:
        # Three copies: two serve the prediction load, the third is the one a worker-deploying
        # round undeploys and deploys again (an undeploy under load would fail the requests sent
        # meanwhile, as ML Commons does, which is no fault of the cluster's)
        for _ in range(3):
            task_id = self.api.ok("POST", f"{ML}/models/_register", MINILM)["task_id"]
            task = wait(lambda: (t := self.api.ok("GET", f"{ML}/tasks/{task_id}"))["state"] != "CREATED" and t, 300)
            if not task or task["state"] != "COMPLETED":
                raise RuntimeError(f"register failed: {task}")
            self.models.append(task["model_id"])
        for model_id in self.models:
            self.api.ok("POST", f"{ML}/models/{model_id}/_deploy")
        if not wait(self.settled, 120):
            raise RuntimeError("the models did not deploy")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        pid = pid_of(self.data_dir, name)
        if pid is None:
            raise RuntimeError(f"no pid file for {name} under {self.data_dir}/run")
        os.kill(pid, sig)
        return pid

    def restarted(self, name: str, old_pid: int) -> bool:
        pid = pid_of(self.data_dir, name)
        return pid is not None and pid != old_pid

    def boots(self) -> dict[str, tuple[int, str]]:
        """node id -> (pid, boot id) of each live node."""
        return {n: (info["pid"], info["boot_id"]) for n, info in self.api.ok("GET", "/_nodes")["nodes"].items()}

    def round(self, number: int, kind: str) -> dict:
        worker = f"worker-{self.rng.randrange(self.workers)}"
        victim = {"api": "api", "redis": "redis"}.get(kind, worker)
        before = wait(self.boots, 30) or {}
        if kind == "worker-deploying":
            model_id = self.spare
            self.api.call("POST", f"{ML}/models/{model_id}/_undeploy")
            # (a prediction may have started an auto-deploy already; then this joins it)
            self.api.call("POST", f"{ML}/models/{model_id}/_deploy")
            time.sleep(self.rng.uniform(0.0, 0.6))  # somewhere in the download or the load
        elif kind == "worker-predicting":
            time.sleep(self.rng.uniform(0.0, 0.3))
        sig = signal.SIGTERM if kind == "redis" else signal.SIGKILL
        killed_at = time.monotonic()
        old_pid = self.kill(victim, sig)
        back = wait(lambda: self.restarted(victim, old_pid), 60, 0.05)
        restarted_at = time.monotonic()
        node = next((n for n, (pid, _) in before.items() if pid == old_pid), None)
        if node is not None:
            # the node's new run must have announced itself before "settled" means anything
            wait(lambda: self.boots().get(node, (0, before[node][1]))[1] != before[node][1], 120, 0.1)
        ok = wait(self.settled, 180, 0.2)
        done_at = time.monotonic()
        dashboard = bool(wait(self.dashboard_answers, 30))
        result = {"round": number, "kind": kind, "victim": victim, "restarted": bool(back),
                  "settled": bool(ok), "dashboard_answers": dashboard,
                  "kill_to_restart_s": round(restarted_at - killed_at, 2),
                  "restart_to_deployed_s": round(done_at - restarted_at, 2),
                  "kill_to_deployed_s": round(done_at - killed_at, 2)}
        print(f"round {number:3d} {kind:<18} {victim:<9} restart {result['kill_to_restart_s']:5.2f}s "
              f"-> DEPLOYED {result['restart_to_deployed_s']:5.2f}s {'ok' if ok else 'NOT SETTLED'}"
              f"{'' if dashboard else ', DASHBOARD DOWN'}", flush=True)
        return result


def start_stack(workdir: Path, workers: int) -> tuple[subprocess.Popen, str, str]:
    """A `serve` with the dashboard on, as a user runs it: (process, API URL, dashboard URL)."""
    port, dashboard_port = free_port(), free_port()
    env = {**os.environ, **FAST, "HF_HUB_OFFLINE": "1"}
    log = open(workdir / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlcommons", "serve", "--port", str(port), "--workers",
                             str(workers), "--data-dir", str(workdir / "data"), "--dashboard-port",
                             str(dashboard_port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--url", help="a running stack's API; default: start one")
    parser.add_argument("--data-dir", help="that stack's --data-dir (for its pid files)")
    parser.add_argument("--dashboard-url", help="that stack's rq-dashboard, checked after each round")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"the faults to cycle through, comma-separated (default: all of {','.join(KINDS)})")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "chaos.json"))
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds: choose among {', '.join(KINDS)}")

    stack = None
    if args.url:
        if not args.data_dir:
            parser.error("--data-dir is required with --url")
        url, data_dir, dashboard_url = args.url, Path(args.data_dir).resolve(), args.dashboard_url
    else:
        workdir = Path(tempfile.mkdtemp(prefix="mlcommons-chaos-"))
        stack, url, dashboard_url = start_stack(workdir, args.workers)
        data_dir = workdir / "data"
        print(f"started a stack at {url} (dashboard {dashboard_url}, data {data_dir})", flush=True)
    api = Api(url)
    dashboard = Api(dashboard_url) if dashboard_url else None
    try:
        if not wait(lambda: api.call("GET", "/")[0] == 200, 120):
            raise RuntimeError("the API did not come up")
        chaos = Chaos(api, data_dir, args.workers, random.Random(args.seed), dashboard)
        chaos.setup()
        tasks_at_start = chaos.task_total()
        load = Load(api, chaos.served)
        load.start()
        for number in range(1, args.rounds + 1):
            load.round = number
            result = chaos.round(number, kinds[(number - 1) % len(kinds)])
            chaos.rounds.append(result)
        load.round = args.rounds + 1
        load.finish()
        for result in chaos.rounds:
            result["requests"] = load.by_round.get(result["round"], {"ok": 0, "error": 0, "refused": 0, "hung": 0})
            result["errors"] = load.round_errors.get(result["round"], {})
        print()
        print("round kind               ok  failed  refused  hung")
        for result in chaos.rounds:
            r = result["requests"]
            print(f"{result['round']:5d} {result['kind']:<18} {r['ok']:4d} {r['error']:7d} {r['refused']:8d} "
                  f"{r['hung']:5d}" + (f"   {'; '.join(f'{k} x{v}' for k, v in result['errors'].items())}"
                                        if result["errors"] else ""))
        # A kill of an API process may cost the requests that process held (their connection is
        # reset), and only those: counted apart from the failures.
        lost_with_api = sum(r["requests"]["refused"] + r["requests"]["error"] for r in chaos.rounds
                            if r["kind"] == "api" and not any(not k.startswith(("refused", "hung"))
                                                              for k in r["errors"]))
        stuck = wait(lambda: not chaos.open_tasks(), 60) is None and chaos.open_tasks() or []
        lost = [m for m in chaos.models if api.call("GET", f"{ML}/models/{m}")[0] != 200
                or api.ok("GET", f"{ML}/models/{m}")["model_state"] != "DEPLOYED"]
        report = {
            "rounds": len(chaos.rounds),
            "tasks_created": chaos.task_total() - tasks_at_start,
            "tasks_stuck": len(stuck),
            "models_lost": len(lost),
            "requests_hung": load.counts["hung"],
            "requests": dict(load.counts),
            "requests_failed": load.counts["error"],
            "requests_refused": load.counts["refused"],
            "requests_lost_with_a_killed_api": lost_with_api,
            "errors": dict(sorted(load.errors.items(), key=lambda kv: -kv[1])),
            "slowest_answer_s": round(load.slowest, 2),
            "rounds_not_settled": sum(1 for r in chaos.rounds if not r["settled"]),
            "rounds_dashboard_down": sum(1 for r in chaos.rounds if not r["dashboard_answers"]),
            "longest_restart_to_deployed_s": max(r["restart_to_deployed_s"] for r in chaos.rounds),
            "longest_kill_to_deployed_s": max(r["kill_to_deployed_s"] for r in chaos.rounds),
            "by_round": chaos.rounds,
        }
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2))
        print()
        for key in ("rounds", "tasks_created", "tasks_stuck", "models_lost", "requests_hung",
                    "longest_restart_to_deployed_s", "longest_kill_to_deployed_s", "rounds_not_settled",
                    "rounds_dashboard_down", "slowest_answer_s"):
            print(f"{key:<32} {report[key]}")
        print(f"{'requests':<32} {report['requests']}")
        print(f"{'lost with a killed API process':<32} {lost_with_api}")
        for error, count in report["errors"].items():
            print(f"  {count:5d} x {error}")
        print(f"report written to {args.report}")
        bad = (report["tasks_stuck"] or report["models_lost"] or report["requests_hung"] or report["rounds_not_settled"]
               or report["rounds_dashboard_down"])
        return 1 if bad else 0
    finally:
        if stack is not None:
            stack.send_signal(signal.SIGINT)
            stack.wait(120)


if __name__ == "__main__":
    sys.exit(main())
