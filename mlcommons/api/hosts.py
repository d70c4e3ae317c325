"""Which requests the API and the dashboard answer: those addressed to one of this server's names
(against DNS rebinding) and, when they change something, not sent by another site's page (CSRF).

A page on evil.example can make a browser send requests to 127.0.0.1:9200 (a form POST, a fetch
in no-cors mode) and, by rebinding evil.example to 127.0.0.1, even read the answers. Browsers
always send the name they resolved as ``Host``, and ``Origin`` (with ``Sec-Fetch-Site``) on a
cross-site POST, PUT or DELETE; clients outside a browser (curl, elasticsearch-py, opensearch-py)
send the host they were given and no ``Origin``. So:

- ``Host`` must be one of our names. On a loopback bind: ``localhost``, ``127.0.0.1`` and
  ``[::1]``. On any other bind (``0.0.0.0``, an interface's address, a name): those, any IP
  literal (a browser that sends an IP literal resolved nothing, so nothing was rebound) and this
  machine's host name. Plus ``mlcommons.http.allowed_hosts`` on either (``*`` turns the check
  off, for a proxy that checks it). Any port. A request without ``Host`` (HTTP/1.0) is not from
  a browser and passes.
- A POST, PUT, PATCH or DELETE that a browser marks as cross-site, or whose ``Origin`` is not
  the origin it was sent to, is refused; on the dashboard, whose ``GET /requeue/<queue>`` requeues
  jobs, any such request is.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})  # "none": typed in the address bar


def host_name(value: str) -> str:
    """The name in a ``Host`` value (or a bind address): lower case, without port, IPv6
    brackets or a trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _netloc(origin: str) -> str | None:
    """``host[:port]`` of an Origin value, or None for ``null`` or a malformed one."""
    try:
        return urlsplit(origin).netloc.lower() or None
    except ValueError:
        return None


def is_loopback(bind_host: str) -> bool:
    name = host_name(bind_host)
    return name == "localhost" or (_is_ip(name) and ipaddress.ip_address(name).is_loopback)


class HostPolicy:
    def __init__(self, bind_host: str, allowed_hosts: str = ""):
        extra = {host_name(n) for n in allowed_hosts.split(",") if n.strip()}
        self.any_host = "*" in extra
        self.ip_literals = not is_loopback(bind_host)
        names = set(LOOPBACK_NAMES) | extra
        bind = host_name(bind_host)
        if not (_is_ip(bind) and ipaddress.ip_address(bind).is_unspecified):
            names.add(bind)
        if self.ip_literals:
            hostname = socket.gethostname().lower()
            names.update({hostname, hostname.split(".", 1)[0]})
        self.names = frozenset(names)
        self.allowed_hosts = allowed_hosts
        self._seen: dict[str, bool] = {}  # Host values already judged: clients repeat theirs

    def host_allowed(self, host: str | None) -> bool:
        if host is None or self.any_host:
            return True
        allowed = self._seen.get(host)
        if allowed is None:
            name = host_name(host)
            allowed = name in self.names or (self.ip_literals and _is_ip(name))
            if len(self._seen) < 256:  # bounded: a client cannot grow it by sending many names
                self._seen[host] = allowed
        return allowed

    def bad_host(self, host: str) -> str:
        return (f"Host [{host[:200]}] is not a name of this server; add it to mlcommons.http.allowed_hosts "
                f"(now [{self.allowed_hosts}]) to answer it")

    @staticmethod
    def cross_site(method: str, host: str | None, origin: str | None, fetch_site: str | None, *,
                   reads_too: bool = False) -> str | None:
        """Why a request from a browser is refused as cross-site, or None. Only state-changing
        methods are checked, unless ``reads_too`` (for an application whose GETs change things)."""
        if method in SAFE_METHODS and not reads_too:
            return None
        if fetch_site is not None:
            if fetch_site.strip().lower() in _SAME_ORIGIN_FETCH:
                return None
            return f"cross-site request refused: Sec-Fetch-Site [{fetch_site[:200]}]"
        if origin is None:
            return None
        if host is not None and _netloc(origin) == host.strip().lower():
            return None
        return f"cross-site request refused: Origin [{origin[:200]}] is not this server's origin"
