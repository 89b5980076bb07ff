"""The file's imports, found in its head, kept at the top of the prefix when the window starts below them.

An import is a statement starting in column 0 (Python import/from, JS/TS import, Rust use,
Go package/import, Java package/import, C/C++ #include, Lua require) and running on while brackets
are open or a line ends with a backslash:

    >>> text = "import os\\nfrom a import (\\n    b,\\n)\\nx = 1\\n"
    >>> [text[s:e] for s, e in import_spans(text, len(text), "python")]
    ['import os\\n', 'from a import (\\n    b,\\n)\\n']
"""

from __future__ import annotations

import re

from .lines import CLOSERS, OPENERS, line_end

HEAD_CHARS = 1 << 16  # imports are looked for in the first 64 KiB only: cheap on any document
MAX_LINES = 200       # longest import statement followed

_JS = r"import[\s{*'\"]"
_STARTS = {
    "python": r"(?:import|from)\s",
    "javascript": _JS, "javascriptreact": _JS, "typescript": _JS, "typescriptreact": _JS,
    "rust": r"(?:pub(?:\([^)\n]*\))?\s+)?use\s|extern\s+crate\s",
    "go": r"(?:package|import)[\s(]",
    "java": r"(?:package|import)\s",
    "c": r"#[ \t]*include\b", "cpp": r"#[ \t]*include\b",
    "lua": r"(?:local\s+)?[\w.,\t ]+=[ \t]*require\b|require\b",
}
_PATTERNS = {lang: re.compile(rf"^(?:{p})", re.MULTILINE) for lang, p in _STARTS.items()}


def import_spans(text: str, end: int, language_id: str) -> list[tuple[int, int]]:
    """(start, stop) of each import statement, newline included, that ends by `end` (and HEAD_CHARS)."""
    pattern = _PATTERNS.get(language_id)
    if pattern is None:
        return []
    limit, spans = min(end, HEAD_CHARS, len(text)), []
    for m in pattern.finditer(text, 0, limit):
        if spans and m.start() < spans[-1][1]:
            continue  # a line inside the previous multi-line import
        stop = _statement_end(text, m.start(), limit)
        if stop is None:
            break
        spans.append((m.start(), stop))
    return spans


def _statement_end(text: str, start: int, limit: int) -> int | None:
    """Position after the newline that ends the statement starting at `start`; None past `limit`."""
    depth, p = 0, start
    for _ in range(MAX_LINES):
        e = line_end(text, p)
        if e >= limit:
            return None
        line = text[p:e]
        depth += sum(line.count(c) for c in OPENERS) - sum(line.count(c) for c in CLOSERS)
        p = e + 1
        if depth <= 0 and not line.rstrip().endswith("\\"):
            return p
    return None
