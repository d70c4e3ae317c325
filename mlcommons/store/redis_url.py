"""Redis URLs: telling the Sentinel form from a plain one, parsing it strictly, and redacting any
URL before it is printed or logged.

rq cannot use Redis Cluster, so the way past one Redis server is a primary with replicas under
Redis Sentinel, named by a URL of its own::

    redis+sentinel://[[user]:password@]host1:port1,host2:port2/<master-name>[/<db>][?sentinel_password=...]

The password (and user) are the data nodes' (the primary and its replicas, which share one);
``sentinel_password`` (and ``sentinel_username``) authenticate to the sentinels, for those that
have ``requirepass`` of their own. A host without a port means Sentinel's own 26379. Anything
else (no master name, a bad port, an unknown parameter) is refused with a ValueError that names
the URL redacted: a typo must not start a process that talks to the wrong server, nor print a
password.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
QUERY_PARAMETERS = ("sentinel_password", "sentinel_username")
# The query parameters whose values a printed URL shows; any other's (a password, a misspelt one
# included) is hidden.
_SHOWN_PARAMETERS = {"db", "sentinel_username", "client_name", "protocol", "ssl_cert_reqs", "decode_responses",
                     "socket_timeout", "socket_connect_timeout", "socket_keepalive", "health_check_interval",
                     "max_connections", "retry_on_timeout", "single_connection_client"}


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def node_kwargs(self) -> dict:
        """Connection arguments for the data nodes (the primary)."""
        return {"db": self.db, "username": self.username, "password": self.password}

    def sentinel_auth(self) -> dict:
        return {"username": self.sentinel_username, "password": self.sentinel_password}

    def where(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SCHEME


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of a ``redis+sentinel://`` URL; ValueError (naming the URL redacted) if malformed."""
    shown = redact(url.partition("?")[0]) + ("?..." if "?" in url else "")  # no query value, whatever its name

    def bad(why: str) -> ValueError:
        return ValueError(f"invalid Redis Sentinel URL {shown}: {why} (expected "
                          f"{SCHEME}://[:password@]host1:port1,host2:port2/<master-name>/<db>)")

    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme.lower() != SCHEME:
        raise bad(f"the scheme must be {SCHEME}")
    if parts.fragment:
        raise bad("a fragment (#...) is not allowed; percent-encode '#' in a password")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    sentinels = tuple(_host_port(item, bad) for item in hostlist.split(","))
    master, db = _path(parts.path, bad)
    options = _query(parts.query, bad)
    return SentinelURL(sentinels, master, db, username, password,
                       options.get("sentinel_username"), options.get("sentinel_password"))


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    """(user, password) as redis-py reads a plain URL's: ``user@`` is a user without a password."""
    user, _, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) or None


def _host_port(item: str, bad) -> tuple[str, int]:
    if not item:
        raise bad("a sentinel address is empty")
    if item.startswith("["):  # [IPv6]:port
        host, bracket, rest = item[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise bad(f"sentinel address {item!r} is not [address]:port")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = item.partition(":")
        if ":" in port_text:
            raise bad(f"sentinel address {item!r}: write an IPv6 address in brackets")
        port_text = port_text if colon else None
    if not host:
        raise bad(f"sentinel address {item!r} has no host")
    if port_text is None:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"sentinel address {item!r} has a bad port {port_text!r}")
    return host, int(port_text)


def _path(path: str, bad) -> tuple[str, int]:
    segments = path.split("/")[1:] if path.startswith("/") else []
    if segments and segments[-1] == "" and len(segments) > 1:
        segments = segments[:-1]  # a trailing slash
    if not segments or not segments[0]:
        raise bad("the master name is missing")
    if len(segments) > 2:
        raise bad("the path has more than /<master-name>/<db>")
    master = unquote(segments[0])
    if len(segments) == 1:
        return master, 0
    if not segments[1].isdigit():
        raise bad(f"the database {segments[1]!r} is not a number")
    return master, int(segments[1])


def _query(query: str, bad) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise bad("the query string is malformed") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in QUERY_PARAMETERS:
            raise bad(f"unknown parameter {name!r} (known: {', '.join(QUERY_PARAMETERS)})")
        if name in options:
            raise bad(f"parameter {name!r} is given twice")
        options[name] = value
    return options


def redact(url: str) -> str:
    """A Redis URL fit to print or log: its password, and the value of any query parameter that
    may hold one (``sentinel_password``, redis-py's ``password``, a misspelling: any not known to be
    harmless), replaced by ``***``.
    Never fails: it is also what error messages about malformed URLs show."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, question, query = rest.partition("?")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.partition(":")[0]
        rest = f"{user}:***@{host}"
    if question:
        query = "&".join(_redact_parameter(pair) for pair in query.split("&"))
    return f"{scheme}://{rest}{question}{query}"


def _redact_parameter(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    return f"{name}=***" if equals and unquote(name).lower() not in _SHOWN_PARAMETERS else pair
