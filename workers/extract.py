"""Extract a model archive (zip) without letting any entry escape its folder.

Every entry is checked before anything is written: its name (no absolute paths, drive letters,
backslashes, or ``..`` that climbs out), its type (no symlinks or other special files), the entry
count and the declared sizes. Then each file is streamed out with a byte budget counted while
copying, because a header's sizes are whatever the archive's author wrote. Files are created
exclusively (never overwritten, never through a link) with default permissions. If anything fails,
the destination is left as it was found: absent or empty.

The budget is tied to the archive's own size, which the node has checked against the registered
size and SHA-256: no entry may unpack to more than :data:`MAX_RATIO` times its compressed bytes,
nor the whole archive to more than :data:`MAX_RATIO` times its size (each plus
:data:`RATIO_SLACK`), whatever the headers declare, and never past ``max_total_bytes``. Model
archives hold weights (float tensors compress about 1.1:1), tokenizer and vocabulary files (3-5:1)
and small configs; deflate reaches about 1000:1 on a run of one byte, which is what a zip bomb is
made of. 100:1 passes real models by far and holds a bomb to a hundred times its download.
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
MAX_RATIO = 100
# Small files may be more compressible than any weights (a padded config): the ratio binds past this.
RATIO_SLACK = 1 << 20


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
    zip, has more than ``max_files`` entries, would unpack to more than ``max_total_bytes`` or
    past the compression ratio bound, or holds an entry that is a symlink or would land outside
    ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise UnsafeArchive(f"{archive.name} is not a readable zip archive: {exc}") from exc
    with zf:
        bounds = _Bounds(archive.stat().st_size, max_total_bytes)
        plan = _plan(zf.infolist(), dest.resolve(), bounds=bounds, max_files=max_files)
        created = _prepare(dest)
        try:
            return _extract(zf, plan, dest, bounds)
        except BaseException:
            _clear(dest, remove_dest=created)
            raise


class _Bounds:
    """How much the archive may unpack to: in all, and per entry from its compressed size (the
    header's, but never more than the whole archive)."""

    def __init__(self, archive_size: int, max_total_bytes: int):
        self.archive_size = archive_size
        self.total = min(max_total_bytes, MAX_RATIO * archive_size + RATIO_SLACK)
        self.by_ratio = self.total < max_total_bytes

    def entry(self, info: zipfile.ZipInfo) -> int:
        return MAX_RATIO * min(info.compress_size, self.archive_size) + RATIO_SLACK

    def entry_error(self, info: zipfile.ZipInfo) -> UnsafeArchive:
        return UnsafeArchive(
            f"archive entry {info.filename!r} unpacks to {info.file_size} bytes from "
            f"{info.compress_size} compressed bytes: more than {self.entry(info)} (a compression ratio "
            f"above {MAX_RATIO}:1)")

    def total_reason(self) -> str:
        if self.by_ratio:
            return f"{MAX_RATIO} times the archive's {self.archive_size} bytes"
        return "the most a model may unpack to"


def _plan(
    infos: list[zipfile.ZipInfo], root: Path, *, bounds: _Bounds, max_files: int
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
            if info.file_size > bounds.entry(info):
                raise bounds.entry_error(info)
            declared += info.file_size
            if declared > bounds.total:
                raise UnsafeArchive(
                    f"the archive declares more than {bounds.total} uncompressed bytes, "
                    f"{bounds.total_reason()} (reached at entry {name!r})"
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


def _extract(zf: zipfile.ZipFile, plan, dest: Path, bounds: _Bounds) -> list[Path]:
    budget = _Budget(bounds)
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
    def __init__(self, bounds: _Bounds):
        self.bounds = bounds
        self.used = 0


class _Counted:
    """A reader that counts what it hands out against the entry's declared size (which the plan
    held to the ratio bound) and the archive's budget, so a lying header is caught by the read
    that crosses it."""

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
        bounds = self._budget.bounds
        if self._budget.used > bounds.total:
            raise UnsafeArchive(
                f"the archive unpacks to more than {bounds.total} bytes, {bounds.total_reason()} "
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
