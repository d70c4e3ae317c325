"""An Elasticsearch deployment's settings as it was started (and later updated), typed: what
``_start`` validated, where it was placed, and what ``_update`` and the adaptive allocations
scaler changed. Stored under the serving spec's ``es`` (core/serving/spec.py); encoded and
decoded only here."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mlcommons.core.serving.spec import ServingSpec

DEFAULT_QUEUE_CAPACITY = 10_000


@dataclass(frozen=True)
class EsDeployment:
    deployment_id: str | None = None
    model_id: str | None = None
    start_time: int | None = None  # ms
    target_nodes: list[str] = field(default_factory=list)
    number_of_allocations: int | None = None  # over all nodes; 0: an adaptive deployment scaled to zero
    threads_per_allocation: int = 1
    queue_capacity: int = DEFAULT_QUEUE_CAPACITY
    priority: str = "normal"
    cache_size: int | None = None
    adaptive_allocations: dict[str, Any] | None = None

    @classmethod
    def of(cls, doc: dict[str, Any] | None) -> EsDeployment | None:
        spec = ServingSpec.of(doc)
        if spec is None or not spec.es:
            return None
        raw = spec.es
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})

    def encode(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items()
                if value is not None or name == "number_of_allocations"}

    def with_(self, **changes: Any) -> EsDeployment:
        return replace(self, **changes)

    @property
    def adaptive(self) -> dict[str, Any] | None:
        """``adaptive_allocations`` when enabled, else None."""
        value = self.adaptive_allocations
        return value if isinstance(value, dict) and value.get("enabled") else None

    @property
    def asleep(self) -> bool:
        """An adaptive deployment scaled to zero: a request to it must wake it."""
        return self.number_of_allocations == 0 and self.adaptive is not None
