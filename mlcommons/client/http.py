"""HTTP to a running server on ``urllib``: JSON in and out, credentials on every request, and the
errors a script can tell apart by the command's exit status (:class:`Exit`)."""
from __future__ import annotations

import base64
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from enum import IntEnum
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9200"
ML = "/_plugins/_ml"
REQUEST_TIMEOUT = 120.0  # one request; a first predict may wait for an auto-deploy
MAX_ERROR_TEXT = 2000  # of a reason or a non-JSON body, shown on stderr


class Exit(IntEnum):
    """The command's exit statuses. Stable: scripts rely on them (docs/cli.md)."""
    OK = 0
    SERVER_ERROR = 1   # the server answered an error, or the answer cannot satisfy the request
    USAGE = 2          # bad arguments or local input (argparse uses 2 too)
    UNREACHABLE = 3    # no answer: connection refused, DNS, TLS, time-out
    TASK_FAILED = 4    # a waited-for task ended in a state other than COMPLETED
    TIMED_OUT = 5      # a wait ran past --timeout
    PACKAGING = 6      # a model folder could not be traced, or an archive could not be read
    INTERRUPTED = 130  # Ctrl-C


class ClientError(Exception):
    """An error that ends the command with ``code``; ``message`` goes to stderr after ``error: ``."""

    def __init__(self, code: Exit, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ServerError(ClientError):
    """The server answered ``status`` with the dialect's error body (or something else)."""

    def __init__(self, status: int, error_type: str, reason: str, body: Any = None):
        super().__init__(Exit.SERVER_ERROR, f"{status} {error_type}: {reason}")
        self.status, self.error_type, self.reason, self.body = status, error_type, reason, body


def usage(message: str) -> ClientError:
    return ClientError(Exit.USAGE, message)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."


def server_error(status: int, raw: bytes) -> ServerError:
    """The error out of an error response: OpenSearch's and Elasticsearch's
    ``{"error": {"type", "reason"}, "status"}``, OpenAI's ``{"error": {"type", "message"}}``, or
    whatever text came back (a proxy's page)."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind = str(error.get("type") or "error")
        reason = error.get("reason") or error.get("message") or json.dumps(error)
        return ServerError(status, kind, _clip(str(reason)), body)
    if isinstance(error, str):  # some proxies and older servers
        return ServerError(status, "error", _clip(error), body)
    text = raw.decode("utf-8", errors="replace").strip() or "(empty body)"
    return ServerError(status, "http_error", _clip(" ".join(text.split())), body)


class Connection:
    """One server: its URL, the Authorization header (never shown), and the TLS context."""

    def __init__(self, url: str = DEFAULT_URL, *, user: str | None = None, password: str | None = None,
                 api_key: str | None = None, insecure: bool = False, ca_cert: str | None = None,
                 timeout: float = REQUEST_TIMEOUT):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise usage(f"--url must be an http:// or https:// URL with a host, got [{_clip(url)}]")
        if parsed.username or parsed.password:
            raise usage("give credentials with --user/MLCOMMONS_USER or --api-key, not inside --url")
        if user is not None and api_key is not None:
            raise usage("give either --user or --api-key, not both")
        self.base = url.rstrip("/")
        self.timeout = timeout
        self._auth: str | None = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"
        elif api_key is not None:
            # Elasticsearch's form: the "encoded" value of POST /_security/api_key, or id:api_key.
            key = api_key if ":" not in api_key else base64.b64encode(api_key.encode()).decode()
            self._auth = f"ApiKey {key}"
        self._ssl: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            if ca_cert:
                try:
                    self._ssl = ssl.create_default_context(cafile=ca_cert)
                except (OSError, ssl.SSLError) as exc:
                    raise usage(f"cannot read --ca-cert [{ca_cert}]: {exc}") from None
            else:
                self._ssl = ssl.create_default_context()
            if insecure:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    def __repr__(self) -> str:  # never the credentials
        return f"Connection({self.base!r}, auth={'yes' if self._auth else 'no'})"

    def request(self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
                content_type: str | None = None, timeout: float | None = None) -> Any:
        """Send one request; the parsed JSON answer (None when empty). Raises :class:`ServerError`
        for a status of 400 or more, and :class:`ClientError` (UNREACHABLE) when nothing answered."""
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        if self._auth:
            headers["Authorization"] = self._auth
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self._ssl) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise server_error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError, socket.timeout, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(Exit.UNREACHABLE, f"cannot reach the server at {self.base}: {reason}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ServerError(200, "invalid_response", f"the answer to {method} {path} is not JSON") from None

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw) -> Any:
        return self.request("DELETE", path, **kw)


def quote(value: str) -> str:
    """One path segment: an id or a name as the user typed it, never a path of its own."""
    return urllib.parse.quote(value, safe="")
