"""`codestral-lsp quantize`: our checkpoints written as GGUF files that llama.cpp's quantizer made and
both llama.cpp and `--model` load."""

from __future__ import annotations

import json

import pytest

from engine.testing import make_checkpoint

from test_cli import cli  # tests/e2e is on sys.path (rootdir import mode)

gguf = pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")


def test_quantize_writes_a_file_both_engines_load(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", dim=256, hidden_dim=256, n_layers=1)
    out = tmp_path / "model-q4_k_m.gguf"
    result = json.loads(cli("quantize", str(ckpt), str(out), "--type", "q4_k_m", "--json").stdout.splitlines()[-1])
    assert result == {"out": str(out), "type": "q4_k_m", "bytes": out.stat().st_size}
    types = {t.tensor_type.name for t in gguf.GGUFReader(str(out)).tensors if len(t.shape) == 2}
    assert {"Q4_K", "Q6_K"} <= types and "F32" not in types  # llama.cpp's Q4_K_M mix
    info = json.loads(cli("info", "--model", str(out), "--json").stdout)
    assert info["format"] == "gguf" and info["family"] == "llama" and info["fim"] is True
    assert info["weights_mb"] < out.stat().st_size / 2**20 * 1.1  # held as the file's blocks
    assert info["fused_step"] != "on"
    import llama_cpp  # llama.cpp reads the same file (its logits on such files: tests/engine/test_gguf_llama.py)

    assert llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False).n_vocab() == 32768
    assert not list(tmp_path.glob("codestral-quantize-*"))  # the float32 intermediate is gone


def test_quantize_refuses_what_it_cannot_write(tmp_path):
    import subprocess
    import sys

    from test_cli import ENV, ROOT

    result = subprocess.run([sys.executable, "-m", "codestral_lsp", "quantize", str(tmp_path / "none"),
                             str(tmp_path / "x.gguf")], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode != 0 and "cannot quantize" in result.stderr and "does not exist" in result.stderr
