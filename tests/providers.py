"""Real providers for the remote-model tests: infinity-emb, installed by the test set-up in a virtual
environment of its own (its dependencies clash with ours) and bound to 127.0.0.1. Its
``debugengine`` serves OpenAI-format embeddings with no model; its torch engine serves a
Cohere-format ``/rerank`` from a tiny cross-encoder the tests build (torch pinned, so the CPU
build already on the machine is taken)."""
from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from mlcommons.stack.procutil import free_port
from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-infinity"
INFINITY = ["torch==2.13.0", "infinity-emb[server,torch]==0.0.78"]
MODEL = "dummy/model"


def ensure_venv() -> Path:
    """The provider's own virtual environment, made once (about 80 s)."""
    binary = VENV / "bin" / "infinity_emb"
    stamp = VENV / ".installed"
    if not binary.exists() or not stamp.exists() or stamp.read_text() != " ".join(INFINITY):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *INFINITY], check=True,
                       stdout=subprocess.DEVNULL)
        stamp.write_text(" ".join(INFINITY))
    return binary


class Infinity:
    """An infinity-emb server that checks ``api_key`` as a bearer token: the debug engine's
    embeddings, or (``reranker``: a cross-encoder folder) that model's ``/rerank``."""

    def __init__(self, log_dir: Path, api_key: str = "provider-key", reranker: Path | None = None):
        self.api_key = api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"infinity-{self.port}.log", "wb")
        engine = ["--engine", "torch", "--device", "cpu", "--model-id", str(reranker)] if reranker \
            else ["--engine", "debugengine", "--model-id", MODEL]
        self.proc = subprocess.Popen(
            [str(ensure_venv()), "v2", *engine, "--api-key", api_key, "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
        wait_for(self._up, 120, 0.2, "infinity-emb to listen")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"infinity-emb exited; see {self.log.name}")
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def embed(self, texts: list[str]) -> list[list[float]]:
        """What the provider answers when asked directly."""
        import json

        request = urllib.request.Request(f"{self.url}/embeddings", method="POST",
                                         data=json.dumps({"model": MODEL, "input": texts}).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return [item["embedding"] for item in json.loads(response.read())["data"]]

    def rerank(self, query: str, documents: list[str]) -> list[dict]:
        """The provider's own answer: Cohere's ``results`` (index and relevance_score), best first."""
        import json

        request = urllib.request.Request(f"{self.url}/rerank", method="POST",
                                         data=json.dumps({"query": query, "documents": documents}).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.api_key}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["results"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
