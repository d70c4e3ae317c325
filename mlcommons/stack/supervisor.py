"""The single-machine stack's supervisor: starts each part as a child process, restarts a part
that dies (a crashed worker comes back as the same node), and stops them all in order.

Each part's pid is written to ``<data>/run/<name>.pid`` and its output to ``<data>/logs/<name>.log``,
so that operators (and the chaos command) can find them.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mlcommons.stack.procutil import die_with_parent, stop_process

log = logging.getLogger(__name__)


FATAL = 3  # the exit code of a part that cannot start (port in use, no Redis, no torch): not restarted
GIVE_UP_AFTER = 5  # exits in a row, each within 10 s of its start, before the supervisor gives up


@dataclass
class Part:
    name: str
    start: Callable[[], subprocess.Popen]
    stop_timeout: float = 30.0
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = 0.5
    started_at: float = field(default=0.0)
    quick_deaths: int = 0


class Supervisor:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.logs = data_dir / "logs"
        self.run_dir = data_dir / "run"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.parts: list[Part] = []
        self.stopping = False
        self.ready = False  # once the stack has come up, a FATAL exit is retried like any other

    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "ab") as log_file:
            return subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=die_with_parent)

    def add(self, name: str, start: Callable[[], subprocess.Popen], stop_timeout: float = 30.0,
            running: subprocess.Popen | None = None) -> Part:
        """Supervise a part: ``start`` (re)starts it; ``running`` adopts one already started."""
        part = Part(name, start, stop_timeout)
        self.parts.append(part)
        self._start(part, running)
        return part

    def _start(self, part: Part, running: subprocess.Popen | None = None) -> None:
        part.proc = running or part.start()
        part.started_at = time.monotonic()
        (self.run_dir / f"{part.name}.pid").write_text(f"{part.proc.pid}\n")

    def check(self) -> Part | None:
        """Restart any part that exited, with a growing pause if it keeps dying at once. Returns
        the part it gives up on: one that exits FATAL before the stack is ready, or one that died
        within seconds of its start GIVE_UP_AFTER times in a row."""
        now = time.monotonic()
        for part in self.parts:
            if self.stopping or part.proc is None or part.proc.poll() is None:
                continue
            if part.next_start == 0.0:
                code = part.proc.returncode
                lived = now - part.started_at
                # only deaths of its own (an exit code): one killed by a signal (an operator, the
                # chaos command, the OOM killer) is restarted however often it happens
                part.quick_deaths = part.quick_deaths + 1 if lived <= 10 and code > 0 else 0
                if (code == FATAL and not self.ready) or part.quick_deaths >= GIVE_UP_AFTER:
                    log.error("%s exited (code %s) after %.1fs; giving up", part.name, code, lived)
                    return part
                # A part that ran for a while is restarted at once; one that keeps dying at
                # start waits longer each time (up to 5 s), so a crash loop does not spin.
                part.backoff = 0.5 if lived > 10 else min(part.backoff * 2, 5.0)
                part.next_start = now + (0.1 if lived > 10 else part.backoff)
                log.warning("%s exited (code %s) after %.1fs; restarting", part.name, code, lived)
            elif now >= part.next_start:
                part.next_start = 0.0
                part.restarts += 1
                self._start(part)
                print(f"{part.name:<10} restarted (pid {part.proc.pid})", flush=True)
        return None

    def cause(self, part: Part, lines: int = 15) -> str:
        """The last lines of a part's log: why it stopped."""
        try:
            text = (self.logs / f"{part.name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the parts in the reverse order of their start."""
        self.stopping = True
        for part in reversed(self.parts):
            if part.proc is not None:
                code = stop_process(part.proc, part.stop_timeout)
                log.info("%s stopped (exit %s)", part.name, code)
            pid_file = self.run_dir / f"{part.name}.pid"
            if pid_file.exists():
                pid_file.unlink()


def pid_of(data_dir: Path, name: str) -> int | None:
    path = Path(data_dir) / "run" / f"{name}.pid"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def environment(**extra: str) -> dict:
    return {**os.environ, **extra}
