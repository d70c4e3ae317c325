"""The ``mlcommons`` command: ``serve`` (the whole stack on one machine), ``api``, ``worker`` and
``dashboard``."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from mlcommons.client.parser import add_client_parsers
from mlcommons.stack import startup

log = logging.getLogger("mlcommons")


def _setup_logging(level: str, fmt: str = "text") -> None:
    """Text or JSON lines (mlcommons/metrics/logs.py), with the request's X-Opaque-Id in them."""
    from mlcommons.metrics import logs

    logs.configure(level, fmt)


def _log_format(args) -> str:
    """--log-format, else the setting mlcommons.log.format (MLCOMMONS_LOG_FORMAT or the config file)."""
    if args.log_format:
        return args.log_format
    try:
        return _static(args)["mlcommons.log.format"]
    except Exception:  # a bad config file is reported by the command that reads it
        return "text"


def _say(args, text: str) -> None:
    """A part's start-up line: printed, or with JSON log lines, a log line like the others."""
    if getattr(args, "log_format", None) == "json":
        log.info("%s", text)
    else:
        print(text, flush=True)


def _static(args) -> dict:
    from mlcommons.settings import static_values

    return static_values(Path(args.config) if getattr(args, "config", None) else None)


def _redis_url(args) -> str | None:
    return args.redis_url or os.environ.get("MLCOMMONS_REDIS_URL")


def _shown(url: str) -> str:
    from mlcommons.stack.embedded_redis import redact

    return redact(url)


def _offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _security_options(parser) -> None:
    parser.add_argument("--security", action="store_true",
                        help="require authentication (users, API keys) and enforce roles")
    parser.add_argument("--insecure-bind", action="store_true",
                        help="listen beyond loopback with security off (not recommended)")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")


# --- worker --------------------------------------------------------------------------------

def cmd_worker(args) -> int:
    _offline_env()
    url = _redis_url(args)
    if not url:
        print("mlcommons worker: --redis-url (or MLCOMMONS_REDIS_URL) is required", file=sys.stderr)
        return 2
    from mlcommons.stack.supervisor import FATAL

    try:
        import torch  # noqa: F401  (the runtimes need it; say so now rather than at the first deploy)
    except Exception as exc:  # an ImportError, or a broken install's own error
        print(f"mlcommons worker: cannot load torch: {exc}", file=sys.stderr)
        return FATAL
    problem = startup.unreachable(url)
    if problem:
        print(f"mlcommons worker: cannot reach Redis at {_shown(url)}: {problem}", file=sys.stderr)
        return FATAL
    from mlcommons.core import nodes
    from mlcommons.core.context import Context
    from mlcommons.ids import new_id
    from workers.node import WorkerNode, stable_node_id

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    node_id, boot_id = args.node_id or stable_node_id(data_dir), new_id()
    ctx = Context.connect(url, static=_static(args), client_name=nodes.client_name(node_id, boot_id))
    node = WorkerNode(ctx, data_dir, node_id=node_id, boot_id=boot_id)
    from mlcommons.metrics import logs

    logs.set_node(node.node_id)  # in this process's JSON log lines
    _say(args, f"mlcommons worker node {node.node_id} (pid {os.getpid()}) on {_shown(url)}")
    node.run()
    return 0


# --- api -----------------------------------------------------------------------------------

def cmd_api(args) -> int:
    url = _redis_url(args)
    if not url:
        print("mlcommons api: --redis-url (or MLCOMMONS_REDIS_URL) is required", file=sys.stderr)
        return 2
    from mlcommons.api.app import serve
    from mlcommons.core.context import Context
    from mlcommons.stack.supervisor import FATAL

    static = _static(args)
    if args.security:
        static["mlcommons.security.enabled"] = True
    secure = static["mlcommons.security.enabled"]
    if not startup.check_bind("api", args.host, secure, args.insecure_bind):
        return 2
    tls = startup.tls(args)
    problem = startup.port_taken(args.host, args.port, reuse_port=args.reuse_port)
    if problem is None:
        unreachable = startup.unreachable(url)
        problem = f"cannot reach Redis at {_shown(url)}: {unreachable}" if unreachable else None
    if problem:
        print(f"mlcommons api: {problem}", file=sys.stderr)
        return FATAL
    ctx = Context.connect(url, static=static, auto_refresh=False)
    if secure:
        _ensure_admin(ctx, None)
    scheme = "https" if tls else "http"

    def listening() -> None:
        _say(args, f"mlcommons API listening on {scheme}://{args.host}:{args.port} (Redis {_shown(url)}; security "
                   f"{'on' if secure else 'off'})")
        ready_file = os.environ.get("MLCOMMONS_READY_FILE")  # serve waits for it before its ready line
        if ready_file:
            Path(ready_file).write_text(f"{os.getpid()}\n")

    asyncio.run(serve(ctx, args.host, args.port, ssl_context=tls, reuse_port=args.reuse_port,
                      on_listening=listening))
    return 0


def _ensure_admin(ctx, data_dir: Path | None) -> None:
    """The first secure start makes ``admin`` (all_access): its password from
    MLCOMMONS_ADMIN_PASSWORD, else generated, printed once and kept in <data dir>/admin-password
    (0600). Without a data dir and without the variable, no user is made: say how to make one."""
    from mlcommons.core.security import users

    given = os.environ.get("MLCOMMONS_ADMIN_PASSWORD")
    if users.count(ctx) > 0:
        return
    if given is None and data_dir is None:
        print("mlcommons: security is on and there are no users yet: set MLCOMMONS_ADMIN_PASSWORD, or add one with "
              "`mlcommons users add admin --roles all_access`", file=sys.stderr, flush=True)
        return
    password = users.ensure_admin(ctx, given)
    if password is None:
        return
    if given is not None:
        print("security   user [admin] (all_access) created with the password in MLCOMMONS_ADMIN_PASSWORD", flush=True)
        return
    path = data_dir / "admin-password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    print(f"security   user [admin] (all_access) created; its password, shown this once (also in {path}, 0600):\n"
          f"           {password}", flush=True)


# --- dashboard -----------------------------------------------------------------------------

def cmd_dashboard(args) -> int:
    url = _redis_url(args)
    if not url:
        print("mlcommons dashboard: --redis-url (or MLCOMMONS_REDIS_URL) is required", file=sys.stderr)
        return 2
    from mlcommons.stack.dashboard import HOST, run

    print(f"rq-dashboard listening on http://{HOST}:{args.port}", flush=True)
    run(url, args.port, _static(args))
    return 0


# --- serve ---------------------------------------------------------------------------------


def _spawner(sup, name: str, argv: list[str], env: dict):
    """How the supervisor (re)starts one part: its own name and command line, fixed here, so a
    restart runs that part and no other."""
    return lambda: sup.spawn(name, argv, env)


def cmd_serve(args) -> int:
    """Every part is a child process the supervisor restarts if it dies: Redis (when embedded)
    on the same port from its append-only file, each worker as the same node, the API, and
    rq-dashboard. SIGINT/SIGTERM stop them in reverse order."""
    _offline_env()
    from mlcommons.core.remote.secrets import create_key_file
    from mlcommons.settings import env_name
    from mlcommons.stack.supervisor import Supervisor

    data_dir = Path(args.data_dir).resolve()
    static = _static(args)
    secure = bool(args.security or static["mlcommons.security.enabled"])
    if not startup.check_bind("serve", args.host, secure, args.insecure_bind):
        return 2
    problem = startup.port_taken(args.host, args.port) or (
        startup.port_taken("127.0.0.1", args.dashboard_port) if args.dashboard_port else None)
    external = _redis_url(args)
    unreachable = startup.unreachable(external) if problem is None and external else None
    if unreachable:
        problem = f"cannot reach Redis at {_shown(external)}: {unreachable}"
    if problem:
        print(f"mlcommons serve: {problem}", file=sys.stderr)
        return 1
    data_dir.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(data_dir)
    stop_requested: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = _redis_url(args)
        if url is None:
            from mlcommons.stack.embedded_redis import EmbeddedRedis

            try:
                redis_server = EmbeddedRedis(data_dir / "redis", maxmemory=static["mlcommons.redis.embedded_maxmemory"],
                                             appendfsync=static["mlcommons.redis.appendfsync"])
            except ValueError as exc:
                print(f"mlcommons serve: mlcommons.redis.appendfsync: {exc}", file=sys.stderr)
                return 1
            url = redis_server.start()

            def restart_redis():
                redis_server.start()  # the same port and append-only file
                return redis_server.proc

            sup.add("redis", restart_redis, stop_timeout=30, running=redis_server.proc)
            _private_file(data_dir / "redis" / "url", url)  # for `mlcommons users --data-dir`
            print(f"redis      {_shown(url)} (embedded, password and append-only file in {data_dir / 'redis'})",
                  flush=True)
        else:
            print(f"redis      {_shown(url)}", flush=True)
        env = {**os.environ, "MLCOMMONS_REDIS_URL": url}
        env[env_name("mlcommons.log.format")] = args.log_format  # every part logs alike
        if secure:
            from mlcommons.core.context import Context

            env[env_name("mlcommons.security.enabled")] = "true"
            if not static["mlcommons.security.audit_log"]:
                env[env_name("mlcommons.security.audit_log")] = str(data_dir / "logs" / "audit.log")
            ctx = Context.connect(url, static=static)
            try:
                _ensure_admin(ctx, data_dir)
            finally:
                ctx.close()
        if not static.get("mlcommons.security.master_key_file"):
            # Connector credentials are sealed with a key kept here, never in Redis beside them.
            env[env_name("mlcommons.security.master_key_file")] = str(create_key_file(data_dir / "master.key"))
        config = ["--config", args.config] if args.config else []
        python = sys.executable
        for i in range(args.workers):
            node_dir = data_dir / "nodes" / str(i)
            # the Redis URL (and its password) reaches each part through the environment, never
            # through a command line that any local user can read
            worker = [python, "-m", "mlcommons", "worker", "--data-dir", str(node_dir), *config]
            part = sup.add(f"worker-{i}", _spawner(sup, f"worker-{i}", worker, env))
            print(f"worker {i}   pid {part.proc.pid}, data {node_dir}, log {sup.logs / f'worker-{i}.log'}",
                  flush=True)
        # The API opens its port only once the worker nodes have joined: a client that registers
        # and deploys right after the ready line finds nodes to deploy to.
        failed = startup.wait_joined(sup, url, static, args.workers, args.ready_timeout, stop_requested)
        if failed:
            print(f"mlcommons serve: {failed}", file=sys.stderr, flush=True)
            return 1
        api = [python, "-m", "mlcommons", "api", "--host", args.host, "--port", str(args.port), *config]
        if args.insecure_bind:
            api.append("--insecure-bind")
        if args.tls_cert or args.tls_key:
            api += ["--tls-cert", str(args.tls_cert), "--tls-key", str(args.tls_key)]
        if args.api_processes > 1:
            api.append("--reuse-port")  # several processes on one port: the kernel spreads connections
        scheme = "https" if args.tls_cert else "http"
        ready_files = []
        for i in range(args.api_processes):
            name = "api" if i == 0 else f"api-{i + 1}"
            ready_files.append(sup.run_dir / f"{name}.listening")
            ready_files[-1].unlink(missing_ok=True)
            part = sup.add(name, _spawner(sup, name, api, {**env, "MLCOMMONS_READY_FILE": str(ready_files[-1])}))
            print(f"{name:<10} {scheme}://{args.host}:{args.port} (pid {part.proc.pid}, "
                  f"log {sup.logs / (name + '.log')}; security {'on' if secure else 'off'})", flush=True)
        if args.dashboard_port:
            dashboard = [python, "-m", "mlcommons", "dashboard", "--port", str(args.dashboard_port), *config]
            sup.add("dashboard", _spawner(sup, "dashboard", dashboard, env), stop_timeout=5)
            print(f"dashboard  http://127.0.0.1:{args.dashboard_port} (rq-dashboard)", flush=True)
        failed = startup.wait_listening(sup, ready_files, args.host, args.port, args.ready_timeout, stop_requested)
        if failed:
            print(f"mlcommons serve: {failed}", file=sys.stderr, flush=True)
            return 1
        sup.ready = True
        if not stop_requested:
            scheme = "https" if args.tls_cert else "http"
            print(f"ready      {scheme}://{args.host}:{args.port} ({args.workers} worker node"
                  f"{'' if args.workers == 1 else 's'} joined)", flush=True)
        while not stop_requested:
            gave_up = sup.check()
            if gave_up is not None:
                print(f"mlcommons serve: {gave_up.name} keeps failing (exit {gave_up.proc.returncode}); stopping. "
                      f"The end of {sup.logs / (gave_up.name + '.log')}:\n{sup.cause(gave_up)}",
                      file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
    finally:
        print("stopping...", flush=True)
        sup.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stopped", flush=True)
    return 0


def _private_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


# --- users ---------------------------------------------------------------------------------

def cmd_users(args) -> int:
    """Users of the native realm, straight in Redis (so the first admin can be made, or its
    password reset, without the API): the password is read from stdin."""
    url = _redis_url(args)
    if not url and args.data_dir:
        stored = Path(args.data_dir) / "redis" / "url"
        url = stored.read_text().strip() if stored.exists() else None
    if not url:
        print("mlcommons users: give --redis-url, MLCOMMONS_REDIS_URL or --data-dir (of `mlcommons serve`)",
              file=sys.stderr)
        return 2
    from mlcommons.core.context import Context
    from mlcommons.core.security import users
    from mlcommons.errors import MLError

    ctx = Context.connect(url, static=_static(args))
    try:
        if args.users_command == "list":
            for name, user in users.get(ctx, None).items():
                print(f"{name}\troles={','.join(user['roles'])}\tbackend_roles={','.join(user['backend_roles'])}")
            return 0
        if args.users_command == "delete":
            users.delete(ctx, args.name)
            print(f"user [{args.name}] deleted")
            return 0
        if sys.stdin.isatty():
            import getpass

            password = getpass.getpass(f"password for [{args.name}]: ")
        else:
            password = sys.stdin.readline().rstrip("\n")
        body = {"password": password, "roles": [r for r in args.roles.split(",") if r],
                "backend_roles": [r for r in (args.backend_roles or "").split(",") if r]}
        done = users.put(ctx, args.name, body)
        print(f"user [{args.name}] {'created' if done['created'] else 'updated'}")
        return 0
    except MLError as exc:
        print(f"mlcommons users: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        ctx.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlcommons", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("MLCOMMONS_LOG_LEVEL", "INFO"))
    parser.add_argument("--log-format", choices=("text", "json"),
                        help="log lines as text or one JSON object each (default: the setting mlcommons.log.format)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API, worker nodes, rq-dashboard and (if needed) Redis")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9200)
    serve.add_argument("--redis-url", help="use this Redis instead of an embedded one (or MLCOMMONS_REDIS_URL)")
    serve.add_argument("--workers", type=int, default=1, help="number of worker node processes")
    serve.add_argument("--data-dir", default="./data")
    serve.add_argument("--dashboard-port", type=int, default=9181, help="0 to run no dashboard")
    serve.add_argument("--config", help="settings file (default config/mlcommons.yml)")
    serve.add_argument("--api-processes", type=int, default=2 if (os.cpu_count() or 1) >= 2 else 1,
                       help="API processes sharing the port (default 2 with at least 2 cores): a crash of one "
                            "costs only the requests it held")
    serve.add_argument("--ready-timeout", type=float, default=120.0,
                       help="seconds to wait for the worker nodes to join and the API to listen")
    _security_options(serve)
    serve.set_defaults(func=cmd_serve)

    api = sub.add_parser("api", help="run the API only")
    api.add_argument("--redis-url")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=9200)
    api.add_argument("--config")
    api.add_argument("--reuse-port", action="store_true",
                     help="share the port with other API processes (SO_REUSEPORT), as serve --api-processes does")
    _security_options(api)
    api.set_defaults(func=cmd_api)

    dashboard = sub.add_parser("dashboard", help="run rq-dashboard on 127.0.0.1, refusing other Host names")
    dashboard.add_argument("--redis-url")
    dashboard.add_argument("--port", type=int, default=9181)
    dashboard.add_argument("--config")
    dashboard.set_defaults(func=cmd_dashboard)

    worker = sub.add_parser("worker", help="run one worker node")
    worker.add_argument("--redis-url")
    worker.add_argument("--node-id", help="default: a stable id kept in the data folder")
    worker.add_argument("--data-dir", default="./data/node")
    worker.add_argument("--config")
    worker.set_defaults(func=cmd_worker)

    users_parser = sub.add_parser("users", help="manage the users of the native realm (straight in Redis)")
    users_parser.add_argument("--redis-url")
    users_parser.add_argument("--data-dir", default="./data", help="the data dir of `mlcommons serve`")
    users_parser.add_argument("--config")
    users_sub = users_parser.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add or update a user; the password is read from stdin")
    add.add_argument("name")
    add.add_argument("--roles", default="ml_readonly_access", help="comma-separated, e.g. all_access")
    add.add_argument("--backend-roles", default="")
    users_sub.add_parser("list", help="list the users")
    delete = users_sub.add_parser("delete", help="delete a user")
    delete.add_argument("name")
    users_parser.set_defaults(func=cmd_users)
    add_client_parsers(sub)  # models, predict, tasks: a client of a running server, over HTTP

    args = parser.parse_args(argv)
    args.log_format = _log_format(args)
    try:
        _setup_logging(args.log_level, args.log_format)
    except ValueError as exc:  # mlcommons.log.format
        print(f"mlcommons: mlcommons.log.format: {exc}", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
