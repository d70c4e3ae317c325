"""Adaptive allocations: how many allocations a deployment needs for the load it sees.

This is Elasticsearch's adaptive allocations scaler, as pure arithmetic: no I/O, no clock. The
caller polls its stats every tick (Elasticsearch: 10 s), passes in what changed and the time, and
applies the answer.

How it decides:

* Each tick gives a request count (successes + failures + queued requests) over ``dt`` seconds
  and the mean inference time of the successes. Two smoothed estimates follow them, each a
  one-dimensional Kalman filter that weighs a new measurement against the estimate by their
  variances. Requests are treated as a Poisson process, so the rate ``r = count/dt`` has variance
  ``max(1, r̂·dt)/dt²`` (at least one request's worth of noise, taken from the estimate rather
  than the noisy measurement). The mean inference time is assumed to have a spread equal to its
  value, so its variance is ``t̂²/count``.
* The filters smooth over about 100 ticks (process noise = variance/100), but react at once to a
  change: the rate filter treats a measurement more than ten standard deviations from its
  estimate as a jump, and the time filter is told when the allocation count changed. For that
  tick and the next the process noise becomes ``x²``, so the estimate all but resets to the new
  measurement.
* The load (busy allocations) is rate × time, with a band from the two estimates' errors:
  ``lo = max(0, r̂−e_r)·max(0, t̂−e_t)`` and ``hi = (r̂+e_r)(t̂+e_t)`` (time counts as 1 s until
  measured). Starting from the current count, add allocations while even ``lo`` would keep each
  one over 90% busy, then drop them while even ``hi`` would leave the rest under 85% busy. The
  gap between the thresholds, and the use of the band, keeps the count from flapping.
* The result is capped at 32 when no maximum is set, clamped to [min, max], and set to 0 when the
  minimum allows it and no request has come for ``scale_to_zero_seconds``. A scale-down is held
  back for a cooldown after a scale-up or a node start, and while any part is still starting, so
  a fresh allocation is not judged by a load measured before it could help.
* From zero the scaler sees no load (nothing runs), so a request that finds no allocation asks
  for one: :meth:`AdaptiveAllocationsScaler.scale_from_zero`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar


class KalmanFilter1d:
    """Running estimate of a noisy quantity and its standard error."""

    def __init__(self, smoothing: float = 100.0, detect_jumps: bool = True) -> None:
        self.smoothing = smoothing
        """Roughly how many measurements the estimate averages over in a steady state."""
        self.detect_jumps = detect_jumps
        """Treat a measurement far outside the estimate's error as a change in what is measured."""
        self.estimate = math.nan
        self.variance = math.inf
        self._changed_last_time = False

    @property
    def has_value(self) -> bool:
        return not math.isinf(self.variance)

    @property
    def error(self) -> float:
        """One standard error of :attr:`estimate`."""
        return math.sqrt(self.variance)

    def add(self, value: float, variance: float, dynamics_changed: bool = False) -> None:
        """Take a measurement with its variance. ``dynamics_changed``: the measured quantity is
        known to have changed since the last one (say, the allocation count changed)."""
        if not self.has_value:
            self.estimate, self.variance = value, variance
            # The first measurement is a change from nothing: the next step still moves fast.
            self._changed_last_time = True
            return
        changed = dynamics_changed or (self.detect_jumps and self._is_jump(value, variance))
        process_noise = value ** 2 if changed or self._changed_last_time else variance / self.smoothing
        prior = self.variance + process_noise
        gain = prior / (prior + variance) if prior + variance > 0 else 1.0
        self.estimate += gain * (value - self.estimate)
        self.variance = (1 - gain) * prior
        self._changed_last_time = changed

    def _is_jump(self, value: float, variance: float) -> bool:
        # More than 10 standard deviations of the combined error away.
        spread = variance + self.variance
        miss = (value - self.estimate) ** 2
        return miss > 100.0 * spread


@dataclass(frozen=True, kw_only=True)
class ScalerConfig:
    """A deployment's adaptive allocations settings and the cluster-wide timings."""

    SCALE_UP_THRESHOLD: ClassVar[float] = 0.9
    """Add allocations while the low load estimate keeps each one busier than this."""
    SCALE_DOWN_THRESHOLD: ClassVar[float] = 0.85
    """Remove allocations while the high load estimate keeps the rest less busy than this."""

    min_allocations: int | None = None
    """``min_number_of_allocations``; None or 0 lets an idle deployment scale to zero."""
    max_allocations: int | None = None
    """``max_number_of_allocations``; None means :attr:`max_allocations_cap`."""
    scale_to_zero_seconds: float = 24 * 3600.0
    """Idle time before scaling to zero (``…adaptive_allocations.scale_to_zero_time``)."""
    scale_down_cooldown_seconds: float = 300.0
    """No scale-down this long after a scale-up or a node start (``scale_up_cooldown_time``)."""
    max_allocations_cap: int = 32
    """Safety cap used when no maximum is set."""

    def __post_init__(self) -> None:
        if self.min_allocations is not None and self.min_allocations < 0:
            raise ValueError("min_allocations must be at least 0")
        if self.max_allocations is not None and self.max_allocations < 1:
            raise ValueError("max_allocations must be at least 1")
        if (self.min_allocations is not None and self.max_allocations is not None
                and self.min_allocations > self.max_allocations):
            raise ValueError("min_allocations must not exceed max_allocations")


@dataclass(frozen=True)
class Stats:
    """What a deployment did since the last tick, summed over its nodes."""

    success_count: int = 0
    """Inferences completed."""
    pending_count: int = 0
    """Requests waiting in the queue."""
    failed_count: int = 0
    """Errors, timeouts and rejections."""
    inference_time: float | None = None
    """Mean seconds per successful inference; None when there was none."""

    @property
    def request_count(self) -> int:
        return self.success_count + self.pending_count + self.failed_count

    def __add__(self, other: Stats) -> Stats:
        """Two nodes' stats together; inference times are averaged by their success counts."""
        timed = [s for s in (self, other) if s.success_count > 0 and s.inference_time is not None]
        timed_count = sum(s.success_count for s in timed)
        mean = sum(s.success_count * s.inference_time for s in timed) / timed_count if timed else None
        return Stats(self.success_count + other.success_count, self.pending_count + other.pending_count,
                     self.failed_count + other.failed_count, mean)


class AdaptiveAllocationsScaler:
    """Decides a deployment's allocation count from its measured load. Feed it :meth:`process`
    each tick, ask :meth:`desired_allocations`, and report what was applied with
    :meth:`set_current`."""

    def __init__(self, deployment_id: str, current_allocations: int, config: ScalerConfig) -> None:
        self.deployment_id = deployment_id
        self.current = current_allocations
        """The allocation count now."""
        self.config = config
        """Replace it when the deployment's settings change."""
        self.rate = KalmanFilter1d(detect_jumps=True)
        """Requests per second."""
        self.inference_time = KalmanFilter1d(detect_jumps=False)
        """Seconds per inference; it changes with the allocation count, which we are told about."""
        self.starting = False
        """Set while any part of the deployment is still starting: no scale-down meanwhile."""
        self._last_request: float | None = None
        self._last_scale_up: float | None = None
        self._last_started: float | None = None
        self._allocations_changed = False

    def process(self, stats: Stats, elapsed_seconds: float, now: float) -> None:
        """Take one tick's stats (summed over nodes), covering the ``elapsed_seconds`` up to
        ``now``: updates the rate and inference time estimates and the idle clock."""
        if elapsed_seconds <= 0:
            return  # no time, no rate
        count = stats.request_count
        if count > 0 or self._last_request is None:
            # Before the first request the idle clock runs from when we started watching.
            self._last_request = now if count > 0 else now - elapsed_seconds
        dt = elapsed_seconds
        rate = count / dt
        rate_estimate = self.rate.estimate if self.rate.has_value else rate
        self.rate.add(rate, max(1.0, rate_estimate * dt) / dt ** 2)
        if stats.success_count > 0 and stats.inference_time is not None:
            t = stats.inference_time
            t_estimate = self.inference_time.estimate if self.inference_time.has_value else t
            self.inference_time.add(t, t_estimate ** 2 / count, self._allocations_changed)
        self._allocations_changed = False

    def load_range(self) -> tuple[float, float]:
        """The low and high estimates of how many allocations' worth of work is arriving."""
        e_r = self.rate.error
        t, e_t = 1.0, 0.0  # until an inference time is measured
        if self.inference_time.has_value:
            t, e_t = self.inference_time.estimate, self.inference_time.error
        lo = max(0.0, self.rate.estimate - e_r) * max(0.0, t - e_t)
        hi = (self.rate.estimate + e_r) * (t + e_t)
        return lo, hi

    def needed_allocations(self) -> int:
        """The count the load calls for, from the current one, before any limit or cooldown."""
        lo, hi = self.load_range()
        n = self.current
        # Multiplied out rather than divided, so that a count of 0 needs no special case.
        while lo > ScalerConfig.SCALE_UP_THRESHOLD * n:
            n += 1
        while n > 1 and hi < ScalerConfig.SCALE_DOWN_THRESHOLD * (n - 1):
            n -= 1
        return n

    def desired_allocations(self, now: float) -> int | None:
        """The count to move to, or None to stay (no estimate yet, already there, or a
        scale-down held back)."""
        if not self.rate.has_value:
            return None
        cfg = self.config
        n = self.needed_allocations()
        if cfg.max_allocations is None:
            n = min(n, cfg.max_allocations_cap)
        if cfg.min_allocations is not None:
            n = max(n, cfg.min_allocations)
        if cfg.max_allocations is not None:
            n = min(n, cfg.max_allocations)
        if not cfg.min_allocations and self._idle_for(now) > cfg.scale_to_zero_seconds:
            n = 0
        if n == self.current or (n < self.current and self._cooling_down(now)):
            return None
        return n

    def set_current(self, allocations: int, now: float) -> None:
        """The allocation count was changed (by us) to ``allocations`` at ``now``."""
        if allocations > self.current:
            self._last_scale_up = now
        if allocations != self.current:
            self._allocations_changed = True
        self.current = allocations

    def note_started(self, now: float) -> None:
        """A node started serving the deployment at ``now``; no scale-down for a cooldown."""
        self._last_started = now

    def record_request(self, now: float) -> None:
        """A request arrived at ``now``: the deployment is not idle."""
        self._last_request = now

    def scale_from_zero(self, now: float | None = None) -> int | None:
        """A request arrived (at ``now``, when given) and found no allocation: the count to
        move to, 1, or None when there are allocations already."""
        if now is not None:
            self.record_request(now)
        return 1 if self.current == 0 else None

    def _idle_for(self, now: float) -> float:
        return 0.0 if self._last_request is None else now - self._last_request

    def _cooling_down(self, now: float) -> bool:
        cooldown = self.config.scale_down_cooldown_seconds
        return self.starting or any(t is not None and now < t + cooldown
                                    for t in (self._last_scale_up, self._last_started))
