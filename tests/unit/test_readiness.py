"""Readiness pieces: the supervisor gives up on a part that cannot start (exit 3 before the stack
is ready) instead of restarting it forever, and cluster health's wait conditions read as
OpenSearch reads them."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mlcommons.core import health
from mlcommons.errors import BadRequest
from mlcommons.stack.supervisor import FATAL, Supervisor
from tests.harness import wait_for


def test_a_part_that_cannot_start_is_given_up_with_its_cause(tmp_path):
    sup = Supervisor(tmp_path)
    part = sup.add("broken", lambda: sup.spawn("broken", [sys.executable, "-c",
                                                          f"print('port in use'); raise SystemExit({FATAL})"]))
    gave_up = wait_for(lambda: sup.check(), 10, 0.05, "the supervisor to give up")
    assert gave_up is part and "port in use" in sup.cause(part)
    sup.stop()


def test_after_ready_a_fatal_exit_is_restarted(tmp_path):
    sup = Supervisor(tmp_path)
    sup.ready = True
    part = sup.add("flaky", lambda: subprocess.Popen([sys.executable, "-c", f"raise SystemExit({FATAL})"]))
    first = part.proc.pid
    wait_for(lambda: sup.check() is None and part.proc.pid != first, 10, 0.05, "a restart")
    sup.stop()


@pytest.mark.parametrize("text, yes, no", [("2", 2, 3), (">=2", 3, 1), ("<=2", 1, 3), (">2", 3, 2), ("<2", 1, 2),
                                           ("ge(2)", 2, 1), ("lt(2)", 1, 2)])
def test_wait_for_nodes(text, yes, no):
    check = health.parse_wait_for_nodes(text)
    assert check(yes) and not check(no)


def test_wait_for_status_orders_green_yellow_red():
    state = {"status": "yellow", "number_of_nodes": 1}
    assert health.satisfied(state, "yellow", None) and health.satisfied(state, "red", None)
    assert not health.satisfied(state, "green", None)
    with pytest.raises(BadRequest):
        health.parse_wait_for_status("blue")
    with pytest.raises(BadRequest):
        health.parse_wait_for_nodes(">=x")


def test_a_part_killed_again_and_again_is_never_given_up(tmp_path):
    """The chaos command kills a worker within seconds of its start, round after round: that is
    not the part failing to start."""
    import signal

    sup = Supervisor(tmp_path)
    sup.ready = True
    part = sup.add("victim", lambda: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
    for _ in range(5):
        pid = part.proc.pid
        part.proc.send_signal(signal.SIGKILL)
        wait_for(lambda: sup.check() is None and part.proc.pid != pid, 20, 0.02, "a restart")
    sup.stop()
