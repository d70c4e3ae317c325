"""The client verbs: each takes the parsed arguments, a :class:`Connection` and an :class:`Output`,
prints its result and returns the exit status (or raises a :class:`ClientError` that carries one)."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlcommons.client import upload as up
from mlcommons.client.http import ML, ClientError, Connection, Exit, ServerError, quote, usage
from mlcommons.client.output import Output, when

TERMINAL_STATES = ("COMPLETED", "COMPLETED_WITH_ERROR", "FAILED", "CANCELLED")
MAX_LIST = 10_000  # the server's result window
MAX_TEXTS_FROM_STDIN = 10_000


# --- tasks -------------------------------------------------------------------------------------

def wait_task(conn: Connection, out: Output, task_id: str, timeout: float, label: str) -> dict:
    """Poll the task until it ends, with a live status line; TIMED_OUT past ``timeout`` seconds."""
    started = time.monotonic()
    interval = 0.1
    with out.status(f"{label}: task {task_id}") as update:
        while True:
            task = conn.get(f"{ML}/tasks/{quote(task_id)}")
            state = str(task.get("state"))
            nodes = task.get("worker_node") or []
            update(f"{label}: task {task_id} {state}" + (f" on {', '.join(map(str, nodes))}" if nodes else ""))
            if state in TERMINAL_STATES:
                return task
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                raise ClientError(Exit.TIMED_OUT, f"task {task_id} is still {state} after {timeout:g}s")
            time.sleep(min(interval, left))
            interval = min(interval * 1.5, 1.0)


def ended_well(task: dict, task_id: str) -> ClientError | None:
    """None for a COMPLETED task; otherwise the TASK_FAILED error naming its state and error."""
    state = task.get("state")
    if state == "COMPLETED":
        return None
    reason = task.get("error")
    return ClientError(Exit.TASK_FAILED, f"task {task_id} ended {state}" + (f": {reason}" if reason else ""))


def tasks_list(args, conn: Connection, out: Output) -> int:
    body = {"query": {"match_all": {}}, "size": args.size, "sort": [{"create_time": {"order": "desc"}}]}
    hits = _hits(conn.post(f"{ML}/tasks/_search", body))
    rows = [(h["_id"], s.get("task_type"), s.get("state"), s.get("model_id"), s.get("worker_node"),
             when(s.get("create_time")), s.get("error"))
            for h in hits for s in [h.get("_source") or {}]]
    out.table("tasks", ("task", "type", "state", "model", "nodes", "created", "error"), rows,
              [{"task_id": h["_id"], **(h.get("_source") or {})} for h in hits])
    return Exit.OK


def tasks_get(args, conn: Connection, out: Output) -> int:
    task = conn.get(f"{ML}/tasks/{quote(args.task_id)}")
    out.document(f"task {args.task_id}", task)
    return Exit.OK


def tasks_watch(args, conn: Connection, out: Output) -> int:
    task = wait_task(conn, out, args.task_id, args.timeout, str(args.task_id))
    out.document(f"task {args.task_id}", task)
    failed = ended_well(task, args.task_id)
    if failed:
        raise failed
    return Exit.OK


# --- models ------------------------------------------------------------------------------------

def models_list(args, conn: Connection, out: Output) -> int:
    body = {"query": {"match_all": {}}, "size": args.size, "sort": [{"created_time": {"order": "desc"}}]}
    hits = [h for h in _hits(conn.post(f"{ML}/models/_search", body))
            if "chunk_number" not in (h.get("_source") or {})]  # ML Commons lists chunks too; we never do
    rows = [(h["_id"], s.get("name"), s.get("model_version"), s.get("model_state"), s.get("algorithm"),
             s.get("model_format"), s.get("current_worker_nodes"))
            for h in hits for s in [h.get("_source") or {}]]
    out.table("models", ("model", "name", "version", "state", "function", "format", "nodes"), rows,
              [{"model_id": h["_id"], **(h.get("_source") or {})} for h in hits])
    return Exit.OK


def models_get(args, conn: Connection, out: Output) -> int:
    model = conn.get(f"{ML}/models/{quote(args.model_id)}")
    out.document(f"model {args.model_id}", model)
    return Exit.OK


def deploy(conn: Connection, out: Output, model_id: str, *, wait: bool, timeout: float) -> tuple[str, dict | None]:
    """Deploy; with ``wait``, wait for the deploy task. Returns its id and, waited for, its end."""
    answer = conn.post(f"{ML}/models/{quote(model_id)}/_deploy")
    task_id = answer.get("task_id") if isinstance(answer, dict) else None
    if not isinstance(task_id, str) or not task_id:
        raise ServerError(200, "invalid_response", f"_deploy answered no task_id: {answer!r}"[:500])
    if not wait:
        return task_id, None
    return task_id, wait_task(conn, out, task_id, timeout, f"deploying {model_id}")


def deployed(out: Output, model_id: str, task_id: str, task: dict | None) -> None:
    """Say how a waited-for deploy ended: a note, or the TASK_FAILED error."""
    if task is None:
        return
    failed = ended_well(task, task_id)
    if failed:
        raise failed
    out.note(f"deployed {model_id} on {', '.join(map(str, task.get('worker_node') or [])) or 'no node'}")


def models_deploy(args, conn: Connection, out: Output) -> int:
    task_id, task = deploy(conn, out, args.model_id, wait=args.wait, timeout=args.timeout)
    out.line(task_id)
    deployed(out, args.model_id, task_id, task)
    return Exit.OK


def models_undeploy(args, conn: Connection, out: Output) -> int:
    answer = conn.post(f"{ML}/models/{quote(args.model_id)}/_undeploy") or {}
    # ML Commons' answer: {"<node>": {"stats": {"<model>": "undeployed"}}} (empty when no node held it)
    rows = [(node, model, state) for node, entry in answer.items() if isinstance(entry, dict)
            for model, state in (entry.get("stats") or {}).items()]
    out.table(f"undeploy {args.model_id}", ("node", "model", "result"), rows, answer)
    return Exit.OK


def models_delete(args, conn: Connection, out: Output) -> int:
    answer = conn.delete(f"{ML}/models/{quote(args.model_id)}") or {}
    if out.json_mode:
        out.json(answer)
    else:
        out.line(f"{answer.get('_id', args.model_id)}\t{answer.get('result', 'deleted')}")
    return Exit.OK


def models_upload(args, conn: Connection, out: Output) -> int:
    path = Path(args.path)
    kind = up.kind_of(path)
    given = up.read_config_file(args.model_config)
    meta = {k: v for k, v in given.items() if k != "model_config"}
    if args.model_format:
        meta["model_format"] = args.model_format
    with tempfile.TemporaryDirectory(prefix="mlc-upload-") as tmp:
        if kind == "zip":
            zip_path = path
            meta.setdefault("model_format", up.format_of(path))
            config = given.get("model_config")
            if config is None:
                with out.status(f"reading {path.name} for its model_config (no --model-config given)"):
                    config = up.probe_archive(path, str(meta["model_format"]).upper())
        else:
            fmt = str(meta.get("model_format") or "TORCH_SCRIPT").upper()
            with out.status(f"tracing and packaging {path.name} ({kind}, {fmt})"):
                zip_path, config = up.package_folder(
                    path, kind, Path(tmp), model_format=fmt, pooling_mode=args.pooling_mode,
                    normalize=args.normalize, max_seq_length=args.max_seq_length)
            config.update(given.get("model_config") or {})  # what the user wrote wins
            meta["model_format"] = fmt
            out.note(f"packaged {path.name} as {zip_path.name}")
        meta["model_config"] = config
        meta["name"] = args.name or meta.get("name") or _default_name(path)
        if args.version:
            meta["version"] = args.version
        meta.setdefault("function_name", "TEXT_EMBEDDING")
        sha, size = up.digest(zip_path)
        package = up.Package(zip_path, sha, size, meta)
        with out.progress(f"uploading {meta['name']}", size) as advance:
            model_id = up.upload(conn, package, advance)
    out.note(f"registered {meta['name']} as {model_id} ({size} bytes in {package.total_chunks} "
             f"chunk{'s' if package.total_chunks != 1 else ''}, sha256 {sha})")
    try:
        if args.deploy:
            task_id, task = deploy(conn, out, model_id, wait=args.wait, timeout=args.timeout)
            out.note(f"deploy task {task_id}")
            deployed(out, model_id, task_id, task)
    finally:
        out.line(model_id)  # last, whatever the deploy did: the model exists
    return Exit.OK


def _default_name(path: Path) -> str:
    name = path.resolve().name
    return name[:-4] if name.lower().endswith(".zip") else name


# --- predict -----------------------------------------------------------------------------------

def resolve_model(conn: Connection, model: str) -> str:
    """An id, or the name of exactly one model."""
    try:
        conn.get(f"{ML}/models/{quote(model)}")
        return model
    except ServerError as exc:
        if exc.status != 404:
            raise
        missing = exc
    body = {"query": {"term": {"name.keyword": model}}, "size": 3, "_source": ["name"]}
    ids = [h["_id"] for h in _hits(conn.post(f"{ML}/models/_search", body))]
    if not ids:
        raise missing
    if len(ids) > 1:
        raise ClientError(Exit.SERVER_ERROR, f"more than one model is named [{model}] ({', '.join(ids[:2])}, ...): "
                                             "give its id")
    return ids[0]


def predict(args, conn: Connection, out: Output) -> int:
    texts = list(args.texts)
    if not texts or texts == ["-"]:
        if sys.stdin.isatty() and not texts:
            raise usage("give the texts to embed, or - to read them from stdin (one a line)")
        texts = []
        for line in sys.stdin:
            texts.append(line.rstrip("\n"))
            if len(texts) > MAX_TEXTS_FROM_STDIN:
                raise usage(f"at most {MAX_TEXTS_FROM_STDIN} texts at once")
        if not texts:
            raise usage("no text on stdin")
    model_id = resolve_model(conn, args.model)
    body: dict[str, Any] = {"text_docs": texts}
    if args.query_text is not None:
        body["query_text"] = args.query_text
    answer = conn.post(f"{ML}/models/{quote(model_id)}/_predict", body)
    if out.json_mode:
        out.json(answer)
        return Exit.OK
    for result in (answer or {}).get("inference_results") or []:
        for output in result.get("output") or []:
            if "data" in output:
                out.json(output["data"])
            elif "dataAsMap" in output:
                out.json(output["dataAsMap"])
            else:
                out.json(output)
    return Exit.OK


def _hits(answer: Any) -> list[dict]:
    hits = ((answer or {}).get("hits") or {}).get("hits") if isinstance(answer, dict) else None
    return [h for h in hits or [] if isinstance(h, dict) and "_id" in h]
