"""The node-local model cache: extracted model folders kept on disk after a checked download,
keyed by the archive's SHA-256, so that a redeploy of the same bytes (a restart, an undeploy and
deploy, a second deployment of one model) skips the download, the hash and the extraction.

An entry is ``<cache>/<sha256>/model`` plus a ``ready`` marker written last; a folder without the
marker is a crash's leftover and is removed. Entries are only ever created from an archive whose
size and SHA-256 matched the registered values. The least recently used entries go when the
cache grows past its byte limit (``mlcommons.node.model_cache_bytes``; 0 turns the cache off).
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
READY = "ready"


def folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class ModelCache:
    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        if self.enabled:
            self.root.mkdir(parents=True, exist_ok=True)
            for entry in self.root.iterdir():
                if not (entry / READY).exists():
                    shutil.rmtree(entry, ignore_errors=True)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def get(self, sha256: str) -> Path | None:
        """The cached model folder for an archive, or None; a hit counts as a use."""
        if not self.enabled or not _SHA256.match(sha256 or ""):
            return None
        entry = self.root / sha256
        marker = entry / READY
        if not marker.exists():
            return None
        os.utime(marker)
        return entry / "model"

    def put(self, sha256: str, extracted: Path) -> Path | None:
        """Move a checked, extracted model folder into the cache; returns its new place, or None
        when the cache is off or the model alone is bigger than the cache (``extracted`` is then
        left where it is)."""
        if not self.enabled or not _SHA256.match(sha256 or ""):
            return None
        size = folder_size(extracted)
        if size > self.max_bytes:
            return None
        with self._lock:
            entry = self.root / sha256
            if (entry / READY).exists():
                return entry / "model"
            shutil.rmtree(entry, ignore_errors=True)
            entry.mkdir(parents=True)
            os.replace(extracted, entry / "model")
            (entry / READY).write_text(f"{size}\n")
            self._evict(keep=sha256)
            return entry / "model"

    def drop(self, sha256: str) -> None:
        if self.enabled and _SHA256.match(sha256 or ""):
            with self._lock:
                entry = self.root / sha256
                (entry / READY).unlink(missing_ok=True)
                shutil.rmtree(entry, ignore_errors=True)

    def _evict(self, keep: str) -> None:
        entries = []
        for entry in self.root.iterdir():
            marker = entry / READY
            try:
                size = int(marker.read_text().strip() or 0)
                used = marker.stat().st_mtime
            except (OSError, ValueError):
                continue
            entries.append((used, entry, size))
        total = sum(size for _, _, size in entries)
        for used, entry, size in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if entry.name == keep:
                continue
            (entry / READY).unlink(missing_ok=True)
            shutil.rmtree(entry, ignore_errors=True)
            total -= size

    def entries(self) -> list[str]:
        if not self.enabled:
            return []
        return sorted(e.name for e in self.root.iterdir() if (e / READY).exists())


