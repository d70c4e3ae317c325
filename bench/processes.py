"""Where the CPU goes: the CPU time of every process of a running stack, read from /proc, and the
mean batch the worker nodes ran, read from their heartbeats.

    cpu = StackCPU(serve_pid)
    before = cpu.snapshot()
    ... load ...
    per_request = cpu.per_request(before, cpu.snapshot(), requests)   # {"worker": ms, "api": ms, ...}
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import redis

from mlcommons.store.keys import Keys

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process itself) or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [a.decode(errors="replace") for a in argv]
    line = " ".join(words)
    if "redis-server" in line:
        return "redis"
    for role in ("worker", "api", "dashboard", "serve"):
        if role in words:
            return role
    return "other"


class StackCPU:
    """The processes under ``root`` (a ``mlcommons serve``), grouped by what they are."""

    def __init__(self, root: int):
        self.root = root

    def pids(self) -> list[int]:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                stat = _stat(int(entry.name))
                if stat:
                    parents[int(entry.name)] = stat[0]
        found, frontier = [self.root], [self.root]
        while frontier:
            frontier = [pid for pid, parent in parents.items() if parent in frontier]
            found += frontier
        return found

    def snapshot(self) -> dict[int, tuple[str, float]]:
        out = {}
        for pid in self.pids():
            stat = _stat(pid)
            if stat:
                out[pid] = (_role(pid), stat[1])
        return out

    @staticmethod
    def per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
        """CPU milliseconds per request by role, over the processes alive at both ends."""
        spent: dict[str, float] = {}
        for pid, (role, seconds) in after.items():
            if pid in before:
                spent[role] = spent.get(role, 0.0) + seconds - before[pid][1]
        return {role: round(s * 1000 / max(1, requests), 3) for role, s in sorted(spent.items())
                if role not in ("serve", "dashboard", "other")}


def batch_counters(client: redis.Redis, keys: Keys, model_id: str) -> tuple[int, int]:
    """(documents run, batches run) for a model over every node, from their last heartbeats."""
    docs = batches = 0
    for node in client.smembers(keys.nodes()):
        raw = client.hget(keys.node(node.decode()), "models")
        entry = (orjson.loads(raw) if raw else {}).get(model_id, {})
        docs += entry.get("inference_count", 0)
        batches += entry.get("batches", 0)
    return docs, batches


def settled_counters(client: redis.Redis, keys: Keys, model_id: str, timeout: float = 15.0) -> tuple[int, int]:
    """The counters once the heartbeats have caught up: two reads a heartbeat and a half apart agree."""
    last = batch_counters(client, keys, model_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.5)
        now = batch_counters(client, keys, model_id)
        if now == last:
            return now
        last = now
    return last
