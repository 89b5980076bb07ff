"""Snippets from other open documents, rendered as comments at the top of the prefix.

Each other document of the same language family is split into CHUNK_LINES-line chunks; chunks are
ranked by Jaccard similarity of their identifiers with the last CHUNK_LINES lines of the anchor text,
duplicates (same text, by xxhash) are dropped, and the best are kept within the file and token
budgets. The header lists them by path, then line, whatever their scores, so that a change in
ranking that keeps the same chunks keeps the same header. With "#" comments:

    # path: pkg/util.py
    # def area(w, h):
    #     return w * h
"""

from __future__ import annotations

import heapq
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Callable
from urllib.parse import unquote, urlsplit

import xxhash

from .languages import family, line_comment

CHUNK_LINES = 16
MAX_CANDIDATES = 64  # best-ranked chunks tried against the budgets
_WORD = re.compile(r"[^\W\d]\w*")
STOP_WORDS = frozenset(
    "if else elif for while do return def class function fn func let const var self this true false "
    "null none None nil import from in is not and or new int void char string public private static "
    "end then local struct impl pub use package type".split())


@dataclass(frozen=True)
class Chunk:
    line: int        # 0-based line where the chunk starts in its document (a multiple of CHUNK_LINES)
    text: str        # its lines joined with "\n"
    words: frozenset[str]
    digest: int      # xxh3_64 of text


def neighbour_header(language_id: str, anchor_text: str, others: list[tuple[str, str, str]],
                     max_files: int, token_budget: int, count_tokens: Callable[[str], int]) -> str:
    """Comment lines with the chunks of `others` ([(uri, language_id, text)]) most like `anchor_text`.

    Returns "" when nothing is similar or nothing fits; otherwise ends with a newline and
    count_tokens(header) <= token_budget.
    """
    if max_files <= 0 or token_budget <= 0:
        return ""
    anchor = identifiers("\n".join(anchor_text[-(1 << 16):].split("\n")[-CHUNK_LINES:]))
    if not anchor:
        return ""
    names = display_paths([uri for uri, _, _ in others])
    scored = [(-_jaccard(anchor, c.words), uri, c.line, c) for uri, lang, text in others
              if family(lang) == family(language_id) for c in chunks(text) if not anchor.isdisjoint(c.words)]
    best = heapq.nsmallest(MAX_CANDIDATES, scored, key=lambda s: s[:3])
    marker = line_comment(language_id)
    picked = _pick([(uri, c) for _, uri, _, c in best], names, marker, max_files, token_budget, count_tokens)
    header = render(picked, names, marker)
    while header and count_tokens(header) > token_budget:
        picked.pop()  # the sum of the parts underestimated the whole: drop the lowest-ranked chunk
        header = render(picked, names, marker)
    return header


def identifiers(text: str) -> frozenset[str]:
    """Names in `text`, without keywords and one-letter names.

    >>> sorted(identifiers("if area(w, h): return self.h2"))
    ['area', 'h2']
    """
    return frozenset(w for w in set(_WORD.findall(text)) if len(w) > 1) - STOP_WORDS


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b)


def _pick(ranked: list[tuple[str, Chunk]], names: dict[str, str], marker: str, max_files: int,
          budget: int, count_tokens) -> list[tuple[str, Chunk]]:
    """Best-first chunks within max_files and budget (counted per part), without duplicate texts."""
    picked, files, seen, used = [], set(), set(), 0
    for uri, chunk in ranked:
        new_file = uri not in files
        if chunk.digest in seen or (new_file and len(files) >= max_files):
            continue
        cost = count_tokens(_comment(chunk.text, marker))
        cost += count_tokens(_path_line(names[uri], marker)) if new_file else 0
        if used + cost > budget:
            continue
        picked.append((uri, chunk))
        files.add(uri)
        seen.add(chunk.digest)
        used += cost
    return picked


def render(picked: list[tuple[str, Chunk]], names: dict[str, str], marker: str) -> str:
    """Chunks grouped by file in path order, in line order within a file; "..." between gaps."""
    out, last = [], None
    for uri, chunk in sorted(picked, key=lambda p: (names[p[0]], p[0], p[1].line)):
        if last is None or last[0] != uri:
            out.append(_path_line(names[uri], marker))
        elif last[1] != chunk.line:
            out.append(f"{marker} ...\n")
        out.append(_comment(chunk.text, marker))
        last = (uri, chunk.line + CHUNK_LINES)
    return "".join(out)


def _path_line(name: str, marker: str) -> str:
    return f"{marker} path: {name}\n"


def _comment(text: str, marker: str) -> str:
    return "".join(f"{marker} {line}\n" if line.strip() else f"{marker}\n" for line in text.split("\n"))


def display_paths(uris: list[str]) -> dict[str, str]:
    """The shortest path tail that tells each uri apart.

    >>> display_paths(["file:///a/x.py", "file:///b/x.py", "file:///b/y.py"])
    {'file:///a/x.py': 'a/x.py', 'file:///b/x.py': 'b/x.py', 'file:///b/y.py': 'y.py'}
    """
    parts = {uri: _path(uri).split("/") for uri in uris}
    names = {}
    for uri, p in parts.items():
        n = 1
        while n < len(p) and any(q[-n:] == p[-n:] for other, q in parts.items() if other != uri):
            n += 1
        names[uri] = "/".join(p[-n:])
    return names


def _path(uri: str) -> str:
    parts = urlsplit(uri)
    path = unquote(parts.path) if len(parts.scheme) > 1 else uri  # not a Windows drive letter
    path = path.replace("\\", "/").strip("/")
    return str(PurePosixPath(path)) if path else uri


# Chunk lists of recently seen texts, by digest: other documents rarely change between keystrokes.
_CACHE: OrderedDict[bytes, tuple[Chunk, ...]] = OrderedDict()
_CACHE_SIZE = 32
_LOCK = threading.Lock()


def chunks(text: str) -> tuple[Chunk, ...]:
    """The non-blank CHUNK_LINES-line chunks of `text`, memoised by the text's xxh3_128 digest."""
    key = xxhash.xxh3_128_digest(text.encode("utf-8", "surrogatepass"))
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    lines = text.split("\n")
    found = []
    for i in range(0, len(lines), CHUNK_LINES):
        block = [line.rstrip() for line in lines[i:i + CHUNK_LINES]]
        body = "\n".join(block).strip("\n")  # blank lines at either end say nothing
        if body.strip():
            digest = xxhash.xxh3_64_intdigest(body.encode("utf-8", "surrogatepass"))
            found.append(Chunk(i, body, identifiers(body), digest))
    with _LOCK:
        _CACHE[key] = tuple(found)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return tuple(found)
