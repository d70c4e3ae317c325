"""Fixed histogram buckets, the same in every process, so that counts from several API
processes and several nodes add up bucket by bucket.

A histogram travels (in a heartbeat, or as deltas into a Redis hash) as its per-bucket counts,
not cumulative, the last one being +Inf's, plus the sum of the observed values.
"""
from __future__ import annotations

from bisect import bisect_left

# Seconds a request takes in the API, end to end (requests and predictions).
REQUEST_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds one forward pass takes on a node.
INFERENCE_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Documents in one forward pass.
BATCH_SIZE = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Histogram:
    """Counts per bucket and the sum; ``observe`` is a bisect and two additions. Not locked: the
    API's event loop is one thread, and the nodes observe under their counters' lock."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # le is inclusive: a value equal to a bound falls in that bound's bucket
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> dict:
        return {"counts": list(self.counts), "sum": round(self.sum, 6)}


def cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Prometheus' buckets (``le`` -> count of values at most ``le``) from per-bucket counts; a
    short or long list (another version's buckets) is fitted to ``bounds``."""
    counts = list(counts[:len(bounds) + 1]) + [0] * max(0, len(bounds) + 1 - len(counts))
    out, running = [], 0
    for bound, count in zip((*[_le(b) for b in bounds], "+Inf"), counts):
        running += int(count)
        out.append((bound, running))
    return out


def _le(bound: float) -> str:
    return repr(float(bound))
