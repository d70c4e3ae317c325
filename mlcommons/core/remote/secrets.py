"""Credentials at rest: each value encrypted with AES-256-GCM under a master key that never
lives in Redis beside them.

The master key is 32 random bytes, base64 in a file (``mlcommons.security.master_key_file``):
``mlcommons serve`` makes one in its data dir on first start and hands its path to every part;
processes started on their own are given the same file. A stored value reads
``mlc1:<key id>:<base64 nonce + ciphertext + tag>``; the key id (the first 12 hex digits of the
key's SHA-256) lets a process that holds a different key say which one it lacks. Decrypted
values exist only in memory, where a request's headers are built.
"""
from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mlcommons.errors import BadRequest, MLError

PREFIX = "mlc1"
KEY_BYTES = 32


class MissingKey(MLError):
    """This process cannot encrypt or decrypt credentials."""

    def __init__(self, reason: str):
        super().__init__(reason, status=500)


def create_key_file(path: Path) -> Path:
    """Make a master key file (0600) unless one is there already; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
    return path


class MasterKey:
    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise MissingKey(f"a master key must be {KEY_BYTES} bytes, base64-encoded")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:12]

    @classmethod
    def load(cls, path: str | Path) -> "MasterKey":
        try:
            key = base64.b64decode(Path(path).read_text().strip(), validate=True)
        except (OSError, ValueError) as exc:
            raise MissingKey(f"cannot read the master key file [{path}]: {exc}") from None
        return cls(key)

    def encrypt(self, value: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), self.key_id.encode())
        return f"{PREFIX}:{self.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, stored: str) -> str:
        try:
            prefix, key_id, payload = stored.split(":", 2)
        except ValueError:
            raise MissingKey("a stored credential is not in a known form") from None
        if prefix != PREFIX:
            raise MissingKey("a stored credential is not in a known form")
        if key_id != self.key_id:
            raise MissingKey(f"the credential was encrypted with master key [{key_id}]; this process holds "
                             f"master key [{self.key_id}]: give it the key file that [{key_id}] came from")
        raw = base64.b64decode(payload)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], key_id.encode()).decode()
        except InvalidTag:
            raise MissingKey(f"a credential under master key [{key_id}] failed its integrity check") from None

    def seal(self, credential: dict[str, str]) -> dict[str, str]:
        return {name: self.encrypt(value) for name, value in credential.items()}

    def open(self, sealed: dict[str, str]) -> dict[str, str]:
        return {name: self.decrypt(value) for name, value in sealed.items()}


def master_key(path: str) -> MasterKey:
    """The configured key; a clear refusal when there is none."""
    if not path:
        raise BadRequest("Credentials cannot be stored: no master key is configured. Set "
                         "mlcommons.security.master_key_file (mlcommons serve makes one in its data dir).")
    return MasterKey.load(path)
