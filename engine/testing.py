"""Tiny random checkpoints for tests and benchmarks: no downloads, real file formats.

    python -m engine.testing DIR [--format mistral|hf] [--dim 64] [--layers 2] [--window N]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from .checkpoints.families import Family, family_of_args
from .checkpoints.loading import save_hf_checkpoint, save_mistral_checkpoint
from .checkpoints.tokenizer import Tokenizer, v3_tokenizer_path
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
    if args.tied_embeddings:  # one table, as a loaded checkpoint of such a family has (loading.load_model)
        model.output.weight = model.tok_embeddings.weight
    init_weights(model, seed)
    # Random RMSNorm gains, so a wrong norm computation cannot hide behind all-ones weights.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model.eval()


def preset_tokenizer(vocab_size: int = 32768) -> Tokenizer:
    """Codestral's tokenizer for a random model of `vocab_size` ids (a preset shaped like another
    family's model, whose own tokenizer is not at hand): ids past its 32,768 pieces decode to nothing,
    and a smaller vocabulary (DeepSeek-Coder's 32,256) keeps its first ids. For benchmarks: the
    token ids, not the text, are what they measure."""
    tokenizer = Tokenizer(v3_tokenizer_path())
    if vocab_size != tokenizer.vocab_size:
        tokenizer._bytes = (tokenizer._bytes + [b""] * vocab_size)[:vocab_size]
        tokenizer.vocab_size = vocab_size
    return tokenizer


def write_hf_checkpoint(model: Transformer, folder: str | Path, shards: int = 1, family: Family | None = None) -> Path:
    """Save in Hugging Face's layout of `family` (default: the first that holds the model's args,
    `family_of_args`): config.json, rows of wq/wk permuted for rotate-half RoPE, optionally sharded,
    and Codestral's SentencePiece tokenizer."""
    family = family or family_of_args(model.args)
    save_hf_checkpoint(model.state_dict(), model.args, folder, family, shards,
                       extra_config={"bos_token_id": 1, "eos_token_id": 2})
    shutil.copy(v3_tokenizer_path(), Path(folder) / "tokenizer.model")
    return Path(folder)


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
