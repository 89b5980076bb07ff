"""`codestral-lsp eval`: fill HumanEval-infilling style gaps the way the server would, and score them.

Each record is {"task_id", "prompt", "suffix", "canonical_solution", "test"?, "entry_point"?, "language"?}:
the document is prompt + suffix with the cursor between them, in `language` (an LSP languageId such
as "go" or "typescriptreact"; Python when absent). The completion goes through the same pipeline as
the server (that language's context windows, single- or multi-line choice, stop rules and
post-processing), with no typeahead cache.

With by_language, the scores are also given per language, and within it apart for single-line gaps
and multi-line gaps (a canonical solution that spans several lines, its final line break aside).

Scores: exact match (completion == canonical solution, trailing whitespace ignored), edit similarity
(1 - Levenshtein distance / longer length), and with --execute pass@1 (greedy): the program
prompt + completion + suffix + test + check(entry_point) runs in a subprocess with a timeout, a
memory limit and a temporary working folder.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lsprotocol.types import Position

from ..pipeline import Completer, Document


def read_records(path: str | Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_similarity(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


def run_program(program: str, timeout_s: float = 10.0, memory_mb: int = 1024) -> bool:
    """Run untrusted generated code in a subprocess: a timeout, an address-space limit, a temp folder."""
    limits = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_mb << 20}, {memory_mb << 20})); "
              f"resource.setrlimit(resource.RLIMIT_CPU, ({int(timeout_s)}, {int(timeout_s) + 1}))")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(program)
        try:
            proc = subprocess.run([sys.executable, "-c", f"{limits}\nexec(open('program.py').read())"], cwd=tmp,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=timeout_s, env={"PATH": os.environ.get("PATH", ""), "HOME": tmp})
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def language_of(rec: dict) -> str:
    return rec.get("language") or "python"


def gap_kind(solution: str) -> str:
    """"multi_line" when the gap spans several lines (its final line break aside), else "single_line"."""
    return "multi_line" if "\n" in solution.rstrip("\r\n") else "single_line"


def evaluate(completer: Completer, records: list[dict], execute: bool = False, progress=None,
             with_completions: bool = False, by_language: bool = False) -> dict:
    """Complete every gap in process, through the same pipeline as the server."""

    def complete(rec: dict, text: str, offset: int) -> tuple[str, int, float]:
        doc = Document(f"eval://{rec['task_id']}", language_of(rec), text)
        result = completer.complete(doc, offset, use_recent=False)
        if result.suggestion is None:
            return "", offset, result.latency_ms
        return result.suggestion.text, result.suggestion.replace_end, result.latency_ms

    model = completer.backend.model_name
    return score(records, complete, execute, progress, model, with_completions, by_language)


def evaluate_lsp(records: list[dict], model: str | None = None, execute: bool = False, progress=None,
                 settings: dict | None = None, with_completions: bool = False, by_language: bool = False) -> dict:
    """Complete every gap through a real server process over stdio (`eval --lsp`): each task is opened
    as a document and asked for an inline completion at its gap, as an editor would. The scores must
    equal the in-process `evaluate`: the server adds transport, not different answers. Latency is
    the request's round trip."""
    import time

    from ..context.languages import profile
    from ..lsp.documents import TextDocument
    from .lsp_client import start_ready_server

    server = start_ready_server(model, settings)
    try:
        def complete(rec: dict, text: str, offset: int) -> tuple[str, int, float]:
            language = language_of(rec)
            extension = next(iter(profile(language).extensions), ".txt")
            uri = f"file:///eval/{rec['task_id'].replace('/', '_')}{extension}"
            doc = TextDocument(uri, language, 1, text)
            server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": language,
                                                                    "version": 1, "text": text}})
            at = doc.position_at(offset)
            start = time.perf_counter()
            answer = server.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": {"line": at.line, "character": at.character},
                "context": {"triggerKind": 1}})
            latency = (time.perf_counter() - start) * 1000
            server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
            items = (answer.get("result") or {}).get("items") or []
            if not items:
                return "", offset, latency
            item = items[0]
            end = item["range"]["end"] if item.get("range") else {"line": at.line, "character": at.character}
            return item["insertText"], doc.offset_at(Position(end["line"], end["character"])), latency

        return score(records, complete, execute, progress, model, with_completions, by_language)
    finally:
        server.close()


@dataclass
class Row:
    """One task's outcome."""
    language: str
    kind: str  # "single_line" or "multi_line"
    exact: bool
    similarity: float
    passed: bool | None  # None: not run
    latency_ms: float


def score(records: list[dict], complete, execute: bool, progress, model: str | None,
          with_completions: bool = False, by_language: bool = False) -> dict:
    """Scores of `complete(record, text, offset) -> (completion, replace_end, latency_ms)` on records.
    With with_completions, `completions` lists each task's completion, so two ways of completing can
    be compared task by task; with by_language, `by_language` holds {language: {gap kind: scores}}."""
    rows, exact, completions = [], 0, []
    for n, rec in enumerate(records, 1):
        text = rec["prompt"] + rec["suffix"]
        offset = len(rec["prompt"])
        completion, end, latency = complete(rec, text, offset)
        completions.append(completion)
        target = rec["canonical_solution"]
        passed = None
        if execute and rec.get("test") and rec.get("entry_point"):
            program = text[:offset] + completion + text[end:] + "\n" + rec["test"] + f"\ncheck({rec['entry_point']})\n"
            passed = run_program(program)
        rows.append(Row(language_of(rec), gap_kind(target), completion.rstrip() == target.rstrip(),
                        edit_similarity(completion.rstrip(), target.rstrip()), passed, latency))
        exact += rows[-1].exact
        if progress:
            progress(n, len(records), exact)
    result = {**summarize(rows, execute), "model": model, **({"completions": completions} if with_completions else {})}
    if by_language:
        result["by_language"] = split_by_language(rows, execute)
    return result


def summarize(rows: list[Row], execute: bool) -> dict:
    n = len(rows)
    latencies = [r.latency_ms for r in rows]
    return {
        "n": n,
        "exact_match": sum(r.exact for r in rows) / n if n else None,
        "edit_similarity": sum(r.similarity for r in rows) / n if n else None,
        "pass_at_1": sum(bool(r.passed) for r in rows) / n if execute and n else None,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
    }


def split_by_language(rows: list[Row], execute: bool) -> dict:
    """{language: {"single_line": scores, "multi_line": scores}}, languages in the order they first
    appear, a gap kind only where the language has such gaps."""
    out = {}
    for lang in dict.fromkeys(r.language for r in rows):
        kinds = {}
        for kind in ("single_line", "multi_line"):
            group = [r for r in rows if r.language == lang and r.kind == kind]
            if group:
                kinds[kind] = summarize(group, execute)
        out[lang] = kinds
    return out


def language_table(by_language: dict) -> str:
    """The per-language scores as a text table, one row per language and gap kind."""
    lines = ["language         gaps       n   exact edit_sim  pass@1  p50_ms  p95_ms"]
    for lang, kinds in by_language.items():
        for kind, s in kinds.items():
            passed = "-" if s["pass_at_1"] is None else f"{s['pass_at_1']:.1%}"  # "-": not --execute
            lines.append(f"{lang:16} {kind.split('_')[0]:7} {s['n']:4} {s['exact_match']:7.1%} "
                         f"{s['edit_similarity']:8.3f} {passed:>7} {s['p50_ms']:7.0f} {s['p95_ms']:7.0f}")
    return "\n".join(lines)
