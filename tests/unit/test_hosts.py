"""Which Host and Origin headers the API and the dashboard answer, for each kind of bind address."""
from __future__ import annotations

import socket

import pytest

from mlcommons.api.hosts import HostPolicy, host_name


@pytest.mark.parametrize("value, name", [
    ("LocalHost:9200", "localhost"), ("[::1]:9200", "::1"), ("[::1]", "::1"), ("example.com.", "example.com"),
    ("127.0.0.1", "127.0.0.1"), ("[::1", "[::1"), ("a@b:1", "a@b"),
])
def test_host_name(value, name):
    assert host_name(value) == name


@pytest.mark.parametrize("bind", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_a_loopback_bind_answers_loopback_names_only(bind):
    hosts = HostPolicy(bind)
    for ok in ("localhost", "localhost:1", "127.0.0.1:9200", "[::1]:9200", None):
        assert hosts.host_allowed(ok), ok
    for bad in ("evil.example", "10.0.0.7", "192.168.1.2:9200", socket.gethostname() + ".evil.example", ""):
        assert not hosts.host_allowed(bad), bad
    assert hosts.host_allowed(bind if ":" not in bind else f"[{bind}]")


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "10.0.0.7"])
def test_another_bind_also_answers_ip_literals_and_the_host_name(bind):
    hosts = HostPolicy(bind)
    for ok in ("localhost:9200", "10.0.0.7:9200", "192.168.1.2", "[fe80::1]:9200", socket.gethostname()):
        assert hosts.host_allowed(ok), ok
    assert not hosts.host_allowed("evil.example:9200")


def test_allowed_hosts_adds_names_and_star_accepts_any():
    hosts = HostPolicy("127.0.0.1", " api.internal , Search.Example.com ")
    assert hosts.host_allowed("api.internal:9200") and hosts.host_allowed("search.example.com")
    assert not hosts.host_allowed("evil.example")
    assert HostPolicy("127.0.0.1", "*").host_allowed("evil.example")


@pytest.mark.parametrize("method, origin, fetch_site, refused", [
    ("GET", "http://evil.example", "cross-site", False),
    ("POST", None, None, False),                               # curl, elasticsearch-py
    ("POST", "http://127.0.0.1:9200", None, False),            # our own origin
    ("POST", None, "same-origin", False),
    ("POST", None, "none", False),
    ("POST", "http://evil.example", None, True),
    ("DELETE", "http://127.0.0.1:9201", None, True),
    ("PUT", "null", None, True),
    ("POST", "http://[::1", None, True),                      # malformed
    ("POST", None, "same-site", True),
    ("POST", "http://127.0.0.1:9200", "cross-site", True),
])
def test_cross_site(method, origin, fetch_site, refused):
    reason = HostPolicy.cross_site(method, "127.0.0.1:9200", origin, fetch_site)
    assert (reason is not None) == refused, reason


def test_cross_site_reads_too():
    assert HostPolicy.cross_site("GET", "127.0.0.1:9181", None, "cross-site", reads_too=True)
    assert HostPolicy.cross_site("GET", "127.0.0.1:9181", None, "same-origin", reads_too=True) is None
