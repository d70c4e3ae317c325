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
import struct
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
    checker = _Checker(root, bounds, max_files)
    plan = []
    for info in infos:
        _check_kind(info)
        plan.append((info, checker.add(info)))
    checker.finish()
    return plan


def _check_kind(info: zipfile.ZipInfo) -> None:
    """No symlinks, special files or encrypted entries (the type is in the central directory)."""
    name = info.filename
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise UnsafeArchive(f"archive entry {name!r} is a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchive(f"archive entry {name!r} is a special file (mode {kind:o})")
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"archive entry {name!r} is encrypted")


class _Checker:
    """The rules every entry meets before it is written, one entry at a time: its path stays in
    the root and is new, the entry count, and its declared size within the ratio and in all."""

    def __init__(self, root: Path, bounds: _Bounds, max_files: int):
        self.root, self.bounds, self.max_files = root, bounds, max_files
        self.count = 0
        self.declared = 0
        self.files: set[PurePosixPath] = set()
        self.dirs: set[PurePosixPath] = set()

    def add(self, info: zipfile.ZipInfo) -> PurePosixPath | None:
        name = info.filename
        self.count += 1
        if self.count > self.max_files:
            raise UnsafeArchive(f"the archive has more than {self.max_files} entries; at most {self.max_files} "
                                "are allowed")
        if info.flag_bits & 0x1:
            raise UnsafeArchive(f"archive entry {name!r} is encrypted")
        rel = _relative_path(name)
        if rel is not None and not (self.root / rel).resolve().is_relative_to(self.root):
            raise UnsafeArchive(f"archive entry {name!r} resolves outside the destination")
        if info.is_dir():
            if rel is not None:
                self.dirs.add(rel)
            return rel
        if rel is None:
            raise UnsafeArchive(f"archive entry {name!r} has no file name")
        if rel in self.files:
            raise UnsafeArchive(f"archive entry {name!r} appears more than once")
        self.files.add(rel)
        if info.file_size > self.bounds.entry(info):
            raise self.bounds.entry_error(info)
        self.declared += info.file_size
        if self.declared > self.bounds.total:
            raise UnsafeArchive(
                f"the archive declares more than {self.bounds.total} uncompressed bytes, "
                f"{self.bounds.total_reason()} (reached at entry {name!r})"
            )
        return rel

    def finish(self) -> None:
        for rel in self.files | self.dirs:
            inside_a_file = next((p for p in rel.parents if p in self.files), None)
            if inside_a_file is not None or (rel in self.files and rel in self.dirs):
                raise UnsafeArchive(f"archive entry {str(rel)!r} clashes with a file entry on its path")


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


# --- extracting while the bytes arrive ------------------------------------------------------

class NotStreamable(Exception):
    """The archive cannot be extracted in one pass (a data descriptor, zip64, a method other than
    stored or deflate, bytes before the first entry, or a central directory that disagrees with
    the entries): extract it from a file with :func:`safe_extract` instead."""


_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_END = b"PK\x05\x06"
_LOCAL_HEAD = struct.Struct("<4sHHHHHIIIHH")               # 30 bytes
_CENTRAL_HEAD = struct.Struct("<4sHHHHHHIIIHHHHHII")       # 46 bytes
_END_HEAD = struct.Struct("<4sHHHHIIH")                    # 22 bytes
_TRAILER_MAX = 16 << 20  # the central directory of a model archive is a few kilobytes
_INFLATE_STEP = 1 << 20  # at most this much inflated output per call: a bomb is caught in steps


class StreamExtractor:
    """Extract a zip archive whose bytes arrive in order (``write``), as a deploy reads its chunks
    from the model store, so that the extraction overlaps the reading and no temporary copy of the
    archive is written. The same rules as :func:`safe_extract` hold for every entry before a byte
    of it is written (names, count, declared sizes and the compression-ratio bound, counted again
    while writing), each entry's CRC-32 and size are checked, and :meth:`finish` checks the
    central directory against what was extracted: same entries, same sizes and CRCs, at the
    offsets where they were read; no symlinks or special files. Anything the one pass cannot
    vouch for raises :class:`NotStreamable`; anything unsafe raises ``UnsafeArchive``. Either way
    ``dest`` is left as it was found. ``archive_size`` is the registered size, which the caller
    checks against what it read."""

    def __init__(self, dest: Path, archive_size: int, *, max_total_bytes: int = 8 * 2**30,
                 max_files: int = 10_000):
        self.dest = Path(dest)
        self._created = _prepare(self.dest)
        self._bounds = _Bounds(archive_size, max_total_bytes)
        self._checker = _Checker(self.dest.resolve(), self._bounds, max_files)
        self._budget = _Budget(self._bounds)
        self._pending = bytearray()  # bytes of a header not complete yet, or the trailer
        self._offset = 0             # of the first byte in _pending, in the archive
        self._entries: list[tuple[int, zipfile.ZipInfo]] = []  # (local header offset, entry)
        self._files: list[Path] = []
        self._entry: zipfile.ZipInfo | None = None  # the entry whose data is arriving
        self._out = None
        self._left = 0               # its compressed bytes still to come
        self._crc = 0
        self._written = 0
        self._inflate = None
        self._in_trailer = False
        self._failed = False

    # -- the stream --
    def write(self, data) -> int:
        if self._failed:
            raise NotStreamable("the extraction already failed")
        try:
            self._feed(memoryview(data))
        except BaseException:
            self.abort()
            raise
        return len(data)

    def finish(self) -> list[Path]:
        """Check the central directory; returns the extracted files in archive order."""
        try:
            if self._failed:
                raise NotStreamable("the extraction already failed")
            if self._entry is not None or not self._in_trailer:
                raise NotStreamable("the archive ends inside an entry")
            self._check_central_directory(bytes(self._pending))
            self._checker.finish()
        except BaseException:
            self.abort()
            raise
        return list(self._files)

    def abort(self) -> None:
        self._failed = True
        if self._out is not None:
            self._out.close()
            self._out = None
        _clear(self.dest, remove_dest=self._created)

    def _feed(self, view: memoryview) -> None:
        while len(view):
            if self._entry is not None:
                view = self._data(view)
            elif self._in_trailer:
                if len(self._pending) + len(view) > _TRAILER_MAX:
                    raise NotStreamable("the central directory is larger than a model archive's")
                self._pending += view
                return
            else:
                view = self._header(view)

    def _header_size(self) -> int:
        """How many bytes of ``_pending`` the header that starts it needs (decided step by step:
        the signature, the fixed part, then its name and extra field)."""
        if len(self._pending) < 4 or self._pending[:4] != _LOCAL:
            return 4
        if len(self._pending) < _LOCAL_HEAD.size:
            return _LOCAL_HEAD.size
        name_len, extra_len = struct.unpack_from("<HH", self._pending, 26)
        return _LOCAL_HEAD.size + name_len + extra_len

    def _header(self, view: memoryview) -> memoryview:
        while len(self._pending) < (want := self._header_size()):
            if not len(view):
                return view
            take = want - len(self._pending)
            self._pending += view[:take]
            view = view[take:]
        if self._pending[:4] != _LOCAL:
            if not self._entries:
                raise NotStreamable("the archive does not begin with an entry")
            self._in_trailer = True  # the central directory, checked by finish()
            return view
        (_, _, flags, method, _, _, crc, csize, usize, name_len, _) = _LOCAL_HEAD.unpack_from(self._pending)
        raw_name = bytes(self._pending[_LOCAL_HEAD.size:_LOCAL_HEAD.size + name_len])
        if flags & 0x8 or method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) \
                or 0xFFFFFFFF in (csize, usize):
            raise NotStreamable(f"entry {raw_name!r} needs random access (flags {flags:#x}, method {method})")
        info = zipfile.ZipInfo(raw_name.decode("utf-8" if flags & 0x800 else "cp437"))
        info.flag_bits, info.compress_type, info.CRC = flags, method, crc
        info.compress_size, info.file_size = csize, usize
        rel = self._checker.add(info)
        self._entries.append((self._offset, info))
        self._offset += len(self._pending)
        self._pending.clear()
        self._open(info, rel)
        return view

    def _open(self, info: zipfile.ZipInfo, rel: PurePosixPath | None) -> None:
        target = None if rel is None else self.dest / rel
        try:
            if info.is_dir():
                if target is not None:
                    target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._out = open(target, "xb")
                self._files.append(target)
        except OSError as exc:
            raise UnsafeArchive(f"archive entry {info.filename!r} cannot be created: {exc}") from exc
        # A folder's data (a deflated empty stream) passes through the same checks, unwritten.
        self._entry, self._left, self._crc, self._written = info, info.compress_size, 0, 0
        self._inflate = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        if not self._left:
            self._end_entry()

    def _data(self, view: memoryview) -> memoryview:
        piece, view = view[:self._left], view[self._left:]
        self._left -= len(piece)
        self._offset += len(piece)
        if self._inflate is None:
            self._emit(piece)
        else:
            try:
                data = piece
                while data:
                    self._emit(self._inflate.decompress(data, _INFLATE_STEP))
                    data = self._inflate.unconsumed_tail
            except zlib.error as exc:
                raise UnsafeArchive(f"archive entry {self._entry.filename!r} is corrupt: {exc}") from exc
        if not self._left:
            self._end_entry()
        return view

    def _emit(self, data) -> None:
        info = self._entry
        self._written += len(data)
        self._budget.used += len(data)
        if self._written > info.file_size:
            raise UnsafeArchive(f"archive entry {info.filename!r} is larger than its declared {info.file_size} bytes")
        if self._budget.used > self._bounds.total:
            raise UnsafeArchive(f"the archive unpacks to more than {self._bounds.total} bytes, "
                                f"{self._bounds.total_reason()} (reached at entry {info.filename!r})")
        self._crc = zlib.crc32(data, self._crc)
        if self._out is not None:
            self._out.write(data)

    def _end_entry(self) -> None:
        info = self._entry
        while self._inflate is not None and not self._inflate.eof:  # output zlib still holds
            rest = self._inflate.decompress(b"", _INFLATE_STEP)
            if not rest:
                break
            self._emit(rest)
        if self._inflate is not None and not self._inflate.eof:
            raise UnsafeArchive(f"archive entry {info.filename!r} is corrupt: its deflate stream is incomplete")
        if self._written != info.file_size or self._crc != info.CRC:
            raise UnsafeArchive(f"archive entry {info.filename!r} is corrupt: bad size or CRC-32")
        if self._out is not None:
            self._out.close()
        self._out, self._entry, self._inflate = None, None, None

    # -- the end --
    def _check_central_directory(self, trailer: bytes) -> None:
        pos = 0
        for offset, local in self._entries:
            if trailer[pos:pos + 4] != _CENTRAL or len(trailer) < pos + _CENTRAL_HEAD.size:
                raise NotStreamable("the central directory lists fewer entries than the archive holds")
            (_, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len, _, _,
             external, at) = _CENTRAL_HEAD.unpack_from(trailer, pos)
            name = trailer[pos + _CENTRAL_HEAD.size:pos + _CENTRAL_HEAD.size + name_len]
            pos += _CENTRAL_HEAD.size + name_len + extra_len + comment_len
            info = zipfile.ZipInfo(name.decode("utf-8" if flags & 0x800 else "cp437"))
            info.external_attr, info.flag_bits = external, flags
            _check_kind(info)
            if (info.filename, crc, csize, usize, method, at) != (
                    local.filename, local.CRC, local.compress_size, local.file_size, local.compress_type, offset):
                raise NotStreamable(f"the central directory disagrees with entry {local.filename!r}")
        if trailer[pos:pos + 4] != _END or len(trailer) < pos + _END_HEAD.size:
            raise NotStreamable("no end of central directory after the entries")
        (_, disk, _, _, count, _, _, comment_len) = _END_HEAD.unpack_from(trailer, pos)
        if disk or count != len(self._entries) or len(trailer) != pos + _END_HEAD.size + comment_len:
            raise NotStreamable("the end of the central directory does not match the entries")
