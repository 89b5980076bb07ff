"""Model families: the one table of what differs between the checkpoints the engine loads.

A family says how a Hugging Face `config.json` becomes `ModelArgs`, how its tensor names map onto
ours, which tokenizer file it reads and which FIM template it prompts with. Loading
(`loading.py`), the model and the tokenizers look things up here and never name a family; adding
one is an entry of `FAMILIES` (plus a layer in `model.py` when it really has a new one).

FIM templates are a table of their own, `FIM_TEMPLATES`: a family may name one, otherwise the first
whose special tokens the tokenizer holds is used (DeepSeek-Coder and CodeLlama are both Llama).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from ..config import ModelArgs

# Hugging Face's module names of one decoder layer -> ours; shared by every Llama-like family.
LLAMA_LAYER_NAMES = {
    "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk", "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo", "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3", "input_layernorm": "attention_norm", "post_attention_layernorm": "ffn_norm",
}
LLAMA_NAMES = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}


@dataclass(frozen=True)
class FimTemplate:
    """A FIM prompt: [start ids] prefix-token prefix suffix-token suffix middle-token (PSM order).
    The prefix is encoded as the start of a text, the suffix as text that continues other text.
    `stops`: tokens that end the middle, where the tokenizer has them (besides its EOS)."""
    name: str
    prefix: str
    suffix: str
    middle: str
    stops: tuple[str, ...] = ()


FIM_TEMPLATES = (
    FimTemplate("qwen2.5-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                ("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|fim_prefix|>",
                 "<|fim_suffix|>", "<|fim_middle|>", "<|im_start|>", "<|im_end|>")),
    FimTemplate("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>",
                ("<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>")),
    FimTemplate("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
                ("<|endoftext|>", "<file_sep>", "<fim_pad>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>")),
    FimTemplate("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", ("▁<EOT>", "</s>")),
)


def fim_template(tokens: set[str], name: str | None = None) -> FimTemplate | None:
    """The template called `name`, else the first whose three tokens are all in `tokens`; or None."""
    for t in FIM_TEMPLATES:
        if t.name == name or name is None and {t.prefix, t.suffix, t.middle} <= tokens:
            return t
    return None


# -- config.json -> ModelArgs ----------------------------------------------------------------------

def rope_scaling(config: dict) -> dict | None:
    """`rope_scaling` (transformers 4) or `rope_parameters` (5) as {"type", "factor", ...}; None for plain RoPE."""
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind in ("default", None):
        return None
    if kind == "linear":
        return {"type": "linear", "factor": float(rope["factor"])}
    if kind == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        return {"type": "llama3", **{k: float(rope[k]) for k in keys}}
    if kind == "yarn":
        keys = ("attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "truncate")
        original = rope.get("original_max_position_embeddings") or config.get("max_position_embeddings")
        return {"type": "yarn", "factor": float(rope["factor"]), "original_max_position_embeddings": int(original),
                **{k: rope[k] for k in keys if rope.get(k) is not None}}
    raise ValueError(f"rope scaling {kind!r} is not supported (linear, llama3 and yarn are)")


def _silu(config: dict) -> dict:
    if config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported (silu is)")
    return config


def _llama_args(config: dict, **fields) -> ModelArgs:
    if config.get("mlp_bias") or config.get("attention_bias") and not fields.get("qkv_bias"):
        raise ValueError("biases on the attention output or the MLP are not supported")
    return dataclasses.replace(ModelArgs.from_hf_config(_silu(config)), sliding_window=None,
                               rope_scaling=rope_scaling(config),
                               tied_embeddings=bool(config.get("tie_word_embeddings", False)), **fields)


def llama_args(config: dict) -> ModelArgs:
    """LlamaForCausalLM (CodeLlama, DeepSeek-Coder): Mistral's layers, no sliding window, RoPE scaling."""
    return _llama_args(config)


def qwen2_args(config: dict) -> ModelArgs:
    """Qwen2ForCausalLM (Qwen2.5-Coder): biases on q, k and v; tied embeddings on the small sizes."""
    if config.get("use_sliding_window"):
        raise ValueError("Qwen2's use_sliding_window (on some layers only) is not supported")
    return _llama_args(config, qkv_bias=True)


def mixtral_args(config: dict) -> ModelArgs:
    """MixtralForCausalLM: Mistral's attention, a sparse mixture of SwiGLU experts as the MLP."""
    return dataclasses.replace(ModelArgs.from_hf_config(_silu(config)), rope_scaling=rope_scaling(config),
                               n_experts=config["num_local_experts"],
                               n_active_experts=config.get("num_experts_per_tok", 2))


def starcoder2_args(config: dict) -> ModelArgs:
    """Starcoder2ForCausalLM: LayerNorm with biases, a GELU MLP, biases everywhere (use_bias), a sliding window."""
    if config.get("hidden_act", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported (gelu_pytorch_tanh is)")
    bias = bool(config.get("use_bias", True))
    return dataclasses.replace(ModelArgs.from_hf_config(config), norm="layer", mlp="gelu", qkv_bias=bias,
                               dense_bias=bias, norm_eps=config.get("norm_epsilon", 1e-5),
                               rope_scaling=rope_scaling(config),
                               tied_embeddings=bool(config.get("tie_word_embeddings", True)))


# -- ModelArgs -> config.json (the inverse of the readers: `Family.read_args(family.write_config(args)) == args`) --

def _rope_scaling_config(scaling: dict | None) -> dict:
    """`rope_scaling` as a config.json holds it (Hugging Face's key names); {} for plain RoPE."""
    if scaling is None:
        return {}
    return {"rope_scaling": {"rope_type" if k == "type" else k: v for k, v in scaling.items()}}


def mistral_config(args: ModelArgs, architecture: str = "MistralForCausalLM", model_type: str = "mistral") -> dict:
    """MistralForCausalLM's config.json of `args`; the other writers start from it."""
    a = args
    return {"architectures": [architecture], "model_type": model_type, "hidden_size": a.dim,
            "num_hidden_layers": a.n_layers, "num_attention_heads": a.n_heads, "num_key_value_heads": a.n_kv_heads,
            "head_dim": a.head_dim, "intermediate_size": a.hidden_dim, "vocab_size": a.vocab_size,
            "rms_norm_eps": a.norm_eps, "rope_theta": a.rope_theta, "sliding_window": a.sliding_window,
            "max_position_embeddings": a.max_seq_len, "hidden_act": "silu", "tie_word_embeddings": a.tied_embeddings,
            **_rope_scaling_config(a.rope_scaling)}


def llama_config(args: ModelArgs) -> dict:
    config = mistral_config(args, "LlamaForCausalLM", "llama")
    del config["sliding_window"]
    return {**config, "attention_bias": False, "mlp_bias": False}


def qwen2_config(args: ModelArgs) -> dict:
    config = mistral_config(args, "Qwen2ForCausalLM", "qwen2")
    return {**config, "sliding_window": None, "use_sliding_window": False}


def mixtral_config(args: ModelArgs) -> dict:
    return {**mistral_config(args, "MixtralForCausalLM", "mixtral"), "num_local_experts": args.n_experts,
            "num_experts_per_tok": args.n_active_experts}


def starcoder2_config(args: ModelArgs) -> dict:
    config = mistral_config(args, "Starcoder2ForCausalLM", "starcoder2")
    del config["rms_norm_eps"]
    return {**config, "hidden_act": "gelu_pytorch_tanh", "norm_epsilon": args.norm_eps, "use_bias": args.dense_bias}


STARCODER2_NAMES = {**LLAMA_NAMES, "model.norm.bias": "norm.bias"}
STARCODER2_LAYER_NAMES = {**LLAMA_LAYER_NAMES, "mlp.c_fc": "feed_forward.w1", "mlp.c_proj": "feed_forward.w2"}
MIXTRAL_LAYER_NAMES = {**LLAMA_LAYER_NAMES, "block_sparse_moe": "feed_forward"}  # .gate, .experts.E.w1 ...

# llama.cpp's tensor names (GGUF files) -> ours: the whole-model ones, and one layer's modules (blk.N.<module>).
GGUF_NAMES = {"token_embd": "tok_embeddings", "output_norm": "norm", "output": "output"}
GGUF_LAYER_NAMES = {
    "attn_q": "attention.wq", "attn_k": "attention.wk", "attn_v": "attention.wv", "attn_output": "attention.wo",
    "ffn_gate": "feed_forward.w1", "ffn_up": "feed_forward.w3", "ffn_down": "feed_forward.w2",
    "attn_norm": "attention_norm", "ffn_norm": "ffn_norm",
}
STARCODER2_GGUF_LAYER_NAMES = {**GGUF_LAYER_NAMES, "ffn_up": "feed_forward.w1"}  # c_fc; ffn_down is c_proj (w2)


# -- the table ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    name: str
    architectures: tuple[str, ...]  # config.json "architectures" (or "model_type") that select it
    read_args: Callable[[dict], ModelArgs]  # config.json -> ModelArgs; ValueError for what it cannot run
    tokenizer_files: tuple[str, ...]  # the first that exists is read: *.json by `tokenizers`, else SentencePiece
    fim: str | None = None  # a FIM_TEMPLATES name; None: chosen from the tokenizer's special tokens
    names: dict = dataclasses.field(default_factory=lambda: LLAMA_NAMES)  # HF tensor names -> ours
    layer_names: dict = dataclasses.field(default_factory=lambda: LLAMA_LAYER_NAMES)  # per-layer modules -> ours
    rotate_half: bool = True  # q/k rows stored permuted for rotate-half RoPE (undone on load)
    # GGUF files (engine/checkpoints/gguf_reader.py): the `general.architecture` that selects this family,
    # what its files imply beyond the common hyper-parameters, and whether llama.cpp keeps the q/k rows
    # in the rotate-half layout (its NEOX RoPE: qwen2, starcoder2) rather than the interleaved one (llama).
    gguf_arch: str | None = None
    gguf_args: dict = dataclasses.field(default_factory=dict)
    gguf_rotate_half: bool = False
    gguf_layer_names: dict = dataclasses.field(default_factory=lambda: GGUF_LAYER_NAMES)  # blk.N.<module> -> ours
    # ModelArgs -> its config.json, the inverse of read_args (`loading.save_hf_checkpoint`: transformers'
    # copy of a model in `bench engine`, and tests); the architecture it names is transformers' class.
    write_config: Callable[[ModelArgs], dict] = mistral_config

    def reads_back(self, args: ModelArgs) -> bool:
        """Whether this family's config.json of `args` reads back as `args` (it can hold that model)."""
        try:
            return self.read_args(self.write_config(args)) == args
        except (ValueError, KeyError):
            return False


FAMILIES = (
    # Codestral, Mistral-7B, the embedded model: SentencePiece and Codestral's FIM (tokenizer.py).
    Family("mistral", ("MistralForCausalLM", "mistral"), ModelArgs.from_hf_config, ("tokenizer.model", "tokenizer.model.v3")),
    Family("llama", ("LlamaForCausalLM", "llama"), llama_args, ("tokenizer.json",), gguf_arch="llama",
           write_config=llama_config),
    Family("qwen2", ("Qwen2ForCausalLM", "qwen2"), qwen2_args, ("tokenizer.json",), gguf_arch="qwen2",
           gguf_args={"qkv_bias": True}, gguf_rotate_half=True, write_config=qwen2_config),
    Family("mixtral", ("MixtralForCausalLM", "mixtral"), mixtral_args, ("tokenizer.model", "tokenizer.json"),
           layer_names=MIXTRAL_LAYER_NAMES, write_config=mixtral_config),
    Family("starcoder2", ("Starcoder2ForCausalLM", "starcoder2"), starcoder2_args, ("tokenizer.json",),
           names=STARCODER2_NAMES, layer_names=STARCODER2_LAYER_NAMES, gguf_arch="starcoder2",
           gguf_args={"norm": "layer", "mlp": "gelu", "qkv_bias": True, "dense_bias": True},
           gguf_rotate_half=True, gguf_layer_names=STARCODER2_GGUF_LAYER_NAMES, write_config=starcoder2_config),
)
MISTRAL = FAMILIES[0]  # Mistral's own folder format (params.json) is always this family


def family_of(config: dict) -> Family:
    """The family of a config.json, by its architectures, else its model_type; ValueError if none."""
    keys = list(config.get("architectures") or []) + [config.get("model_type")]
    if keys == [None]:
        return MISTRAL  # a config.json that names nothing loads as it always has
    for key in keys:
        for family in FAMILIES:
            if key in family.architectures:
                return family
    known = ", ".join(f.architectures[0] for f in FAMILIES)
    raise ValueError(f"architecture {keys[0]!r} is not supported (supported: {known})")


def family_of_args(args: ModelArgs, prefer: Family | None = None) -> Family:
    """`prefer` (a checkpoint's family) where its config.json holds `args`, else the first family
    whose does (a random preset's, say): Mistral's for Mistral's layers, Llama for RoPE scaling or
    tied tables, Qwen2 for q/k/v biases, ...; ValueError if none does."""
    for family in ((prefer,) if prefer else ()) + FAMILIES:
        if family.reads_back(args):
            return family
    raise ValueError(f"no model family holds these hyper-parameters: {args}")


def gguf_family(arch: str) -> Family:
    """The family of a GGUF file's `general.architecture`; ValueError if none reads it."""
    for family in FAMILIES:
        if family.gguf_arch == arch:
            return family
    known = ", ".join(f.gguf_arch for f in FAMILIES if f.gguf_arch)
    raise ValueError(f"GGUF architecture {arch!r} is not supported (supported: {known})")
