"""The edits the code actions make on the inference worker, by fill-in-the-middle: stub bodies and
docstrings, statements written anew (quick fixes, rewrites), comments that explain, tests.

Each cuts its prompt to the completion's token budgets, stops the model at the end of its block or
statement, and checks that the document still parses (tree-sitter, incrementally from the cached
tree). Each returns an `Edit`, or a string saying why there is nothing to offer.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from pygls.uris import from_fs_path, to_fs_path

from ..context import profile
from ..context.actions import (
    Points, Stub, block_stop, commented, files_of_tests, fix_prompt, functions_in_rows, header_of_test,
    longest_parsing, parses_after, statement_stop, stub_fallback, stub_text, tests_module_end,
)
from ..context.indentation import detect_indentation
from ..pipeline import Document
from .documents import TextDocument

if TYPE_CHECKING:
    from ..pipeline import Completer

def points_of(doc: TextDocument) -> Points:
    """The document's line starts serve as row starts unless it has lone "\r" line breaks."""
    text = doc.text
    if text.count("\r") == text.count("\r\n"):
        return Points(text, doc.line_starts)
    return Points(text)


def prompt(completer: Completer, uri: str, language_id: str, prefix: str, suffix: str) -> tuple[str, str]:
    """The FIM prefix and suffix around a middle, cut to the completion's token budgets."""
    window = completer.window_for(Document(uri, language_id, prefix + suffix), len(prefix))
    return window.prefix, window.suffix


NOT_PARSING = " (as comments: the model's code does not parse)"


def fill(completer: Completer, text: str, stub: Stub, session: str, cancelled, language_id: str = "python",
         max_tokens: int = 256, tree=None) -> tuple[str, str]:
    """(text, title note) that replaces a stub, generated with FIM: the body up to the end of its block, or a docstring.

    The longest head of the body that keeps the document parsing; when none does, the model's text as
    comments above the placeholder (the log says so: `NOT_PARSING`)."""
    if stub.kind == "docstring":
        quote = profile(language_id).docstring or '"""'
        prefix, suffix = prompt(completer, session, language_id, text[: stub.start] + stub.indent + quote,
                                quote + "\n" + text[stub.start:])
        out = completer.fill(prefix, suffix, max_tokens=96, stop=[quote], session=session, cancelled=cancelled).text
        return (f"{stub.indent}{quote}{out.strip()}{quote}\n" if out.strip() else ""), ""
    prefix, suffix = prompt(completer, session, language_id, text[: stub.start] + stub.lead + stub.indent,
                            stub.trail + text[stub.end:])
    out = completer.fill(prefix, suffix, max_tokens=max_tokens, stop_fn=block_stop(len(stub.indent), language_id),
                         session=session, cancelled=cancelled).text
    new = longest_parsing(text, stub.start, stub.end, lambda body: stub_text(stub, body), out, language_id, tree)
    if new:
        return new, ""
    return stub_fallback(stub, out, text[stub.start:stub.end], language_id), NOT_PARSING


Edit = tuple[TextDocument, int, int, str, str]  # (document, start, end, new text, note for the log)
INDENT = re.compile(r"[ \t]*")


def regenerate(completer: Completer, doc: TextDocument, start: int, end: int, message: str, cancelled,
               max_tokens: int = 256) -> Edit | str:
    """text[start:end] written anew by FIM (with the diagnostic's message as a comment above, if any);
    the reason as a string when there is nothing to offer: the same text, or a text that does not parse."""
    text, language_id = doc.text, doc.language_id
    points = points_of(doc)
    original = text[start:end]
    prefix, suffix = fix_prompt(text, points, start, end, message, language_id)
    prefix, suffix = prompt(completer, doc.uri, language_id, prefix, suffix)
    depth = len(INDENT.match(text, points.line_start(start)).group())
    stop = statement_stop(original.rstrip("\n").count("\n") + 1, depth, language_id)
    out = completer.fill(prefix, suffix, max_tokens=max_tokens, stop_fn=stop, session=doc.uri,
                         cancelled=cancelled).text.rstrip()
    new = out + ("\n" if original.endswith("\n") and out else "")
    if not out.strip():
        return "the model wrote nothing"
    if new.strip() == original.strip():
        return "the model wrote the same text"
    tree = completer.parses.get(doc.uri, doc.version, text, language_id)
    if not parses_after(text, start, end, new, language_id, tree):
        return "the model's text does not parse"
    return doc, start, end, new, ""


def explain_by_fim(completer: Completer, doc: TextDocument, start: int, cancelled) -> Edit | str:
    """Line comments written by FIM above the line where `start` is: what a base model can say about code."""
    text, language_id = doc.text, doc.language_id
    line_start = text.rfind("\n", 0, start) + 1
    indent = INDENT.match(text, line_start).group()
    marker = profile(language_id).line_comment
    prefix, suffix = prompt(completer, doc.uri, language_id, text[:line_start] + indent + marker + " ",
                            "\n" + text[line_start:])

    def stop(gen: str) -> int | None:
        lines = gen.split("\n")
        offset = len(lines[0])
        for n, line in enumerate(lines[1:], 1):
            if n >= 4 or not line.strip().startswith(marker):
                return offset
            offset += 1 + len(line)
        return None

    out = completer.fill(prefix, suffix, max_tokens=96, stop_fn=stop, session=doc.uri, cancelled=cancelled).text
    if not out.strip():
        return "the model wrote nothing"
    return doc, line_start, line_start, f"{indent}{marker} {out.strip()}\n", ""


def target_of_test(doc: TextDocument, tree, name_start: int, open_doc) -> tuple[TextDocument, int, str]:
    """(document, offset, indentation) where a test of the function at `name_start` goes:
    the in-file test module, the test file of this module by the language's convention (when it exists),
    right after the function (tests_beside), else the end of the document."""
    language = profile(doc.language_id)
    points = points_of(doc)
    unit = detect_indentation(doc.text)
    step = " " * unit.tab_size if unit.insert_spaces else "\t"
    end = tests_module_end(tree, points, doc.language_id) if tree is not None else None
    if end is not None:
        return doc, points.line_start(end), step
    for path in files_of_tests(to_fs_path(doc.uri) or "", doc.language_id) if doc.uri.startswith("file:") else []:
        uri = from_fs_path(path)
        target = open_doc(uri)
        if target is None and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                target = TextDocument(uri, doc.language_id, 0, f.read())
        if target is not None:
            return target, len(target.text), ""
    functions = functions_in_rows(tree, points.row(name_start), points.row(name_start), doc.language_id) \
        if tree is not None else []
    if language.tests_beside and functions:
        node = functions[-1].node
        at = points.offset(node.end_point)
        return doc, at, INDENT.match(doc.text, points.line_start(at)).group()
    return doc, len(doc.text), ""


def write_test(completer: Completer, doc: TextDocument, name: str, start: int, end: int, open_doc,
               cancelled, max_tokens: int = 256) -> Edit | str:
    """A test of the function text[start:end] written by FIM after the language's test header."""
    language_id = doc.language_id
    tree = completer.parses.get(doc.uri, doc.version, doc.text, language_id)
    target, at, indent = target_of_test(doc, tree, start, open_doc)
    header = header_of_test(name, language_id, indent)
    if header is None:
        return "no test header for this language"
    before, after = target.text[:at], target.text[at:]
    sep = "" if not before else "\n" * max(0, 2 - (len(before) - len(before.rstrip("\n"))))
    if not before.endswith("\n") and before:
        sep = "\n\n"
    unit = detect_indentation(doc.text)
    body_indent = indent + (" " * unit.tab_size if unit.insert_spaces else "\t")
    footer = "".join(indent + line for line in profile(language_id).test_footer.splitlines(keepends=True))
    context = ""
    if target is not doc:  # the function under test, as comments: the test file does not show it
        context = commented(doc.text[start:end], "", language_id) + "\n\n"
    prefix, suffix = prompt(completer, target.uri, language_id, context + before + sep + header + body_indent,
                            "\n" + footer + after)
    out = completer.fill(prefix, suffix, max_tokens=max_tokens, stop_fn=block_stop(len(body_indent), language_id),
                         session=target.uri, cancelled=cancelled).text
    if not out.strip():
        return "the model wrote nothing"

    def make(body: str) -> str:
        return f"{sep}{header}{body_indent}{body.rstrip()}\n{footer}" if body.strip() else ""

    new = longest_parsing(target.text, at, at, make, out, language_id, tree if target is doc else None)
    if new:
        return target, at, at, new, ""
    whole = commented(f"{header}{body_indent}{out.rstrip()}\n{footer}", indent, language_id)
    return target, at, at, f"{sep}{whole}\n", NOT_PARSING
