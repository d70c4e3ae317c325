"""The adaptive allocations scaler, driven by synthetic stats on a made-up clock."""
from __future__ import annotations

import pytest

from mlcommons.elasticsearch.adaptive import AdaptiveAllocationsScaler, KalmanFilter1d, ScalerConfig, Stats

TICK = 10.0


class Run:
    """A scaler and the watcher that polls it every TICK seconds and applies what it asks for."""

    def __init__(self, current: int = 1, **config) -> None:
        self.scaler = AdaptiveAllocationsScaler("d1", current, ScalerConfig(**config))
        self.now = 0.0
        self.changes: list[tuple[float, int]] = []

    def ticks(self, n: int, rate: float, seconds_per_inference: float = 0.05) -> int:
        """``n`` ticks of ``rate`` requests a second; returns the allocation count after them."""
        for _ in range(n):
            self.now += TICK
            count = round(rate * TICK)
            stats = Stats(success_count=count, inference_time=seconds_per_inference if count else None)
            self.scaler.process(stats, TICK, self.now)
            wanted = self.scaler.desired_allocations(self.now)
            if wanted is not None:
                self.scaler.set_current(wanted, self.now)
                self.changes.append((self.now, wanted))
        return self.scaler.current


def test_kalman_filter_converges_and_its_error_shrinks():
    f = KalmanFilter1d()
    assert not f.has_value
    f.add(10.0, 4.0)
    assert f.has_value and f.estimate == 10.0 and f.error == 2.0
    for value in [9.0, 11.0] * 50:
        f.add(value, 4.0)
    assert f.estimate == pytest.approx(10.0, abs=0.3)
    assert f.error < 1.0  # from 2.0: about the spread over the last ~10 measurements


def test_kalman_filter_follows_a_jump_only_when_it_detects_or_is_told():
    def settled(detect):
        f = KalmanFilter1d(detect_jumps=detect)
        for _ in range(100):
            f.add(10.0, 1.0)
        return f

    detecting, blind, told = settled(True), settled(False), settled(False)
    detecting.add(50.0, 1.0)
    blind.add(50.0, 1.0)
    told.add(50.0, 1.0, dynamics_changed=True)
    assert detecting.estimate == pytest.approx(50.0, rel=0.01)
    assert told.estimate == pytest.approx(50.0, rel=0.01)
    assert blind.estimate < 15.0


def test_steady_load_converges_to_under_ninety_percent_busy():
    run = Run(current=1)
    # 50 req/s × 0.05 s = 2.5 allocations busy: 3 allocations at 83% each, 2 would be at 125%.
    assert run.ticks(30, rate=50) == 3
    assert run.changes == [(TICK, 3)]
    assert run.scaler.rate.estimate == pytest.approx(50.0)
    assert run.scaler.inference_time.estimate == pytest.approx(0.05)
    assert run.ticks(100, rate=50) == 3  # and stays there


def test_a_sudden_rate_jump_is_followed_within_two_ticks():
    run = Run(current=1)
    run.ticks(60, rate=50)
    assert run.scaler.current == 3
    run.ticks(1, rate=150)  # 7.5 allocations busy: 9 needed (7.5/8 is over 90%)
    assert run.scaler.rate.estimate == pytest.approx(150.0, rel=0.05)
    assert run.ticks(1, rate=150) == 9


def test_a_load_drop_scales_down_only_after_the_cooldown():
    run = Run(current=1)
    assert run.ticks(1, rate=50) == 3
    scaled_up_at = run.now
    run.ticks(5, rate=50)
    run.ticks(1, rate=5)  # 0.25 allocations busy: 1 will do
    assert run.scaler.needed_allocations() == 1
    assert run.scaler.desired_allocations(run.now) is None
    while run.now + TICK < scaled_up_at + 300:
        assert run.ticks(1, rate=5) == 3
    assert run.ticks(1, rate=5) == 1
    assert run.changes[-1] == (scaled_up_at + 300, 1)


def test_no_scale_down_while_starting_or_after_a_node_start():
    run = Run(current=4)
    run.scaler.starting = True
    assert run.ticks(5, rate=5) == 4
    run.scaler.starting = False
    run.scaler.note_started(run.now)
    assert run.ticks(29, rate=5) == 4
    assert run.ticks(2, rate=5) == 1


def test_idle_past_scale_to_zero_time_scales_to_zero():
    run = Run(current=1, min_allocations=0, scale_to_zero_seconds=3600)
    run.ticks(10, rate=5)
    assert run.ticks(359, rate=0) == 1  # idle 3590 s
    assert run.ticks(2, rate=0) == 0


def test_scale_to_zero_uses_the_default_day_when_min_is_unset():
    run = Run(current=1)
    run.ticks(10, rate=5)
    assert run.ticks(8639, rate=0) == 1  # idle 10 s short of a day
    assert run.ticks(2, rate=0) == 0


def test_a_recorded_request_keeps_it_awake():
    run = Run(current=1, scale_to_zero_seconds=3600)
    run.ticks(300, rate=0)
    run.scaler.record_request(run.now)
    assert run.ticks(300, rate=0) == 1


def test_never_below_min():
    run = Run(current=3, min_allocations=2, scale_to_zero_seconds=60)
    assert run.ticks(50, rate=0) == 2
    assert run.scaler.needed_allocations() == 1


def test_max_clamps_and_thirty_two_caps_when_max_is_unset():
    heavy = dict(rate=50, seconds_per_inference=1.0)  # 50 allocations busy
    run = Run(current=1, max_allocations=4)
    assert run.ticks(3, **heavy) == 4
    run = Run(current=1)
    assert run.ticks(3, **heavy) == 32
    run = Run(current=1, max_allocations=40)
    assert run.ticks(3, **heavy) == 40


def test_scale_from_zero_gives_one_and_then_holds_it_for_the_cooldown():
    run = Run(current=0, scale_to_zero_seconds=60)
    assert run.scaler.scale_from_zero(run.now) == 1
    run.scaler.set_current(1, run.now)
    assert run.scaler.scale_from_zero(run.now) is None
    assert run.ticks(29, rate=0) == 1  # idle past 60 s, but within the 300 s cooldown
    assert run.ticks(2, rate=0) == 0


def test_a_changed_allocation_count_resets_the_inference_time_estimate():
    scaler = AdaptiveAllocationsScaler("d1", 1, ScalerConfig())
    for i in range(50):
        scaler.process(Stats(success_count=100, inference_time=0.05), TICK, TICK * (i + 1))
    scaler.set_current(2, 500.0)
    scaler.process(Stats(success_count=100, inference_time=0.1), TICK, 510.0)
    assert scaler.inference_time.estimate == pytest.approx(0.1, rel=0.05)


def test_stats_from_two_nodes_add_up():
    total = Stats(10, 1, 2, 0.1) + Stats(30, 0, 1, 0.2) + Stats(0, 3, 0, None)
    assert (total.success_count, total.pending_count, total.failed_count) == (40, 4, 3)
    assert total.request_count == 47
    assert total.inference_time == pytest.approx(0.175)


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        ScalerConfig(min_allocations=3, max_allocations=2)
    with pytest.raises(ValueError):
        ScalerConfig(min_allocations=-1)
