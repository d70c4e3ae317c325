"""Allocations as threads or as processes: the measurement behind DESIGN.md's choice.

Runs all-MiniLM-L6-v2 (the served TorchScript archive) over the benchmark's documents at batch 32,
with the CPU split between allocations in each way, and reports docs/s and resident memory:
  - threads: one process, one copy of the weights, A threads each with T torch threads;
  - processes: A processes, each with its own copy and T torch threads.

    python bench/allocations.py ARCHIVE.zip --model-config JSON --docs 1600
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.workload import sentences  # noqa: E402


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load(archive: str, config: dict):
    from workers.extract import safe_extract
    from workers.runtimes import load_runtime

    folder = Path(tempfile.mkdtemp(prefix="alloc-"))
    safe_extract(Path(archive), folder / "model")
    runtime = load_runtime(folder / "model", {"function_name": "TEXT_EMBEDDING", "model_format": "TORCH_SCRIPT",
                                               "model_config": config})
    shutil.rmtree(folder)
    return runtime


def run_share(runtime, docs: list[str], threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with torch.inference_mode():
        for i in range(0, len(docs), 32):
            runtime.embed(docs[i:i + 32])


def _process_main(archive, config, docs, threads, ready, go, done):
    import torch

    torch.set_num_threads(threads)
    runtime = load(archive, config)
    run_share(runtime, sentences(64, seed=1), threads)
    ready.put(rss_bytes())
    go.wait()
    run_share(runtime, docs, threads)
    done.put(rss_bytes())


def threads_layout(archive, config, docs, allocations, threads) -> dict:
    import torch

    torch.set_num_threads(threads)
    runtime = load(archive, config)
    run_share(runtime, sentences(64, seed=1), threads)
    loaded = rss_bytes()
    shares = [sorted(docs, key=len)[a::allocations] for a in range(allocations)]
    workers = [threading.Thread(target=run_share, args=(runtime, share, threads)) for share in shares]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    return {"layout": "threads", "allocations": allocations, "threads_per_allocation": threads,
            "docs_per_second": round(len(docs) / elapsed, 1), "rss_mb_loaded": round(loaded / 2**20),
            "rss_mb_after": round(rss_bytes() / 2**20)}


def processes_layout(archive, config, docs, allocations, threads) -> dict:
    ctx = mp.get_context("spawn")
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [sorted(docs, key=len)[a::allocations] for a in range(allocations)]
    procs = [ctx.Process(target=_process_main, args=(archive, config, share, threads, ready, go, done))
             for share in shares]
    for p in procs:
        p.start()
    loaded = sum(ready.get(timeout=300) for _ in procs)
    started = time.perf_counter()
    go.set()
    after = sum(done.get(timeout=600) for _ in procs)
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join(60)
    return {"layout": "processes", "allocations": allocations, "threads_per_allocation": threads,
            "docs_per_second": round(len(docs) / elapsed, 1), "rss_mb_loaded": round(loaded / 2**20),
            "rss_mb_after": round(after / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("archive")
    parser.add_argument("--model-config", required=True)
    parser.add_argument("--docs", type=int, default=1600)
    parser.add_argument("--layout", help="one layout, as threads:A:T or processes:A:T (run in a fresh process)")
    args = parser.parse_args()
    config = json.loads(args.model_config)
    docs = sentences(args.docs)
    if args.layout:
        kind, allocations, threads = args.layout.split(":")
        fn = threads_layout if kind == "threads" else processes_layout
        print(json.dumps(fn(args.archive, config, docs, int(allocations), int(threads))))
        return
    import subprocess

    cores = len(os.sched_getaffinity(0))
    layouts = [f"threads:1:{cores}", f"threads:{cores}:1", f"processes:{cores}:1"]
    results = []
    for layout in layouts:
        out = subprocess.run([sys.executable, __file__, args.archive, "--model-config", args.model_config,
                              "--docs", str(args.docs), "--layout", layout],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(json.dumps({"cores": cores, "layouts": results}))


if __name__ == "__main__":
    main()
