"""A lone one-document request against the same forward in process, measured in turns.

Figure (c) of bench/run.py times the served request, and bench/inprocess.py times the forward in
a process of its own, minutes apart: on a shared machine the two drift by more than the gap being
measured. Here one process holds the runtime (loaded from the archive the stack serves, on the
same number of threads) and alternates: one in-process forward of a document, then the same
document through the API, then the next document. Both halves see the same moment of the
machine, and each pair gives a difference of its own.

    python bench/idle.py URL MODEL_ID ARCHIVE.zip --model-config JSON --docs 300

Prints one JSON object: p50 and p90 of the in-process forward, of the served request, of the
worker's own forward (from X-MLCommons-Timing, when the stack traces timings), of the pairs'
differences, and each hop's median.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench.loadgen import breakdown  # noqa: E402
from bench.workload import sentences  # noqa: E402

SETTLE_SECONDS = 0.1  # between the halves: both sides start from the same idle (see DESIGN.md, issue 14)


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("model_id")
    parser.add_argument("archive")
    parser.add_argument("--model-config", required=True)
    parser.add_argument("--format", default="TORCH_SCRIPT")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS, help="seconds between the halves")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from mlcommons.core.serving.timing import HEADER
    from workers.extract import safe_extract
    from workers.runtimes import load_runtime

    folder = Path(tempfile.mkdtemp(prefix="idle-"))
    try:
        safe_extract(Path(args.archive), folder / "model")
        runtime = load_runtime(folder / "model", {"function_name": "TEXT_EMBEDDING", "model_format": args.format,
                                                  "model_config": json.loads(args.model_config)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    runtime.use_threads(args.threads)
    parts = urlsplit(args.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    path = f"/_plugins/_ml/models/{args.model_id}/_predict"
    headers = {"Content-Type": "application/json"}

    def served(text: str) -> tuple[float, str | None]:
        body = json.dumps({"text_docs": [text]})
        started = time.perf_counter()
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = (time.perf_counter() - started) * 1000
        assert resp.status == 200 and b"sentence_embedding" in data, (resp.status, data[:200])
        return elapsed, resp.getheader(HEADER)

    local, remote, diffs, traced = [], [], [], []
    with torch.inference_mode():
        for text in sentences(32, seed=1):  # warm both sides
            runtime.embed([text])
            served(text)
        for text in sentences(args.docs, seed=2):
            started = time.perf_counter()
            runtime.embed([text])
            own = (time.perf_counter() - started) * 1000
            time.sleep(args.settle)
            elapsed, marks = served(text)
            time.sleep(args.settle)
            local.append(own)
            remote.append(elapsed)
            diffs.append(elapsed - own)
            if marks:
                traced.append((elapsed, marks))
    conn.close()
    runtime.close()
    hops = breakdown(traced)
    out = {
        "docs": args.docs, "threads": args.threads, "format": args.format,
        "in_process_ms": {"p50": quantile(local, 0.5), "p90": quantile(local, 0.9)},
        "served_ms": {"p50": quantile(remote, 0.5), "p90": quantile(remote, 0.9)},
        "added_ms": {"p50": quantile(diffs, 0.5), "p90": quantile(diffs, 0.9),
                     "mean": round(statistics.fmean(diffs), 3)},
    }
    if hops:
        out["hops_ms_p50"] = hops
        forward = hops.get("tokenize and forward")
        if forward is not None:
            out["served_forward_minus_in_process_ms_p50"] = round(forward - quantile(local, 0.5), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
