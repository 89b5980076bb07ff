"""Single- or multi-line completions, when to stop generating, and cleaning up what the model wrote.

Positions are Python str indices. "before" and "after" are the parts of the cursor's line on
either side of the cursor; "below" are the lines that follow the cursor's line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Callable

from .indentation import detect_indentation
from .languages import Profile, profile
from .lines import leading, line_end, line_start, width
from .parsing import encode

MAX_LINE = 4096       # characters of the cursor's line looked at on each side
BELOW_LINES = 32      # lines below the cursor compared with the completion's tail
MAX_BLANK_LEAD = 2    # single-line: leading blank lines tolerated before the line itself


@dataclass(frozen=True)
class Suggestion:
    text: str          # what to insert
    replace_end: int   # document offset (Python str index) up to which the insertion replaces existing text
    #                    (== offset when nothing is replaced)


@dataclass(frozen=True)
class _Cursor:
    before: str             # the cursor's line up to the cursor (at most MAX_LINE characters)
    after: str              # the rest of the cursor's line (at most MAX_LINE characters)
    below: tuple[str, ...]  # up to BELOW_LINES lines after the cursor's line


def _cursor(text: str, offset: int) -> _Cursor:
    start, end = line_start(text, offset), line_end(text, offset)
    below, p = [], end + 1
    while p <= len(text) and len(below) < BELOW_LINES:
        e = line_end(text, p)
        below.append(text[p:min(e, p + MAX_LINE)])
        p = e + 1
    return _Cursor(text[max(start, offset - MAX_LINE):offset], text[offset:min(end, offset + MAX_LINE)], tuple(below))


def _clamp(text: str, offset: int) -> int:
    return min(max(offset, 0), len(text))


# -- single or multi ----------------------------------------------------------------------------------

def completion_mode(text: str, offset: int, language_id: str, setting: str = "auto", tree=None) -> str:
    """"multi" at the start of an empty block body, else "single"; "always"/"never" force multi/single.

    >>> completion_mode("def f():\\n    \\n", 13, "python")
    'multi'
    >>> completion_mode("x = f()\\n", 6, "python")
    'single'
    """
    if setting in ("always", "never"):
        return "multi" if setting == "always" else "single"
    offset, language = _clamp(text, offset), profile(language_id)
    cur = _cursor(text, offset)
    if cur.before.strip() or cur.after.strip():
        return "single"
    opener = _line_above(text, line_start(text, offset))
    if opener is None or not _opens_block(opener, language):
        return "single"
    if tree is not None and _in_string_or_comment(tree, text, offset):
        return "single"
    nxt = next((line for line in cur.below if line.strip()), None)
    empty = nxt is None or width(leading(nxt)) <= width(leading(opener)) or nxt.lstrip()[0] in language.closers
    return "multi" if empty else "single"


def _line_above(text: str, start: int, limit: int = 64) -> str | None:
    """The nearest non-blank line above the line starting at `start`."""
    for _ in range(limit):
        if start == 0:
            return None
        prev = line_start(text, start - 1)
        line = text[max(prev, start - 1 - MAX_LINE):start - 1]
        if line.strip():
            return line
        start = prev
    return None


def _opens_block(line: str, language: Profile) -> bool:
    return bool(language.block_opener.search(_code(line, language.line_comment).rstrip()))


def _code(line: str, marker: str) -> str:
    """The line without its trailing comment.

    >>> _code('x = "#"  # y', "#")
    'x = "#"  '
    """
    quote, k = None, 0
    while k < len(line):
        c = line[k]
        if quote:
            k += 1 if c == "\\" else 0
            quote = None if c == quote else quote
        elif c in "\"'`":
            quote = c
        elif line.startswith(marker, k):
            return line[:k]
        k += 1
    return line


def _in_string_or_comment(tree, text: str, offset: int) -> bool:
    start = line_start(text, offset)
    point = (text.count("\n", 0, offset), len(encode(text[start:offset])))
    node = tree.root_node.descendant_for_point_range(point, point)
    for _ in range(3):
        if node is None:
            return False
        if ("string" in node.type or "comment" in node.type) and node.start_point < point < node.end_point:
            return True
        node = node.parent
    return False


# -- stop rules ------------------------------------------------------------------------------------------

def stop_rule(mode: str, text: str, offset: int, language_id: str) -> Callable[[str], int | None]:
    """A callback on the text generated so far: None to go on, or how many characters to keep (and stop).

    single: stop at the first newline; when the cursor's line is blank up to the cursor, leading
    blank lines are skipped first (the newline after the first written line stops it).
    multi: stop at the end of the block the cursor is in: before a line indented less than the
    completion's first line, before a new statement at that level after a blank line once the
    completion went deeper (a finished definition), before a line that repeats the line below the
    cursor, or at a closing bracket the completion did not open (kept when the document has no
    such closer right after the cursor).

    >>> stop_rule("single", "x = ", 4, "python")("1\\ny")
    1
    >>> stop_rule("multi", "def f():\\n    \\n", 13, "python")("return 1\\ndef g():")
    8
    """
    offset = _clamp(text, offset)
    cur = _cursor(text, offset)
    if mode != "multi":
        rule = partial(_stop_single, skip_blank=not cur.before.strip(), keep_newline=_opens_line(cur))
    else:
        nxt = next((line.strip() for line in cur.below if line.strip()), None)
        repeat = nxt if nxt and not re.fullmatch(r"\W*\w*\W*", nxt) else None  # not "}", "end", "pass"
        closing = text[offset:offset + MAX_LINE].lstrip()[:1]
        rule = partial(_stop_multi, before=cur.before, repeat=repeat, closing=closing, language_id=language_id)
    return partial(_first_stop, rule)


def _first_stop(rule: Callable[[str], int | None], gen: str) -> int | None:
    cuts = [c for c in (rule(gen), _loop_cut(gen)) if c is not None]
    return min(cuts) if cuts else None


def _loop_cut(gen: str, min_period: int = 8, max_period: int = 80) -> int | None:
    """Where a degenerate loop starts: when the text ends with the same piece of at least min_period
    characters three times in a row, keep the first copy and stop. Small models fall into such loops
    ("self.size, self.size, self.size, ..."); going on only costs decode steps. Shorter periods are
    left alone: "0, 0, 0, " and "----" are real code.

    >>> g = "f(a, self.size, self.size, self.size, "
    >>> g[:_loop_cut(g)]
    'f(a, self.size, '
    >>> _loop_cut("[0, 0, 0, 0, 0, 0]") is None
    True
    """
    n = len(gen)
    for p in range(min_period, min(max_period, n // 3) + 1):
        if gen[n - p:] == gen[n - 2 * p: n - p] == gen[n - 3 * p: n - 2 * p]:
            return n - 2 * p
    return None


def _stop_single(gen: str, skip_blank: bool, keep_newline: bool = False) -> int | None:
    start = len(gen) - len(gen.lstrip()) if skip_blank else 0
    if gen.count("\n", 0, start) > MAX_BLANK_LEAD:
        return 0
    i = gen.find("\n", start)
    return None if i < 0 else i + keep_newline


def _opens_line(cur: "_Cursor") -> bool:
    """The cursor is at the start of a line that has text after it: a single-line completion there
    is a whole new line, inserted above that text, so it ends with its line break.

    >>> _opens_line(_cursor("a\\n    b\\n", 2)), _opens_line(_cursor("a\\n    \\n", 6))
    (True, False)
    """
    return not cur.before.strip() and bool(cur.after.strip())


def _stop_multi(gen: str, before: str, repeat: str | None, closing: str, language_id: str) -> int | None:
    language = profile(language_id)
    stops = [_block_end(gen, before, repeat, language)]
    j = next(iter(unmatched_closers(gen, language_id)), None)
    if j is not None and language.stop_hook is not None and language.stop_hook(gen, j):
        j = None
    if j is not None:
        if gen[j] != closing:
            stops.append(j + 1)  # the document lacks this closer: keep it, the block is complete
        else:
            start = gen.rfind("\n", 0, j)
            stops.append(start if start >= 0 and not gen[start:j].strip() else j)
    stops = [s for s in stops if s is not None]
    return min(stops) if stops else None


def _block_end(gen: str, before: str, repeat: str | None, language: Profile) -> int | None:
    """Where the line-based rules of multi mode stop `gen` (the index of the newline kept out), or None."""
    base, deeper, blank, pos = None, False, False, 0
    lines = gen.split("\n")
    for i, line in enumerate(lines):
        full = before + line if i == 0 else line
        body = full.lstrip(" \t")
        if i > 0 and body and base is not None and body[0] not in language.closers:  # closers: see bracket_scan
            indent = width(leading(full))
            done = blank and deeper and indent <= base and _first_word(body) not in language.continuations
            if indent < base or done:
                return pos - 1
        if (i > 0 or not before.strip()) and repeat and i < len(lines) - 1 and body.rstrip() == repeat:
            return max(pos - 1, 0)
        if body:
            base = width(leading(full)) if base is None else base
            deeper = deeper or width(leading(full)) > base
        blank = i > 0 and not body
        pos += len(line) + 1
    return None


def _first_word(body: str) -> str:
    m = re.match(r"\w+", body)
    return m.group() if m else ""


def unmatched_closers(text: str, language_id: str) -> list[int]:
    """Indices of closing brackets that close nothing opened in `text`, outside strings and comments.

    >>> unmatched_closers("a(b)) ]", "python")   # "(" at 1 is closed at 3; 4 and 6 close nothing
    [4, 6]
    """
    return bracket_scan(text, language_id)[0]


def bracket_scan(text: str, language_id: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(unmatched closers, (opener, closer) index pairs) of `text`, skipping strings and line comments.

    Strings are taken to end at the end of a line; where the language has char literals (Rust),
    "'" is a quote only in one.

    >>> bracket_scan('f(a[0]) } ")"', "c")
    ([8], [(3, 5), (1, 6)])
    """
    found, pairs, stack, openers = [], [], [], profile(language_id).openers
    for k, c in brackets_of(text, language_id):
        if c in openers:
            stack.append(k)
        elif stack:
            pairs.append((stack.pop(), k))  # a mismatched pair still closes the innermost opener
        else:
            found.append(k)
    return found, pairs


def brackets_of(text: str, language_id: str):
    """(index, character) of each bracket of `text` outside strings and line comments (see bracket_scan)."""
    language, quote = profile(language_id), None
    marker, quotes, char_literal = language.line_comment, language.quotes, language.char_literal
    k = 0
    while k < len(text):
        c = text[k]
        if c == "\n":
            quote = None
        elif quote:
            k += 1 if c == "\\" else 0
            quote = None if c == quote else quote
        elif c in quotes:
            quote = c
        elif c == "'" and char_literal and (m := char_literal.match(text, k)):
            k = m.end() - 1
        elif text.startswith(marker, k):
            k = line_end(text, k) - 1
        elif c in language.brackets:
            yield k, c
        k += 1


# -- clean-up ----------------------------------------------------------------------------------------------

def postprocess(completion: str, text: str, offset: int, language_id: str, mode: str,
                tab_size: int | None = None, insert_spaces: bool | None = None) -> Suggestion | None:
    """What to show: the completion trimmed of what the document already has, in the editor's indentation
    (tab_size and insert_spaces; either one None: as the document is indented).

    >>> postprocess("b)", "f(a, )\\n", 5, "python", "single")   # the ")" after the cursor is reused
    Suggestion(text='b)', replace_end=6)
    >>> postprocess("   \\n", "x = ", 4, "python", "single") is None
    True
    """
    offset = _clamp(text, offset)
    cur = _cursor(text, offset)
    out = completion.replace("\r\n", "\n")
    if not cur.before.strip():
        out = _skip_blank_lead(out, cur.before)
    if mode != "multi":
        first, newline, _ = out.partition("\n")
        out = first + newline if _opens_line(cur) and first.strip() else first
    lines = [line.rstrip() for line in out.split("\n")]
    if cur.after.strip():
        lines[-1] = out.rsplit("\n", 1)[-1]  # the last line runs into the text after the cursor
    out = _drop_repeated_tail(lines, cur, language_id)
    if "\n" in out:  # only the lines after the first are re-indented
        out = _reindent(out, *_indentation(text, tab_size, insert_spaces))
    out = out if cur.after.strip() else out.rstrip()
    if not out.strip():
        return None
    k = _overlap(out, cur.after, profile(language_id))
    return None if out == cur.after[:k] else Suggestion(out, offset + k)


def _skip_blank_lead(out: str, before: str) -> str:
    """Drop leading blank lines, and from the first real line the indentation the cursor already has."""
    lines = out.split("\n")
    i = next((i for i, line in enumerate(lines[:-1]) if line.strip()), len(lines) - 1)
    if i == 0:
        return out
    first = lines[i][len(before):] if lines[i].startswith(before) else lines[i].lstrip(" \t")
    return "\n".join([first, *lines[i + 1:]])


def _drop_repeated_tail(lines: list[str], cur: _Cursor, language_id: str) -> str:
    """Cut the completion where its remaining non-blank lines repeat the document's next ones.

    A tail that closes a bracket opened earlier in the completion is its own, not a repeat.
    """
    below = [line.strip() for line in cur.below if line.strip()]
    first = 1 if (cur.before.strip() or cur.after.strip()) else 0
    out = "\n".join(lines)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    pairs = bracket_scan(out, language_id)[1]
    for i in range(first, len(lines)):
        tail = [line.strip() for line in lines[i:] if line.strip()]
        own = any(o < starts[i] <= c for o, c in pairs)
        if lines[i].strip() and tail == below[:len(tail)] and not own:
            return "\n".join(lines[:i]).rstrip()
    return out


def _indentation(text: str, tab_size: int | None, insert_spaces: bool | None) -> tuple[int, bool]:
    """The editor's settings where given, else the document's."""
    if tab_size is None or insert_spaces is None:
        detected = detect_indentation(text)
        tab_size = detected.tab_size if tab_size is None else tab_size
        insert_spaces = detected.insert_spaces if insert_spaces is None else insert_spaces
    return tab_size, insert_spaces


def _reindent(out: str, tab_size: int, insert_spaces: bool) -> str:
    """Indentation of every line after the first in the editor's style (tabs of tab_size columns, or spaces)."""
    tab_size = max(1, tab_size)
    lines = out.split("\n")
    for i in range(1, len(lines)):
        indent = leading(lines[i])
        cols = width(indent, tab_size)
        new = " " * cols if insert_spaces else "\t" * (cols // tab_size) + " " * (cols % tab_size)
        lines[i] = new + lines[i][len(indent):]
    return "\n".join(lines)


def _overlap(out: str, after: str, language: Profile) -> int:
    """How much of `after` the end of `out` already writes, so that the insertion should replace it.

    The overlap must close what `out` leaves open, no more and no less (same net brackets and
    quote parity), and be the whole rest of the line when it holds letters or digits:
    out 'b)' after ')' gives 1; out 'g(b)' after ')' gives 0; out 'x, a)' after 'a)' gives 2.
    """
    rest, balance, best = after.rstrip(), _balance(out, language), 0
    for n in range(1, min(len(rest), len(out)) + 1):
        part = rest[:n]
        if out.endswith(part) and _balance(part, language) == balance and (n == len(rest) or not _has_word(part)):
            best = n
    return best


def _balance(s: str, language: Profile) -> tuple[int, ...]:
    """Net closers per bracket kind and the parity of each quote character ('"', "'" and "`", whatever
    the language): (1, 0, 0, 1, 0, 0) for 'a)"' and brackets "()[]{}"."""
    pairs = zip(language.openers, language.closers)
    return (*(s.count(c) - s.count(o) for o, c in pairs), *(s.count(q) % 2 for q in "\"'`"))


def _has_word(s: str) -> bool:
    return any(c.isalnum() for c in s)
