"""`codestral-lsp eval --count-stubs [LANG,...]`: how many functions of real code the code actions take
for stubs, per language, and what stands in their bodies.

Files: Python from the installed packages the training corpus reads (`engine.training.corpus`), the
other languages from the fetched corpus cache (`train --fetch-corpus`), at most `limit` files a
language. Each file is parsed once and every function visited (`context.actions.find_stubs`), as
listing does for the rows a request asks about.

    {"python": {"files", "functions", "stubs", "placeholders": {"pass": n, "...": n, "(empty)": n, ...}}, ...}
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..context import parse
from ..context.actions import Points, find_stubs, functions_in_rows

LANGUAGES = ("python", "javascript", "typescript", "go", "rust", "java", "c")
MAX_CHARS = 400_000  # a generated or vendored file this long is no one's hand-written code


def files_of(language: str) -> list[str]:
    from engine.training.corpus import fetched_sources, gather_sources

    if language == "python":
        sources = gather_sources()
    else:
        try:
            sources = fetched_sources([language])
        except SystemExit:  # no fetched corpus on this machine
            return []
    return sorted(f for source in sources for f in source.files)


def placeholder(body: str) -> str:
    """What stands in a stub's body, shortened: its first line of code or comment, or "(empty)" (also a
    Python body that is only a docstring: the stub is what follows it).

    >>> placeholder('\\n    raise NotImplementedError("later")\\n'), placeholder(" "), placeholder("todo!()")
    ('raise NotImplementedErro(...', '(empty)', 'todo!()')
    """
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if not lines:
        return "(empty)"
    return lines[0] if len(lines[0]) <= 28 else lines[0][:24] + "(..."


def count(language: str, paths: list[str]) -> dict:
    files = functions = stubs = 0
    kinds: Counter[str] = Counter()
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if len(text) > MAX_CHARS:
            continue
        tree, last = parse(text, language), text.count("\n") + 1
        files += 1
        functions += len(functions_in_rows(tree, 0, last, language))
        for stub in find_stubs(tree, text, Points(text), 0, last, language):
            if stub.kind == "body":
                stubs += 1
                kinds[placeholder(text[stub.start:stub.end])] += 1
    return {"files": files, "functions": functions, "stubs": stubs, "placeholders": dict(kinds.most_common(6))}


def count_stubs(languages: tuple[str, ...] = LANGUAGES, limit: int | None = None, progress=None) -> dict:
    out = {}
    for language in languages:
        paths = files_of(language)[:limit]
        out[language] = count(language, paths)
        if progress:
            progress(f"{language}: {out[language]}")
    return out
