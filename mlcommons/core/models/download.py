"""Fetching a model archive named by a URL, within every limit a register by URL must keep.

A register by URL makes a worker read whatever a client names, so each step is bounded:

- **Where.** Only http, https and file URLs. Every URL, the first one and each redirect, must
  match ``plugins.ml_commons.trusted_url_regex``, and at most :data:`MAX_REDIRECTS` are followed.
  Redirects are followed, each one checked, rather than refused, because model hosts (Hugging
  Face, GitHub releases, pre-signed object-store links) answer with one; a redirect never leads
  off http(s). A file URL reads only a regular file inside the folders named in
  ``mlcommons.model_store.url_file_roots`` (none by default, as Elasticsearch's ``path.repo``):
  the path is resolved (symbolic links, ``..``) before the check, and the opened descriptor is
  checked again, so a link swapped in between cannot lead out.
- **What it tells.** A refused URL gets one answer whatever is behind it (:class:`Refused`);
  only a URL that passed every check gets errors that tell of the world behind it ("no such
  file", "connection refused").
- **How much.** The size the source announces (``Content-Length``, the file's size) must fit
  ``mlcommons.model_store.max_model_size`` and equal the size the request declared, if any, before
  a byte is stored; reading stops one byte past the limit whatever was announced.
- **How long.** The whole download, headers included, has a deadline
  (``url_deadline_seconds``: a watchdog shuts the socket wherever a read is blocked) and a minimum
  rate over each window of ``url_timeout_seconds``, so a server trickling a byte every few seconds
  (which never trips the socket time-out) cannot hold a worker.
"""
from __future__ import annotations

import contextlib
import functools
import http.client
import os
import re
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator
from urllib.parse import unquote, urlsplit

SCHEMES = ("http", "https", "file")
MAX_REDIRECTS = 5
MAX_URL_CHARS = 8192
ROOTS_SETTING = "mlcommons.model_store.url_file_roots"
_READ = 64 * 1024  # one read never waits for more than this, so the clocks are checked often


class Refused(Exception):
    """The URL may not be fetched. The text depends on the URL and the settings only."""


class DownloadFailed(Exception):
    """The URL passed every check and fetching it failed; the text says what the source did."""


@dataclass(frozen=True)
class Policy:
    """Where a model may be fetched from."""

    trusted_regex: str
    file_roots: tuple[Path, ...]

    @classmethod
    def of(cls, settings) -> "Policy":
        raw = settings.get(ROOTS_SETTING)
        roots = tuple(Path(os.path.realpath(p.strip())) for p in raw.split(",") if p.strip())
        return cls(settings.get("plugins.ml_commons.trusted_url_regex"), roots)


@dataclass(frozen=True)
class Limits:
    """How much and how long. ``declared``: the size the request declared (exactly that many
    bytes are expected); ``min_rate`` 0 turns the rate check off."""

    max_bytes: int
    declared: int | None
    socket_timeout: float
    deadline: float
    min_rate: int

    @classmethod
    def of(cls, settings, declared: int | None) -> "Limits":
        return cls(max_bytes=settings.get("mlcommons.model_store.max_model_size"), declared=declared,
                   socket_timeout=settings.get("mlcommons.model_store.url_timeout_seconds"),
                   deadline=settings.get("mlcommons.model_store.url_deadline_seconds"),
                   min_rate=settings.get("mlcommons.model_store.url_min_bytes_per_second"))

    @property
    def most(self) -> int:
        return self.declared if self.declared is not None else self.max_bytes

    def too_large(self, url: str, size: int | None = None) -> DownloadFailed:
        found = f"is {size} bytes, " if size is not None else "is "
        if self.declared is not None:
            return DownloadFailed(f"the model at [{url}] {found}larger than the declared "
                                  f"model_content_size_in_bytes ({self.declared})")
        return DownloadFailed(f"the model at [{url}] {found}larger than the limit of {self.max_bytes} bytes "
                              "(mlcommons.model_store.max_model_size)")


# --- where -------------------------------------------------------------------------------------

def check(url: str, policy: Policy) -> None:
    """Raise :class:`Refused` unless ``url`` may be fetched (run by the API at once and by the
    worker again, and for every redirect)."""
    if len(url) > MAX_URL_CHARS:
        raise Refused(f"[url] must be at most {MAX_URL_CHARS} characters long")
    if not re.search(policy.trusted_regex, url):
        raise Refused("URL can't match trusted url regex")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise Refused(f"[{url}] is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise Refused(f"URL scheme [{parts.scheme}] is not supported; use http, https or file")
    if scheme == "file":
        file_path(url, policy)
    elif not parts.hostname:
        raise Refused(f"URL [{url}] names no host")


def file_path(url: str, policy: Policy) -> Path:
    """The resolved path a file URL reads, if it lies inside one of the allowed folders."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise Refused(f"file URL [{url}] names a host; only local files (file:///path) can be read")
    if not policy.file_roots:
        raise Refused(f"file URLs are refused: no folder is named in [{ROOTS_SETTING}]")
    path = unquote(parts.path)
    if "\x00" in path or not path.startswith("/"):
        raise Refused(f"file URL [{url}] is outside the folders named in [{ROOTS_SETTING}]")
    real = Path(os.path.realpath(path))
    if not _inside(real, policy.file_roots):
        raise Refused(f"file URL [{url}] is outside the folders named in [{ROOTS_SETTING}]")
    return real


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


# --- fetching ------------------------------------------------------------------------------------

@dataclass
class Download:
    """An open download: ``size`` is what the source announced (None if it did not say);
    ``stream`` reads at most the limit, within the deadline and above the minimum rate."""

    size: int | None
    stream: BinaryIO


@contextlib.contextmanager
def open_url(url: str, policy: Policy, limits: Limits,
             cancelled: Callable[[], bool] = lambda: False) -> Iterator[Download]:
    """Check ``url`` (:class:`Refused`), open it and check the size it announces
    (:class:`DownloadFailed`); ``cancelled()`` true stops the download at its next read."""
    check(url, policy)
    watchdog = _Watchdog(limits.deadline)
    try:
        if urlsplit(url).scheme.lower() == "file":
            raw, size = _open_file(url, policy)
        else:
            raw, size = _open_http(url, policy, limits, watchdog)
        with raw:
            if size is not None and size > limits.most:
                raise limits.too_large(url, size)
            if limits.declared is not None and size is not None and size != limits.declared:
                raise DownloadFailed(f"the model at [{url}] is {size} bytes; the request declared "
                                     f"model_content_size_in_bytes {limits.declared}")
            yield Download(size, _Metered(raw, url, size, limits, watchdog, cancelled))
    finally:
        watchdog.cancel()


def _open_file(url: str, policy: Policy) -> tuple[BinaryIO, int]:
    path = file_path(url, policy)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DownloadFailed(f"Failed to download model from [{url}]: {exc.strerror}") from None
    try:
        # The descriptor's own path: a link swapped in after the check above leads nowhere.
        opened = Path(os.readlink(f"/proc/self/fd/{fd}")) if os.path.exists("/proc/self/fd") else path
        if not _inside(opened, policy.file_roots):
            raise Refused(f"file URL [{url}] is outside the folders named in [{ROOTS_SETTING}]")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DownloadFailed(f"Failed to download model from [{url}]: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def _open_http(url: str, policy: Policy, limits: Limits, watchdog: "_Watchdog") -> tuple[BinaryIO, int | None]:
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), _HTTPHandler(watchdog), _HTTPSHandler(watchdog),
                    urllib.request.HTTPDefaultErrorHandler(), _CheckedRedirects(policy),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    try:
        response = opener.open(url, timeout=limits.socket_timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DownloadFailed(f"Failed to download model from [{url}]: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if watchdog.expired:
            raise _late(url, limits) from None
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else (str(exc) or type(exc).__name__)
        raise DownloadFailed(f"Failed to download model from [{url}]: {reason}") from None
    return response, response.length


def _late(url: str, limits: Limits) -> DownloadFailed:
    return DownloadFailed(f"the download of [{url}] did not finish within {limits.deadline:g} seconds "
                          "(mlcommons.model_store.url_deadline_seconds)")


class _Metered:
    """Reads the source in small pieces, stopping at the limit (+1 byte, to tell a larger
    source), at the deadline, below the minimum rate, or when the worker is stopping."""

    def __init__(self, raw, url: str, announced: int | None, limits: Limits, watchdog: "_Watchdog",
                 cancelled: Callable[[], bool]):
        self._raw, self._url, self._announced, self._limits = raw, url, announced, limits
        self._watchdog, self._cancelled = watchdog, cancelled
        self.count = 0
        self._window_start = time.monotonic()
        self._window_bytes = 0

    def read(self, n: int = -1) -> bytes:
        if self._cancelled():
            raise DownloadFailed(f"the download of [{self._url}] stopped: the worker node is stopping")
        if self._watchdog.expired:
            raise _late(self._url, self._limits)
        want = min(_READ if n is None or n < 0 else n, _READ, self._limits.most + 1 - self.count)
        try:
            data = self._raw.read1(want)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if self._watchdog.expired:
                raise _late(self._url, self._limits) from None
            raise DownloadFailed(f"Failed to download model from [{self._url}]: "
                                 f"{str(exc) or type(exc).__name__}") from None
        if self._watchdog.expired:  # the shut socket may read as an early end
            raise _late(self._url, self._limits)
        self.count += len(data)
        if self.count > self._limits.most:
            raise self._limits.too_large(self._url)
        if not data and self._announced is not None and self.count != self._announced:
            raise DownloadFailed(f"Failed to download model from [{self._url}]: the source ended after "
                                 f"{self.count} of the {self._announced} bytes it announced")
        self._check_rate(len(data))
        return data

    def _check_rate(self, got: int) -> None:
        self._window_bytes += got
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed < self._limits.socket_timeout:
            return
        if self._limits.min_rate and self._window_bytes < self._limits.min_rate * elapsed:
            raise DownloadFailed(
                f"the download of [{self._url}] is too slow: {self._window_bytes} bytes in the last "
                f"{elapsed:.1f} seconds, below mlcommons.model_store.url_min_bytes_per_second "
                f"({self._limits.min_rate})")
        self._window_start, self._window_bytes = now, 0


class _Watchdog:
    """Shuts the download's sockets when its deadline passes, wherever a read is blocked: a
    server trickling its headers holds http.client's own line reads, out of our loop's reach."""

    def __init__(self, seconds: float):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Watched:
    """An http.client connection whose sockets the watchdog can shut."""

    def __init__(self, *args, watchdog: _Watchdog, **kwargs):
        super().__init__(*args, **kwargs)
        create = self._create_connection

        def create_watched(*a, **kw):
            sock = create(*a, **kw)
            watchdog.watch(sock)
            return sock

        self._create_connection = create_watched


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self._watchdog = watchdog

    def http_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTP, watchdog=self._watchdog), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self._watchdog = watchdog

    def https_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTPS, watchdog=self._watchdog), req, context=self._context)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL that passes :func:`check` and stays on http(s)."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, policy: Policy):
        self._policy = policy

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # Closed now: urllib would otherwise read the redirect's whole body, however large.
        fp.close()
        try:
            check(newurl, self._policy)
            if urlsplit(newurl).scheme.lower() not in ("http", "https"):
                raise Refused("a redirect may only lead to an http or https URL")
        except Refused as exc:
            raise Refused(f"the redirect from [{req.full_url}] to [{newurl}] is refused: {exc}") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)
