"""Tiny checkpoints of other model families, written by transformers itself, and tiny tokenizer.json files."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CODE = [
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; i++) { total += values[i]; }\n",
    "class Cache:\n    def __init__(self, size):\n        self.size = size\n        self.items = {}\n",
    "fn main() { let x: Vec<u32> = (0..10).collect(); println!(\"{:?}\", x); }\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)  # état initial\n",
    "if err != nil {\n\treturn fmt.Errorf(\"open %s: %w\", path, err)\n}\n",
] * 3

SPECIALS = {
    "qwen2": ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
              "<|repo_name|>", "<|file_sep|>", "<|im_start|>", "<|im_end|>"],
    "deepseek": ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>",
                 "<｜fim▁end｜>", "<|EOT|>"],
    "starcoder": ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<file_sep>"],
    "codellama": ["<unk>", "<s>", "</s>", "▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"],
}
BOS = {"deepseek": "<｜begin▁of▁sentence｜>", "codellama": "<s>"}


def write_tokenizer(folder: Path, kind: str, vocab_size: int = 600) -> Path:
    """A BPE tokenizer.json trained on CODE: byte-level (Qwen, DeepSeek) or SentencePiece-style with
    byte fallback (CodeLlama), with the family's special tokens and BOS post-processor."""
    specials = SPECIALS[kind]
    if kind == "codellama":
        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
        alphabet = [f"<0x{b:02X}>" for b in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials[:3] + alphabet)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CODE, trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if kind in BOS:
        bos = BOS[kind]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(tok.to_str())  # byte pieces are ordinary vocabulary, as in CodeLlama's file
    data["added_tokens"] = [t for t in data["added_tokens"] if not t["content"].startswith("<0x")]
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    return folder / "tokenizer.json"


def write_hf_model(folder: Path, config, tokenizer_kind: str, seed: int = 0):
    """A random transformers model of `config`, saved with `save_pretrained` beside a tokenizer.json;
    returns the model (float32, eval)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).float().eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    write_tokenizer(folder, tokenizer_kind)
    return model
