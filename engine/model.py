"""The Mistral architecture: RMSNorm (fp32), interleaved RoPE, grouped-query attention, SwiGLU;
and the few layers its relatives swap in, chosen from `ModelArgs` when the model is built
(engine/checkpoints/families.py): q/k/v and dense biases, RoPE scaling, LayerNorm, a GELU MLP, a
sparse mixture of experts.

Parameter names follow Mistral's own checkpoints (`tok_embeddings`, `layers.N.attention.wq`, ...),
so a `consolidated.safetensors` loads without renaming. Rotary embeddings rotate interleaved pairs
(x0, x1), (x2, x3), ... as mistral-inference does; Hugging Face checkpoints are permuted back on load.

Attention reads keys and values either from the current call only (no cache: training, `Engine.logits`)
or from a `KVCache`, whose `attention_mask` says which cached slots each query may see.

Generation runs tokens through `Transformer.run(tokens, cache, want)`, which reserves their positions
in the cache and picks one of three ways through the same arithmetic: `forward` (any batch, any
cache: prefill, ring caches, training), the lean `step_hidden` (up to STEP_ROWS tokens on a linear
cache: decode steps and speculative verifications), which skips the general path's bookkeeping (for
one token it costs more than a small model's matrix products), or the fused C++ step (engine/fused.py).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelArgs
from .kv_cache import KVCache
from .screened_argmax import ScreenedArgmax, screening_wins

STEP_ROWS = 16  # most tokens `run` sends down a step path (lean or fused; the C++ kMaxRows): a verification of 15 drafts


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x * rsqrt(mean(x^2) + eps) * weight, computed in float32 (one fused call: 13 norms a decode step)."""
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).type_as(x)


class LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) * rsqrt(var + eps) * weight + bias, computed in float32."""
        return F.layer_norm(x.float(), (x.shape[-1],), self.weight.float(), self.bias.float(), self.eps).type_as(x)


NORMS = {"rms": RMSNorm, "layer": LayerNorm}  # ModelArgs.norm


def rope_table(head_dim: int, length: int, theta: float, device=None, scaling: dict | None = None) -> torch.Tensor:
    """The rotation of each pair at positions 0..length-1 as unit complex numbers: [length, head_dim // 2]."""
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    magnitude = 1.0
    if scaling is not None and scaling["type"] == "yarn":
        freqs, magnitude = yarn_frequencies(freqs, scaling, head_dim, theta)
    elif scaling is not None:
        freqs = scaled_frequencies(freqs, scaling)
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * freqs[None, :]  # [T, D/2]
    return torch.polar(torch.full_like(angles, magnitude), angles)


def yarn_frequencies(freqs: torch.Tensor, scaling: dict, head_dim: int, theta: float) -> tuple[torch.Tensor, float]:
    """YaRN (Qwen2.5-Coder's long contexts): pairs that turn more than beta_fast times within the original
    context keep their frequency, pairs that turn fewer than beta_slow times are interpolated (divided
    by `factor`), a linear ramp between; and q and k are both scaled by the attention factor
    (0.1 ln(factor) + 1 unless given), so the logits grow by its square. Pair i turns r times in L
    positions where 2 pi theta^(2i/D) = L / r, i.e. i = D ln(L / (2 pi r)) / (2 ln theta).

    e.g. D = 128, theta = 1e6, L = 32768, factor 4: i(32) = 23.6 and i(1) = 39.6, so pairs 0-23 keep
    their frequency, pairs 40-63 are divided by 4, pair 31 gets freq * (9/17 + 8/17 / 4), and the factor is
    0.1 ln 4 + 1 = 1.1386."""
    factor, original = scaling["factor"], scaling["original_max_position_embeddings"]

    def pair_turning(rotations: float) -> float:
        return head_dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = pair_turning(scaling.get("beta_fast") or 32), pair_turning(scaling.get("beta_slow") or 1)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    ramp = ((torch.arange(freqs.numel(), device=freqs.device, dtype=torch.float32) - low)
            / (max(high - low, 0.001))).clamp(0, 1)  # 0: kept, 1: interpolated
    return freqs * (1 - ramp) + freqs / factor * ramp, yarn_attention_factor(scaling)


def yarn_attention_factor(scaling: dict) -> float:
    if scaling.get("attention_factor") is not None:
        return float(scaling["attention_factor"])

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    factor, m, m_all = scaling["factor"], scaling.get("mscale"), scaling.get("mscale_all_dim")
    return mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)


def scaled_frequencies(freqs: torch.Tensor, scaling: dict) -> torch.Tensor:
    """RoPE scaling for contexts longer than pre-training's ([D/2] -> [D/2]). "linear": every frequency
    divided by `factor` (positions interpolated). "llama3" (Llama 3.1): wavelengths above
    original / low_freq_factor divided by `factor`, below original / high_freq_factor kept, and
    between them a blend whose weight rises linearly in original / wavelength."""
    factor = scaling["factor"]
    if scaling["type"] == "linear":
        return freqs / factor
    original, low, high = scaling["original_max_position_embeddings"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    wavelength = 2 * torch.pi / freqs
    smooth = ((original / wavelength - low) / (high - low)).clamp(0, 1)  # 0: long wavelengths, 1: short
    return (1 - smooth) * freqs / factor + smooth * freqs


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1), (x2, x3), ... read as complex numbers x0 + i x1.
    x: [B, T, H, D]; rotation: [T, D/2] complex64."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # [B, T, H, D/2]
    return torch.view_as_real(pairs * rotation[None, :, None, :]).flatten(-2).type_as(x)


def rotate(pairs: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """`apply_rope` on pairs [..., D/2, 2] with a rotation that broadcasts to [..., D/2] -> [..., D]."""
    return torch.view_as_real(torch.view_as_complex(pairs.float()) * rotation).flatten(-2).type_as(pairs)


def causal_mask(positions: torch.Tensor, window: int | None) -> torch.Tensor | None:
    """Mask for a cache-less call over consecutive positions: [T, T] bool, or None for plain causal."""
    if window is None or window >= positions.numel():
        return None
    q, k = positions[:, None], positions[None, :]
    return (k <= q) & (q - k < window)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.args, self.layer_id = args, layer_id
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=args.qkv_bias)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=args.qkv_bias)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=args.qkv_bias)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=args.dense_bias)
        self.wqkv: torch.Tensor | None = None  # [(H + 2 H_kv) D, dim]: wq, wk, wv as one (`fuse_step_products`)

    def forward(self, x, rotation, mask, cache: KVCache | None, slots: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, rotation), apply_rope(k, rotation)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
        if cache is not None:
            k, v = cache.update(self.layer_id, slots, k, v)  # [B, Hkv, S_used, D]
            k, v = k.to(q.dtype), v.to(q.dtype)  # a GGUF model's float16 cache: widened exactly; no-ops otherwise
        # Query head h reads KV head h // (n_heads / n_kv_heads); enable_gqa does that without copying
        # the keys and values once per query head.
        gqa = self.n_heads != self.n_kv_heads
        if mask is None and cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))  # [B, T, dim]


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.hidden_dim, bias=False)
        self.w2 = nn.Linear(args.hidden_dim, args.dim, bias=False)
        self.w3 = nn.Linear(args.dim, args.hidden_dim, bias=False)
        self.w13: torch.Tensor | None = None  # [2 hidden, dim]: w1 and w3 as one (`fuse_step_products`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w13 is not None:
            gate, up = F.linear(x, self.w13).chunk(2, dim=-1)
            return self.w2(F.silu(gate) * up)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class GeluMLP(nn.Module):
    """StarCoder2's MLP: w2(gelu_tanh(w1 x)), both with biases."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w1 = nn.Linear(args.dim, args.hidden_dim, bias=args.dense_bias)
        self.w2 = nn.Linear(args.hidden_dim, args.dim, bias=args.dense_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.w1(x), approximate="tanh"))


MLPS = {"swiglu": FeedForward, "gelu": GeluMLP}  # ModelArgs.mlp (with n_experts: MixtureOfExperts of them)


class Router(nn.Linear):
    """The gate of a mixture of experts: [dim] -> [n_experts] scores. int8 leaves it in float
    (engine/quantize.py): it is tiny, and a rounded router sends tokens to other experts."""


class MixtureOfExperts(nn.Module):
    """Mixtral's sparse MLP: a router picks each token's top `n_active_experts` of `n_experts` SwiGLU
    experts and sums their outputs, weighted by the router's softmax renormalised over the chosen
    (as the reference). Each expert runs only on the rows routed to it."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.k = args.n_active_experts
        self.gate = Router(args.dim, args.n_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(args) for _ in range(args.n_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # [N, dim]
        weights, chosen = self.gate(flat).float().softmax(-1).topk(self.k, dim=-1)  # [N, k], [N, k]
        weights = weights / weights.sum(-1, keepdim=True)
        if flat.shape[0] == 1:  # a decode step: its k experts on the one row, summed in the order below
            order = sorted(enumerate(chosen[0].tolist()), key=lambda pair: pair[1])  # (rank, expert), by expert
            out = None
            for rank, e in order:
                y = self.experts[e](flat) * weights[0, rank].to(flat.dtype)
                out = y if out is None else out + y
            return out.view(x.shape)
        out = torch.zeros_like(flat)
        for e in chosen.unique().tolist():
            rows, rank = (chosen == e).nonzero(as_tuple=True)  # the tokens routed to e, and where e ranks
            y = self.experts[e](flat[rows]) * weights[rows, rank, None].to(flat.dtype)  # [n_e, dim]
            out.index_add_(0, rows, y)
        return out.view(x.shape)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, layer_id: int):
        super().__init__()
        self.attention = Attention(args, layer_id)
        self.feed_forward = MixtureOfExperts(args) if args.n_experts else MLPS[args.mlp](args)
        self.attention_norm = NORMS[args.norm](args.dim, args.norm_eps)
        self.ffn_norm = NORMS[args.norm](args.dim, args.norm_eps)

    def forward(self, x, rotation, mask, cache, slots):
        h = x + self.attention(self.attention_norm(x), rotation, mask, cache, slots)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        # Given an (uninitialised) weight, Embedding skips its default init: every caller loads or
        # initialises the weights itself, and on the meta device (loading) that init would import
        # PyTorch's Python decompositions, ~70 MB resident for the life of the process.
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, _weight=torch.empty(args.vocab_size, args.dim))
        self.layers = nn.ModuleList(TransformerBlock(args, i) for i in range(args.n_layers))
        self.norm = NORMS[args.norm](args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        self._rope = torch.empty(0, dtype=torch.complex64)  # rope_table rows, grown on demand
        self.output_row_major: torch.Tensor | None = None  # a row-major copy of output.weight: store_weights_transposed
        self.greedy_screen: ScreenedArgmax | None = None  # int8 screening of greedy tokens: store_weights_transposed
        self.attend_half = None  # compiled attention over a float16 cache (GGUF models): qlinear.attach_kernels
        self.quant_step = None  # a GGUF model's `step_hidden` as one compiled call: qlinear.compiled_step
        self.fused = None  # the whole step in one C++ call where it applies (engine/fused.py)
        self.widen_embeddings: torch.dtype | None = None  # the table is narrower: `keep_embeddings_in_bfloat16`

    def rotations(self, start: int, length: int, device) -> torch.Tensor:
        """Rows start .. start+length-1 of the rotation table [length, head_dim // 2], computed once."""
        end = start + length
        if self._rope.shape[0] < end or self._rope.device != torch.device(device):
            size = max(end, 2 * self._rope.shape[0], 4096)
            self._rope = rope_table(self.args.head_dim, size, self.args.rope_theta, device, self.args.rope_scaling)
        return self._rope[start:end]

    def hidden(self, tokens: torch.Tensor, start_pos: int = 0, cache: KVCache | None = None) -> torch.Tensor:
        """Final normed hidden states. tokens: [B, T] at positions start_pos .. start_pos+T-1 -> [B, T, dim]."""
        B, T = tokens.shape
        positions = torch.arange(start_pos, start_pos + T, device=tokens.device)  # [T]
        rotation = self.rotations(start_pos, T, tokens.device)  # [T, D/2]
        if cache is None:
            mask, slots = causal_mask(positions, self.args.sliding_window), None
        else:
            slots, mask = cache.begin(positions)  # slots: [T], mask: [T, S_used]
        x = self.embed(tokens)  # [B, T, dim]
        for layer in self.layers:
            x = layer(x, rotation, mask, cache, slots)
        return self.norm(x)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embedding rows of token ids [...] -> [..., dim], in the dtype the layers compute in."""
        x = self.tok_embeddings(tokens)
        return x if self.widen_embeddings is None else x.to(self.widen_embeddings)

    def run(self, tokens: list[int], cache: KVCache, want: str = "logits", chunk: int | None = None):
        """Append `tokens` to `cache` (positions from `cache.reserve`) and return what follows each:
        want "logits": float32 logits [T, vocab]; "last": those after the last token only [vocab];
        "greedy": the greedy token after each, a list [T] (`logits.argmax(-1)`, often without them).

        The one way the generation loop runs tokens through the model with a cache: prefill chunks,
        decode steps and speculative verifications alike. Tokens go in pieces of at most `chunk`
        (default: all) and `cache.max_chunk`; `_run_piece` picks each piece's path.
        """
        step = cache.max_chunk if chunk is None else max(1, min(chunk, cache.max_chunk))
        if len(tokens) <= step:  # a decode step, a verification, a short prompt
            return self._run_piece(tokens, cache, want)
        cache.check_room(len(cache.tokens), len(tokens))  # before the first piece: all or nothing
        pieces = [self._run_piece(tokens[i: i + step], cache, want) for i in range(0, len(tokens), step)]
        if want == "last":
            return pieces[-1]
        return [t for piece in pieces for t in piece] if want == "greedy" else torch.cat(pieces)  # [T, V]

    def _run_piece(self, tokens: list[int], cache: KVCache, want: str):
        """`run` for at most `cache.max_chunk` tokens. The path, chosen here only:

        - a ring cache, or more than STEP_ROWS tokens (prefill): `forward`, the general path;
        - with `fused` (engine/fused.py): one C++ call that writes the keys and values at the reserved
          positions, and for "greedy" never writes the logits;
        - otherwise `step_hidden` (the lean PyTorch step), then the output table: for "greedy" of one
          token screened in int8 where `store_weights_transposed` measured that faster; a
          verification's rows take the plain product, as the screen's bounds cost [T, vocab]
          elementwise work each (five rows screened: 2.7 ms against 1.4 for the product).
        """
        T = len(tokens)
        pos = cache.reserve(tokens)
        if cache.is_ring or T > STEP_ROWS:
            logits = self(torch.tensor([tokens], device=cache.k.device), pos, cache, last_only=want == "last")[0]
            return logits[-1] if want == "last" else logits.argmax(-1).tolist() if want == "greedy" else logits
        if self.fused is not None:
            rotation = self._rotation_pairs(pos, T)  # [T, D/2, 2]
            if want == "greedy":
                return self.fused.greedy(tokens, pos, rotation, cache.k, cache.v)
            logits = self.fused.step(tokens, pos, rotation, cache.k, cache.v, want == "last")  # [T or 1, V]
            return logits[0] if want == "last" else logits
        h = self.step_hidden(tokens, cache)  # [T, dim]
        if want == "last":
            return self.logits_of(h[-1:])[0]  # [V]
        if want == "logits":
            return self.logits_of(h)  # [T, V]
        if self.greedy_screen is None or T > 1:
            return self.logits_of(h).argmax(-1).tolist()
        return self.greedy_screen(h)

    def step(self, tokens: list[int], cache: KVCache, last_only: bool = False) -> torch.Tensor:
        """`run(tokens, cache)` (logits [T, V], or [1, V] with last_only) for a caller that keeps
        `cache.tokens` itself and appends `tokens` afterwards (tests)."""
        logits = self.run(tokens, cache, "last" if last_only else "logits")
        del cache.tokens[-len(tokens):]
        return logits[None] if last_only else logits

    def greedy_step(self, tokens: list[int], cache: KVCache) -> list[int]:
        """`run(tokens, cache, "greedy")` for a caller that appends `tokens` to `cache.tokens` itself (tests)."""
        following = self.run(tokens, cache, "greedy")
        del cache.tokens[-len(tokens):]
        return following

    def _rotation_pairs(self, pos: int, length: int) -> torch.Tensor:
        """Rotations of positions pos..pos+length-1 as (cos, sin) pairs: [length, head_dim // 2, 2] float32."""
        return torch.view_as_real(self.rotations(pos, length, "cpu"))

    def step_hidden(self, tokens: list[int], cache: KVCache) -> torch.Tensor:
        """Final normed hidden states [T, dim] of the last T tokens of a linear cache, just reserved
        (`run`): the arithmetic of `forward` written for one short sequence, without module calls,
        position tensors or [B, T, H, D] reshapes, which for a model as small as the embedded one cost
        more than its matrix products (a decode step of it: 2.2 ms instead of 2.75 ms on 2 cores).

        Mask, worked example: the cache holds positions 0..4 (pos = 5) and T = 3 tokens go to 5, 6, 7.
        Query i (position 5 + i) sees positions 0..5+i: row i is 0 at columns j <= 5 + i and -inf after,
        which is `full((3, 8), -inf).triu(6)`. One query sees everything held: no mask.
        """
        T = len(tokens)
        pos, device = len(cache.tokens) - T, cache.k.device  # positions pos..pos+T-1, claimed by reserve
        rotation = self.rotations(pos, T, device)[:, None, :]  # [T, 1, D/2]
        x = self.tok_embeddings.weight[tokens[0]].view(1, -1) if T == 1 and type(self.tok_embeddings) is nn.Embedding \
            else self.tok_embeddings(torch.tensor(tokens, device=device))  # [T, dim] (a GGUF table: engine/qlinear.py)
        if self.widen_embeddings is not None:
            x = x.to(self.widen_embeddings)
        half_cache = self.attend_half is not None and cache.k.dtype == torch.float16 and cache.k.shape[1] == 1
        if half_cache and self.quant_step is not None:  # a GGUF model's whole step in one compiled call
            return self.quant_step(x, rotation, pos, cache)
        # Additive (a boolean mask is converted again in every layer): 0 where j <= pos + i, else -inf.
        # `attend_half` masks by position itself.
        mask = None if T == 1 or half_cache else \
            torch.full((T, pos + T), float("-inf"), dtype=x.dtype, device=device).triu(pos + 1)
        for i, layer in enumerate(self.layers):
            a = layer.attention
            h = layer.attention_norm.forward(x)
            if a.wqkv is not None:  # one product, one rotation for the queries and keys together
                qkv = F.linear(h, a.wqkv)  # [T, (H + 2 H_kv) D]
                rotated = (a.n_heads + a.n_kv_heads) * a.head_dim
                qk = rotate(qkv[:, :rotated].view(T, a.n_heads + a.n_kv_heads, -1, 2), rotation)  # [T, H + H_kv, D]
                q, k = qk[:, :a.n_heads], qk[:, a.n_heads:]  # [T, H, D], [T, H_kv, D]
                v = qkv[:, rotated:].view(T, a.n_kv_heads, -1)  # [T, H_kv, D]
            else:
                q = rotate(a.wq.forward(h).view(T, a.n_heads, -1, 2), rotation)  # [T, H, D]
                k = rotate(a.wk.forward(h).view(T, a.n_kv_heads, -1, 2), rotation)  # [T, H_kv, D]
                v = a.wv.forward(h).view(T, a.n_kv_heads, -1)  # [T, H_kv, D]
            keys, values = cache.put(i, pos, k.transpose(0, 1), v.transpose(0, 1))  # [1, H_kv, S, D]
            if half_cache:  # one compiled call over the layer's float16 cache (engine/quant_kernels.py)
                attended = self.attend_half(q.contiguous(), cache.k[i, 0], cache.v[i, 0], pos + T)  # [T, H D]
            else:
                attended = attend(q, keys[0], values[0], mask)
            x = x + a.wo.forward(attended)
            x = x + layer.feed_forward.forward(layer.ffn_norm.forward(x))
        return self.norm.forward(x)  # [T, dim]

    def logits_of(self, h: torch.Tensor) -> torch.Tensor:
        """Float32 logits of final hidden states h [..., dim] -> [..., vocab].

        With the fused step on, its packed table gives them (prefill's logits, as the steps'), and the
        model may hold no float32 table then (`fused.release_output_table`). That swaps the table out
        only after setting `fused`, so the table read before `fused` is real whenever `fused` is None
        (the server switches to the fused step on another thread, while completions run)."""
        output = self.output
        table = output.weight if type(output) is nn.Linear else None  # read before `fused`: see above
        row_major = self.output_row_major
        rows = h.numel() // h.shape[-1]
        fused = self.fused
        if fused is not None:
            return fused.logits(h.reshape(rows, -1).contiguous()).view(*h.shape[:-1], -1)
        if row_major is not None and 1 < rows <= STEP_ROWS:  # a speculative verification
            return (row_major @ h.reshape(rows, -1).t()).t().reshape(*h.shape[:-1], -1).float()
        return (F.linear(h, table) if table is not None else output.forward(h)).float()  # a GGUF table: engine/qlinear.py

    def forward(self, tokens: torch.Tensor, start_pos: int = 0, cache: KVCache | None = None,
                last_only: bool = False) -> torch.Tensor:
        """Logits [B, T, vocab] (or [B, 1, vocab] with last_only), float32."""
        h = self.hidden(tokens, start_pos, cache)
        return self.logits_of(h[:, -1:] if last_only else h)


def attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of a few queries q [T, H, D] over keys and values [H_kv, S, D]; mask [T, S] -> [T, H * D].

    Query head h reads kv head h // group (group = H / H_kv), so the queries of one kv head are rows
    [group * T] of one matrix product. For a decode step this costs 36 us a layer where SDPA's CPU
    kernel costs 89 (S = 1000, one thread): its per-call setup outweighs a product this small.
    Softmax runs in float32 whatever the dtype, as SDPA accumulates. Keys and values of another dtype
    than q (a GGUF model's float16 cache without its compiled `attend_half`) are widened to q's first:
    the arithmetic of the general path, so cold and warm runs agree.
    """
    T, H, D = q.shape
    n_kv = keys.shape[0]
    rows = H // n_kv * T
    keys, values = keys.to(q.dtype), values.to(q.dtype)
    scores = torch.matmul(q.transpose(0, 1).reshape(n_kv, rows, D), keys.transpose(1, 2)).float() * D ** -0.5  # [H_kv, rows, S]
    if mask is not None:
        scores = (scores.view(n_kv, H // n_kv, T, -1) + mask).view(n_kv, rows, -1)
    out = torch.matmul(torch.softmax(scores, dim=-1).to(values.dtype), values)  # [H_kv, rows, D]
    return out.view(H, T, D).transpose(0, 1).reshape(T, H * D)


def store_weights_transposed(model: nn.Module, output_tables: bool = True) -> nn.Module:
    """Keep every Linear weight [out, in] as the transpose of a contiguous [in, out] tensor (for CPU inference).

    F.linear(x, W) multiplies x by W.T. With W stored row-major, a decode step (one row of x) runs
    BLAS's transposed matrix-vector path, which on the development CPU reads the 32k x 256 output
    table at 8 GB/s (4.0 ms); stored as the transpose of a row-major [in, out] tensor, the same
    product streams it at 2.5x that (1.4 ms), and a whole embedded-model decode step goes from
    about 10 ms to 7 ms. Prefill is unchanged or a little faster. Same values, same memory; only the
    summation order inside BLAS differs (logits move by ~1e-5).

    Products of 2 to STEP_ROWS rows (verifying speculative drafts) differ by CPU. On one development CPU
    (AVX2) they were slow in both layouts as F.linear calls them (5 rows by the output table: ~8 ms)
    but fast as W @ x.T with W row-major (2.1 ms); on another (AVX-512, AMX) F.linear on this layout
    takes 0.8 ms and W @ x.T 1.4 ms. So the row-major copy of the output table (34 MB for the
    embedded model in float32) is kept only where `_row_major_wins` measures it faster.
    """
    for module in model.modules():
        # Float32 only: bfloat16 products on the transposed layout take another path, five times slower
        # for one row (8960 x 1536: 17.9 ms against 3.6 row-major, one thread, the AMX Xeon of
        # README's family figures); transformers keeps them row-major.
        if isinstance(module, nn.Linear) and module.weight.dtype == torch.float32:
            module.weight = nn.Parameter(module.weight.detach().t().contiguous().t(), requires_grad=False)
    fuse_step_products(model)
    if output_tables:
        prepare_output_tables(model)
    return model


def prepare_output_tables(model: nn.Module) -> None:
    """The lean PyTorch step's helpers for the output table, where they measure faster: a row-major
    copy for verifications and the int8 screen for greedy tokens (42 MB for the embedded model).
    A model decoding with the fused step never uses them: `drop_output_tables` gives them back."""
    if isinstance(model, Transformer) and isinstance(model.output, nn.Linear):
        row_major = model.output.weight.detach().contiguous()
        model.output_row_major = row_major if _row_major_wins(model.output.weight, row_major) else None
        model.greedy_screen = screening_wins(model.output.weight)


def drop_output_tables(model: nn.Module) -> None:
    if isinstance(model, Transformer):
        model.output_row_major = model.greedy_screen = None


def keep_embeddings_in_bfloat16(model: nn.Module) -> bool:
    """Keep a float32 CPU model's embedding table in bfloat16 when its values are bfloat16 values (a
    checkpoint saved in bfloat16: the embedded model), half the memory (16 MB of the embedded model).
    Rows widen back to float32 where they are read (`Transformer.embed`, and the fused step): exact,
    so every output stays the same. Returns whether it did."""
    if not isinstance(model, Transformer) or model.widen_embeddings is not None \
            or type(model.tok_embeddings) is not nn.Embedding:  # a GGUF table keeps its own blocks
        return False
    table = model.tok_embeddings.weight.detach()
    if table.dtype != torch.float32 or table.device.type != "cpu":
        return False
    narrow = table.bfloat16()
    if not torch.equal(narrow.float(), table):
        return False
    model.tok_embeddings.weight = nn.Parameter(narrow, requires_grad=False)
    model.widen_embeddings = torch.float32
    return True


def fuse_step_products(model: nn.Module) -> nn.Module:
    """Hold wq, wk, wv (and w1, w3) of each layer in one transposed tensor, the separate weights
    becoming views of it, so that a decode step multiplies once where it multiplied three times (twice).

    For a model as small as the embedded one a decode step is mostly per-call overhead: with the
    fused products and one rotation for queries and keys, a greedy step (`run`) took 4.53 ms against 4.83
    (median of 400 interleaved in one process, session 5's CPU, 2 threads, 1,500 cached positions;
    8.38 against 8.70 ms for 5 tokens). No memory is added. Layers whose products are not plain
    float `nn.Linear` (int8) are left as they are.

    Layout, worked example with dim 4, wq [6, 4], wk and wv [2, 4]: the fused tensor is [4, 10]
    contiguous; columns 0..5 are wq.T, 6..7 wk.T, 8..9 wv.T; wq.weight is `fused[:, 0:6].t()`, a
    [6, 4] view whose F.linear reads the [4, 6] column block in place; `wqkv` is `fused.t()` [10, 4].
    """
    def fuse(linears: list[nn.Linear]) -> torch.Tensor | None:
        if not all(type(m) is nn.Linear and m.bias is None for m in linears):
            return None
        if len({(m.weight.dtype, m.weight.device) for m in linears}) != 1:
            return None
        if all(m.weight.is_contiguous() for m in linears):  # row-major (not float32): rows stacked
            fused = torch.cat([m.weight.detach() for m in linears], dim=0)  # [sum(out), in]
            start = 0
            for m in linears:
                out = m.weight.shape[0]
                m.weight = nn.Parameter(fused[start: start + out], requires_grad=False)  # a view
                start += out
            return fused
        fused = torch.cat([m.weight.detach().t() for m in linears], dim=1).contiguous()  # [in, sum(out)]
        start = 0
        for m in linears:
            out = m.weight.shape[0]
            m.weight = nn.Parameter(fused[:, start: start + out].t(), requires_grad=False)  # a view
            start += out
        return fused.t()  # [sum(out), in]

    for module in model.modules():
        if isinstance(module, Attention):
            module.wqkv = fuse([module.wq, module.wk, module.wv])
        elif isinstance(module, FeedForward):  # a layer's MLP, or each of its experts
            module.w13 = fuse([module.w1, module.w3])
    return model


def _row_major_wins(transposed: torch.Tensor, row_major: torch.Tensor, rows: int = 4, repeats: int = 5) -> bool:
    """Whether row_major @ x.T beats F.linear(x, transposed) for `rows` rows (best of `repeats` runs each):
    a few milliseconds at load that decide the cost of every speculative verification."""
    x = torch.randn(rows, transposed.shape[1], dtype=transposed.dtype, device=transposed.device)
    best = {}
    with torch.inference_mode():
        for name, product in (("linear", lambda: F.linear(x, transposed)), ("row_major", lambda: row_major @ x.t())):
            product()  # warm up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                product()
                times.append(time.perf_counter() - start)
            best[name] = min(times)
    return best["row_major"] < best["linear"]
