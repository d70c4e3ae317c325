"""A serving unit's own layout (the ``_serving`` field of its document), typed, and encoded and
decoded only here.

A plain ML Commons deploy has none: the node applies the settings
(``mlcommons.deploy.number_of_allocations``, ``threads_per_allocation``) and admission the
setting ``mlcommons.predict.queue_capacity``. An Elasticsearch ``_start`` (and later ``_update``
or the adaptive allocations scaler) gives one, with the Elasticsearch settings it was started
with under ``es``: the core reads only the per-node layout and whether ``es`` is there (an
Elasticsearch deployment's 0 allocations means scaled to zero, not "the default"); the
Elasticsearch package types ``es`` itself (``elasticsearch/spec.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

FIELD = "_serving"


@dataclass(frozen=True)
class ServingSpec:
    number_of_allocations: int | None = None   # allocation threads on each serving node
    threads_per_allocation: int | None = None
    queue_capacity: int | None = None          # the deployment queue's own capacity
    es: dict[str, Any] | None = field(default=None)  # Elasticsearch's deployment settings

    @classmethod
    def of(cls, doc: dict[str, Any] | None) -> ServingSpec | None:
        """The spec a unit's document carries, or None."""
        raw = (doc or {}).get(FIELD)
        if not raw:
            return None
        return cls(number_of_allocations=raw.get("number_of_allocations"),
                   threads_per_allocation=raw.get("threads_per_allocation"),
                   queue_capacity=raw.get("queue_capacity"), es=raw.get("es") or None)

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {"number_of_allocations": self.number_of_allocations,
                               "threads_per_allocation": self.threads_per_allocation,
                               "queue_capacity": self.queue_capacity}
        if self.es is not None:
            out["es"] = self.es
        return out

    def with_(self, **changes: Any) -> ServingSpec:
        return replace(self, **changes)


def fields(spec: ServingSpec | None) -> dict[str, Any]:
    """The document fields that store ``spec`` (None removes it)."""
    return {FIELD: spec.encode() if spec is not None else None}


def es_settings(doc: dict[str, Any] | None) -> dict[str, Any]:
    """The Elasticsearch settings a unit was started with ({} for none)."""
    spec = ServingSpec.of(doc)
    return (spec.es if spec is not None else None) or {}
