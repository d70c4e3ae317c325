"""The in-process baselines, measured in a fresh process with torch.set_num_threads(2):

- sentence-transformers ``encode`` at batch 32 on the benchmark's documents;
- the deployed runtime (the same archive the stack serves) called directly at batch 32, on the
  documents sorted by length as ``encode`` sorts them;
- the runtime's one-document forward latency;
- loading the archive from local disk (extract + load + warm-up), the baseline of a deploy
  (without packing the weights: a node does that once the deploy has answered, while it serves).

    python bench/inprocess.py ARCHIVE.zip --docs 2000 --latency-docs 300
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench.workload import sentences  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("archive")
    parser.add_argument("--model-config", required=True, help="the model's model_config as JSON")
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--latency-docs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--format", default="TORCH_SCRIPT", help="the archive's model_format (ONNX too)")
    parser.add_argument("--runtime-only", action="store_true", help="skip sentence-transformers and the loads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    from tests.modelkit import minilm_path
    from workers.extract import safe_extract
    from workers.runtimes import load_runtime

    docs = sentences(args.docs)
    out: dict = {"threads": args.threads, "docs": len(docs)}

    if not args.runtime_only:
        model = SentenceTransformer(str(minilm_path()), device="cpu")
        model.encode(sentences(64, seed=1), batch_size=32)
        started = time.perf_counter()
        model.encode(docs, batch_size=32)
        out["st_encode_docs_per_second"] = round(len(docs) / (time.perf_counter() - started), 1)
        del model

    doc = {"function_name": "TEXT_EMBEDDING", "model_format": args.format,
           "model_config": json.loads(args.model_config)}
    loads = []
    for _ in range(1 if args.runtime_only else 3):
        folder = Path(tempfile.mkdtemp(prefix="inprocess-"))
        started = time.perf_counter()
        safe_extract(Path(args.archive), folder / "model")
        runtime = load_runtime(folder / "model", doc, prepack=False)  # a node packs after the deploy
        loads.append(time.perf_counter() - started)
        shutil.rmtree(folder)
        if len(loads) < 3 and not args.runtime_only:
            runtime.close()
    out["local_load_seconds"] = round(sorted(loads)[len(loads) // 2], 3)
    runtime.prepack()  # as a deployment's preparing thread does once the deploy has answered
    runtime.use_threads(args.threads)

    with torch.inference_mode():
        runtime.embed(sentences(64, seed=1))
        ordered = sorted(docs, key=len)
        started = time.perf_counter()
        for i in range(0, len(ordered), 32):
            runtime.embed(ordered[i:i + 32])
        out["runtime_docs_per_second"] = round(len(docs) / (time.perf_counter() - started), 1)
        started = time.perf_counter()
        for i in range(0, len(docs), 32):
            runtime.embed(docs[i:i + 32])
        out["runtime_unsorted_docs_per_second"] = round(len(docs) / (time.perf_counter() - started), 1)
        latencies = []
        for text in sentences(args.latency_docs, seed=2):
            started = time.perf_counter()
            runtime.embed([text])
            latencies.append(time.perf_counter() - started)
    out["runtime_latency_ms"] = {"p50": round(percentile(latencies, 50) * 1000, 2),
                                 "p99": round(percentile(latencies, 99) * 1000, 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
