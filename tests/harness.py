"""Real processes for tests: a Redis server, worker nodes and the API, started as a user would,
plus a small HTTP client and a condition waiter (no fixed sleeps)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlcommons.stack.procutil import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


@dataclass
class Response:
    status: int
    body: Any
    headers: dict

    @property
    def error(self) -> dict:
        return self.body["error"]


class Client:
    """Just enough HTTP for the tests, on the standard library."""

    def __init__(self, base: str, headers: dict | None = None):
        """``headers``: sent with every request (credentials)."""
        self.base = base.rstrip("/")
        self.headers = dict(headers or {})

    def request(self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
                headers: dict | None = None, timeout: float = 60.0) -> Response:
        headers = {**self.headers, **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw, status, hdrs = resp.read(), resp.status, dict(resp.headers)
        except urllib.error.HTTPError as exc:
            raw, status, hdrs = exc.read(), exc.code, dict(exc.headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Response(status, parsed, hdrs)

    def get(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("GET", path, body, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("DELETE", path, body, **kw)


def child_env(**extra: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


class Proc:
    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.env = env or child_env()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Proc":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=ROOT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        return stop_process(self.proc, timeout) if self.proc is not None else None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def worker_proc(redis_url: str, data_dir: Path, log_dir: Path, node_id: str | None = None,
                env: dict | None = None) -> Proc:
    argv = [sys.executable, "-m", "mlcommons", "worker", "--redis-url", redis_url, "--data-dir", str(data_dir)]
    if node_id:
        argv += ["--node-id", node_id]
    return Proc(f"worker-{node_id or data_dir.name}", argv, log_dir, env)


def api_proc(redis_url: str, log_dir: Path, port: int | None = None, env: dict | None = None) -> tuple[Proc, int]:
    port = port or free_port()
    argv = [sys.executable, "-m", "mlcommons", "api", "--redis-url", redis_url, "--port", str(port)]
    return Proc(f"api-{port}", argv, log_dir, env), port


def wait_http(client: Client, timeout: float = 30.0) -> None:
    def up():
        try:
            return client.get("/", timeout=2).status in (200, 401)  # 401: up, with security on
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    wait_for(up, timeout, 0.1, f"the API at {client.base}")
