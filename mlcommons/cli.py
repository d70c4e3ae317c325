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

log = logging.getLogger("mlcommons")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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


# --- worker --------------------------------------------------------------------------------

def cmd_worker(args) -> int:
    _offline_env()
    url = _redis_url(args)
    if not url:
        print("mlcommons worker: --redis-url (or MLCOMMONS_REDIS_URL) is required", file=sys.stderr)
        return 2
    from mlcommons.core.context import Context
    from workers.node import WorkerNode

    ctx = Context.connect(url, static=_static(args))
    node = WorkerNode(ctx, Path(args.data_dir), node_id=args.node_id)
    print(f"mlcommons worker node {node.node_id} (pid {os.getpid()}) on {_shown(url)}", flush=True)
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

    ctx = Context.connect(url, static=_static(args), auto_refresh=False)
    print(f"mlcommons API listening on http://{args.host}:{args.port} (Redis {_shown(url)})", flush=True)
    asyncio.run(serve(ctx, args.host, args.port))
    return 0


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
    data_dir.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(data_dir)
    stop_requested: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = _redis_url(args)
        if url is None:
            from mlcommons.stack.embedded_redis import EmbeddedRedis

            redis_server = EmbeddedRedis(data_dir / "redis",
                                         maxmemory=_static(args)["mlcommons.redis.embedded_maxmemory"])
            url = redis_server.start()

            def restart_redis():
                redis_server.start()  # the same port and append-only file
                return redis_server.proc

            sup.add("redis", restart_redis, stop_timeout=30, running=redis_server.proc)
            print(f"redis      {_shown(url)} (embedded, password and append-only file in {data_dir / 'redis'})",
                  flush=True)
        else:
            print(f"redis      {_shown(url)}", flush=True)
        env = {**os.environ, "MLCOMMONS_REDIS_URL": url}
        if not _static(args).get("mlcommons.security.master_key_file"):
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
        api = [python, "-m", "mlcommons", "api", "--host", args.host, "--port", str(args.port), *config]
        part = sup.add("api", _spawner(sup, "api", api, env))
        print(f"api        http://{args.host}:{args.port} (pid {part.proc.pid}, log {sup.logs / 'api.log'})",
              flush=True)
        if args.dashboard_port:
            dashboard = [python, "-m", "mlcommons", "dashboard", "--port", str(args.dashboard_port), *config]
            sup.add("dashboard", _spawner(sup, "dashboard", dashboard, env), stop_timeout=5)
            print(f"dashboard  http://127.0.0.1:{args.dashboard_port} (rq-dashboard)", flush=True)
        while not stop_requested:
            sup.check()
            time.sleep(0.2)
    finally:
        print("stopping...", flush=True)
        sup.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlcommons", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("MLCOMMONS_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API, worker nodes, rq-dashboard and (if needed) Redis")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9200)
    serve.add_argument("--redis-url", help="use this Redis instead of an embedded one (or MLCOMMONS_REDIS_URL)")
    serve.add_argument("--workers", type=int, default=1, help="number of worker node processes")
    serve.add_argument("--data-dir", default="./data")
    serve.add_argument("--dashboard-port", type=int, default=9181, help="0 to run no dashboard")
    serve.add_argument("--config", help="settings file (default config/mlcommons.yml)")
    serve.set_defaults(func=cmd_serve)

    api = sub.add_parser("api", help="run the API only")
    api.add_argument("--redis-url")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=9200)
    api.add_argument("--config")
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

    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
