"""A model's rate_limiter: one token bucket in Redis for the whole cluster (core/serving/ratelimit.py)."""
from __future__ import annotations

import pytest

from mlcommons.core.models.records import rate_limiter
from mlcommons.core.serving import ratelimit
from mlcommons.errors import BadRequest


def test_a_bucket_from_ml_commons_fields():
    assert ratelimit.bucket({"limit": "2", "unit": "MINUTES"}) == (2 / 60_000, 2.0)
    assert ratelimit.bucket({"limit": "0.5", "unit": "SECONDS"}) == (0.5 / 1000, 1.0)  # at least one token
    assert ratelimit.bucket({"limit": "4"}) is None and ratelimit.bucket(None) is None


def test_the_limit_is_refused_unless_a_positive_number():
    assert rate_limiter({"limit": 4, "unit": "MINUTES"}) == {"limit": "4", "unit": "MINUTES"}
    for bad in ("-1", "many", "nan", "1e30", True):
        with pytest.raises(BadRequest, match="Limit field must be a positive number."):
            rate_limiter({"limit": bad, "unit": "MINUTES"})


def test_the_bucket_empties_and_is_shared_by_every_caller(redis_client, prefix):
    take = redis_client.register_script(ratelimit.TAKE_SCRIPT)
    rate, burst = ratelimit.bucket({"limit": "2", "unit": "MINUTES"})
    key = f"{prefix}:ratelimit:m"
    assert [take(keys=[key], args=[repr(rate), repr(burst)]) for _ in range(3)] == [1, 1, 0]
    # Another API process (another client) takes from the same bucket.
    other = redis_client.register_script(ratelimit.TAKE_SCRIPT)
    assert other(keys=[key], args=[repr(rate), repr(burst)]) == 0
    assert 0 < redis_client.pttl(key) <= 60_000 + 1000


def test_a_fast_bucket_refills(redis_client, prefix):
    take = redis_client.register_script(ratelimit.TAKE_SCRIPT)
    key = f"{prefix}:ratelimit:fast"
    rate, burst = ratelimit.bucket({"limit": "1000000", "unit": "SECONDS"})
    assert all(take(keys=[key], args=[repr(rate), repr(burst)]) for _ in range(50))
