"""Before and after: the served _predict path of two checkouts, measured in one run.

    .venv/bin/python bench/ab.py --before /path/to/old/checkout            # this checkout is "after"
    .venv/bin/python bench/ab.py --before OLD --after NEW --rounds 3 --concurrency 1 8 32

Each round starts each checkout's stack in turn (``python -m mlcommons serve``, one worker node,
with that checkout first on ``PYTHONPATH``; the order alternates between rounds, so a drift of the
machine falls on both), registers and deploys all-MiniLM-L6-v2, and drives one-document
``_predict`` requests from bench/loadgen.py at each concurrency. Only one stack runs at a time.
Prints, per concurrency, each side's median docs/s and p50 latency over the rounds, and the ratio
after/before; writes the JSON report. Use it for any change that touches the hot path.

``--before-env``/``--after-env NAME=VALUE`` give one side's stack a variable (a setting such as
``MLCOMMONS_MLCOMMONS_HTTP_EVENT_LOOP=asyncio``): the same checkout against itself, one setting apart.

``--after-security`` runs the "after" side with ``serve --security`` and every request
authenticated (HTTP Basic): with ``--before`` the same checkout, it measures what security costs.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chaos import Api, wait  # noqa: E402
from mlcommons.stack.procutil import free_port  # noqa: E402

ML = "/_plugins/_ml"
ADMIN_PASSWORD = "bench-admin-password"
MINILM = {"name": "huggingface/sentence-transformers/all-MiniLM-L6-v2", "version": "1.0.1",
          "model_format": "TORCH_SCRIPT"}


class Side:
    """One checkout's stack, started for a round and stopped after it."""

    def __init__(self, name: str, checkout: Path, workdir: Path, secure: bool = False, env: dict | None = None,
                 model_format: str = "TORCH_SCRIPT"):
        """``workdir``: this round's folder (a fresh data dir: nothing of an earlier round is
        redeployed beside the model under test). ``secure``: serve --security, Basic auth."""
        self.name, self.checkout, self.workdir = name, checkout, workdir
        self.extra_env = env or {}
        self.model_format = model_format
        self.authorization = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode() if secure else ""

    def __enter__(self) -> "Side":
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "PYTHONPATH": str(self.checkout), "MLCOMMONS_ADMIN_PASSWORD": ADMIN_PASSWORD, **self.extra_env}
        self.workdir.mkdir(parents=True)
        self.log = open(self.workdir / "serve.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "mlcommons", "serve", "--port", str(port), "--workers",
                                      "1", "--data-dir", str(self.workdir / "data"),
                                      "--dashboard-port", "0", *(["--security"] if self.authorization else [])],
                                     cwd=self.checkout, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        api = Api(self.url, self.authorization)
        if not wait(lambda: api.call("GET", "/")[0] == 200, 120):
            raise RuntimeError(f"{self.name}: the stack did not start; see {self.log.name}")
        task_id = api.ok("POST", f"{ML}/models/_register", {**MINILM, "model_format": self.model_format})["task_id"]
        task = wait(lambda: _finished(api, task_id), 300, 0.05)
        self.model_id = task["model_id"]
        deploy = api.ok("POST", f"{ML}/models/{self.model_id}/_deploy")["task_id"]
        done = wait(lambda: _finished(api, deploy), 300, 0.05)
        if done is None or done["state"] != "COMPLETED":
            raise RuntimeError(f"{self.name}: deploy ended {done}")
        return self

    def load(self, concurrency: int, docs: int) -> dict:
        out = subprocess.run([sys.executable, "bench/loadgen.py", self.url, f"{ML}/models/{self.model_id}/_predict",
                              "--concurrency", str(concurrency), "--docs-per-request", "1", "--total-docs",
                              str(docs), "--authorization", self.authorization], cwd=ROOT, capture_output=True,
                             text=True, check=True, timeout=1800)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _finished(api: Api, task_id: str) -> dict | None:
    task = api.ok("GET", f"{ML}/tasks/{task_id}")
    return task if task["state"] not in ("CREATED", "RUNNING") else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, type=Path, help="the checkout to compare against")
    parser.add_argument("--after", default=ROOT, type=Path, help="the checkout under test (default: this one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", default="TORCH_SCRIPT", choices=["TORCH_SCRIPT", "ONNX"],
                        help="the model_format both sides deploy MiniLM as")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--docs", type=int, default=2000, help="documents per measurement")
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "ab.json"))
    parser.add_argument("--after-security", action="store_true", help="the after side runs with --security")
    parser.add_argument("--before-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the before side's stack (a setting, say); repeatable")
    parser.add_argument("--after-env", action="append", default=[], metavar="NAME=VALUE",
                        help="the same for the after side")
    args = parser.parse_args()
    side_env = {"before": dict(e.split("=", 1) for e in args.before_env),
                "after": dict(e.split("=", 1) for e in args.after_env)}
    runs: dict[str, dict[int, list[dict]]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="mlcommons-ab-") as tmp:
        for round_no in range(args.rounds):
            order = ["before", "after"] if round_no % 2 == 0 else ["after", "before"]
            for name in order:
                checkout = (args.before if name == "before" else args.after).resolve()
                with Side(name, checkout, Path(tmp) / f"{name}-{round_no}",
                          secure=args.after_security and name == "after", env=side_env[name],
                          model_format=args.format) as side:
                    for concurrency in args.concurrency:
                        result = side.load(concurrency, args.docs)
                        runs[name].setdefault(concurrency, []).append(result)
                        print(f"round {round_no + 1} {name:6} c={concurrency:<3} "
                              f"{result['docs_per_second']:8.1f} docs/s p50 {result['latency_ms']['p50']:.2f} ms",
                              flush=True)
    summary = {}
    for concurrency in args.concurrency:
        row = {}
        for name in ("before", "after"):
            results = runs[name][concurrency]
            row[name] = {"docs_per_second": statistics.median(r["docs_per_second"] for r in results),
                         "p50_ms": statistics.median(r["latency_ms"]["p50"] for r in results),
                         "all_docs_per_second": [round(r["docs_per_second"], 1) for r in results],
                         "all_answered_ok": all(r["all_ok"] and r["every_request_answered_once"] for r in results)}
        row["ratio"] = row["after"]["docs_per_second"] / row["before"]["docs_per_second"]
        summary[concurrency] = row
        before, after = row["before"], row["after"]
        print(f"c={concurrency:<3} before {before['docs_per_second']:8.1f} docs/s (p50 {before['p50_ms']:.2f} ms)  "
              f"after {after['docs_per_second']:8.1f} docs/s (p50 {after['p50_ms']:.2f} ms)  ratio {row['ratio']:.3f}")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    report = {"before": str(args.before), "after": str(args.after), "rounds": args.rounds, "docs": args.docs,
              "summary": summary}
    Path(args.report).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
