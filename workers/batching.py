"""How the texts an allocation took are cut into forward passes.

A forward pass costs about ``overhead + rows x padded length``: every row is padded to the
longest of its batch, and each pass pays a fixed price (on CPU mostly the GEMMs packing the
weights: measured for all-MiniLM-L6-v2 on one thread, about 8 ms a pass, as much as 30 tokens
of one row). Requests arrive in any order, so one batch of 32 one-sentence requests is padded to
its longest sentence; sentence-transformers, which sorts everything it is given by length, pays
26% less per document than the same 32 in arrival order.

:func:`plan` sorts the texts by token count and cuts the sorted run into the groups that cost
least under that model (an exact dynamic programme over at most ``max_batch`` texts a group),
within the batch limits. :func:`calibrate` measures the fixed price of a runtime in its own
units (tokens of one row), once, on the thread that will serve.
"""
from __future__ import annotations

import time

import numpy as np

from workers.runtimes import Runtime

_SAMPLE = "the quick brown fox jumps over the lazy dog near the bank of the river"
DEFAULT_OVERHEAD_TOKENS = 40.0  # where nothing was measured (MiniLM on one CPU thread: 30 x MARGIN)
MIN_OVERHEAD_TOKENS = 0.0
# Small passes run the GEMMs less efficiently than the straight line through one and eight rows
# says: the measured fixed cost is raised by a quarter, so that a cut must clearly pay. (Measured,
# MiniLM on one thread: with the bare figure a batch of 4 cost up to 4% more when cut; with 1.5
# times it, batches of 32 kept only a third of the gain.)
MARGIN = 1.25
MAX_OVERHEAD_TOKENS = 256.0


def plan(counts: np.ndarray, max_batch: int, max_tokens: int, overhead_tokens: float) -> list[np.ndarray]:
    """Row indices of each forward pass, shortest first: every row once, each group at most
    ``max_batch`` rows and ``max_tokens`` padded tokens (a single row may exceed it: it is
    truncated already), the groups minimising passes x overhead + padded tokens."""
    order = np.argsort(counts, kind="stable")
    n = len(order)
    if n <= 1:
        return [order]
    lengths = np.maximum(counts[order], 1).tolist()
    best = [0.0] + [float("inf")] * n
    start = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = lengths[end - 1]  # sorted ascending: the group's last row is its longest
        lowest, cut = float("inf"), end - 1
        for first in range(end - 1, max(-1, end - 1 - max_batch), -1):
            size = end - first
            if size > 1 and size * longest > max_tokens:
                break
            cost = best[first] + overhead_tokens + size * longest
            if cost < lowest:
                lowest, cut = cost, first
        best[end], start[end] = lowest, cut
    groups = []
    end = n
    while end > 0:
        groups.append(order[start[end]:end])
        end = start[end]
    groups.reverse()
    return groups


def calibrate(runtime: Runtime, cpu: bool = True) -> float:
    """A forward pass's fixed cost in tokens of one row, measured on this thread: one row and
    eight rows of the same text, the best of three each. CPU time on CPU (other threads' load does
    not count), wall time on an accelerator."""
    sample = [("a short query", _SAMPLE)] if hasattr(runtime, "tokenize_pairs") else [_SAMPLE]
    enc = runtime.tokenize(sample)
    clock = time.thread_time if cpu else time.perf_counter
    length = int(enc.token_counts[0])

    def best(rows: int) -> float:
        batch = enc.select([0] * rows)
        runtime.forward(batch)
        times = []
        for _ in range(3):
            started = clock()
            runtime.forward(batch)
            times.append(clock() - started)
        return min(times)

    one, eight = best(1), best(8)
    per_token = (eight - one) / (7 * length)
    if per_token <= 0:
        return MIN_OVERHEAD_TOKENS
    overhead = (one - length * per_token) / per_token * MARGIN
    return float(min(MAX_OVERHEAD_TOKENS, max(MIN_OVERHEAD_TOKENS, overhead)))
