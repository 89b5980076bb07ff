"""Parse trees and the parse cache: the latest tree of each open document, updated incrementally.

Trees are parsed from the UTF-8 bytes of the text, so their points are (row, byte column); rows
count "\\n" only, which is what `str.count("\\n")` counts too.

    >>> parse("x = 1\\n", "python").root_node.type, parse("x", "plaintext")
    ('module', None)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from tree_sitter import Parser, Tree

from .languages import get_language


def encode(text: str) -> bytes:
    """UTF-8 as tree-sitter reads it; lone surrogates (possible in JSON strings) pass through."""
    return text.encode("utf-8", "surrogatepass")


CHUNK = 1 << 16  # bytes handed to the parser at a time, for long sources


def parse(text: str, language_id: str) -> Tree | None:
    """A fresh tree of the whole text, or None for an unknown language."""
    language = get_language(language_id)
    return parse_source(Parser(language), encode(text)) if language else None


def parse_source(parser: Parser, source: bytes, old: Tree | None = None) -> Tree:
    """Parse `source`; a long one is handed over in chunks, and between two the GIL is let go, so the
    event loop answers other requests while a 2 MB document is parsed (the parser itself holds it)."""
    if len(source) <= 4 * CHUNK:
        return parser.parse(source, old) if old else parser.parse(source)

    def read(byte: int, _point) -> bytes:
        let_others_run()
        return source[byte: byte + CHUNK]

    return parser.parse(read, old) if old else parser.parse(read)


def let_others_run() -> None:
    time.sleep(0)


@dataclass
class _Entry:
    version: int
    language_id: str
    source: bytes
    tree: Tree


class ParseCache:
    """The latest tree of each of the last `size` documents, keyed by (uri, version).

    Asking again for the same (uri, version) returns the cached tree. A newer version of a cached
    document is parsed incrementally: the edit is found by comparing old and new bytes (their common
    head and tail), so callers need not forward LSP change events. Thread-safe.
    """

    def __init__(self, size: int = 8):
        self.size = size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, uri: str, version: int, text: str, language_id: str) -> Tree | None:
        language = get_language(language_id)
        if language is None:
            return None
        with self._lock:
            entry = self._entries.get(uri)
            if entry and entry.version == version and entry.language_id == language_id:
                self._entries.move_to_end(uri)
                return entry.tree
            source = encode(text)
            old = entry.tree.copy() if entry and entry.language_id == language_id else None
            if old is not None:
                _edit(old, entry.source, source)
            tree = parse_source(Parser(language), source, old)
            self._entries[uri] = _Entry(version, language_id, source, tree)
            self._entries.move_to_end(uri)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return tree

    def forget(self, uri: str) -> None:
        with self._lock:
            self._entries.pop(uri, None)


def _edit(tree: Tree, old: bytes, new: bytes) -> None:
    """Tell `tree` (parsed from `old`) that the bytes between a common head and tail changed.

    old = b"ab-cd", new = b"abXYcd": head 2, tail 2, so bytes [2, 3) of old became [2, 4) of new.
    """
    head = common_head(old, new)
    tail = common_head(old[head:][::-1], new[head:][::-1])
    tree.edit(start_byte=head, old_end_byte=len(old) - tail, new_end_byte=len(new) - tail,
              start_point=point_at(old, head), old_end_point=point_at(old, len(old) - tail),
              new_end_point=point_at(new, len(new) - tail))


def point_at(source: bytes, i: int) -> tuple[int, int]:
    """(row, byte column) of byte i: point_at(b"ab\\ncd", 4) == (1, 1)."""
    return source.count(b"\n", 0, i), i - (source.rfind(b"\n", 0, i) + 1)


def common_head(a: bytes, b: bytes, block: int = 1 << 16) -> int:
    """Length of the longest common prefix: compare whole blocks first, then bisect the first unequal one."""
    n, i = min(len(a), len(b)), 0
    while i < n and a[i:i + block] == b[i:i + block]:
        i += block
    if i >= n:
        return n
    lo, hi = i, min(i + block, n)  # a[:lo] == b[:lo]; a[:hi] != b[:hi] unless hi == n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return hi if a[lo:hi] == b[lo:hi] else lo
