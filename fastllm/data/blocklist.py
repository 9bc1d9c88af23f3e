"""Sensitive-content blocklists from user files: URL domains (a document whose URL, or a URL in its
text, is on a listed domain or a subdomain of one) and words or phrases (whole-word,
case-insensitive; a document with at least `min_word_hits` occurrences is dropped)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastllm.data.document import Document
from fastllm.data.readers import read_list_file


@dataclass
class BlocklistConfig:
    domains_file: str | None = field(default=None, metadata={"help": "file of blocked domains, one per line"})
    words_file: str | None = field(default=None, metadata={"help": "file of blocked words/phrases, one per "
                                                                   "line"})
    min_word_hits: int = field(default=1, metadata={"help": "blocked-word occurrences that drop a document"})
    scan_text_urls: bool = field(default=True, metadata={"help": "also check URLs found in the text"})


# The host of a URL in running text: after an optional user@, letters, digits, dots and hyphens
# (so "http://bad.example." or "(http://bad.example)" yields the host without the punctuation).
_URL = re.compile(r"\bhttps?://(?:[^\s/?#@]+@)?([\w.-]+)", re.IGNORECASE)


def _domain_of(url: str) -> str:
    try:
        return (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


class Blocklist:
    def __init__(self, config: BlocklistConfig):
        self.config = config
        self.domains = {d.lower().lstrip(".").removeprefix("www.")
                        for d in (read_list_file(config.domains_file, "blocked domains")
                                  if config.domains_file else [])}
        words = read_list_file(config.words_file, "blocked words") if config.words_file else []
        self._words = (re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w.lower()) for w in
                                                          sorted(words, key=len, reverse=True)) + r")(?!\w)")
                       if words else None)

    @property
    def active(self) -> bool:
        return bool(self.domains) or self._words is not None

    def _blocked_domain(self, host: str) -> bool:
        parts = host.split(".")
        return any(".".join(parts[i:]) in self.domains for i in range(len(parts)))

    def reason(self, doc: Document) -> str | None:
        if self.domains:
            url = doc.meta.get("url")
            if isinstance(url, str) and self._blocked_domain(_domain_of(url)):
                return "blocked_domain"
            if self.config.scan_text_urls and "://" in doc.text:
                if any(self._blocked_domain(m.group(1).lower().strip(".-")) for m in _URL.finditer(doc.text)):
                    return "blocked_domain"
        if self._words is not None:
            hits = 0
            for _ in self._words.finditer(doc.text.lower()):
                hits += 1
                if hits >= self.config.min_word_hits:
                    return "blocked_words"
        return None
