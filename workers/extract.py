"""Extract a model archive (zip) without letting any entry escape its folder.

Every entry is checked before anything is written: its name (no absolute paths, drive letters,
backslashes, or ``..`` that climbs out), its type (no symlinks or other special files), the entry
count and the declared sizes. Then each file is streamed out with a byte budget counted while
copying, because a header's sizes are whatever the archive's author wrote. Files are created
exclusively (never overwritten, never through a link) with default permissions. If anything fails,
the destination is left as it was found: absent or empty.
"""
from __future__ import annotations

import re
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from mlcommons.errors import UnsafeArchive

_DRIVE = re.compile(r"^[A-Za-z]:")
_COPY_CHUNK = 1 << 20
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError)


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_total_bytes: int = 8 * 2**30,
    max_files: int = 10_000,
) -> list[Path]:
    """Extract the zip ``archive`` into ``dest`` (created; must be absent or empty).

    Returns the extracted files (not directories) in archive order. Raises
    :class:`~mlcommons.errors.UnsafeArchive` naming the offending entry when the archive is not a
    zip, has more than ``max_files`` entries, would unpack to more than ``max_total_bytes``, or
    holds an entry that is a symlink or would land outside ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise UnsafeArchive(f"{archive.name} is not a readable zip archive: {exc}") from exc
    with zf:
        plan = _plan(zf.infolist(), dest.resolve(), max_total_bytes=max_total_bytes, max_files=max_files)
        created = _prepare(dest)
        try:
            return _extract(zf, plan, dest, max_total_bytes)
        except BaseException:
            _clear(dest, remove_dest=created)
            raise


def _plan(
    infos: list[zipfile.ZipInfo], root: Path, *, max_total_bytes: int, max_files: int
) -> list[tuple[zipfile.ZipInfo, PurePosixPath | None]]:
    """Validate every entry up front; returns (entry, relative path or None for the root)."""
    if len(infos) > max_files:
        raise UnsafeArchive(f"the archive has {len(infos)} entries; at most {max_files} are allowed")
    declared = 0
    files: set[PurePosixPath] = set()
    dirs: set[PurePosixPath] = set()
    plan = []
    for info in infos:
        name = info.filename
        rel = _relative_path(name)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise UnsafeArchive(f"archive entry {name!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchive(f"archive entry {name!r} is a special file (mode {kind:o})")
        if info.flag_bits & 0x1:
            raise UnsafeArchive(f"archive entry {name!r} is encrypted")
        if rel is not None and not (root / rel).resolve().is_relative_to(root):
            raise UnsafeArchive(f"archive entry {name!r} resolves outside the destination")
        if info.is_dir():
            if rel is not None:
                dirs.add(rel)
        else:
            if rel is None:
                raise UnsafeArchive(f"archive entry {name!r} has no file name")
            if rel in files:
                raise UnsafeArchive(f"archive entry {name!r} appears more than once")
            files.add(rel)
            declared += info.file_size
            if declared > max_total_bytes:
                raise UnsafeArchive(
                    f"the archive declares more than {max_total_bytes} uncompressed bytes "
                    f"(reached at entry {name!r})"
                )
        plan.append((info, rel))
    for rel in files | dirs:
        inside_a_file = next((p for p in rel.parents if p in files), None)
        if inside_a_file is not None or (rel in files and rel in dirs):
            raise UnsafeArchive(f"archive entry {str(rel)!r} clashes with a file entry on its path")
    return plan


def _relative_path(name: str) -> PurePosixPath | None:
    """The entry's path inside dest, with ``.`` and non-escaping ``..`` resolved."""
    if not name or "\x00" in name:
        raise UnsafeArchive(f"archive entry {name!r} has an invalid name")
    if "\\" in name:
        raise UnsafeArchive(f"archive entry {name!r} contains a backslash")
    if name.startswith("/"):
        raise UnsafeArchive(f"archive entry {name!r} is an absolute path")
    if _DRIVE.match(name):
        raise UnsafeArchive(f"archive entry {name!r} starts with a drive letter")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeArchive(f"archive entry {name!r} escapes the destination with '..'")
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath(*parts) if parts else None


def _prepare(dest: Path) -> bool:
    """Create ``dest`` (True) or accept it empty (False)."""
    if dest.is_symlink():
        raise UnsafeArchive(f"the destination {dest} is a symbolic link")
    if dest.exists():
        if not dest.is_dir() or any(dest.iterdir()):
            raise UnsafeArchive(f"the destination {dest} exists and is not an empty folder")
        return False
    dest.mkdir(parents=True)
    return True


def _extract(zf: zipfile.ZipFile, plan, dest: Path, max_total_bytes: int) -> list[Path]:
    budget = _Budget(max_total_bytes)
    extracted: list[Path] = []
    for info, rel in plan:
        if rel is None:
            continue
        target = dest / rel
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            dst = open(target, "xb")
        except OSError as exc:
            raise UnsafeArchive(f"archive entry {info.filename!r} cannot be created: {exc}") from exc
        with dst:
            try:
                with zf.open(info) as src:
                    shutil.copyfileobj(_Counted(src, budget, info), dst, _COPY_CHUNK)
            except _READ_ERRORS as exc:
                raise UnsafeArchive(f"archive entry {info.filename!r} is corrupt: {exc}") from exc
        extracted.append(target)
    return extracted


class _Budget:
    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0


class _Counted:
    """A reader that counts what it hands out against the entry's declared size and the budget."""

    def __init__(self, src, budget: _Budget, info: zipfile.ZipInfo):
        self._src = src
        self._budget = budget
        self._info = info
        self._read = 0

    def read(self, n: int) -> bytes:  # shutil.copyfileobj always asks for a chunk size
        data = self._src.read(n)
        self._read += len(data)
        self._budget.used += len(data)
        if self._read > self._info.file_size:
            raise UnsafeArchive(
                f"archive entry {self._info.filename!r} is larger than its declared "
                f"{self._info.file_size} bytes"
            )
        if self._budget.used > self._budget.limit:
            raise UnsafeArchive(
                f"the archive unpacks to more than {self._budget.limit} bytes "
                f"(reached at entry {self._info.filename!r})"
            )
        return data


def _clear(dest: Path, *, remove_dest: bool) -> None:
    if remove_dest:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
