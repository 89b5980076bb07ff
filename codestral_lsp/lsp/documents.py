"""The server's copy of each open document, and LSP positions converted once, here, at the edge.

LSP positions count lines split at "\\n", "\\r\\n" and "\\r" only, and characters in the negotiated
encoding's code units (UTF-16 unless the client asked otherwise). Python's `str.splitlines` also
splits at "\\x0c", "\\x1c", "\\u2028" and others, so it is not used here.

    >>> doc = TextDocument("file:///a.py", "python", 1, "x = '😀'\\ny")
    >>> doc.offset_at(Position(0, 7))     # 😀 is two UTF-16 units: the quote after it is unit 7
    6
    >>> doc.position_at(6)
    Position(line=0, character=7)
"""

from __future__ import annotations

import bisect
import re

from lsprotocol.types import Position, Range

LINE_BREAK = re.compile(r"\r\n|\r|\n")
UNIT_BYTES = {"utf-8": 1, "utf-16": 2, "utf-32": 4}


class PositionError(ValueError):
    """A position that is not in the document."""


def units(text: str, encoding: str) -> int:
    """Length of text in the encoding's code units."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    if encoding == "utf-16":
        return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)
    return len(text.encode("utf-8", "surrogatepass"))


def column_to_index(line: str, column: int, encoding: str) -> int:
    """Code-unit column -> index into line; columns past the end clamp to it (as LSP says)."""
    if encoding == "utf-32" or line.isascii():
        return min(column, len(line))
    seen = 0
    for i, ch in enumerate(line):
        if seen >= column:
            return i
        seen += units(ch, encoding)
    return len(line)


class TextDocument:
    def __init__(self, uri: str, language_id: str, version: int, text: str):
        self.uri, self.language_id, self.version = uri, language_id, version
        self.text = text
        self._starts: list[int] | None = None

    @property
    def line_starts(self) -> list[int]:
        """Offsets where each line begins; a text ending with a line break has an empty last line."""
        if self._starts is None:
            self._starts = [0] + [m.end() for m in LINE_BREAK.finditer(self.text)]
        return self._starts

    def line_text(self, line: int) -> str:
        starts = self.line_starts
        end = starts[line + 1] if line + 1 < len(starts) else len(self.text)
        return self.text[starts[line]: end].rstrip("\r\n")

    def offset_at(self, position: Position, encoding: str = "utf-16") -> int:
        if position.line < 0 or position.character < 0:
            raise PositionError(f"negative position {position.line}:{position.character}")
        if position.line >= len(self.line_starts):
            raise PositionError(f"line {position.line} is past the end of {self.uri} "
                                f"({len(self.line_starts)} lines)")
        line = self.line_text(position.line)
        return self.line_starts[position.line] + column_to_index(line, position.character, encoding)

    def position_at(self, offset: int, encoding: str = "utf-16") -> Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.line_starts, offset) - 1
        start = self.line_starts[line]
        return Position(line=line, character=units(self.text[start: offset], encoding))

    def apply_change(self, text: str, range: Range | None, encoding: str = "utf-16") -> None:
        """Apply one content change: the whole text when range is None, else replace the range."""
        if range is None:
            self.text = text
        else:
            start = self.offset_at(range.start, encoding)
            end = max(start, self.offset_at(range.end, encoding))
            self.text = self.text[:start] + text + self.text[end:]
        self._starts = None


    def apply_changes(self, changes: list[tuple[str, Range | None]], version: int, encoding: str = "utf-16") -> None:
        """Apply content changes in order and take the version, all or nothing: when one does not fit
        (PositionError), the document keeps its text and version, so whatever is keyed by
        (uri, version) still describes its text."""
        scratch = TextDocument(self.uri, self.language_id, self.version, self.text)
        for text, range in changes:
            scratch.apply_change(text, range, encoding)
        self.text, self._starts, self.version = scratch.text, scratch._starts, version


class DocumentStore:
    def __init__(self) -> None:
        self.docs: dict[str, TextDocument] = {}

    def open(self, uri: str, language_id: str, version: int, text: str) -> TextDocument:
        self.docs[uri] = TextDocument(uri, language_id, version, text)
        return self.docs[uri]

    def get(self, uri: str) -> TextDocument | None:
        return self.docs.get(uri)

    def close(self, uri: str) -> None:
        self.docs.pop(uri, None)
