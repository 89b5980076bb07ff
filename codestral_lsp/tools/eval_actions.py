"""`codestral-lsp eval --actions` and `--make-actions`: score the code actions' FIM edits.

Tasks are JSON lines of two kinds:
  {"task_id", "kind": "fix", "language", "text", "line", "message", "original"}: `text` has one corrupted
  statement on 0-based `line` with a linter's `message`; a fix scores exact when its statement equals
  `original` (surrounding whitespace ignored).
  {"task_id", "kind": "stub", "language", "text", "name", "original"}: function `name`'s body is `pass`;
  the filled body scores by edit similarity against `original`.

Each task goes through the code the server runs: the listing functions find the action (fix_actions,
stub_actions), then `work_for` makes its edit on this thread. `make_tasks` builds tasks from the held-out
split of the Python sources the embedded model trains on (engine/training/corpus.py), never its train files.
"""

from __future__ import annotations

import ast
import builtins
import random
import time

from lsprotocol import types

from ..lsp.documents import TextDocument
from ..lsp.features.code_actions import fix_actions, stub_actions, work_for
from ..pipeline import Document
from .evaluate import edit_similarity, percentile


def parses(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


def action_for(completer, task: dict, uri: str | None = None) -> tuple[TextDocument, types.CodeAction | None]:
    """The task's document and the action the server lists for it (None: none listed)."""
    uri = uri or f"eval://{task['task_id']}.py"
    doc = TextDocument(uri, task.get("language", "python"), 1, task["text"])
    tree = completer.parses.get(doc.uri, doc.version, doc.text, doc.language_id)
    if task["kind"] == "fix":
        line = task["line"]
        content = doc.text[doc.line_starts[line]:].split("\n", 1)[0]
        indent = len(content) - len(content.lstrip())  # a linter's range covers code, not indentation
        rng = types.Range(types.Position(line, indent), types.Position(line, len(content.rstrip())))
        actions = fix_actions(doc, tree, [types.Diagnostic(rng, task["message"])], "utf-16")
    else:
        row = doc.text.count("\n", 0, doc.text.find(f"def {task['name']}("))
        actions = [a for a in stub_actions(doc, tree, row, row) if a.data["kind"] == "body"]
    return doc, (actions[0] if actions else None)


def resolve(completer, doc: TextDocument, action: types.CodeAction | None) -> tuple[str | None, str | None]:
    """(new statement or body, whole new document), or (None, None) where no edit came back."""
    if action is None:
        return None, None
    edit = work_for(completer, doc, action.data, lambda uri: None)(lambda: False)
    if not isinstance(edit, tuple):
        return None, None
    _, start, end, new, _ = edit
    return new, doc.text[:start] + new + doc.text[end:]


def run_task(completer, task: dict) -> tuple[str | None, str | None]:
    return resolve(completer, *action_for(completer, task))


def typed_then_fixed(completer, task: dict) -> tuple[float, str | None, list[dict]]:
    """(milliseconds, new statement, the stats of its generation) of a quick fix resolved the way it
    happens in an editor: the user has just typed the statement, so the document's KV cache holds the
    inline completion asked at its end, and the fix's prompt reuses it (`fim_edits.rewrite_prompt`)."""
    doc, action = action_for(completer, task, f"eval://{task['task_id']}-typed.py")
    if action is not None:
        completer.complete(Document(doc.uri, doc.language_id, doc.text, doc.version), action.data["end"],
                           use_recent=False)
    stats, fill = [], completer.fill
    completer.fill = lambda *args, **options: (answer := fill(*args, **options), stats.append(answer.stats))[0]
    try:
        started = time.perf_counter()
        new, _ = resolve(completer, doc, action)
        return (time.perf_counter() - started) * 1000, new, stats
    finally:
        del completer.fill  # the class's method again


def evaluate_actions(completer, tasks: list[dict], progress=None) -> dict:
    """Scores and latencies; the quick fixes are resolved twice, from a cold cache (`fix_p50_ms`) and
    after an inline completion at the statement (`fix_typed_p50_ms`, whose edits must be the same:
    `fix_typed_same`)."""
    fixes = exact = fix_parse = stubs = stub_parse = same = comments = 0
    similarity, latencies, by_kind, typed_stats = 0.0, [], {"fix": [], "stub": [], "typed": []}, []
    for n, task in enumerate(tasks, 1):
        started = time.perf_counter()
        new, whole = run_task(completer, task)
        latencies.append((time.perf_counter() - started) * 1000)
        by_kind[task["kind"]].append(latencies[-1])
        if task["kind"] == "fix":
            ms, typed, stats = typed_then_fixed(completer, task)
            by_kind["typed"].append(ms)
            typed_stats += stats
            same += typed == new
        ok = whole is not None and parses(whole)
        if task["kind"] == "fix":
            fixes += 1
            exact += new is not None and new.strip() == task["original"].strip()
            fix_parse += ok
            comments += new is not None and all(line.strip().startswith("#") for line in new.strip().splitlines())
        else:
            stubs += 1
            similarity += edit_similarity((new or "").strip(), task["original"].strip())
            stub_parse += ok
        if progress:
            progress(n, len(tasks))
    return {
        "n_fix": fixes, "fix_exact": exact / fixes if fixes else None,
        "fix_parses": fix_parse / fixes if fixes else None,
        "fix_comment_only": comments / fixes if fixes else None,  # edits that put a comment in its place
        "n_stub": stubs, "stub_edit_similarity": similarity / stubs if stubs else None,
        "stub_parses": stub_parse / stubs if stubs else None,
        "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
        "fix_p50_ms": percentile(by_kind["fix"], 50), "fix_p95_ms": percentile(by_kind["fix"], 95),
        "fix_typed_p50_ms": percentile(by_kind["typed"], 50), "fix_typed_p95_ms": percentile(by_kind["typed"], 95),
        "fix_typed_same": same / fixes if fixes else None, **token_means(typed_stats),
        "stub_p50_ms": percentile(by_kind["stub"], 50), "stub_p95_ms": percentile(by_kind["stub"], 95),
        "model": completer.backend.model_name,
    }


def token_means(stats: list[dict]) -> dict:
    """What the typed fixes' generations cost, in tokens (what a machine's speed turns into time)."""
    def mean(key):
        return sum(key(s) for s in stats) / len(stats) if stats else None
    return {"fix_typed_prefilled_tokens": mean(lambda s: s.get("prompt_tokens", 0) - s.get("reused_tokens", 0)),
            "fix_typed_generated_tokens": mean(lambda s: s.get("generated_tokens", 0)),
            "fix_typed_ms_per_token": (sum(s.get("decode_ms", 0) for s in stats)
                                       / max(1, sum(s.get("generated_tokens", 0) for s in stats))) if stats else None}


# -- building tasks ------------------------------------------------------------------------------


def heldout_python_files() -> list[str]:
    from engine.training.corpus import Corpus, gather_sources

    corpus = Corpus(gather_sources())
    return sorted(corpus.pools["python"].heldout) if "python" in corpus.pools else []


def _names(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
    return out


def misspell(name: str, taken: set[str], rng: random.Random) -> str | None:
    for _ in range(8):
        i = rng.randrange(1, len(name))
        new = name[:i - 1] + name[i] + name[i - 1] + name[i + 1:] if rng.random() < 0.5 else name[:i] + name[i + 1:]
        if new != name and new.isidentifier() and new not in taken:
            return new
    return None


def corruptions(text: str, tree: ast.Module, rng: random.Random) -> list[tuple[int, str, str, str]]:
    """(0-based line, corrupted line, message, original line) for one-line statements inside functions."""
    lines = text.split("\n")
    taken = _names(tree)
    arity = {f.name: len(f.args.args) for f in tree.body if isinstance(f, ast.FunctionDef)
             and not f.args.defaults and not f.args.vararg and not f.args.kwonlyargs and f.args.args}
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for stmt in ast.walk(fn):
            if not isinstance(stmt, ast.stmt) or stmt is fn or stmt.lineno != stmt.end_lineno:
                continue
            row = stmt.lineno - 1
            line = lines[row]
            if not line.isascii() or len(line) > 100:
                continue
            if isinstance(stmt, ast.Return) and stmt.value is not None:
                returns = [r for r in ast.walk(fn) if isinstance(r, ast.Return) and r.value is not None]
                if len(returns) == 1:  # without it the function returns no value at all
                    out.append((row, line[:stmt.col_offset] + line[stmt.value.col_offset:],
                                "Missing return statement", line))
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and len(node.id) >= 4 \
                        and node.id in taken and not hasattr(builtins, node.id):
                    new = misspell(node.id, taken, rng)
                    if new:
                        out.append((row, line[:node.col_offset] + new + line[node.end_col_offset:],
                                    f"undefined name '{new}'", line))
                    break
            for node in ast.walk(stmt):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in arity \
                        and len(node.args) == arity[node.func.id] >= 2 and not node.keywords \
                        and node.end_lineno == stmt.lineno:
                    prev, last = node.args[-2], node.args[-1]
                    out.append((row, line[:prev.end_col_offset] + line[last.end_col_offset:],
                                f"{node.func.id}() missing 1 required positional argument", line))
                    break
    return out


def stubs_of(text: str, tree: ast.Module) -> list[tuple[str, str, str]]:
    """(function name, text with its body replaced by `pass`, the body) for functions of 2-15 body lines."""
    lines = text.split("\n")
    out, seen = [], set()
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.name in seen:
            continue
        body = fn.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        if not body or body[0].lineno == fn.lineno:
            continue
        if sum(1 for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
               and f.name == fn.name) > 1:
            continue
        first, last = body[0].lineno - 1, body[-1].end_lineno
        if not 2 <= last - first <= 15 or not lines[first][: body[0].col_offset].isspace():
            continue
        original = "\n".join(lines[first:last])
        indent = lines[first][: body[0].col_offset]
        stubbed = "\n".join(lines[:first] + [indent + "pass"] + lines[last:])
        if parses(stubbed):
            seen.add(fn.name)
            out.append((fn.name, stubbed, original))
    return out


def make_tasks(n: int = 100, seed: int = 0, files: list[str] | None = None) -> list[dict]:
    """n tasks, half quick fixes and half stubs, at most one of each kind per file."""
    rng = random.Random(seed)
    files = list(heldout_python_files() if files is None else files)
    rng.shuffle(files)
    fixes, stubs = [], []
    for path in files:
        if len(fixes) >= n // 2 and len(stubs) >= n - n // 2:
            break
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            tree = ast.parse(text)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        if len(text) > 200_000:
            continue
        found = corruptions(text, tree, rng) if len(fixes) < n // 2 else []
        if found:
            row, bad, message, original = rng.choice(found)
            lines = text.split("\n")
            lines[row] = bad
            fixes.append({"task_id": f"fix/{len(fixes)}", "kind": "fix", "language": "python",
                          "text": "\n".join(lines), "line": row, "message": message, "original": original.strip()})
        found = stubs_of(text, tree) if len(stubs) < n - n // 2 else []
        if found:
            name, stubbed, original = rng.choice(found)
            stubs.append({"task_id": f"stub/{len(stubs)}", "kind": "stub", "language": "python",
                          "text": stubbed, "name": name, "original": original})
    return fixes + stubs


def time_listing(completer, text: str, requests: int = 50, seed: int = 0) -> dict:
    """Milliseconds to list the code actions (`list_actions`, what the server runs for
    textDocument/codeAction) at `requests` random ranges of a Python document, each with a diagnostic
    on its first line; the document's tree is parsed once before, as the server has it by then."""
    from ..lsp.features.code_actions import list_actions

    rng = random.Random(seed)
    doc = TextDocument("eval://listing.py", "python", 1, text)
    started = time.perf_counter()
    completer.parses.get(doc.uri, doc.version, doc.text, doc.language_id)
    first_parse = (time.perf_counter() - started) * 1000
    last_line = len(doc.line_starts) - 1
    latencies, counts = [], []
    for _ in range(requests):
        a = rng.randrange(last_line)
        b = min(last_line, a + rng.randrange(0, 20))
        width = len(doc.text[doc.line_starts[b]:].split("\n", 1)[0])
        rng_ = types.Range(types.Position(a, 0), types.Position(b, width))
        params = types.CodeActionParams(types.TextDocumentIdentifier(doc.uri), rng_, types.CodeActionContext(
            diagnostics=[types.Diagnostic(types.Range(types.Position(a, 0), types.Position(a, 1)), "undefined name")]))
        started = time.perf_counter()
        counts.append(len(list_actions(completer, doc, params, "utf-16")))
        latencies.append((time.perf_counter() - started) * 1000)
    return {"lines": last_line + 1, "requests": requests, "first_parse_ms": first_parse,
            "list_p50_ms": percentile(latencies, 50), "list_p95_ms": percentile(latencies, 95),
            "mean_actions": sum(counts) / len(counts)}
