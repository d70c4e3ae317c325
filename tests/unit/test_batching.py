"""Cutting a taken batch into forward passes: the plan is the cheapest under the cost model and
keeps the limits; the calibration measures a real runtime."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from workers.batching import calibrate, plan


def cost(groups, counts, overhead):
    return sum(overhead + len(g) * int(max(counts[g].max(), 1)) for g in groups)


def brute_force(counts, max_batch, max_tokens, overhead):
    """Every way to cut the sorted run into contiguous groups (small n only)."""
    order = np.argsort(counts, kind="stable")
    n, best = len(order), None
    for cuts in itertools.product([0, 1], repeat=n - 1):
        groups, start = [], 0
        for i, cut in enumerate(cuts, 1):
            if cut:
                groups.append(order[start:i])
                start = i
        groups.append(order[start:])
        if any(len(g) > max_batch or (len(g) > 1 and len(g) * counts[g].max() > max_tokens) for g in groups):
            continue
        c = cost(groups, counts, overhead)
        best = c if best is None else min(best, c)
    return best


@pytest.mark.parametrize("seed", range(20))
def test_plan_is_the_cheapest_and_keeps_the_limits(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(3, 60, size=rng.integers(1, 11))
    max_batch, max_tokens, overhead = int(rng.integers(1, 8)), int(rng.integers(60, 400)), float(rng.integers(0, 60))
    groups = plan(counts, max_batch, max_tokens, overhead)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(counts)))
    for g in groups:
        assert len(g) <= max_batch
        assert len(g) == 1 or len(g) * counts[g].max() <= max_tokens
    assert cost(groups, counts, overhead) == brute_force(counts, max_batch, max_tokens, overhead)


def test_equal_lengths_stay_one_pass_and_a_long_outlier_is_cut_off():
    assert len(plan(np.full(32, 20), 32, 100_000, 30.0)) == 1
    counts = np.array([12] * 31 + [500])
    groups = plan(counts, 32, 100_000, 30.0)
    assert [len(g) for g in groups] == [31, 1]
    # no overhead at all: nothing is ever padded
    assert all(len(set(np.array([5, 5, 9, 9, 9])[g])) == 1 for g in plan(np.array([5, 5, 9, 9, 9]), 8, 999, 0.0))


def test_calibrate_measures_a_real_runtime(tiny):
    import zipfile

    from tests.modelkit import model_doc
    from workers.runtimes import load_runtime

    zip_path, info = tiny
    folder = zip_path.parent / "calibrate"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(folder)
    runtime = load_runtime(folder, model_doc(info))
    overhead = calibrate(runtime)
    assert 0.0 <= overhead <= 256.0
