"""`eval --lsp` completes the same gaps through a real server process: the answers must be the
in-process pipeline's, task by task (the server adds transport, not different completions)."""

from __future__ import annotations

from codestral_lsp.pipeline import Completer
from codestral_lsp.settings import parse_settings
from codestral_lsp.tools.evaluate import evaluate, evaluate_lsp
from engine import Engine
from engine.checkpoints.loading import embedded_model_dir

RECORDS = [
    {"task_id": "t/0", "prompt": "def add(a, b):\n    ", "suffix": "\n\n\nprint(add(1, 2))\n",
     "canonical_solution": "return a + b"},
    {"task_id": "t/1", "prompt": "import os\n\n\ndef home():\n    return os.", "suffix": "\n",
     "canonical_solution": "environ['HOME']"},
    {"task_id": "t/2", "prompt": "def mean(xs):\n    total = sum(xs)\n    ", "suffix": "\n    return total / n\n",
     "canonical_solution": "n = len(xs)"},
    {"task_id": "t/3", "prompt": "names = ['é', 'ü']  # ünïcode\nfor name in names:\n    ",
     "suffix": "\n", "canonical_solution": "print(name)"},
    {"task_id": "t/4", "language": "go", "prompt": "package main\n\nfunc add(a, b int) int { // sum\n",
     "suffix": "\n}\n\nfunc main() {\n\tprintln(add(1, 2))\n}\n", "canonical_solution": "\ts := a + b\n\treturn s"},
    {"task_id": "t/5", "language": "typescriptreact", "prompt": "export const Hello = ({ name }: Props) => (\n  <p>",
     "suffix": "</p>\n);\n", "canonical_solution": "Hello, {name}!"},
]
SETTINGS = {"completion": {"timeoutMs": 120_000, "maxTokens": 24}}  # no deadline: answers must not depend on speed


def test_eval_through_the_server_equals_eval_in_process():
    model = str(embedded_model_dir())
    settings, problems = parse_settings(SETTINGS)
    assert not problems
    local = evaluate(Completer(Engine.load(model), settings), RECORDS, with_completions=True)
    served = evaluate_lsp(RECORDS, model, settings=SETTINGS, with_completions=True)
    assert served["completions"] == local["completions"]
    assert (served["exact_match"], served["edit_similarity"]) == (local["exact_match"], local["edit_similarity"])
    assert "completions" not in evaluate(Completer(Engine.load(model), settings), RECORDS[:1])
