"""Read a GGUF file (llama.cpp's format) as a checkpoint: hyper-parameters, tokenizer and tensors.

    ckpt = gguf_checkpoint("qwen2.5-coder-1.5b-q4_k_m.gguf")   # what `find_checkpoint` returns for a .gguf
    model = load_gguf_model(ckpt)                               # quantized matrices stay quantized
    tokenizer = gguf_tokenizer(ckpt)

The file is read with `gguf.GGUFReader` (llama.cpp's own Python reader), memory-mapped
copy-on-write: tensors are views on the map and nothing is copied unless changed. Its
`general.architecture` picks the family (`Family.gguf_arch`, engine/checkpoints/families.py).

Tensors. Names map through GGUF_NAMES / GGUF_LAYER_NAMES; GGUF lists dimensions innermost first,
so a shape [in, out] in the file is our [out, in]. Matrices of a quantized type become `QuantLinear`
(embeddings `QuantEmbedding`, engine/qlinear.py) over the raw blocks; F32 matrices plain float
layers; norms and biases float32 tensors.

Architectures: `llama`, `qwen2` (q/k/v biases) and `starcoder2` (LayerNorm with biases, a GELU MLP
whose ffn_up/ffn_down are c_fc/c_proj, biases everywhere; llama.cpp runs it without a sliding window).

RoPE layout. llama.cpp's `llama` architecture rotates interleaved pairs (x0, x1), (x2, x3), ...
like our model (its converter un-permutes Hugging Face's rows), so those q/k rows are used as they
are. `qwen2` and `starcoder2` use its NEOX rope, which rotates halves (x_i, x_{i + D/2}), and their
files keep Hugging Face's row order: those rows are permuted as for a Hugging Face folder
(`unpermute_rows`), which copies the q and k matrices of those families (rows are whole blocks).

Tokenizer. `tokenizer.ggml.model` "llama" (SentencePiece pieces, scores, types) becomes a
SentencePiece model built in memory (`spm_model_proto`), the same algorithm llama.cpp reimplements;
"gpt2" (byte-level BPE: pieces, merges, `tokenizer.ggml.pre`) a `tokenizers` BPE with that
pre-tokenizer's split (PRE_TOKENIZER_SPLITS). FIM tokens: for SentencePiece Codestral's [PREFIX] /
[SUFFIX]; for BPE the family's template, found by the tokens' names.

Anything wrong (a truncated file, offsets past its end, a shape or vocabulary that disagrees with
the hyper-parameters, a type we do not decode) is one CheckpointError naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch
from torch import nn

from ..config import ModelArgs
from ..model import Transformer
from ..qlinear import SUPPORTED, QuantEmbedding, QuantLinear
from .families import GGUF_LAYER_NAMES, GGUF_NAMES, gguf_family
from .loading import Checkpoint, CheckpointError, unpermute_rows

# SentencePiece piece types, as GGUF's tokenizer.ggml.token_type numbers them (and sentencepiece does).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# tokenizer.ggml.pre -> the regular expressions that split text before byte-level BPE, in order
# (llama.cpp's pre-tokenizer types, as its vocabulary loader applies them).
_LETTERS_DIGITS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{DIGITS}" \
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
PRE_TOKENIZER_SPLITS = {
    "qwen2": [_LETTERS_DIGITS.replace("{DIGITS}", "")],
    "llama-bpe": [_LETTERS_DIGITS.replace("{DIGITS}", "{1,3}")],
    "gpt-2": [_GPT2], "default": [_GPT2],
    "starcoder": [r"\p{N}", _GPT2], "refact": [r"\p{N}", _GPT2],
    "deepseek-coder": [r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"],
}


# -- the file ---------------------------------------------------------------------------------------

def open_gguf(path: Path):
    """gguf.GGUFReader on the file, or CheckpointError for one it cannot parse."""
    try:
        import gguf
    except ImportError as exc:
        raise CheckpointError(f"{path}: reading GGUF files needs the gguf package (pip install 'codestral-lsp[gguf]')") from exc
    try:
        reader = gguf.GGUFReader(str(path), "c")  # copy-on-write map: writable views, nothing copied
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors... for damaged files
        raise CheckpointError(f"{path}: not a readable GGUF file, truncated or corrupt ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from exc
    reader.path = path  # for messages: the reader keeps only its map
    # The reader parses every value into small numpy arrays (~80 MB for a 32k vocabulary, several times
    # that for 150k): keep plain Python values instead, and let those go.
    reader.metadata = {}
    for key, field in reader.fields.items():
        try:
            reader.metadata[key] = field.contents()
        except Exception as exc:
            raise CheckpointError(f"{path}: GGUF key {key!r} is unreadable ({exc})") from exc
    reader.fields.clear()
    return reader


def _field(reader, key: str, default=KeyError):
    if key not in reader.metadata:
        if default is KeyError:
            raise CheckpointError(f"{reader.path}: missing GGUF key {key!r}")
        return default
    return reader.metadata[key]


def _int(reader, key: str, default=KeyError) -> int:
    value = _field(reader, key, default)
    if value is not None and (not isinstance(value, int) or value <= 0):
        raise CheckpointError(f"{reader.path}: GGUF key {key!r} = {value!r}, expected a positive integer")
    return value


def gguf_checkpoint(path: str | Path) -> Checkpoint:
    """Inspect a .gguf file: its family and hyper-parameters (the tensors are read by load_gguf_model)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: GGUF file does not exist")
    reader = open_gguf(path)
    arch = _field(reader, "general.architecture")
    try:
        family = gguf_family(arch)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    ckpt = Checkpoint(path, "gguf", read_args(reader, family), [path], path, family)
    ckpt.gguf = reader
    return ckpt


def read_args(reader, family) -> ModelArgs:
    a = family.gguf_arch
    dim, heads = _int(reader, f"{a}.embedding_length"), _int(reader, f"{a}.attention.head_count")
    kv_heads = _int(reader, f"{a}.attention.head_count_kv", heads)
    head_dim = _int(reader, f"{a}.attention.key_length", None) or dim // heads
    embeddings = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embeddings is None or len(embeddings.shape) != 2:
        raise CheckpointError(f"{reader.path}: no 2-D tensor token_embd.weight")
    scaling = _field(reader, f"{a}.rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise CheckpointError(f"{reader.path}: rope scaling {scaling!r} is not supported (linear is)")
    if any(t.name == "rope_freqs.weight" for t in reader.tensors):
        raise CheckpointError(f"{reader.path}: rope_freqs.weight (Llama 3.1's RoPE scaling as a tensor) is not supported")
    eps = _field(reader, f"{a}.attention.layer_norm_rms_epsilon", None) or \
        _field(reader, f"{a}.attention.layer_norm_epsilon", 1e-5)
    try:
        return dataclasses.replace(ModelArgs(
            dim=dim, n_layers=_int(reader, f"{a}.block_count"), n_heads=heads, n_kv_heads=kv_heads,
            head_dim=head_dim, hidden_dim=_int(reader, f"{a}.feed_forward_length"),
            vocab_size=int(embeddings.shape[1]), norm_eps=float(eps),
            rope_theta=float(_field(reader, f"{a}.rope.freq_base", 10000.0)),
            max_seq_len=_int(reader, f"{a}.context_length", 4096),
            rope_scaling={"type": "linear", "factor": float(_field(reader, f"{a}.rope.scaling.factor"))}
            if scaling == "linear" else None,
            tied_embeddings=not any(t.name == "output.weight" for t in reader.tensors)), **family.gguf_args)
    except ValueError as exc:  # ModelArgs' own checks: heads not a multiple of kv heads, odd head_dim
        raise CheckpointError(f"{reader.path}: {exc}") from exc


# -- tensors ----------------------------------------------------------------------------------------

def our_name(name: str, layer_names: dict = GGUF_LAYER_NAMES) -> str | None:
    """llama.cpp's tensor name -> ours ("blk.3.attn_q.bias" -> "layers.3.attention.wq.bias"); None if unknown."""
    stem, _, leaf = name.rpartition(".")
    if stem in GGUF_NAMES:
        return f"{GGUF_NAMES[stem]}.{leaf}"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in layer_names:
        return f"layers.{parts[1]}.{layer_names[parts[2]]}.{leaf}"
    return None


def _raw(reader, t) -> torch.Tensor:
    """The tensor's bytes as uint8 [rows, row_bytes], a view on the map; CheckpointError where the file is short."""
    data = t.data
    if data.nbytes != t.n_bytes:
        raise CheckpointError(f"{reader.path}: tensor {t.name} runs past the end of the file")
    rows = int(t.shape[1]) if len(t.shape) > 1 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a non-writable numpy array: the map is copy-on-write, we never write
        return torch.from_numpy(data.reshape(-1).view("uint8")).view(rows, -1)


def _float(raw: torch.Tensor, qtype: int, cols: int) -> torch.Tensor:
    """A norm's or bias's raw bytes -> float32 [cols] (F32 stays a view on the map)."""
    from ..qlinear import dequantize_rows

    return dequantize_rows(raw.view(1, -1), qtype, cols).view(-1)


def load_gguf_model(ckpt: Checkpoint, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Transformer:
    """The model of a GGUF checkpoint. On the CPU its quantized matrices stay in their blocks (QuantLinear,
    QuantEmbedding) unless `dtype` is given; on CUDA and MPS, where no kernel takes the blocks yet, each
    matrix is dequantized at load, one at a time, to `dtype` (default bfloat16 on CUDA, float16 on MPS)
    and moved to the device: the model then costs 2 bytes a weight there, not the file's size."""
    device = torch.device(device)
    if device.type != "cpu" and dtype is None:
        dtype = torch.float16 if device.type == "mps" else torch.bfloat16
    dequantize = dtype is not None
    reader, args = ckpt.gguf, ckpt.args
    with torch.device("meta"):
        model = Transformer(args)
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    tensors = {}
    for t in reader.tensors:
        name = our_name(t.name, ckpt.family.gguf_layer_names)
        if name is None or name not in expected:
            if name is None and t.name.startswith(("blk.", "token_embd", "output")):
                raise CheckpointError(f"{ckpt.folder}: unexpected tensor {t.name} for architecture {ckpt.family.gguf_arch}")
            continue
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))  # ours: [out, in]
        if shape != expected[name]:
            raise CheckpointError(f"{ckpt.folder}: tensor {t.name} has shape {shape} but the hyper-parameters "
                                  f"imply {expected[name]}")
        if int(t.tensor_type) not in SUPPORTED:
            raise CheckpointError(f"{ckpt.folder}: tensor {t.name} has type {t.tensor_type.name}, which this engine "
                                  f"does not decode (supported: {', '.join(SUPPORTED.values())})")
        tensors[name] = (int(t.tensor_type), _raw(reader, t))
    if "output.weight" not in tensors and "tok_embeddings.weight" in tensors:
        tensors["output.weight"] = tensors["tok_embeddings.weight"]  # tied: the same blocks
    missing = sorted(set(expected) - set(tensors))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(f"{ckpt.folder}: tensors missing: {shown}")

    if ckpt.family.gguf_rotate_half:  # NEOX rows -> interleaved pairs (a copy of q and k)
        for name, (qtype, raw) in list(tensors.items()):
            if name.split(".")[-2] in ("wq", "wk"):
                heads = args.n_heads if ".wq." in name else args.n_kv_heads
                rows = raw if name.endswith(".weight") else raw.view(expected[name][0], -1)
                tensors[name] = (qtype, unpermute_rows(rows, heads).contiguous().view(raw.shape))

    state, widened = {}, {}
    for name, module in list(model.named_modules()):
        if dequantize and isinstance(module, (nn.Linear, nn.Embedding)):
            qtype, raw = tensors.pop(f"{name}.weight")
            cols = module.in_features if isinstance(module, nn.Linear) else module.embedding_dim
            if raw.data_ptr() not in widened:  # a tied output table is the embedding's blocks: one copy
                widened[raw.data_ptr()] = _dequantized(raw, qtype, cols, dtype, device)
            state[f"{name}.weight"] = widened[raw.data_ptr()]
            bias = tensors.pop(f"{name}.bias", None)
            if bias is not None:
                state[f"{name}.bias"] = _float(bias[1], bias[0], module.out_features).to(device, dtype)
            continue
        if isinstance(module, nn.Linear):
            qtype, raw = tensors.pop(f"{name}.weight")
            bias = tensors.pop(f"{name}.bias", None)
            bias = None if bias is None else _float(bias[1], bias[0], module.out_features)
            if SUPPORTED[qtype] == "F32":
                state[f"{name}.weight"] = raw.view(torch.float32)
                if bias is not None:
                    state[f"{name}.bias"] = bias
            else:
                _replace(model, name, QuantLinear(raw, qtype, module.in_features, bias))
        elif isinstance(module, nn.Embedding):
            qtype, raw = tensors.pop(f"{name}.weight")
            if SUPPORTED[qtype] == "F32":
                state[f"{name}.weight"] = raw.view(torch.float32)
            else:
                _replace(model, name, QuantEmbedding(raw, qtype, module.embedding_dim))
    for name, (qtype, raw) in tensors.items():  # norms' gains and biases
        state[name] = _float(raw, qtype, expected[name][0])
        if dequantize:
            state[name] = state[name].to(device, dtype)
    model.load_state_dict(state, assign=True, strict=False)
    if dequantize:
        model.to(device)  # the buffers (RoPE tables) that loading does not assign
    return model.eval()


def _dequantized(raw: torch.Tensor, qtype: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A whole matrix in `dtype` on `device`, widened TILE_ROWS rows at a time (never the float32 matrix)."""
    from ..qlinear import TILE_ROWS, dequantize_rows

    out = torch.empty(raw.shape[0], cols, dtype=dtype, device=device)
    for start in range(0, raw.shape[0], TILE_ROWS):
        out[start:start + TILE_ROWS] = dequantize_rows(raw[start:start + TILE_ROWS], qtype, cols).to(device, dtype)
    return out


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


# -- tokenizer --------------------------------------------------------------------------------------

def _chat_template(reader, tokens: list[str], ids: dict):
    """The file's `tokenizer.chat_template` (instruct models' files carry one), or None."""
    from .chat_template import ChatTemplate

    source = _field(reader, "tokenizer.chat_template", None)
    if not isinstance(source, str) or not source.strip():
        return None
    name = lambda i: tokens[i] if i is not None else None  # noqa: E731
    try:
        return ChatTemplate(source, name(ids["bos"]), name(ids["eos"]))
    except ValueError as exc:
        raise CheckpointError(f"{reader.path}: tokenizer.chat_template: {exc}") from exc


def gguf_tokenizer(ckpt: Checkpoint):
    """The tokenizer stored in the file: SentencePiece for "llama" vocabularies, `tokenizers` BPE for "gpt2"."""
    reader, path = ckpt.gguf, ckpt.folder
    kind = _field(reader, "tokenizer.ggml.model")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type", None) or [NORMAL] * len(tokens)
    if len(tokens) > ckpt.args.vocab_size:
        raise CheckpointError(f"{path}: {len(tokens)} tokens but only {ckpt.args.vocab_size} embeddings")
    if len(types) != len(tokens):
        raise CheckpointError(f"{path}: {len(types)} token types for {len(tokens)} tokens")
    ids = {key: _field(reader, f"tokenizer.ggml.{key}_token_id", None)
           for key in ("bos", "eos", "unknown", "eot", "fim_pre", "fim_suf", "fim_mid")}
    for key, i in ids.items():
        if i is not None and not 0 <= i < len(tokens):
            raise CheckpointError(f"{path}: tokenizer.ggml.{key}_token_id = {i} but the vocabulary has "
                                  f"{len(tokens)} tokens")
    if kind == "llama":
        from .tokenizer import Tokenizer

        scores = _field(reader, "tokenizer.ggml.scores", None) or [0.0] * len(tokens)
        proto = spm_model_proto(tokens, scores, types, ckpt.args.vocab_size, ids["unknown"], ids["bos"], ids["eos"],
                                _field(reader, "tokenizer.ggml.add_space_prefix", True))
        return Tokenizer(path, model_proto=proto)
    if kind == "gpt2":
        from .hf_tokenizer import HFTokenizer

        tk = bpe_tokenizer(path, tokens, _field(reader, "tokenizer.ggml.merges"), types,
                           _field(reader, "tokenizer.ggml.pre", "default"),
                           ids["bos"] if _field(reader, "tokenizer.ggml.add_bos_token", False) else None)
        return HFTokenizer(path, ckpt.family.fim, ckpt.args.vocab_size, [ids["eos"], ids["eot"]], tokenizer=tk,
                           chat=_chat_template(reader, tokens, ids))
    raise CheckpointError(f"{path}: tokenizer.ggml.model {kind!r} is not supported (llama and gpt2 are)")


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32s are ten-byte varints
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _message(*fields: tuple[int, int | float | bytes]) -> bytes:
    """Protocol-buffer fields (number, value): ints as varints, floats as 32-bit, bytes length-delimited."""
    import struct

    out = bytearray()
    for number, value in fields:
        if isinstance(value, bytes):
            out += _varint(number << 3 | 2) + _varint(len(value)) + value
        elif isinstance(value, float):
            out += _varint(number << 3 | 5) + struct.pack("<f", value)
        else:
            out += _varint(number << 3) + _varint(int(value))
    return bytes(out)


def spm_model_proto(tokens: list[str], scores: list[float], types: list[int], vocab_size: int,
                    unk: int | None, bos: int | None, eos: int | None, dummy_prefix: bool) -> bytes:
    """A serialized SentencePiece ModelProto (sentencepiece_model.proto) of a GGUF vocabulary: BPE with
    byte fallback, no normalization, padded with unused pieces to the model's vocab_size.

    Fields used: ModelProto.pieces = 1 (piece = 1, score = 2, type = 3), trainer_spec = 2
    (model_type = 3, BPE = 2; vocab_size = 4; byte_fallback = 35; unk/bos/eos/pad_id = 40..43),
    normalizer_spec = 3 (name = 1, add_dummy_prefix = 3, remove_extra_whitespaces = 4)."""
    seen, pieces = set(), []
    for i in range(vocab_size):
        piece, score, kind = (tokens[i], float(scores[i]), int(types[i])) if i < len(tokens) else (f"[PAD{i}]", -1e4, UNUSED)
        if piece in seen or not piece:  # SentencePiece refuses duplicates; such an id stays unused
            piece, kind = f"[DUP{i}]", UNUSED
        seen.add(piece)
        pieces.append(_message((1, piece.encode("utf-8")), (2, score), (3, kind if 1 <= kind <= 6 else NORMAL)))
    if unk is None:
        unk = next((i for i, t in enumerate(types) if t == UNKNOWN), 0)
    trainer = _message((3, 2), (4, vocab_size), (35, 1), (40, unk), (41, -1 if bos is None else bos),
                       (42, -1 if eos is None else eos), (43, -1))
    normalizer = _message((1, b"identity"), (3, int(bool(dummy_prefix))), (4, 0))
    return b"".join(_message((1, p)) for p in pieces) + _message((2, trainer), (3, normalizer))


def bpe_tokenizer(path: Path, tokens: list[str], merges: list[str], types: list[int], pre: str, bos: int | None):
    """A byte-level BPE `tokenizers.Tokenizer` of a GGUF "gpt2" vocabulary; control and user-defined
    tokens become added tokens (matched whole; special ones never from user text, see HFTokenizer)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    if pre not in PRE_TOKENIZER_SPLITS:
        raise CheckpointError(f"{path}: pre-tokenizer {pre!r} is not supported ({', '.join(PRE_TOKENIZER_SPLITS)} are)")
    vocab = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)
    try:
        pairs = [tuple(m.split(" ", 1)) for m in merges]
        tk = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    except Exception as exc:
        raise CheckpointError(f"{path}: the BPE vocabulary and merges do not agree ({exc})") from exc
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(split), behavior="isolated") for split in PRE_TOKENIZER_SPLITS[pre]]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == CONTROL])
    tk.add_tokens([AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == USER_DEFINED])
    if bos is not None:
        tk.post_processor = processors.TemplateProcessing(single=f"{tokens[bos]} $A", special_tokens=[(tokens[bos], bos)])
    return tk
