"""The API's OpenAPI 3.1 description, built as plain dicts: one module per dialect (``opensearch``,
``elasticsearch``, ``platform`` for the cluster, security, OpenAI and the service's own pages),
``document`` putting them together, and ``handlers`` serving it at GET /_plugins/_ml/openapi.json.

A unit test holds the description to the router (tests/unit/test_openapi.py), and schemathesis
holds the live stack to the description (tests/integration/test_openapi_live.py)."""
