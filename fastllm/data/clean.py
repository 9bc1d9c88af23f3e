"""The clean stage, one task per group of input files: read -> normalize -> quality filters ->
blocklists -> decontamination -> PII redaction, in batches. Kept documents go to a Parquet part
(id, source, text, meta), quarantined records to a JSONL part, counts to the part's stats."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastllm.cli.config_io import build
from fastllm.data.blocklist import Blocklist
from fastllm.data.config import PrepareConfig
from fastllm.data.decontam import EvalIndex, load_eval_index
from fastllm.data.document import Document, Quarantined
from fastllm.data.markers import mark_part
from fastllm.data.normalize import Normalizer
from fastllm.data.pii import redact_many
from fastllm.data.quality import QualityFilter
from fastllm.data.readers import FileReader, ReaderOptions
from fastllm.data.stats import StageStats
from fastllm.utils.atomic import atomic_write

CLEAN_STAGES = ("read", "normalize", "quality", "blocklist", "decontam", "pii")


class Components:
    def __init__(self, config: PrepareConfig, threads: int):
        self.config = config
        self.normalizer = Normalizer(config.normalize)
        self.quality = QualityFilter(config.quality, num_threads=threads)
        self.blocklist = Blocklist(config.blocklist)
        self.eval_index: EvalIndex | None = load_eval_index(config.decontam)
        self.threads = threads


@functools.lru_cache(maxsize=2)
def _components(config_json: str, threads: int, stage_hash: str) -> Components:
    # The stage hash covers the contents of the blocklist and evaluation files, which the
    # config (their paths) does not: an edited file must not be served from this cache.
    return Components(build(PrepareConfig, json.loads(config_json), "config"), threads)


def _utf8_safe(text: str) -> str:
    # Lone surrogates (from JSON "\ud800" escapes) cannot be stored as UTF-8.
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


def _batches(items: Iterator[Document | Quarantined], size: int) -> Iterator[list[Document | Quarantined]]:
    batch: list[Document | Quarantined] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class CleanTask:
    def __init__(self, task: dict[str, Any]):
        self.task = task
        self.c = _components(task["config_json"], task["threads"], task["hash"])
        self.stats = {name: StageStats() for name in CLEAN_STAGES}
        self.quarantined: list[dict[str, Any]] = []

    def _items(self) -> Iterator[Document | Quarantined]:
        source = next(s for s in self.c.config.sources if s.name == self.task["source"])
        options = ReaderOptions(format=source.format, txt_mode=source.txt_mode, text_field=source.text_field,
                                id_field=source.id_field, url_field=source.url_field,
                                max_record_bytes=source.max_record_bytes)
        for path, display in self.task["files"]:
            yield from FileReader(Path(path), source.name, options, display=display)

    def run(self) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("id", pa.string()), ("source", pa.string()), ("text", pa.string()),
                            ("file", pa.string()), ("meta", pa.string())])
        out = Path(self.task["stage_dir"]) / f"{self.task['part']}.parquet"
        kept = 0
        with atomic_write(out, "wb") as handle, pq.ParquetWriter(handle, schema, compression="zstd") as writer:
            for batch in _batches(self._items(), self.task["batch_docs"]):
                docs = self._process(batch)
                kept += len(docs)
                writer.write_table(pa.table({
                    "id": [d.id for d in docs], "source": [d.source for d in docs], "text": [d.text for d in docs],
                    "file": [d.meta.get("file", "") for d in docs],
                    "meta": [json.dumps(d.meta, ensure_ascii=False) for d in docs]}, schema=schema))
        with atomic_write(out.with_suffix(".quarantine.jsonl"), "w", encoding="utf-8") as handle:
            for record in self.quarantined:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        result = {"part": self.task["part"], "source": self.task["source"], "docs": kept,
                  "stats": {name: s.to_json() for name, s in self.stats.items()}}
        mark_part(self.task["stage_dir"], self.task["hash"], self.task["part"], result)
        return result

    def _process(self, batch: list[Document | Quarantined]) -> list[Document]:
        docs = self._read(batch)
        docs = self._normalize(docs)
        docs = self._filter(docs, "quality", self.c.quality.reasons([d.text for d in docs]))
        if self.c.blocklist.active:
            docs = self._filter(docs, "blocklist", [self.c.blocklist.reason(d) for d in docs])
        else:
            docs = self._filter(docs, "blocklist", [None] * len(docs))
        docs = self._decontam(docs)
        return self._pii(docs)

    def _read(self, batch: list[Document | Quarantined]) -> list[Document]:
        st, docs = self.stats["read"], []
        for item in batch:
            if isinstance(item, Quarantined):
                st.seen(item.source, item.nbytes)
                st.dropped(item.source, f"quarantined:{item.reason}", item.nbytes)
                self.quarantined.append(item.to_json())
                continue
            item.text = _utf8_safe(item.text)
            n = item.nbytes
            st.seen(item.source, n)
            st.kept(item.source, n)
            docs.append(item)
        return docs

    def _normalize(self, docs: list[Document]) -> list[Document]:
        st, out = self.stats["normalize"], []
        for d, text in zip(docs, self.c.normalizer.normalize_many([d.text for d in docs])):
            st.seen(d.source, d.nbytes)
            d.text = text
            n = d.nbytes
            if not d.text.strip():
                st.dropped(d.source, "empty", n)
                continue
            st.kept(d.source, n)
            out.append(d)
        return out

    def _filter(self, docs: list[Document], stage: str, reasons: list[str | None]) -> list[Document]:
        st, out = self.stats[stage], []
        for d, reason in zip(docs, reasons):
            n = d.nbytes
            st.seen(d.source, n)
            if reason is None:
                st.kept(d.source, n)
                out.append(d)
            else:
                st.dropped(d.source, reason, n)
        return out

    def _decontam(self, docs: list[Document]) -> list[Document]:
        index, config = self.c.eval_index, self.c.config.decontam
        if index is None or not docs:
            return self._filter(docs, "decontam", [None] * len(docs))
        counts, masks = index.match([d.text for d in docs], self.c.threads)
        st = self.stats["decontam"]
        for count, mask in zip(counts, masks):
            for name in index.set_names(int(mask)) if count else ():
                st.count("docs_matched_per_eval_set", name)
        if config.mode == "drop":
            return self._filter(docs, "decontam", ["contaminated" if c else None for c in counts])
        out = []
        for d, count in zip(docs, counts):
            st.seen(d.source, d.nbytes)
            if count:
                d.text = index.redact(d.text, config.placeholder)
                st.count("docs_redacted", d.source)
            if not d.text.strip():
                st.dropped(d.source, "empty_after_redaction", d.nbytes)
                continue
            st.kept(d.source, d.nbytes)
            out.append(d)
        return out

    def _pii(self, docs: list[Document]) -> list[Document]:
        st, config = self.stats["pii"], self.c.config.pii
        redacted = redact_many([d.text for d in docs], config.types) if config.enabled else [None] * len(docs)
        for d, result in zip(docs, redacted):
            st.seen(d.source, d.nbytes)
            if result is not None:
                d.text, counts = result
                for pii_type, n in counts.items():
                    st.count(f"redactions:{d.source}", pii_type, n)
            st.kept(d.source, d.nbytes)
        return docs


def clean_task(task: dict[str, Any]) -> dict[str, Any]:
    """Executor entry point (module-level, so process pools and Ray can call it)."""
    return CleanTask(task).run()
