"""The chaos command, a few rounds of each kind, as CI's smoke run of it (the README shows the
50-round run and the figures in its note); its stack runs rq-dashboard, which must keep answering."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.harness import ROOT, child_env


def test_chaos_rounds_leave_nothing_stuck_lost_or_hung(tmp_path):
    report = tmp_path / "chaos.json"
    run = subprocess.run([sys.executable, "bench/chaos.py", "--rounds", "5", "--report", str(report)],
                         cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    figures = json.loads(report.read_text())
    assert figures["rounds"] == 5
    assert figures["tasks_stuck"] == figures["models_lost"] == figures["requests_hung"] == 0
    assert figures["rounds_not_settled"] == figures["rounds_dashboard_down"] == 0
    assert figures["tasks_created"] > 0
