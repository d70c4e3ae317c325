"""Serving a remote model on a node: requests taken from the model's queue like any other, sent to
the provider through its connector, many at a time.

One asyncio loop in a thread of its own per remote model takes requests (recording each in the
node's in-flight list, so a node that dies hands them to another) and keeps up to the connector's
``client_config.max_connection`` calls in flight over one pooled aiohttp session: a slow provider
never holds a thread per request. Each call fills the connector's templates
(core/remote/templates.py), checks the URL against the trusted patterns and the host against
private addresses, retries as ML Commons does (429 and 5xx and connection errors, ``Retry-After``
honoured, never past the request's own deadline), and turns the reply into ML Commons tensors
(core/remote/functions.py). Errors keep ML Commons' words and the provider's status.
"""
from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import random
import socket
import threading
import time
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis

from mlcommons.core.remote import failures, functions, templates, urls
from mlcommons.core.remote.connectors import CLIENT_CONFIG
from mlcommons.core.serving import dataplane as dp
from mlcommons.errors import MLError
from mlcommons.settings import Settings
from mlcommons.store.connection import async_client
from mlcommons.store.keys import Keys
from workers.inference import Counters

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 64 * 1024 * 1024
REPLY_TTL_SECONDS = 300


class RemoteError(MLError):
    def __init__(self, status: int, reason: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(reason, status=status)
        self.retryable = retryable
        self.retry_after = retry_after


def client_config(connector: dict[str, Any]) -> dict[str, Any]:
    config = {name: default for name, (default, _, _) in CLIENT_CONFIG.items()}
    config["retry_backoff_policy"] = "constant"
    config.update(connector.get("client_config") or {})
    return config


def backoff_seconds(policy: str, attempt: int, base_ms: int, budget_s: float) -> float:
    """ML Commons' (OpenSearch's) back-off before retry ``attempt`` (0-based)."""
    if policy == "exponential_equal_jitter":
        ceiling = min(2 ** min(attempt, 30) * base_ms, budget_s * 1000)
        return (ceiling / 2 + random.uniform(0, ceiling / 2)) / 1000
    if policy == "exponential_full_jitter":
        return random.uniform(1, max(1, base_ms * 2 ** min(attempt, 30))) / 1000
    return base_ms / 1000


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class RemoteExecutor:
    """Calls one connector's PREDICT action."""

    def __init__(self, connector: dict[str, Any], credential: dict[str, str], settings: Settings,
                 session: aiohttp.ClientSession, entity_id: str = ""):
        self.connector = connector
        self.entity_id = entity_id  # the model's id: an Elasticsearch endpoint's id in its errors
        self.es_service = bool(connector.get("_es_service"))  # built by the server for an ES endpoint
        self.credential = credential
        self.settings = settings
        self.session = session
        self.config = client_config(connector)
        actions = [a for a in connector.get("actions") or [] if a["action_type"] == "PREDICT"]
        if not actions:
            raise MLError("Connector endpoint is required when creating a remote model without connector id!",
                          status=400)
        self.action = actions[0]

    async def predict(self, payload: dict[str, Any], deadline: float) -> bytes:
        call = payload.get("parameters") or {}
        texts = payload.get("text_docs")
        query = payload.get("query_text")
        pre = self.action.get("pre_process_function")
        if texts is None:
            chunks: list[list[str] | None] = [None]
        elif pre in functions.ONE_PER_DOCUMENT:
            chunks = [[text] for text in texts]
        else:
            chunks = [texts]
        results = []
        for chunk in chunks:
            made = functions.preprocess(pre, chunk, query) if chunk is not None else {}
            params = templates.merge(self.connector.get("parameters") or {}, call, made)
            body = templates.payload(self.action.get("request_body"), params)
            url = templates.fill(self.action["url"], params)
            if not self.es_service:  # one the server built is not held to the trusted patterns
                urls.check_trusted(url, self.settings.get("plugins.ml_commons.trusted_connector_endpoints_regex"))
            await check_host(url, self.settings.get("plugins.ml_commons.connector.private_ip_enabled"))
            headers = templates.headers(self.action.get("headers") or {}, params, self.credential)
            status, data = await self.send(self.action["method"], url, headers, body, deadline, params)
            tensors = functions.postprocess(self.action.get("post_process_function"), data,
                                            params.get("response_filter"))
            results.append({"output": tensors, "status_code": status})
        return orjson.dumps({"inference_results": results})

    async def send(self, method: str, url: str, headers: dict[str, str], body: str | None,
                   deadline: float, params: dict[str, str | None] | None = None) -> tuple[int, bytes]:
        method = method.upper()
        if method not in ("POST", "GET", "PUT", "DELETE"):
            raise RemoteError(400, "unsupported http method")
        if method == "POST" and not body:
            raise RemoteError(400, "Content length is 0. Aborting request to remote model")
        headers = {"Content-Type": "application/json", **headers}
        config = self.config
        retry_deadline = min(deadline, time.monotonic() + config["retry_timeout_seconds"])
        attempt = 0
        while True:
            try:
                signed = self._signed(method, url, headers, body, params or {}) \
                    if self.connector.get("protocol") == "aws_sigv4" else headers
                return await self._once(method, url, signed, body, deadline)
            except RemoteError as error:
                limit = config["max_retry_times"]
                if not error.retryable or limit == 0 or (limit != -1 and attempt >= limit):
                    raise
                delay = backoff_seconds(config["retry_backoff_policy"], attempt, config["retry_backoff_millis"],
                                        config["retry_timeout_seconds"])
                if error.retry_after is not None:
                    delay = max(delay, error.retry_after)
                if time.monotonic() + delay >= retry_deadline:
                    raise
                await asyncio.sleep(delay)
                attempt += 1

    def _signed(self, method: str, url: str, headers: dict[str, str], body: str | None,
                params: dict[str, str | None]) -> dict[str, str]:
        """AWS Signature Version 4 (botocore's signer), made afresh for each attempt: the service
        and region from the parameters, else the credential, as ML Commons takes them."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        credential = self.credential
        service = params.get("service_name") or credential.get("service_name")
        region = params.get("region") or credential.get("region")
        data = body.encode() if body else b""
        headers = {k: v for k, v in headers.items()}
        for name in list(headers):
            if name.lower() == "x-amz-content-sha256" and headers[name] == "required":
                headers[name] = hashlib.sha256(data).hexdigest()
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(Credentials(credential["access_key"], credential["secret_key"], credential.get("session_token")),
                  service, region).add_auth(request)
        return dict(request.headers.items())

    async def _once(self, method: str, url: str, headers: dict[str, str], body: str | None,
                    deadline: float) -> tuple[int, bytes]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RemoteError(408, "Error communicating with remote model: the request's time ran out")
        timeout = aiohttp.ClientTimeout(total=remaining, connect=self.config["connection_timeout"],
                                        sock_read=self.config["read_timeout"])
        try:
            async with self.session.request(method, url, headers=headers, data=body.encode() if body else None,
                                            timeout=timeout, allow_redirects=False) as response:
                data = await response.content.read(MAX_REPLY_BYTES + 1)
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            if self.es_service:
                raise RemoteError(500, failures.elasticsearch_unreachable(self.entity_id, reason),
                                  retryable=True) from None
            raise RemoteError(500, f"Error communicating with remote model: {reason}", retryable=True) from None
        if len(data) > MAX_REPLY_BYTES:
            raise RemoteError(502, f"Remote service reply is larger than {MAX_REPLY_BYTES} bytes")
        if 200 <= status <= 300:
            if not data.strip():
                raise RemoteError(502, "Remote service returned empty response body")
            return status, data
        failed = failures.elasticsearch(status, data, self.entity_id, url) if self.es_service \
            else failures.mlcommons(status, data)
        raise RemoteError(failed.status, failed.reason, retryable=failed.retryable, retry_after=retry_after)


async def check_host(url: str, private_ip_enabled: bool) -> None:
    """core/remote/urls.check_host, resolving on the loop."""
    host, port = urls.target(url)
    if private_ip_enabled:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise RemoteError(400, f"{host}: {exc}") from None
    urls.refuse_private(host, [info[4][0] for info in infos])


class RemoteServer:
    """The node's server of one remote model (the same face as workers/inference.DeploymentServer)."""

    def __init__(self, redis_url: str, keys: Keys, settings: Settings, node_id: str, deployment_id: str,
                 connector: dict[str, Any], credential: dict[str, str], client_name: str | None = None):
        """``client_name``: what its Redis connections call themselves (the node's run, for fencing)."""
        self.redis_url, self.keys, self.settings = redis_url, keys, settings
        self.client_name = client_name
        self.node_id, self.deployment_id = node_id, deployment_id
        self.connector, self.credential = connector, credential
        if not any(a.get("action_type") == "PREDICT" for a in connector.get("actions") or []):
            # refused here, so that the deploy fails with it rather than a server that never starts
            raise MLError("Connector endpoint is required when creating a remote model without connector id!",
                          status=400)
        self.config = client_config(connector)
        self.counters = Counters()
        self._queue = keys.predict_queue(deployment_id)
        self._inflight = keys.inflight(node_id, deployment_id, 0)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    @property
    def allocations(self) -> int:
        return 1

    def set_allocations(self, count: int) -> None:  # a remote model's concurrency is its max_connection
        pass

    def prepare(self) -> None:  # no weights here to pack, no forward pass to measure
        pass

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True,
                                        name=f"remote-{self.deployment_id}")
        self._thread.start()
        self._ready.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # with the retries, and a Sentinel URL's failover
        client = async_client(self.redis_url, **({"client_name": self.client_name} if self.client_name else {}))
        limit = self.config["max_connection"]
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit))
        executor = RemoteExecutor(self.connector, self.credential, self.settings, session, self.deployment_id)
        take = client.register_script(dp.TAKE_SCRIPT)
        running: set[asyncio.Task] = set()
        self._answers: list[tuple[str, bytes, bytes]] = []
        self._answered = asyncio.Event()
        flusher = asyncio.create_task(self._flush_answers(client))
        self._ready.set()

        def serve(raw: bytes) -> None:
            task = asyncio.create_task(self._serve(executor, raw))
            running.add(task)
            task.add_done_callback(running.discard)

        try:
            while not self._stopping.is_set():
                if len(running) >= limit:  # every connection busy: wait for one to free
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    raw = await client.blmove(self._queue, self._inflight, 0.5, "LEFT", "RIGHT")
                    if raw is None:
                        continue
                    serve(raw)
                    # Under load (others still in flight), what else is queued comes in the same
                    # round trip; an idle model does not pay for the look.
                    if 1 < len(running) < limit:
                        for more in await take(keys=[self._queue, self._inflight], args=[limit - len(running)]):
                            serve(more)
                except (aioredis.RedisError, OSError) as exc:  # any of them: the loop must outlive a failover
                    log.warning("remote model %s: Redis unavailable (%s); retrying", self.deployment_id, exc)
                    await asyncio.sleep(0.5)
            if running:
                await asyncio.wait(running, timeout=10)
        finally:
            flusher.cancel()
            await self._push_answers(client)
            await session.close()
            # Whatever is still recorded in flight was never answered: back to the queue.
            while await client.lmove(self._inflight, self._queue, "RIGHT", "LEFT"):
                pass
            await client.aclose()

    async def _flush_answers(self, client) -> None:
        """Push the replies that finished since the last push, in one round trip: under load one
        push carries many, and the API process that waits for them wakes once for all of them."""
        while True:
            await self._answered.wait()
            self._answered.clear()
            try:
                await self._push_answers(client)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("remote model %s: could not answer requests (%s)", self.deployment_id, exc)
                await asyncio.sleep(0.2)
                self._answered.set()

    async def _push_answers(self, client) -> None:
        answers, self._answers = self._answers, []
        if not answers:
            return
        by_key: dict[str, list[bytes]] = {}
        for reply_key, packed, _ in answers:
            by_key.setdefault(reply_key, []).append(packed)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for reply_key, packed in by_key.items():
                    pipe.rpush(reply_key, *packed)
                    pipe.expire(reply_key, REPLY_TTL_SECONDS)
                for _, _, raw in answers:
                    pipe.lrem(self._inflight, 1, raw)
                await pipe.execute()
        except BaseException:
            self._answers = answers + self._answers  # not sent: the next push tries again
            raise

    async def _serve(self, executor: RemoteExecutor, raw: bytes) -> None:
        req = dp.decode_request(raw)
        now_ms = int(time.time() * 1000)
        try:
            if req.deadline_ms and req.deadline_ms < now_ms:
                reply: dp.Reply = dp.Failure(req.request_id, dp.ERROR, 408, "the request expired in the queue")
                outcome = "timeout"
            else:
                deadline = time.monotonic() + ((req.deadline_ms - now_ms) / 1000 if req.deadline_ms else 3600)
                started = time.perf_counter()
                body = await executor.predict(req.payload, deadline)
                reply = dp.Document(req.request_id, dp.OK, body)
                outcome = "ok"
                elapsed = time.perf_counter() - started
                with self.counters.lock:
                    self.counters.inference_ms_total += elapsed * 1000
                    # one provider call is this model's "forward pass" in the metrics' histograms
                    self.counters.inference_seconds.observe(elapsed)
                    self.counters.batch_size.observe(len(req.texts) or 1)
        except MLError as exc:
            reply, outcome = dp.Failure(req.request_id, dp.ERROR, exc.status, exc.reason), "error"
        except Exception as exc:  # a bug must not lose the request
            log.exception("remote model %s: request failed", self.deployment_id)
            reply, outcome = dp.Failure(req.request_id, dp.ERROR, 500, f"{type(exc).__name__}: {exc}"), "error"
        with self.counters.lock:
            if outcome == "ok":
                self.counters.inference_count += len(req.texts) or 1
                self.counters.batches += 1
            elif outcome == "timeout":
                self.counters.timeout_count += 1
            else:
                self.counters.error_count += 1
            self.counters.last_access_ms = now_ms
        self._answers.append((req.reply_key, dp.encode(reply), raw))
        self._answered.set()
