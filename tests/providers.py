"""Real OpenAI-format providers for the remote-model tests: infinity-emb (its ``debugengine`` needs
no model and no torch), installed by the test set-up in a virtual environment of its own (its
dependencies clash with ours) and bound to 127.0.0.1."""
from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from mlcommons.stack.procutil import free_port
from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-infinity"
INFINITY = "infinity-emb[server]==0.0.78"
MODEL = "dummy/model"


def ensure_venv() -> Path:
    """The provider's own virtual environment, made once (about 40 s)."""
    binary = VENV / "bin" / "infinity_emb"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", INFINITY], check=True,
                       stdout=subprocess.DEVNULL)
    return binary


class Infinity:
    """An infinity-emb server that checks ``api_key`` as a bearer token."""

    def __init__(self, log_dir: Path, api_key: str = "provider-key"):
        self.api_key = api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"infinity-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [str(ensure_venv()), "v2", "--engine", "debugengine", "--model-id", MODEL, "--api-key", api_key,
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
        wait_for(self._up, 60, 0.2, "infinity-emb to listen")

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

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
