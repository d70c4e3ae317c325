"""`mlcommons serve` with the dashboard on: a crashed API is restarted as the API (not as another
dashboard), the dashboard keeps answering meanwhile, and the dashboard refuses a rebound Host or a
cross-site request before rq-dashboard sees it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mlcommons.stack.procutil import free_port
from mlcommons.stack.supervisor import pid_of
from tests.harness import ROOT, Client, child_env, wait_for, wait_http


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def files_closed(pid: int) -> bool:
    """Every thread of ``pid`` has exited (the leader may be a zombie): its files are closed."""
    try:
        tasks = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
        return tasks == [str(pid)] and "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return True


def answers(client: Client) -> bool:
    try:
        return client.get("/", timeout=2).status == 200
    except OSError:
        return False


def test_a_killed_api_comes_back_and_the_dashboard_stays(tmp_path):
    port, dashboard_port = free_port(), free_port()
    data = tmp_path / "data"
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlcommons", "serve", "--workers", "0", "--port", str(port),
                             "--dashboard-port", str(dashboard_port), "--data-dir", str(data),
                             "--api-processes", "2"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={k: v for k, v in child_env().items() if k != "MLCOMMONS_REDIS_URL"})
    api = Client(f"http://127.0.0.1:{port}")
    board = Client(f"http://127.0.0.1:{dashboard_port}")
    try:
        wait_http(api, timeout=120)
        # Both API processes listen once serve says it is ready (one alone may answer before).
        wait_for(lambda: any(line.startswith("ready ") for line in (tmp_path / "serve.log").read_text().splitlines()),
                 120, 0.05, "serve's ready line")
        wait_for(lambda: answers(board), 60, 0.1, "the dashboard")

        # The dashboard answers its own names only, and nothing a browser marks as cross-site.
        resp = board.get("/", headers={"Host": f"evil.example:{dashboard_port}"})
        assert resp.status == 421 and resp.body["error"]["reason"].startswith("Host [evil.example:"), resp.body
        assert board.get("/", headers={"Host": f"localhost:{dashboard_port}"}).status == 200
        resp = board.post("/queue/mlc.shared/queued/empty", data=b"", headers={"Origin": "http://evil.example"})
        assert resp.status == 403 and resp.body["error"]["reason"].startswith("cross-site request refused")
        assert board.get("/requeue/mlc.shared", headers={"Sec-Fetch-Site": "cross-site"}).status == 403
        assert board.get("/0/data/queues.json").status == 200
        # A viewer: its actions are refused even from the address bar (GET /requeue re-ran jobs).
        resp = board.get("/requeue/mlc.shared")
        assert resp.status == 403 and resp.body["error"]["reason"].startswith("the dashboard is read-only"), resp.body
        assert board.post("/queue/mlc.shared/failed/empty", data=b"").status == 403
        assert board.post("/job/x/delete", data=b"").status == 403

        # Its Redis asks for a password, kept 0600 in the data dir, and no command line shows it.
        password = (data / "redis" / "password").read_text().strip()
        assert os.stat(data / "redis" / "password").st_mode & 0o777 == 0o600
        for pid in (pid_of(data, "api"), pid_of(data, "dashboard")):
            assert not any(password in part for part in cmdline(pid))
        assert password not in (tmp_path / "serve.log").read_text()

        api_pid, dashboard_pid = pid_of(data, "api"), pid_of(data, "dashboard")
        assert "api" in cmdline(api_pid) and "dashboard" in cmdline(dashboard_pid)
        second = pid_of(data, "api-2")  # two API processes on one port (the default with 2 cores)
        assert second and "--reuse-port" in cmdline(second)
        os.kill(api_pid, signal.SIGKILL)
        # Gone means its sockets are closed: a killed process's leader shows as a zombie while its
        # other threads, still exiting, hold the listening socket (connections routed to it are reset).
        wait_for(lambda: files_closed(api_pid), 10, 0.01, "the killed API to be gone")
        # the other API process answers meanwhile: no refused connection
        assert all(api.get("/_plugins/_ml/models/_search").status == 200 for _ in range(20))

        def api_back():
            pid = pid_of(data, "api")
            return pid not in (None, api_pid) and answers(api) and pid
        new_pid = wait_for(api_back, 60, 0.1, "the API to answer again on its port")
        assert "api" in cmdline(new_pid) and "dashboard" not in cmdline(new_pid)
        assert pid_of(data, "dashboard") == dashboard_pid and answers(board)
        assert api.get("/_plugins/_ml/models/_search").status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(90)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert code == 0, output
    assert "api        restarted" in output and "dashboard  restarted" not in output, output
