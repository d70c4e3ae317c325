"""Reading GET /_prometheus/metrics in tests: the exposition parsed by prometheus-client's own
parser (so it must parse), and the sum of the samples that match some labels."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Client

METRICS = "/_prometheus/metrics"


def scrape(api: Client) -> dict[str, list]:
    """Family name -> its samples."""
    resp = api.request("GET", METRICS)
    assert resp.status == 200, resp.body
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {family.name: family.samples for family in text_string_to_metric_families(resp.body)}


def value(families: dict, sample_name: str, **labels) -> float:
    """The sum of the samples called ``sample_name`` whose labels include ``labels``."""
    family = sample_name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
    return sum(s.value for s in families.get(family, ()) if s.name == sample_name
               and all(s.labels.get(k) == v for k, v in labels.items()))
