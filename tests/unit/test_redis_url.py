"""Redis URLs: the Sentinel form parsed strictly, every form redacted before it is shown."""
from __future__ import annotations

import pytest

from mlcommons.stack.embedded_redis import redact
from mlcommons.stack.procutil import free_port
from mlcommons.stack.startup import unreachable
from mlcommons.store.connection import async_client, sync_client
from mlcommons.store.redis_url import DEFAULT_SENTINEL_PORT, SentinelURL, is_sentinel, parse_sentinel_url


def test_a_sentinel_url_names_its_sentinels_master_db_and_both_passwords():
    spec = parse_sentinel_url("redis+sentinel://:p%40ss%2Fw@h1:26380,10.0.0.2:26381,[::1]:26382/mymaster/3"
                              "?sentinel_password=s%26p")
    assert spec == SentinelURL(sentinels=(("h1", 26380), ("10.0.0.2", 26381), ("::1", 26382)), master="mymaster",
                               db=3, username=None, password="p@ss/w", sentinel_password="s&p")
    assert spec.node_kwargs() == {"db": 3, "username": None, "password": "p@ss/w"}
    assert spec.sentinel_auth() == {"username": None, "password": "s&p"}


def test_the_defaults_db_0_port_26379_no_passwords():
    spec = parse_sentinel_url("redis+sentinel://sentinel-a,sentinel-b:26400/prod")
    assert spec.sentinels == (("sentinel-a", DEFAULT_SENTINEL_PORT), ("sentinel-b", 26400))
    assert (spec.master, spec.db, spec.password, spec.sentinel_password) == ("prod", 0, None, None)
    assert parse_sentinel_url("redis+sentinel://h:1/prod/").db == 0  # a trailing slash
    assert parse_sentinel_url("redis+sentinel://alice:pw@h:1/m?sentinel_username=ops").username == "alice"


def test_only_the_sentinel_scheme_counts_as_sentinel():
    assert is_sentinel("redis+sentinel://h:1/m") and is_sentinel("REDIS+SENTINEL://h:1/m")
    assert not is_sentinel("redis://h:6379/0") and not is_sentinel("rediss://h/0") and not is_sentinel("h:1")


@pytest.mark.parametrize("url, why", [
    ("redis+sentinel://h1:26379", "the master name is missing"),
    ("redis+sentinel://h1:26379/", "the master name is missing"),
    ("redis+sentinel://h1:26379//0", "the master name is missing"),
    ("redis+sentinel://h1:port/m", "bad port 'port'"),
    ("redis+sentinel://h1:0/m", "bad port '0'"),
    ("redis+sentinel://h1:65536/m", "bad port '65536'"),
    ("redis+sentinel://h1:/m", "bad port ''"),
    ("redis+sentinel://h1:1,,h2:2/m", "a sentinel address is empty"),
    ("redis+sentinel://:pw@/m", "a sentinel address is empty"),
    ("redis+sentinel://:1/m", "has no host"),
    ("redis+sentinel://::1:26379/m", "write an IPv6 address in brackets"),
    ("redis+sentinel://[::1/m", "Invalid IPv6 URL"),
    ("redis+sentinel://h1:1,[::1]x:2/m", "is not [address]:port"),
    ("redis+sentinel://h1:1/m/zero", "the database 'zero' is not a number"),
    ("redis+sentinel://h1:1/m/0/extra", "more than /<master-name>/<db>"),
    ("redis+sentinel://h1:1/m?db=2", "unknown parameter 'db'"),
    ("redis+sentinel://h1:1/m?sentinel_password=a&sentinel_password=b", "given twice"),
    ("redis+sentinel://h1:1/m?sentinel_password", "malformed"),
    ("redis+sentinel://:p#w@h1:1/m", "a fragment"),
    ("redis://h1:6379/0", "the scheme must be redis+sentinel"),
])
def test_malformed_sentinel_urls_are_refused_with_the_reason(url, why):
    with pytest.raises(ValueError, match="invalid Redis Sentinel URL") as refused:
        parse_sentinel_url(url)
    assert why in str(refused.value)


def test_a_refusal_never_shows_a_password_or_any_query_value():
    for url in ("redis+sentinel://:hunter2@h1:x/m", "redis+sentinel://:hunter2@h1:1/m?sentinel_pasword=hunter3",
                "redis+sentinel://:hunter2@h1:1/?sentinel_password=hunter3"):
        with pytest.raises(ValueError) as refused:
            parse_sentinel_url(url)
        assert "hunter" not in str(refused.value), refused.value


def test_redacting_plain_urls_as_before():
    assert redact("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact("rediss://user:s3cret@h:6380/1") == "rediss://user:***@h:6380/1"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact("redis://h:6379/0?password=s3cret&db=1") == "redis://h:6379/0?password=***&db=1"
    assert redact("not a url") == "not a url"


def test_redacting_sentinel_urls_hides_both_passwords():
    url = "redis+sentinel://:s3cret@h1:26379,h2:26379/mymaster/0?sentinel_password=t0ps3cret"
    assert redact(url) == "redis+sentinel://:***@h1:26379,h2:26379/mymaster/0?sentinel_password=***"
    assert redact("redis+sentinel://h1:1/m?sentinel_username=ops&sentinel_password=x") == \
        "redis+sentinel://h1:1/m?sentinel_username=ops&sentinel_password=***"
    # a misspelt parameter may hold a password too: only values known to be harmless are shown
    assert "t0ps3cret" not in redact("redis+sentinel://:a@h1:1/m?sentinel_pasword=t0ps3cret")
    assert "p@ss" not in redact("redis+sentinel://:p@ss@h1:1/m")  # an unencoded '@' in the password


def test_clients_of_a_sentinel_url_carry_the_nodes_and_the_sentinels_credentials_apart():
    """Built without connecting: the pool asks the sentinels on the first command."""
    url = "redis+sentinel://:nodepw@127.0.0.1:1,127.0.0.1:2/mymaster/2?sentinel_password=sentpw"
    for client in (sync_client(url), async_client(url)):
        pool = client.connection_pool
        assert pool.service_name == "mymaster" and pool.is_master
        kwargs = pool.connection_kwargs
        assert (kwargs["password"], kwargs["db"]) == ("nodepw", 2)
        assert kwargs["retry"].get_retries() == 8  # the same retries as a plain URL's
        assert all(s.connection_pool.connection_kwargs["password"] == "sentpw"
                   for s in pool.sentinel_manager.sentinels)


def test_a_bad_url_is_refused_when_a_client_is_made():
    with pytest.raises(ValueError, match="the master name is missing"):
        sync_client("redis+sentinel://:pw@h1:26379")
    with pytest.raises(ValueError, match="bad port"):
        async_client("redis+sentinel://h1:x/m")


def test_the_start_up_check_names_the_problem():
    assert "the master name is missing" in unreachable("redis+sentinel://:pw@127.0.0.1:26379", within=0.1)
    closed = [free_port(), free_port()]
    why = unreachable(f"redis+sentinel://:pw@127.0.0.1:{closed[0]},127.0.0.1:{closed[1]}/m", within=0.3)
    assert why.startswith("no sentinel named the primary 'm'") and str(closed[0]) in why and str(closed[1]) in why
    assert "pw" not in why.replace("primary", "")
