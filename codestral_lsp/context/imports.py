"""The file's imports, found in its head, kept at the top of the prefix when the window starts below them.

An import is a statement starting in column 0 as the language's `import_start` says (Python
import/from, Rust use, C #include, Lua require, ...) and running on while brackets are open or a
line ends with a backslash:

    >>> text = "import os\\nfrom a import (\\n    b,\\n)\\nx = 1\\n"
    >>> [text[s:e] for s, e in import_spans(text, len(text), "python")]
    ['import os\\n', 'from a import (\\n    b,\\n)\\n']
"""

from __future__ import annotations

from .languages import profile
from .lines import line_end

HEAD_CHARS = 1 << 16  # imports are looked for in the first 64 KiB only: cheap on any document
MAX_LINES = 200       # longest import statement followed

def import_spans(text: str, end: int, language_id: str) -> list[tuple[int, int]]:
    """(start, stop) of each import statement, newline included, that ends by `end` (and HEAD_CHARS)."""
    language = profile(language_id)
    pattern = language.import_start
    if pattern is None:
        return []
    limit, spans = min(end, HEAD_CHARS, len(text)), []
    for m in pattern.finditer(text, 0, limit):
        if spans and m.start() < spans[-1][1]:
            continue  # a line inside the previous multi-line import
        stop = _statement_end(text, m.start(), limit, language.openers, language.closers)
        if stop is None:
            break
        spans.append((m.start(), stop))
    return spans


def _statement_end(text: str, start: int, limit: int, openers: str, closers: str) -> int | None:
    """Position after the newline that ends the statement starting at `start`; None past `limit`."""
    depth, p = 0, start
    for _ in range(MAX_LINES):
        e = line_end(text, p)
        if e >= limit:
            return None
        line = text[p:e]
        depth += sum(line.count(c) for c in openers) - sum(line.count(c) for c in closers)
        p = e + 1
        if depth <= 0 and not line.rstrip().endswith("\\"):
            return p
    return None
