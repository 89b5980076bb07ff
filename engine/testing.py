"""Tiny random checkpoints for tests and benchmarks: no downloads, real file formats.

    python -m engine.testing DIR [--format mistral|hf] [--dim 64] [--layers 2] [--window N]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from .checkpoints.loading import save_mistral_checkpoint, to_hf_state
from .checkpoints.tokenizer import v3_tokenizer_path
from .config import ModelArgs
from .model import Transformer
from .training.train import init_weights


def tiny_args(dim: int = 64, n_layers: int = 2, n_heads: int = 4, n_kv_heads: int = 2,
              hidden_dim: int = 128, sliding_window: int | None = None, rope_theta: float = 1e4,
              max_seq_len: int = 2048) -> ModelArgs:
    return ModelArgs(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=dim // n_heads,
                     hidden_dim=hidden_dim, vocab_size=32768, rope_theta=rope_theta, sliding_window=sliding_window,
                     max_seq_len=max_seq_len)


def random_model(args: ModelArgs, seed: int = 0) -> Transformer:
    model = Transformer(args)
    init_weights(model, seed)
    # Random RMSNorm gains, so a wrong norm computation cannot hide behind all-ones weights.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model.eval()


def write_hf_checkpoint(model: Transformer, folder: str | Path, shards: int = 1) -> Path:
    """Save in Hugging Face's layout (rows of wq/wk permuted for rotate-half RoPE), optionally sharded."""
    from safetensors.torch import save_file

    a = model.args
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": a.dim,
        "num_hidden_layers": a.n_layers, "num_attention_heads": a.n_heads, "num_key_value_heads": a.n_kv_heads,
        "head_dim": a.head_dim, "intermediate_size": a.hidden_dim, "vocab_size": a.vocab_size,
        "rms_norm_eps": a.norm_eps, "rope_theta": a.rope_theta, "sliding_window": a.sliding_window,
        "max_position_embeddings": a.max_seq_len, "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = to_hf_state(model.state_dict(), a)
    names = sorted(state)
    if shards == 1:
        save_file(state, str(folder / "model.safetensors"))
    else:
        weight_map = {}
        for i in range(shards):
            part = names[i::shards]
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file({n: state[n] for n in part}, str(folder / fname))
            weight_map.update({n: fname for n in part})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    shutil.copy(v3_tokenizer_path(), folder / "tokenizer.model")
    return folder


def make_checkpoint(folder: str | Path, fmt: str = "mistral", seed: int = 0, **arg_overrides) -> Path:
    model = random_model(tiny_args(**arg_overrides), seed)
    if fmt == "hf":
        return write_hf_checkpoint(model, folder)
    return save_mistral_checkpoint(model, folder, v3_tokenizer_path(), dtype=torch.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--format", default="mistral", choices=["mistral", "hf"])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    make_checkpoint(a.folder, a.format, a.seed, dim=a.dim, n_layers=a.layers, sliding_window=a.window)
    print(a.folder)


if __name__ == "__main__":
    main()
