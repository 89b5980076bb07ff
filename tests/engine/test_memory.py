"""What a loaded model keeps in memory: no PyTorch compiler machinery pulled in by loading, and the
PyTorch step's output-table helpers only while that step is the one that decodes."""

from __future__ import annotations

import subprocess
import sys

from engine import Engine


def test_loading_imports_no_compiler_machinery():
    # Default init on the meta device runs Python decompositions: ~800 modules, ~70 MB resident.
    code = ("import sys, torch\n"
            "from engine.checkpoints.loading import find_checkpoint, load_model\n"
            "before = set(sys.modules)\n"
            "load_model(find_checkpoint(None), torch.float32, 'cpu')\n"
            "print(len(set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) < 20, out.stdout


def test_output_tables_follow_the_step_that_decodes(monkeypatch):
    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "off")
    plain = Engine.load(None)
    assert plain.fused_status != "on"
    eng = Engine.load(None)
    monkeypatch.delenv("CODESTRAL_LSP_FUSED")
    if eng.use_fused_step(build=True) != "on":  # built once per machine (tests/engine/test_fused_step.py)
        return
    assert eng.model.greedy_screen is None and eng.model.output_row_major is None
    prompt = "def add(a, b):\n    return"
    assert eng.complete(prompt, max_tokens=6).tokens == plain.complete(prompt, max_tokens=6).tokens
