"""What a remote model costs over calling its provider directly, measured in one run.

    .venv/bin/python bench/remote.py                  # about 2 minutes
    .venv/bin/python bench/remote.py --requests 300 --burst 3000 --concurrency 64

It starts a real OpenAI-format provider on loopback (infinity-emb's debugengine, in its own
virtual environment: tests/providers.py) and a stack (``mlcommons serve``, one worker node) with a
remote model on an OpenAI-blueprint connector to it. The same load generator (aiohttp, one
document per request, closed loop) then calls the provider directly and the model's ``_predict``,
alternating twice: at 1 client it reports p50 and p99 latency and what the model adds; at
``--concurrency`` clients, the throughput through the model as a ratio of the direct one.
Writes bench/results/remote.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chaos import Api, wait  # noqa: E402
from mlcommons.stack.procutil import free_port  # noqa: E402
from tests.providers import MODEL, Infinity  # noqa: E402

ML = "/_plugins/_ml"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU each process has used so far (/proc)."""
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            out[name] = 0.0
    return out


async def load(url: str, bodies: list[bytes], headers: dict[str, str], concurrency: int) -> dict:
    """Send every body once from ``concurrency`` clients; latency of each, and the wall time."""
    queue = list(enumerate(bodies))
    latencies: list[float] = []
    failures = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while queue:
            _, body = queue.pop()
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(bodies), "failures": failures, "per_second": len(bodies) / wall,
            "p50_ms": latencies[len(latencies) // 2] * 1000, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per latency measurement (1 client)")
    parser.add_argument("--burst", type=int, default=3000, help="requests per throughput measurement")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--report", default=str(ROOT / "bench" / "results" / "remote.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlcommons-remote-") as tmp:
        work = Path(tmp)
        provider = Infinity(work)
        port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1",
               "MLCOMMONS_PLUGINS_ML_COMMONS_TRUSTED_CONNECTOR_ENDPOINTS_REGEX": r'["^http://127\\.0\\.0\\.1:\\d+/.*$"]',
               "MLCOMMONS_PLUGINS_ML_COMMONS_CONNECTOR_PRIVATE_IP_ENABLED": "true"}
        log = open(work / "serve.log", "wb")
        stack = subprocess.Popen([sys.executable, "-m", "mlcommons", "serve", "--port", str(port), "--workers", "1",
                                  "--data-dir", str(work / "data"), "--dashboard-port", "0"], cwd=ROOT, env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            api = Api(f"http://127.0.0.1:{port}")
            if not wait(lambda: api.call("GET", "/")[0] == 200 and api.ok("GET", "/_nodes")["nodes"], 120):
                raise RuntimeError(f"the stack did not start; see {work / 'serve.log'}")
            connector = {
                "protocol": "http", "parameters": {"model": MODEL}, "credential": {"key": provider.api_key},
                "client_config": {"max_connection": 128},
                "actions": [{"action_type": "predict", "method": "POST", "url": f"{provider.url}/embeddings",
                             "headers": {"Authorization": "Bearer ${credential.key}"},
                             "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }',
                             "pre_process_function": "connector.pre_process.openai.embedding",
                             "post_process_function": "connector.post_process.openai.embedding"}]}
            model_id = api.ok("POST", f"{ML}/models/_register?deploy=true",
                              {"name": "bench remote", "function_name": "remote", "connector": connector})["model_id"]
            if not wait(lambda: api.ok("GET", f"{ML}/models/{model_id}")["model_state"] == "DEPLOYED", 60):
                raise RuntimeError("the remote model was not deployed")
            direct = (f"{provider.url}/embeddings", {"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {provider.api_key}"},
                      lambda text: json.dumps({"input": [text], "model": MODEL}).encode())
            served = (f"{api.base}{ML}/models/{model_id}/_predict", {"Content-Type": "application/json"},
                      lambda text: json.dumps({"text_docs": [text]}).encode())
            run_dir = work / "data" / "run"
            pids = {p.stem: int(p.read_text()) for p in run_dir.glob("*.pid")}
            pids.pop("dashboard", None)
            pids["provider"] = provider.proc.pid
            pids["load"] = os.getpid()
            runs: dict[str, list[dict]] = {}
            for _ in range(2):
                for name, (url, headers, body) in (("direct", direct), ("served", served)):
                    texts = [f"a sentence of ordinary length, number {i}" for i in range(args.burst)]
                    asyncio.run(load(url, [body(t) for t in texts[:50]], headers, 8))  # warm-up
                    latency = asyncio.run(load(url, [body(t) for t in texts[:args.requests]], headers, 1))
                    before = cpu_seconds(pids)
                    burst = asyncio.run(load(url, [body(t) for t in texts], headers, args.concurrency))
                    after = cpu_seconds(pids)
                    burst["cpu_ms_per_request"] = {n: round((after[n] - before[n]) * 1000 / len(texts), 3)
                                                   for n in pids}
                    runs.setdefault(name, []).append({"latency": latency, "burst": burst})
                    print(f"{name:7} 1 client p50 {latency['p50_ms']:.2f} ms p99 {latency['p99_ms']:.2f} ms; "
                          f"{args.concurrency} clients {burst['per_second']:.0f}/s "
                          f"({burst['failures']} failed); CPU ms per request {burst['cpu_ms_per_request']}",
                          flush=True)
        finally:
            stack.send_signal(signal.SIGINT)
            stack.wait(120)
            provider.stop()

    def median(name: str, part: str, field: str) -> float:
        return statistics.median(run[part][field] for run in runs[name])

    summary = {
        "p50_ms": {"direct": median("direct", "latency", "p50_ms"), "served": median("served", "latency", "p50_ms")},
        "p99_ms": {"direct": median("direct", "latency", "p99_ms"), "served": median("served", "latency", "p99_ms")},
        "per_second": {"direct": median("direct", "burst", "per_second"),
                       "served": median("served", "burst", "per_second")},
    }
    summary["added_p50_ms"] = summary["p50_ms"]["served"] - summary["p50_ms"]["direct"]
    summary["added_p99_ms"] = summary["p99_ms"]["served"] - summary["p99_ms"]["direct"]
    summary["throughput_ratio"] = summary["per_second"]["served"] / summary["per_second"]["direct"]
    print(f"added at 1 client: p50 {summary['added_p50_ms']:.2f} ms, p99 {summary['added_p99_ms']:.2f} ms; "
          f"{args.concurrency} clients: {summary['throughput_ratio']:.2f} of the direct throughput")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
