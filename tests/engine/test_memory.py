"""What a loaded model keeps in memory: no PyTorch compiler machinery pulled in by loading, and the
PyTorch step's output-table helpers only while that step is the one that decodes."""

from __future__ import annotations

import subprocess
import sys

import torch

from engine import Engine
from engine.fused import weights_as_values


def test_loading_imports_no_compiler_machinery():
    # Default init on the meta device runs Python decompositions: ~800 modules, ~70 MB resident.
    code = ("import sys, torch\n"
            "from engine.checkpoints.loading import find_checkpoint, load_model\n"
            "before = set(sys.modules)\n"
            "load_model(find_checkpoint(None), torch.float32, 'cpu')\n"
            "print(len(set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) < 20, out.stdout


PROMPT = ("def mean(values):\n    total = 0\n    for v in values:\n        total += v\n"
          "    return total / len(values)\n\n\ndef variance(values):\n    m = mean(values)\n    return")


def test_output_tables_follow_the_step_that_decodes(monkeypatch):
    """The fused step on: no PyTorch helpers, no float32 output table (the packed one gives every
    logit), the embedding table in bfloat16; completions cold and warm those of the PyTorch step."""
    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "off")
    plain = Engine.load(None)
    assert plain.fused_status != "on"
    assert plain.model.tok_embeddings.weight.dtype == torch.bfloat16  # the embedded model's values are bfloat16
    assert plain.model.output.weight.dtype == torch.float32 and not plain.model.output.weight.is_meta
    eng = Engine.load(None)
    monkeypatch.delenv("CODESTRAL_LSP_FUSED")
    if eng.use_fused_step(build=True) != "on":  # built once per machine (tests/engine/test_fused_step.py)
        return
    assert eng.model.greedy_screen is None and eng.model.output_row_major is None
    assert eng.model.output.weight.is_meta
    state, expected_state = weights_as_values(eng.model), plain.model.state_dict()  # what GGUF and transformers get
    assert state.keys() == expected_state.keys()
    assert all(torch.equal(state[name].float(), expected_state[name].float()) for name in state)
    assert eng.info()["weights_mb"] < plain.info()["weights_mb"] - 5  # the packed copies count, the table once
    short = "def add(a, b):\n    return"  # prefilled by the fused step alone
    assert eng.complete(short, max_tokens=6).tokens == plain.complete(short, max_tokens=6).tokens
    expected = plain.complete(PROMPT, max_tokens=16).tokens  # prefill: the PyTorch path, then the output table
    assert eng.complete(PROMPT, max_tokens=16).tokens == expected
    eng.complete(PROMPT[:-30], max_tokens=4, session="doc")
    assert eng.complete(PROMPT, max_tokens=16, session="doc").tokens == expected  # warm: a few tokens prefilled
    monkeypatch.setenv("CODESTRAL_LSP_FUSED", "off")
    assert "turned off" in eng.use_fused_step()  # the PyTorch step's table and helpers come back
    assert torch.equal(eng.model.output.weight, plain.model.output.weight)
