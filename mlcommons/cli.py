"""The ``mlcommons`` command: ``serve`` (the whole stack on one machine), ``api`` and ``worker``."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from mlcommons.procutil import die_with_parent, stop_process

log = logging.getLogger("mlcommons")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _static(args) -> dict:
    from mlcommons.settings import static_values

    return static_values(Path(args.config) if getattr(args, "config", None) else None)


def _redis_url(args) -> str | None:
    return args.redis_url or os.environ.get("MLCOMMONS_REDIS_URL")


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
    print(f"mlcommons worker node {node.node_id} (pid {os.getpid()}) on {url}", flush=True)
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
    print(f"mlcommons API listening on http://{args.host}:{args.port} (Redis {url})", flush=True)
    asyncio.run(serve(ctx, args.host, args.port))
    return 0


# --- serve ---------------------------------------------------------------------------------

class Stack:
    """The processes of a single-machine stack, stopped in reverse order of start."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.redis = None

    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log_file = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=die_with_parent)
        log_file.close()
        self.children.append((name, proc))
        return proc

    def stop(self) -> None:
        for name, proc in reversed(self.children):
            code = stop_process(proc, timeout=30)
            log.info("%s stopped (exit %s)", name, code)
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()
            log.info("embedded Redis stopped")
            self.redis = None


def cmd_serve(args) -> int:
    _offline_env()
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir)
    # Until the API's loop takes over, a signal only records that we should stop.
    stop_requested: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: stop_requested.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = _redis_url(args)
        if url is None:
            from mlcommons.embedded_redis import EmbeddedRedis

            stack.redis = EmbeddedRedis(data_dir / "redis")
            url = stack.redis.start()
            print(f"redis      {url} (embedded, append-only file in {data_dir / 'redis'})", flush=True)
        else:
            print(f"redis      {url}", flush=True)
        env = {**os.environ, "MLCOMMONS_REDIS_URL": url}
        config = ["--config", args.config] if args.config else []
        for i in range(args.workers):
            node_dir = data_dir / "nodes" / str(i)
            proc = stack.spawn(f"worker-{i}", [sys.executable, "-m", "mlcommons", "worker", "--redis-url", url,
                                               "--data-dir", str(node_dir), *config], env)
            print(f"worker {i}   pid {proc.pid}, data {node_dir}, log {stack.logs / f'worker-{i}.log'}", flush=True)
        if args.dashboard_port:
            stack.spawn("dashboard", [sys.executable, "-m", "rq_dashboard", "--bind", "127.0.0.1",
                                      "--port", str(args.dashboard_port), "--redis-url", url], env)
            print(f"dashboard  http://127.0.0.1:{args.dashboard_port} (rq-dashboard)", flush=True)
        from mlcommons.api.app import serve
        from mlcommons.core.context import Context

        ctx = Context.connect(url, static=_static(args), auto_refresh=False)
        print(f"api        http://{args.host}:{args.port}", flush=True)
        if not stop_requested:
            asyncio.run(_serve_until_signal(serve, ctx, args.host, args.port))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stopping...", flush=True)
        stack.stop()
        print("stopped", flush=True)
    return 0


async def _serve_until_signal(serve, ctx, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(ctx, host, port, stop=stop)


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
