"""Starting the stack's parts, and refusing to when they cannot start: the checks ``mlcommons
serve``, ``api`` and ``worker`` make before they run (a port in use, an unreachable Redis, an
open bind without security, the TLS files), and the waits that make ``serve``'s ready line true
(the worker nodes joined, the API listening)."""
from __future__ import annotations

import errno
import sys
import time


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(command: str, host: str, secure: bool, insecure_bind: bool) -> bool:
    """With security off, listening beyond loopback lets anyone who reaches the port register,
    deploy and delete models: refused unless ``--insecure-bind`` says so (and then a loud warning)."""
    if secure or is_loopback(host):
        return True
    if not insecure_bind:
        print(f"mlcommons {command}: refusing to listen on {host} with security off: anyone who reaches the port "
              "could register, deploy and delete models. Turn security on (--security, or "
              "MLCOMMONS_SECURITY_ENABLED=true) or listen on 127.0.0.1; --insecure-bind overrides this.",
              file=sys.stderr)
        return False
    print(f"WARNING: mlcommons {command} listens on {host} WITHOUT SECURITY (--insecure-bind): every client that "
          "reaches this port may do anything, delete every model included.", file=sys.stderr, flush=True)
    return True


def tls(args):
    """The TLS context of --tls-cert/--tls-key, or None."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if not cert and not key:
        return None
    if not (cert and key):
        raise SystemExit("mlcommons: --tls-cert and --tls-key go together")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def unreachable(url: str, within: float = 5.0) -> str | None:
    """Why Redis at ``url`` cannot be reached (tried for ``within`` seconds), or None. For a
    ``redis+sentinel://`` URL the sentinels are asked for the primary first: a URL that is
    malformed or names a master no sentinel monitors is reported at once, sentinels that do not
    answer (or a primary that is down) after ``within``."""
    import redis

    from mlcommons.store.connection import SentinelProblem, probe

    deadline = time.monotonic() + within
    while True:
        try:
            probe(url)
            return None
        except ValueError as exc:  # a malformed URL, its password already redacted
            return str(exc)
        except redis.exceptions.AuthenticationError as exc:
            return f"authentication failed ({exc})"
        except SentinelProblem as exc:
            if exc.lasting or time.monotonic() >= deadline:
                return str(exc)
        except (redis.exceptions.RedisError, OSError) as exc:
            if time.monotonic() >= deadline:
                return str(exc) or type(exc).__name__
        time.sleep(0.2)


def port_taken(host: str, port: int, reuse_port: bool = False) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, or not an address here), or None.
    ``reuse_port``: sharing it with our own API processes (SO_REUSEPORT) is fine."""
    import socket

    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (OpenSearch and Elasticsearch use 9200 too); "
                        "choose another with --port")
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def fatal(sup, part) -> str:
    return (f"{part.name} could not start (exit {part.proc.returncode}). The end of "
            f"{sup.logs / (part.name + '.log')}:\n{sup.cause(part)}")


def wait_joined(sup, url: str, static: dict, workers: int, timeout: float, stop_requested: list) -> str | None:
    """Wait until ``workers`` worker nodes have a live heartbeat; why not, or None."""
    if workers == 0:
        return None
    from mlcommons.core import nodes
    from mlcommons.core.context import Context

    ctx = Context.connect(url, static=static)
    deadline = time.monotonic() + timeout
    try:
        while not stop_requested:
            gave_up = sup.check()
            if gave_up is not None:
                return fatal(sup, gave_up)
            if len(nodes.live_nodes(ctx)) >= workers:
                return None
            if time.monotonic() >= deadline:
                late = [p.name for p in sup.parts if p.name.startswith("worker-")]
                return (f"the worker nodes did not all join within {timeout:.0f}s ({len(nodes.live_nodes(ctx))} of "
                        f"{workers}); see the logs of {', '.join(late)} in {sup.logs}")
            time.sleep(0.1)
        return None
    finally:
        ctx.close()


def wait_listening(sup, ready_files: list, host: str, port: int, timeout: float, stop_requested: list) -> str | None:
    """Wait until every API process listens (each writes its ``ready_files`` entry once its port is
    open); why not, or None."""
    deadline = time.monotonic() + timeout
    while not stop_requested:
        gave_up = sup.check()
        if gave_up is not None:
            return fatal(sup, gave_up)
        if all(path.exists() for path in ready_files):
            return None
        if time.monotonic() >= deadline:
            return f"the API did not listen on {host}:{port} within {timeout:.0f}s; see {sup.logs / 'api.log'}"
        time.sleep(0.05)
    return None
