"""The document's indentation, read from its text: the server is not told the editor's settings
(inline completion requests carry no formatting options), and a suggestion indented with spaces in
a file indented with tabs (Go, Makefiles) is wrong.

    >>> detect_indentation("func f() {\\n\\tif x {\\n\\t\\treturn\\n\\t}\\n}\\n")
    Indentation(insert_spaces=False, tab_size=4)
    >>> detect_indentation("def f():\\n  if x:\\n    return 1\\n")
    Indentation(insert_spaces=True, tab_size=2)
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

HEAD_CHARS = 1 << 14  # the style shows in the first lines; reading no more keeps this cheap on any document
_INDENT = re.compile(r"^([ \t]*)\S", re.MULTILINE)


class Indentation(NamedTuple):
    insert_spaces: bool  # False: indent with tabs
    tab_size: int        # columns of a tab, and with spaces the columns of one indentation level


DEFAULT = Indentation(True, 4)


def detect_indentation(text: str, default: Indentation = DEFAULT) -> Indentation:
    """Tabs when more lines start with a tab than with two or more spaces; with spaces, the level is
    the most common step by which indentation grows from one line to the next (2 to 8 columns).
    A single leading space (" * " inside a C block comment) says nothing. No indented line: `default`.
    """
    tabs, spaces, steps, previous = 0, 0, Counter(), 0
    for m in _INDENT.finditer(text, 0, min(len(text), HEAD_CHARS)):
        indent = m.group(1)
        tabs += indent.startswith("\t")
        spaces += indent.startswith("  ")
        if "\t" not in indent:
            if 2 <= len(indent) - previous <= 8:
                steps[len(indent) - previous] += 1
            previous = len(indent)
    if tabs == spaces == 0:
        return default
    if tabs > spaces:
        return Indentation(False, default.tab_size)
    return Indentation(True, steps.most_common(1)[0][0] if steps else default.tab_size)
