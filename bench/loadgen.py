"""A lean HTTP load generator: C keep-alive connections, each sending prebuilt _predict requests
one after another, reading only what it must of each response. It runs in its own process, and
its CPU is part of what the served figures pay for, as it would be for real clients.

    python bench/loadgen.py URL PATH --concurrency 32 --docs-per-request 1 --total-docs 2000

Prints one JSON object: docs/s, requests/s, latency percentiles, statuses, and a check that every
request got exactly one answer with one embedding per document.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.workload import sentences  # noqa: E402

# What one embedding looks like in a response, by the API's shape: ML Commons' _predict, or
# OpenAI's /embeddings (a peer's, bench/peer.py; "index" once per item).
MARKERS = {"ml": b'"sentence_embedding"', "openai": b'"index"'}


def build_requests(host: str, path: str, docs: list[str], per_request: int, authorization: str = "",
                   api: str = "ml", model: str = "") -> list[bytes]:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    out = []
    for start in range(0, len(docs), per_request):
        chunk = docs[start:start + per_request]
        body = json.dumps({"model": model, "input": chunk} if api == "openai" else {"text_docs": chunk}).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{auth}"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        out.append(head + body)
    return out


async def worker(host, port, queue: asyncio.Queue, results: list, expect_docs: dict, marker: bytes):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            try:
                index, request = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, marks = 0, None
            for line in head.split(b"\r\n"):
                name = line[:19].lower()
                if name[:15] == b"content-length:":
                    length = int(line[15:])
                elif name == b"x-mlcommons-timing:":
                    marks = line[19:].decode().strip()
            body = await reader.readexactly(length)
            elapsed = time.perf_counter() - started
            ok = status == 200 and body.count(marker) == expect_docs[index]
            results.append((index, status, elapsed, ok, marks))
    finally:
        writer.close()


async def run(url: str, path: str, concurrency: int, per_request: int, total_docs: int, warmup: int,
              authorization: str = "", api: str = "ml", model: str = "") -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    docs = sentences(total_docs)
    marker = MARKERS[api]
    requests = build_requests(f"{host}:{port}", path, docs, per_request, authorization, api, model)
    expect = {i: len(docs[i * per_request:(i + 1) * per_request]) for i in range(len(requests))}
    if warmup:
        warm = asyncio.Queue()
        for i, req in enumerate(build_requests(f"{host}:{port}", path, sentences(warmup, seed=1), per_request,
                                               authorization, api, model)):
            warm.put_nowait((i, req))
        await asyncio.gather(*[worker(host, port, warm, [], {i: per_request for i in range(warmup)}, marker)
                               for _ in range(min(concurrency, warmup))])
    queue: asyncio.Queue = asyncio.Queue()
    for item in enumerate(requests):
        queue.put_nowait(item)
    results: list = []
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*[worker(host, port, queue, results, expect, marker) for _ in range(concurrency)])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    latencies = sorted(r[2] for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r[1])] = statuses.get(str(r[1]), 0) + 1

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 2)

    answered = sorted(r[0] for r in results)
    hops = breakdown([(r[2] * 1000, r[4]) for r in results if r[4]])
    return {
        **({"hops_ms_p50": hops} if hops else {}),
        "concurrency": concurrency, "docs_per_request": per_request, "docs": total_docs,
        "requests": len(requests), "seconds": round(wall, 3),
        "loadgen_cpu_ms_per_request": round(cpu * 1000 / max(1, len(results)), 3),
        "docs_per_second": round(sum(expect[r[0]] for r in results if r[3]) / wall, 1),
        "requests_per_second": round(len(results) / wall, 1),
        "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": pct(100)},
        "statuses": statuses,
        "every_request_answered_once": answered == list(range(len(requests))),
        "all_ok": all(r[3] for r in results),
    }


# A prediction's hops, from the marks of X-MLCommons-Timing (mlcommons/core/serving/timing.py):
# (name, from mark, to mark); "" is the handler's start, None the client's own end. The hops in
# order make up the whole request; the admission script's round trip as the API sees it overlaps
# the worker's wake-up (the worker can take the request before the API reads the script's answer),
# so it is given apart, last.
HOPS = [("api: read, checks, lookup", "", "admit"), ("admission, queue, worker wake-up", "admit", "taken"),
        ("worker: decode, plan", "taken", "forward"),
        ("tokenize and forward", "forward", "forwarded"), ("reply: encode, push, read", "forwarded", "replied"),
        ("api: response body", "replied", "responded"), ("HTTP both ways, client", "responded", None),
        ("(overlapping) admission script round trip", "admit", "admitted")]


def breakdown(traced: list[tuple[float, str]]) -> dict[str, float]:
    """The median of each hop (ms) over the requests whose responses carried their marks."""
    from mlcommons.core.serving.timing import parse

    per_hop: dict[str, list[float]] = {name: [] for name, _, _ in HOPS}
    for total_ms, header in traced:
        marks = {"": 0.0, **parse(header)}
        for name, begin, end in HOPS:
            finish = total_ms if end is None else marks.get(end)
            if begin in marks and finish is not None:
                per_hop[name].append(finish - marks[begin])
    return {name: round(sorted(v)[len(v) // 2], 3) for name, v in per_hop.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("path")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--docs-per-request", type=int, default=1)
    parser.add_argument("--total-docs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--authorization", default="", help="an Authorization header value (security on)")
    parser.add_argument("--api", choices=sorted(MARKERS), default="ml",
                        help="the request and response shape: ML Commons _predict, or OpenAI /embeddings")
    parser.add_argument("--model", default="", help="the model name an OpenAI-shaped request names")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.path, args.concurrency, args.docs_per_request,
                                     args.total_docs, args.warmup, args.authorization, args.api, args.model))))


if __name__ == "__main__":
    main()
