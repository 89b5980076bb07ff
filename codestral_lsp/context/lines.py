"""Line arithmetic shared by the window cutter and post-processing, and where statements start.

Positions are Python str indices into the document; a line is the text between two "\\n".
"""

from __future__ import annotations

import re

from .languages import UNKNOWN, Profile

_INDENT = re.compile(r"[ \t]*")


def line_start(text: str, i: int) -> int:
    """Index of the first character of the line of i.

    >>> line_start("ab\\ncd", 4), line_start("ab\\ncd", 3), line_start("ab\\ncd", 2)
    (3, 3, 0)
    """
    return text.rfind("\n", 0, i) + 1


def line_end(text: str, i: int) -> int:
    """Index of the "\\n" ending the line of i, or len(text).

    >>> line_end("ab\\ncd", 0), line_end("ab\\ncd", 2), line_end("ab\\ncd", 3)
    (2, 2, 5)
    """
    j = text.find("\n", i)
    return len(text) if j < 0 else j


def indent_end(text: str, p: int) -> int:
    """End of the spaces and tabs starting at p: indent_end("  x", 0) == 2."""
    return _INDENT.match(text, p).end()


def width(indent: str, tab_size: int = 4) -> int:
    return len(indent.expandtabs(tab_size))


def leading(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


def starts_statement(root, row: int, col: int, containers: frozenset[str]) -> bool:
    """Whether a named child of a statement container (a node type in `containers`) starts at (row, byte column).

    In Python's `def f():\\n    x = 1`, the line of `x` starts an expression_statement whose parent
    is a block: True. A continuation line inside a call, a string or a closing `}` gives False.
    """
    node = root.descendant_for_point_range((row, col), (row, col))
    while node is not None and tuple(node.start_point) == (row, col):
        parent = node.parent
        if parent is None or (node.is_named and parent.type in containers):
            return True
        node = parent
    return False


class LineRanker:
    """Ranks line starts as cut points: (0, indent) for a statement start, (1, indent) for another
    non-blank line, (2, 0) for a blank line; lower is better.

    With a tree, statements are found in it by the language's containers; without one, any line
    not opening with a closing bracket counts. Tree rows are counted from `anchor` (a position whose
    row is computed once), so ranking lines near the cursor costs nothing in the size of the document.
    """

    def __init__(self, text: str, tree=None, anchor: int = 0, language: Profile = UNKNOWN):
        self.text, self.root, self.anchor = text, tree.root_node if tree is not None else None, anchor
        self.language = language
        self._anchor_row: int | None = None

    def rank(self, p: int) -> tuple[int, int]:
        q = indent_end(self.text, p)
        if q >= len(self.text) or self.text[q] in "\r\n":
            return (2, 0)
        indent = width(self.text[p:q])
        if self.root is not None:
            return (0 if starts_statement(self.root, self.row(p), q - p, self.language.containers) else 1, indent)
        return (1 if self.text[q] in self.language.closers else 0, indent)

    def row(self, p: int) -> int:
        if self._anchor_row is None:
            self._anchor_row = self.text.count("\n", 0, self.anchor)
        if p <= self.anchor:
            return self._anchor_row - self.text.count("\n", p, self.anchor)
        return self._anchor_row + self.text.count("\n", self.anchor, p)
