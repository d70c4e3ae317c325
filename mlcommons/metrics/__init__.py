"""Metrics and request context: ``GET /_prometheus/metrics`` for the whole cluster, the
X-Opaque-Id of the request being handled, and JSON log lines (docs/metrics.md).

``context`` and ``buckets`` import nothing of ours (the core and the workers use them);
``recorder`` counts an API process's requests; ``scrape`` reads the cluster; ``service`` is the
facade the handler calls; ``logs`` formats log lines."""
