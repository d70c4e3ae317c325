"""Where a remote model may send requests: ML Commons' trusted-endpoint patterns and its refusal
of private addresses, with its words.

The patterns (``plugins.ml_commons.trusted_connector_endpoints_regex``) are matched whole against
each action URL once its parameters are filled in: when a connector is created or changed, and
again before every call with the call's own parameters. The host is resolved before every call,
and an address that is private, loopback, link-local or unspecified is refused unless
``plugins.ml_commons.connector.private_ip_enabled`` is set.
"""
from __future__ import annotations

import functools
import ipaddress
import re
import socket
from urllib.parse import urlsplit

from mlcommons.errors import BadRequest

_PLACEHOLDER = re.compile(r"\$\{parameters\.([^}]{1,256})\}")


def fill(template: str, parameters: dict[str, str]) -> str:
    """``${parameters.X}`` replaced by X's value where there is one (others are left as they are)."""
    return _PLACEHOLDER.sub(lambda m: parameters.get(m.group(1), m.group(0)), template)


@functools.lru_cache(maxsize=32)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p) for p in patterns)


def check_trusted(url: str, patterns: list[str]) -> None:
    if not patterns:
        raise BadRequest("Trusted connector endpoints regex is not configured. Please set "
                         "plugins.ml_commons.trusted_connector_endpoints_regex.")
    if not any(p.fullmatch(url) for p in _compiled(tuple(patterns))):
        raise BadRequest("Connector URL is not matching the trusted connector endpoint regex")


def is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_reserved


def target(url: str) -> tuple[str, int]:
    """The host and port a URL reaches; refused unless it is http(s) with a valid port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadRequest(f"Protocol is not http or https: {parts.scheme}")
    try:
        port = parts.port
    except ValueError:
        raise BadRequest(f"Port out of range: {url.rsplit(':', 1)[-1][:20]}") from None
    return parts.hostname or "", port or (443 if parts.scheme == "https" else 80)


def refuse_private(host: str, addresses: list[str]) -> None:
    if any(is_private(address) for address in addresses):
        raise BadRequest(f"Remote inference host name has private ip address: {host}")


def check_host(url: str, private_ip_enabled: bool) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to a private address (unless
    allowed). Resolution failures are refused too, with the resolver's words. (The nodes resolve
    on their event loop: workers/remote.py.)"""
    host, port = target(url)
    if private_ip_enabled:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BadRequest(f"{host}: {exc}") from None
    refuse_private(host, [info[4][0] for info in infos])
