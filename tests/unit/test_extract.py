"""safe_extract and StreamExtractor: every hostile archive is refused with the entry named, and
leaves dest empty. Each test runs twice: extracting from the file, and streaming the archive's
bytes in small pieces as a deploy does (workers/fetch.py), falling back to the file where the
stream refuses, as a deploy does; the hostile cases then check that the stream itself refused
(and wrote nothing outside dest), and the good ones that it needed no fallback."""
from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path

import pytest

from mlcommons.errors import UnsafeArchive
from workers import extract as extraction
from workers.extract import MAX_RATIO, RATIO_SLACK, NotStreamable, StreamExtractor

WAY = {"way": "file", "fell_back": None}


@pytest.fixture(autouse=True, params=["file", "stream"])
def way(request):
    WAY.update(way=request.param, fell_back=None)
    yield request.param


def streamed(archive: Path, dest: Path, piece: int = 7, **kw) -> list[Path]:
    """Feed the archive to a StreamExtractor ``piece`` bytes at a time; raises what it raises."""
    data = Path(archive).read_bytes()
    out = StreamExtractor(dest, len(data), **kw)
    for start in range(0, len(data), piece):
        out.write(data[start:start + piece])
    return out.finish()


def safe_extract(archive: Path, dest: Path, **kw) -> list[Path]:
    if WAY["way"] == "file":
        return extraction.safe_extract(archive, dest, **kw)
    try:
        files = streamed(archive, dest, **kw)
        WAY["fell_back"] = False
        return files
    except (NotStreamable, UnsafeArchive) as exc:
        if isinstance(exc, UnsafeArchive) and "not an empty folder" in str(exc):
            raise
        assert_nothing_left(dest)
        WAY["fell_back"] = exc
        return extraction.safe_extract(archive, dest, **kw)


def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]], **kw) -> Path:
    with zipfile.ZipFile(path, "w", **kw) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def assert_nothing_left(dest: Path) -> None:
    assert not dest.exists() or list(dest.iterdir()) == []


def refuse(archive: Path, dest: Path, match: str, **kw) -> UnsafeArchive:
    with pytest.raises(UnsafeArchive, match=match) as info:
        safe_extract(archive, dest, **kw)
    assert_nothing_left(dest)
    assert WAY["way"] == "file" or WAY["fell_back"], "the stream extracted what the file refuses"
    return info.value


def test_good_archive_with_nested_folders(tmp_path):
    archive = make_zip(
        tmp_path / "m.zip",
        [
            ("model.pt", b"weights"),
            ("conf/", b""),
            ("conf/tokenizer.json", b"{}"),
            ("a/b/c/deep.txt", b"deep"),
            ("./dot.txt", b"dot"),
            ("x/../back.txt", b"back"),
        ],
        compression=zipfile.ZIP_DEFLATED,
    )
    dest = tmp_path / "out" / "model"
    files = safe_extract(archive, dest)
    assert files == [
        dest / "model.pt",
        dest / "conf" / "tokenizer.json",
        dest / "a" / "b" / "c" / "deep.txt",
        dest / "dot.txt",
        dest / "back.txt",
    ]
    assert (dest / "a/b/c/deep.txt").read_bytes() == b"deep"
    assert (dest / "model.pt").read_bytes() == b"weights"
    assert (dest / "conf").is_dir() and not (dest / "x").exists()


def test_existing_empty_dest_is_fine_and_stays_after_a_failure(tmp_path):
    good = make_zip(tmp_path / "good.zip", [("a.txt", b"a")])
    dest = tmp_path / "dest"
    dest.mkdir()
    assert safe_extract(good, dest) == [dest / "a.txt"]

    other = tmp_path / "other"
    other.mkdir()
    bad = make_zip(tmp_path / "bad.zip", [("fine.txt", b"x"), ("../evil.txt", b"x")])
    refuse(bad, other, "evil.txt")
    assert other.is_dir()


def test_non_empty_dest_is_refused_and_untouched(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    archive = make_zip(tmp_path / "m.zip", [("a.txt", b"a")])
    with pytest.raises(UnsafeArchive, match="not an empty folder"):
        safe_extract(archive, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "a/b/../../../evil.txt", ".."])
def test_zip_slip_with_dotdot(tmp_path, name):
    archive = make_zip(tmp_path / "m.zip", [("ok.txt", b"ok"), (name, b"evil")])
    dest = tmp_path / "sub" / "dest"
    err = refuse(archive, dest, "escapes")
    assert repr(name) in str(err)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "sub" / "evil.txt").exists()


@pytest.mark.parametrize(
    "name, reason",
    [
        ("/tmp/evil.txt", "absolute"),
        ("//server/share/evil.txt", "absolute"),
        ("C:/evil.txt", "drive letter"),
        ("c:evil.txt", "drive letter"),
        ("..\\evil.txt", "backslash"),
        ("a\\..\\..\\evil.txt", "backslash"),
    ],
)
def test_absolute_drive_and_backslash_names(tmp_path, name, reason):
    archive = make_zip(tmp_path / "m.zip", [("ok.txt", b"ok"), (name, b"evil")])
    err = refuse(archive, tmp_path / "dest", reason)
    assert repr(name) in str(err)


def test_symlink_entry(tmp_path):
    link = zipfile.ZipInfo("link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "m.zip", [("ok.txt", b"ok"), (link, b"/etc/passwd")])
    refuse(archive, tmp_path / "dest", "'link' is a symbolic link")


def test_symlink_then_write_through_it(tmp_path):
    link = zipfile.ZipInfo("d")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "m.zip", [(link, str(tmp_path).encode()), ("d/evil.txt", b"x")])
    refuse(archive, tmp_path / "dest", "symbolic link")
    assert not (tmp_path / "evil.txt").exists()


def _set_declared_size(archive: Path, name: str, size: int) -> None:
    """Rewrite the uncompressed size of ``name`` in its local header and central directory."""
    with zipfile.ZipFile(archive) as zf:
        offset = zf.getinfo(name).header_offset
    data = bytearray(archive.read_bytes())
    struct.pack_into("<I", data, offset + 22, size)
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + name_len] == name.encode():
            struct.pack_into("<I", data, pos + 24, size)
        pos = data.find(b"PK\x01\x02", pos + 4)
    archive.write_bytes(data)


def test_zip_bomb_declared_small_but_large_when_read(tmp_path):
    archive = make_zip(
        tmp_path / "bomb.zip",
        [("tokenizer.json", b"{}"), ("weights.bin", bytes(4 * 2**20))],
        compression=zipfile.ZIP_DEFLATED,
    )
    _set_declared_size(archive, "weights.bin", 100)
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("weights.bin").file_size == 100
    assert archive.stat().st_size < 64 * 1024
    refuse(archive, tmp_path / "dest", "weights.bin", max_total_bytes=2**20)


def test_declared_total_above_the_limit(tmp_path):
    archive = make_zip(tmp_path / "m.zip", [("a.bin", bytes(600)), ("b.bin", bytes(600))])
    refuse(archive, tmp_path / "dest", "'b.bin'", max_total_bytes=1000)
    assert safe_extract(archive, tmp_path / "ok", max_total_bytes=1200)


def test_too_many_files(tmp_path):
    archive = make_zip(tmp_path / "m.zip", [(f"f{i}.txt", b"x") for i in range(6)])
    refuse(archive, tmp_path / "dest", "6 entries", max_files=5)
    assert len(safe_extract(archive, tmp_path / "ok", max_files=6)) == 6


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + bytes(100)])
def test_non_zip_input(tmp_path, content):
    archive = tmp_path / "model.zip"
    archive.write_bytes(content)
    refuse(archive, tmp_path / "dest", "not a readable zip")


def test_truncated_zip(tmp_path):
    archive = make_zip(tmp_path / "m.zip", [("a.bin", bytes(range(256)) * 64)])
    archive.write_bytes(archive.read_bytes()[:-30])
    refuse(archive, tmp_path / "dest", "zip")


def test_corrupt_member_data_leaves_nothing(tmp_path):
    archive = make_zip(tmp_path / "m.zip", [("first.txt", b"fine"), ("second.bin", b"abcdefgh" * 512)])
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("second.bin")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(archive.read_bytes())
    data[start + 10] ^= 0xFF
    archive.write_bytes(data)
    refuse(archive, tmp_path / "dest", "'second.bin' is corrupt")


def test_duplicate_entries(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive = make_zip(tmp_path / "m.zip", [("a.txt", b"1"), ("a.txt", b"2")])
    refuse(archive, tmp_path / "dest", "more than once")


def test_file_and_folder_with_the_same_path(tmp_path):
    archive = make_zip(tmp_path / "m.zip", [("a", b"file"), ("a/b.txt", b"inside")])
    refuse(archive, tmp_path / "dest", "'a/b.txt'")


# --- compression ratio: what an archive may unpack to is bound by its own size ------------------

def test_a_bomb_that_declares_its_true_size_is_refused_before_writing(tmp_path):
    """The 2.2 MB zip that wrote 2.13 GB: honest headers, a ratio near 1000:1."""
    archive = make_zip(tmp_path / "bomb.zip", [("config.json", b"{}"), ("weights.bin", bytes(16 * 2**20))],
                       compression=zipfile.ZIP_DEFLATED)
    err = refuse(archive, tmp_path / "dest", "'weights.bin' unpacks to 16777216 bytes")
    assert f"above {MAX_RATIO}:1" in str(err)


def test_a_bomb_that_declares_a_size_within_the_ratio_is_stopped_while_writing(tmp_path):
    """Headers that claim a ratio of 100:1 pass the plan; the bytes actually unpacked are held to
    the declared size (zipfile stops there and the CRC fails; the counter would stop it too)."""
    archive = make_zip(tmp_path / "bomb.zip", [("weights.bin", bytes(16 * 2**20))],
                       compression=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(archive) as zf:
        claimed = MAX_RATIO * zf.getinfo("weights.bin").compress_size
    _set_declared_size(archive, "weights.bin", claimed)
    refuse(archive, tmp_path / "dest", f"'weights.bin' is (corrupt|larger than its declared {claimed} bytes)")


def test_many_small_bombs_pass_one_by_one_but_not_together(tmp_path):
    """Each entry stays within its own ratio (thanks to the slack); together they pass the
    archive's budget, which is refused at the entry that crosses it."""
    entries = [(f"part{i}.bin", bytes(RATIO_SLACK)) for i in range(4)]
    archive = make_zip(tmp_path / "parts.zip", entries, compression=zipfile.ZIP_DEFLATED)
    size = archive.stat().st_size
    assert MAX_RATIO * size + RATIO_SLACK < 4 * RATIO_SLACK
    err = refuse(archive, tmp_path / "dest", f"{MAX_RATIO} times the archive's {size} bytes")
    assert "'part" in str(err)


def test_an_archive_within_the_ratio_extracts(tmp_path):
    """Text compresses a few times, stored weights not at all: a real model's archive unpacks."""
    import random

    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(3000)]
    vocab = b"\n".join(rng.choices(words, k=400_000))
    weights = rng.randbytes(3 * 2**20)
    archive = make_zip(tmp_path / "m.zip", [("vocab.txt", vocab), ("model.pt", weights)],
                       compression=zipfile.ZIP_DEFLATED)
    files = safe_extract(archive, tmp_path / "dest")
    assert [f.name for f in files] == ["vocab.txt", "model.pt"]
    assert (tmp_path / "dest" / "vocab.txt").read_bytes() == vocab


# --- the stream itself ------------------------------------------------------------------------

@pytest.mark.parametrize("piece", [1, 5, 30, 64 * 1024, 1 << 30])
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_the_stream_extracts_what_the_file_does_whatever_the_pieces(tmp_path, piece, compression):
    import random

    rng = random.Random(piece)
    entries = [("model.pt", rng.randbytes(200_000)), ("conf/", b""), ("conf/tokenizer.json", b'{"a": 1}' * 500),
               ("empty.txt", b""), ("1_Pooling/config.json", b"{}")]
    archive = make_zip(tmp_path / "m.zip", entries, compression=compression)
    files = streamed(archive, tmp_path / "s" / "model", piece=piece)
    expect = extraction.safe_extract(archive, tmp_path / "f" / "model")
    assert [f.relative_to(tmp_path / "s") for f in files] == [f.relative_to(tmp_path / "f") for f in expect]
    for f in expect:
        assert (tmp_path / "s" / f.relative_to(tmp_path / "f")).read_bytes() == f.read_bytes()


def test_a_model_archive_streams_without_falling_back(tmp_path, way):
    """What our exporter writes (stored entries; tests/modelkit.py's tiny archive) needs no file."""
    from tests.modelkit import tiny_archive

    zip_path, _ = tiny_archive(tmp_path / "tiny")
    safe_extract(zip_path, tmp_path / "out")
    assert way == "file" or WAY["fell_back"] is False


def test_a_central_directory_that_disagrees_with_the_entries_is_not_trusted(tmp_path):
    """The stream reads local headers; zipfile reads the central directory. An archive whose two
    differ (a name swapped at the end) is handed to the file extraction, not half-trusted."""
    archive = make_zip(tmp_path / "m.zip", [("a.txt", b"a"), ("b.txt", b"b")])
    data = bytearray(archive.read_bytes())
    central = data.find(b"PK\x01\x02")
    pos = data.find(b"b.txt", central)
    data[pos:pos + 5] = b"c.txt"
    archive.write_bytes(data)
    with pytest.raises(NotStreamable, match="disagrees"):
        streamed(archive, tmp_path / "dest")
    assert_nothing_left(tmp_path / "dest")


def test_a_data_descriptor_archive_is_not_streamed(tmp_path):
    """Sizes after the data (written to a pipe) cannot be streamed safely: the file way takes it."""
    import io

    class Unseekable(io.RawIOBase):
        def __init__(self):
            self.buf = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.buf += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.txt", b"hello" * 100)
    archive = tmp_path / "m.zip"
    archive.write_bytes(bytes(sink.buf))
    with pytest.raises(NotStreamable, match="random access"):
        streamed(archive, tmp_path / "dest")
    assert_nothing_left(tmp_path / "dest")
    assert (safe_extract(archive, tmp_path / "ok")[0]).read_bytes() == b"hello" * 100
