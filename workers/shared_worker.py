"""The node's second rq worker: the shared queue, in a thread of the node process.

Registers come from the shared queue, and one may download for minutes; deploys and undeploys
come from the node's own queue and must not wait behind it. So the node's main rq worker serves
only its own queue, and this one serves the shared queue beside it. It is a thread rather than a
process so that a register can still reach the node (its stop flag) and costs no second copy of
the imports. A thread can install no signal handlers and has no SIGALRM, so this worker installs
none, takes job time-outs from a timer (rq's ``TimerDeathPenalty``, which raises in this thread
only), and polls for work in short waits so that it notices a stop request.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from rq import SimpleWorker
from rq.timeouts import JobTimeoutException, TimerDeathPenalty

log = logging.getLogger(__name__)

POLL_SECONDS = 1


class SharedJobTimeout(JobTimeoutException):
    """A shared-queue job ran past its time-out. Its own class: ``TimerDeathPenalty`` rewrites the
    message of the class it raises, which must not be rq's own (the main worker's)."""


class _TimerPenalty(TimerDeathPenalty):
    def __init__(self, timeout, exception=JobTimeoutException, **kwargs):
        super().__init__(timeout, SharedJobTimeout if exception is JobTimeoutException else exception, **kwargs)


class ThreadWorker(SimpleWorker):
    """A ``SimpleWorker`` fit for a thread that is not the main one; setting ``stopped`` ends it
    after its current job."""

    death_penalty_class = _TimerPenalty

    def __init__(self, *args, stopped: threading.Event, **kwargs):
        super().__init__(*args, **kwargs)
        self.stopped = stopped

    def _install_signal_handlers(self) -> None:
        """Signals belong to the main thread (the node's main worker)."""

    def request_stop(self, signum=None, frame=None) -> None:
        """rq's shutdown command, without the signal handlers rq's own version installs."""
        self.stopped.set()

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        # Short waits (an idle one returns None) so that a stop is seen within POLL_SECONDS.
        while not self.stopped.is_set():
            result = super().dequeue_job_and_maintain_ttl(POLL_SECONDS, POLL_SECONDS)
            if result is not None:
                return result
        return None


def serve(make_worker: Callable[[threading.Event], ThreadWorker], stopped: threading.Event) -> None:
    """Run workers from ``make_worker(stopped)`` until ``stopped`` is set: rq's loop also ends on
    errors it does not handle (a Redis time-out), and the node must not lose this worker to one."""
    while not stopped.is_set():
        try:
            make_worker(stopped).work(with_scheduler=False, logging_level="WARNING")
        except Exception:
            log.exception("the shared-queue worker failed")
        if not stopped.wait(1.0):
            log.warning("the shared-queue worker stopped; starting it again")
