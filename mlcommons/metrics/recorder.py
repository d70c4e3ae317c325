"""The API process's request metrics, made cluster-wide without a Redis round trip per request.

Each API process counts in its own memory (a dict increment and a bisect per request) and, about
once a second, adds what it counted since the last time to Redis hashes with HINCRBY and
HINCRBYFLOAT in one pipeline: one round trip a second whatever the load, and none on the hot
path. A scrape, by whichever process it reaches, reads the hashes, so it sees every process's
requests. Deltas rather than each process's totals: the hashes only grow, so a counter never goes
down when an API process restarts (Prometheus would read that as a reset), and the counts of a
process that is gone stay counted. What a process counted in its last second before a crash is
lost; a clean stop flushes.

Label values are bounded: ``route`` is the router's template (``other`` when none matched),
``status`` a number, and ``model`` the serving unit a prediction reached (``core`` notes it through
``context.note_model``, so an id that names nothing never becomes a label). A process labels at
most :data:`MAX_MODELS` distinct models; past that, predictions count under ``model=""``.
"""
from __future__ import annotations

import asyncio
import logging

from mlcommons.metrics import buckets
from mlcommons.metrics.buckets import Histogram

log = logging.getLogger(__name__)

SEP = "\t"  # between the label values of a hash field; no route, method, status or unit id holds one
MAX_MODELS = 1000
MAX_MODEL_ID = 512
# The hashes (Keys.metrics(name)).
HTTP_REQUESTS = "http_requests"        # route SEP method SEP status -> count
HTTP_SECONDS = "http_seconds"          # route SEP method SEP bucket index | "sum" -> count | seconds
PREDICT_REQUESTS = "predict_requests"  # model SEP outcome -> count
PREDICT_SECONDS = "predict_seconds"    # model SEP bucket index | "sum" -> count | seconds
HASHES = (HTTP_REQUESTS, HTTP_SECONDS, PREDICT_REQUESTS, PREDICT_SECONDS)

# Every prediction entry point, as the router names it: (method, route template).
PREDICT_ROUTES = frozenset({
    ("POST", "/_plugins/_ml/models/{model_id}/_predict"),
    ("POST", "/_plugins/_ml/_predict/{algorithm}/{model_id}"),
    ("POST", "/_ml/trained_models/{model_id}/_infer"),
    ("POST", "/_ml/trained_models/{model_id}/deployment/_infer"),
    ("POST", "/_inference/{first}"),
    ("POST", "/_inference/{first}/{second}"),
    ("POST", "/v1/embeddings"),
})
OK, ERROR, REJECTED, TIMEOUT = "ok", "error", "rejected", "timeout"
_STATUS_OF = {OK: 200, ERROR: 500, REJECTED: 429, TIMEOUT: 504}  # an outcome put back after a failed flush


def outcome(status: int) -> str:
    if status < 400:
        return OK
    if status == 429:
        return REJECTED
    if status in (408, 504):
        return TIMEOUT
    return ERROR


class Tally:
    """Counts by status, and a histogram of seconds, since the last flush: the middleware finds
    its route's (and a prediction's model's) with one dict lookup and adds to it."""

    __slots__ = ("statuses", "seconds")

    def __init__(self):
        self.statuses: dict[int, int] = {}
        self.seconds = Histogram(buckets.REQUEST_SECONDS)

    def record(self, status: int, seconds: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.seconds.observe(seconds)

    def take(self) -> tuple[dict[int, int], Histogram]:
        taken = self.statuses, self.seconds
        self.statuses, self.seconds = {}, Histogram(buckets.REQUEST_SECONDS)
        return taken


class Slot(Tally):
    """A route template and method's tally."""

    __slots__ = ("route", "method", "predict")

    def __init__(self, route: str, method: str):
        super().__init__()
        self.route = route
        self.method = method
        self.predict = (method, route) in PREDICT_ROUTES


class Recorder:
    """One API process's counts since the last flush. Used on the event loop only."""

    def __init__(self):
        self._slots: dict[tuple[str, str], Slot] = {}
        self._by_label: dict[str, Tally] = {}  # model label ("" for none or too many) -> its tally
        self._models: dict[str | None, Tally] = {}  # unit id as noted -> its label's tally (a cache)

    def slot(self, route: str, method: str) -> Slot:
        """The tally of ``route`` (a template, or "other") and ``method`` (bounded by the caller)."""
        slot = self._slots.get((route, method))
        if slot is None:
            slot = self._slots[(route, method)] = Slot(route, method)
        return slot

    def prediction(self, model: str | None, status: int, seconds: float) -> None:
        tally = self._models.get(model)
        if tally is None:
            tally = self._model_tally(model)
        tally.record(status, seconds)

    def _model_tally(self, model: str | None) -> Tally:
        label = model if model and len(model) <= MAX_MODEL_ID and SEP not in model and (
            model in self._by_label or len(self._by_label) < MAX_MODELS) else ""
        tally = self._by_label.get(label)
        if tally is None:
            tally = self._by_label[label] = Tally()
        if len(self._models) <= 2 * MAX_MODELS:  # past that, ids are looked up again (and folded)
            self._models[model] = tally
        return tally

    def take(self) -> dict[str, dict[str, float]]:
        """What was counted since the last call, as hash -> field -> increment (and reset)."""
        out: dict[str, dict[str, float]] = {name: {} for name in HASHES}
        for slot in self._slots.values():
            if slot.statuses:
                statuses, hist = slot.take()
                for status, count in statuses.items():
                    out[HTTP_REQUESTS][f"{slot.route}{SEP}{slot.method}{SEP}{status}"] = count
                _histogram_fields(out[HTTP_SECONDS], f"{slot.route}{SEP}{slot.method}", hist)
        for label, tally in self._by_label.items():
            if tally.statuses:
                statuses, hist = tally.take()
                outcomes: dict[str, int] = {}
                for status, count in statuses.items():
                    outcomes[outcome(status)] = outcomes.get(outcome(status), 0) + count
                for result, count in outcomes.items():
                    out[PREDICT_REQUESTS][f"{label}{SEP}{result}"] = count
                _histogram_fields(out[PREDICT_SECONDS], label, hist)
        return out

    async def flush(self, client, keys) -> None:
        """Add the counts since the last flush to the cluster's hashes, in one round trip. On
        failure (Redis away) they are put back, to go with the next flush."""
        deltas = self.take()
        if not any(deltas.values()):
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                for name, fields in deltas.items():
                    key = keys.metrics(name)
                    for field, value in fields.items():
                        if isinstance(value, float):
                            pipe.hincrbyfloat(key, field, value)
                        else:
                            pipe.hincrby(key, field, value)
                await pipe.execute()
        except Exception:
            self._put_back(deltas)
            raise

    def _put_back(self, deltas: dict[str, dict[str, float]]) -> None:
        """Merge unflushed deltas back (request counts only: a lost second of histogram buckets
        is not worth the bookkeeping)."""
        for field, count in deltas[HTTP_REQUESTS].items():
            route, method, status = field.split(SEP)
            statuses = self.slot(route, method).statuses
            statuses[int(status)] = statuses.get(int(status), 0) + int(count)
        for field, count in deltas[PREDICT_REQUESTS].items():
            model, result = field.split(SEP)
            tally = self._by_label.get(model) or self._model_tally(model)
            status = _STATUS_OF[result]
            tally.statuses[status] = tally.statuses.get(status, 0) + int(count)

    async def run(self, client, keys, interval: float = 1.0) -> None:
        """Flush every ``interval`` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.flush(client, keys)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis away for a moment: the counts wait for the next flush
                    log.warning("metrics flush failed: %s", exc)
        finally:
            try:
                await self.flush(client, keys)
            except Exception:  # stopping without Redis: this last second is lost
                pass


def _histogram_fields(out: dict[str, float], prefix: str, hist: Histogram) -> None:
    for index, count in enumerate(hist.counts):
        if count:
            out[f"{prefix}{SEP}{index}"] = count
    out[f"{prefix}{SEP}sum"] = float(hist.sum)
