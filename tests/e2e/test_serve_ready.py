"""`mlcommons serve` is ready when it says so, and says why when it cannot start: its ready line
comes once the worker nodes have joined (a register-and-deploy sent right after it finds them); a
port in use, an unreachable Redis stop it at once with the cause and a non-zero exit; `mlcommons
worker` without Redis exits with a message instead of looping."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from mlcommons.stack.procutil import free_port
from tests.harness import ROOT, Client, child_env, wait_for

ML = "/_plugins/_ml"


def env() -> dict:
    return {k: v for k, v in child_env().items() if k not in ("MLCOMMONS_REDIS_URL",)}


def test_the_ready_line_comes_after_the_workers_joined(tmp_path):
    port = free_port()
    log_path = tmp_path / "serve.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlcommons", "serve", "--workers", "1", "--port", str(port),
                             "--dashboard-port", "0", "--data-dir", str(tmp_path / "data")], cwd=ROOT, env=env(),
                            stdout=log, stderr=subprocess.STDOUT)
    api = Client(f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: "ready      http://" in log_path.read_text() or proc.poll() is not None, 180, 0.02,
                 "the ready line")
        assert proc.poll() is None, log_path.read_text()
        # right after the ready line, as a client started by the same script would
        assert len(api.get("/_nodes").body["nodes"]) == 1
        health = api.get("/_cluster/health?wait_for_nodes=1&timeout=1s")
        assert health.status == 200 and health.body["number_of_nodes"] == 1
        resp = api.post(f"{ML}/models/_register?deploy=true", {
            "name": "huggingface/sentence-transformers/all-MiniLM-L6-v2", "version": "1.0.1",
            "model_format": "TORCH_SCRIPT"})
        assert resp.status == 200, resp.body
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(120)
        log.close()
    assert code == 0, log_path.read_text()


def test_a_port_in_use_stops_serve_at_once_with_the_cause(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "mlcommons", "serve", "--workers", "0", "--port", str(port),
                               "--dashboard-port", "0", "--data-dir", str(tmp_path / "data")], cwd=ROOT, env=env(),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert time.monotonic() - started < 30 and "restarted" not in done.stdout


def test_an_unreachable_redis_stops_serve_and_worker_with_the_cause(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = subprocess.run([sys.executable, "-m", "mlcommons", "serve", "--workers", "0", "--port", str(free_port()),
                           "--dashboard-port", "0", "--data-dir", str(tmp_path / "data"), "--redis-url", url],
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"cannot reach Redis at {url}" in done.stderr, done.stderr
    done = subprocess.run([sys.executable, "-m", "mlcommons", "worker", "--redis-url", url, "--data-dir",
                           str(tmp_path / "node")], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and f"mlcommons worker: cannot reach Redis at {url}" in done.stderr, done.stderr
