"""Connections that a slow or silent client cannot hold open.

aiohttp closes a connection that waits for a request longer than ``keepalive_timeout`` (counted
from its last answer, or from its opening), which bounds idle connections and also request
headers that never end. It has no time limit on receiving a request once it has begun: a client
that sends half a body, or a header byte every few seconds, keeps its connection (and the task
waiting on the body) for as long as it likes. ``TimedRequestHandler`` adds that limit: a
request's line, headers and body must all arrive within ``read_timeout`` seconds of its first
byte, or the connection is closed; a handler waiting on the body sees a 408 error.

The cost on the hot path is a few attribute reads per received chunk: the common case (a whole
request in one chunk) arms no timer, and a connection has at most one timer, re-armed only when
it fires early, as aiohttp does for keep-alive.
"""
from __future__ import annotations

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from mlcommons.errors import RequestTimeout


class TimedRequestHandler(RequestHandler):
    __slots__ = ("_read_timeout", "_read_deadline", "_read_timer", "_incoming")

    def __init__(self, manager: web.Server, *, read_timeout: float, **kwargs):
        super().__init__(manager, **kwargs)
        self._read_timeout = read_timeout
        self._read_deadline = 0.0  # 0: no request is being received
        self._read_timer = None
        self._incoming = None  # the body of a request whose headers are in but body is not

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # whole headers came in: is the last body complete?
            payload = self._messages[-1][1]
            self._incoming = None if payload.is_eof() else payload
            receiving = self._incoming is not None
        elif self._incoming is not None:
            if self._incoming.is_eof():
                self._incoming = None
            receiving = self._incoming is not None
        else:
            receiving = bool(data)  # part of a request line or of headers
        if not receiving:
            self._read_deadline = 0.0
        elif not self._read_deadline:
            self._read_deadline = self._loop.time() + self._read_timeout
            if self._read_timer is None:
                self._read_timer = self._loop.call_at(self._read_deadline, self._check_read_deadline)

    def _check_read_deadline(self) -> None:
        self._read_timer = None
        if not self._read_deadline or self.transport is None:
            return
        if self._loop.time() < self._read_deadline:  # a later request's deadline: wait for it
            self._read_timer = self._loop.call_at(self._read_deadline, self._check_read_deadline)
            return
        if self._incoming is not None:
            self._incoming.set_exception(RequestTimeout(
                f"the request body did not arrive within mlcommons.http.read_timeout_seconds "
                f"[{self._read_timeout}]"))
        self.log_debug("closing a connection whose request did not arrive in %ss", self._read_timeout)
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        super().connection_lost(exc)


class _TimedServer(web.Server):
    def __call__(self) -> TimedRequestHandler:
        return TimedRequestHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """aiohttp's AppRunner whose connections are ``TimedRequestHandler``s (pass ``read_timeout``
    with the other handler arguments). aiohttp builds its ``Server`` (the connection factory)
    itself and offers no hook for the connection class, so the built server is given ours."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _TimedServer
        return server
