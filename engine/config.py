"""Model hyper-parameters: one dataclass, readers for both checkpoint formats, named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class ModelArgs:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_dim: int
    vocab_size: int = 32768
    norm_eps: float = 1e-5
    rope_theta: float = 1e6
    sliding_window: int | None = None  # None: full causal attention
    max_seq_len: int = 32768  # longest sequence the runtime will allocate a cache for
    # Beyond Mistral's architecture (engine/checkpoints/families.py sets them from a config.json):
    qkv_bias: bool = False  # biases on wq, wk, wv (Qwen2)
    tied_embeddings: bool = False  # the output table is the embedding table
    rope_scaling: dict | None = None  # {"type": "linear" | "llama3", "factor": ..., ...}; None: plain RoPE
    norm: str = "rms"  # "rms": RMSNorm; "layer": LayerNorm with a bias (StarCoder2)
    mlp: str = "swiglu"  # "swiglu": w2(silu(w1 x) * w3 x); "gelu": w2(gelu_tanh(w1 x)) (StarCoder2)
    dense_bias: bool = False  # biases on wo and the MLP's matrices (StarCoder2)
    n_experts: int = 0  # a sparse mixture of SwiGLU experts in every layer (Mixtral); 0: one dense MLP
    n_active_experts: int = 2  # experts each token is routed to

    def __post_init__(self) -> None:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")

    @classmethod
    def from_mistral_params(cls, params: dict) -> "ModelArgs":
        """Read Mistral's `params.json` (keys as in mistral-inference)."""
        window = params.get("sliding_window")
        return cls(
            dim=params["dim"],
            n_layers=params["n_layers"],
            n_heads=params["n_heads"],
            n_kv_heads=params.get("n_kv_heads", params["n_heads"]),
            head_dim=params.get("head_dim", params["dim"] // params["n_heads"]),
            hidden_dim=params["hidden_dim"],
            vocab_size=params["vocab_size"],
            norm_eps=params.get("norm_eps", 1e-5),
            rope_theta=params.get("rope_theta", 1e4),
            sliding_window=window if window else None,
            max_seq_len=params.get("max_seq_len", 32768),
            **{name: params[name] for name in FAMILY_FIELDS if name in params},  # written by to_mistral_params
        )

    @classmethod
    def from_hf_config(cls, config: dict) -> "ModelArgs":
        """Read Hugging Face's `config.json` for MistralForCausalLM."""
        heads = config["num_attention_heads"]
        window = config.get("sliding_window")
        return cls(
            dim=config["hidden_size"],
            n_layers=config["num_hidden_layers"],
            n_heads=heads,
            n_kv_heads=config.get("num_key_value_heads", heads),
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            hidden_dim=config["intermediate_size"],
            vocab_size=config["vocab_size"],
            norm_eps=config.get("rms_norm_eps", 1e-5),
            rope_theta=config.get("rope_theta", (config.get("rope_parameters") or {}).get("rope_theta", 1e4)),
            sliding_window=window if window else None,
            max_seq_len=config.get("max_position_embeddings", 32768),
        )

    def to_mistral_params(self) -> dict:
        params = asdict(self)
        for name in FAMILY_FIELDS:  # Mistral's params.json has no such keys: written only where set
            if params[name] == getattr(ModelArgs, name):
                del params[name]
        params["norm_eps"] = float(self.norm_eps)
        return params

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def n_params(self) -> int:
        attn = self.dim * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        mlp = 3 * self.dim * self.hidden_dim * max(1, self.n_experts) + self.dim * self.n_experts
        tables = (1 if self.tied_embeddings else 2) * self.vocab_size * self.dim
        return self.n_layers * (attn + mlp + 2 * self.dim) + tables + self.dim


FAMILY_FIELDS = ("qkv_bias", "tied_embeddings", "rope_scaling", "norm", "mlp", "dense_bias", "n_experts",
                 "n_active_experts")


PRESETS: dict[str, ModelArgs] = {
    # Codestral-22B v0.1, as published by Mistral AI.
    "codestral-22b": ModelArgs(dim=6144, n_layers=56, n_heads=48, n_kv_heads=8, head_dim=128,
                               hidden_dim=16384, rope_theta=1e6),
    # Mistral-7B v0.3: same tokenizer as Codestral, a natural speculative draft.
    "mistral-7b": ModelArgs(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128,
                            hidden_dim=14336, rope_theta=1e6),
    # The embedded default model trained by engine/training/train.py (see engine/models/*/MODEL_CARD.md).
    "embedded": ModelArgs(dim=256, n_layers=6, n_heads=4, n_kv_heads=2, head_dim=64,
                          hidden_dim=768, rope_theta=1e4, max_seq_len=2048),
    # Its speculative draft: a quarter of the compute per token or less.
    "embedded-draft": ModelArgs(dim=96, n_layers=2, n_heads=3, n_kv_heads=1, head_dim=32,
                                hidden_dim=256, rope_theta=1e4, max_seq_len=2048),
    # ~1B models of the other families (`bench engine --random-preset`, beside transformers' own class).
    # Qwen2.5-Coder-1.5B's config.json (Qwen2ForCausalLM): hidden_size 1536, 28 layers, 12 heads, 2 KV
    # heads, intermediate_size 8960, vocab_size 151936, rope_theta 1e6, rms_norm_eps 1e-6, tied
    # embeddings, max_position_embeddings 32768 (use_sliding_window false); 1.54B parameters.
    "qwen2.5-coder-1.5b": ModelArgs(dim=1536, n_layers=28, n_heads=12, n_kv_heads=2, head_dim=128,
                                    hidden_dim=8960, vocab_size=151936, norm_eps=1e-6, rope_theta=1e6,
                                    qkv_bias=True, tied_embeddings=True),
    # DeepSeek-Coder-1.3B-base's config.json (LlamaForCausalLM): hidden_size 2048, 24 layers, 16 heads and
    # 16 KV heads, intermediate_size 5504, vocab_size 32256, rope_theta 1e5, linear RoPE scaling by 4,
    # rms_norm_eps 1e-6, max_position_embeddings 16384, untied tables; 1.35B parameters.
    "deepseek-coder-1.3b": ModelArgs(dim=2048, n_layers=24, n_heads=16, n_kv_heads=16, head_dim=128,
                                     hidden_dim=5504, vocab_size=32256, norm_eps=1e-6, rope_theta=1e5,
                                     max_seq_len=16384, rope_scaling={"type": "linear", "factor": 4.0}),
    # Mixtral-8x7B's architecture (MixtralForCausalLM: 8 SwiGLU experts, 2 active, rope_theta 1e6, no
    # sliding window, Codestral's 32768 vocabulary) scaled to ~1.2B parameters, 0.39B active per token.
    "mixtral-8x-small": ModelArgs(dim=1024, n_layers=16, n_heads=16, n_kv_heads=8, head_dim=64,
                                  hidden_dim=2816, rope_theta=1e6, n_experts=8, n_active_experts=2),
    # Its dense twin: one SwiGLU MLP as wide as the two active experts, so the same parameters per token
    # (less the 8 x 1024 router): a decode step of the sparse model should cost what this one's does.
    "mixtral-8x-small-active": ModelArgs(dim=1024, n_layers=16, n_heads=16, n_kv_heads=8, head_dim=64,
                                         hidden_dim=2 * 2816, rope_theta=1e6),
}
