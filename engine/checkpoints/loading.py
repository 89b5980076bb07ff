"""Load a checkpoint folder in Mistral's or Hugging Face's format into a `Transformer`.

Mistral's format: `params.json` + `consolidated.safetensors` + `tokenizer.model.v3` (or `tokenizer.model`).
Hugging Face's: `config.json` + `model.safetensors` (or shards listed in `model.safetensors.index.json`)
+ `tokenizer.model`. The model is built on the meta device and filled tensor by tensor from the
memory-mapped safetensors files; pickled checkpoints (`.pth`, `.bin`) are refused.

Hugging Face stores wq and wk with their rows permuted for rotate-half RoPE; we rotate interleaved
pairs like Mistral's reference, so those rows are permuted back (`unpermute_rows`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError, safe_open

from ..config import ModelArgs
from ..model import Transformer
from .families import MISTRAL, Family, family_of

MODELS_DIR = Path(__file__).parent.parent / "models"  # engine/models
EMBEDDED_MODEL = "codestral-mini"
PICKLED = ("*.pth", "*.pt", "*.bin", "*.ckpt")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message names the file and the problem."""


@dataclass
class Checkpoint:
    folder: Path
    format: str  # "mistral" or "hf"
    args: ModelArgs
    weight_files: list[Path]
    tokenizer_file: Path
    family: Family = MISTRAL
    gguf: object = None  # format "gguf": the open gguf.GGUFReader (folder, weights and tokenizer: the file)


def is_instruct(folder: Path | None) -> bool:
    """Chat needs a model tuned to follow instructions. A checkpoint says so with `"instruct": true` in
    its params.json or config.json, or with "instruct" in its folder's name (Mistral's and Hugging
    Face's names for such checkpoints say it). The tokenizer's [INST] tokens prove nothing:
    Codestral's tokenizer, shared by FIM-only models like the embedded one, has them too."""
    if folder is None:
        return False
    if "instruct" in folder.name.lower():
        return True
    for name in ("params.json", "config.json"):
        try:
            config = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get("instruct") is True:
            return True
    return False


def embedded_model_dir() -> Path:
    return MODELS_DIR / EMBEDDED_MODEL


def embedded_draft_dir() -> Path:
    return MODELS_DIR / f"{EMBEDDED_MODEL}-draft"


def find_checkpoint(folder: str | Path | None) -> Checkpoint:
    """Inspect a folder (or a .gguf file) and say what it holds, or raise CheckpointError with what is wrong."""
    folder = Path(folder) if folder is not None else embedded_model_dir()
    if folder.suffix.lower() == ".gguf":
        from .gguf_reader import gguf_checkpoint

        return gguf_checkpoint(folder)
    if not folder.is_dir():
        hint = " (the embedded model is not installed with this copy)" if folder == embedded_model_dir() else ""
        raise CheckpointError(f"{folder}: model folder does not exist{hint}")
    family = MISTRAL  # Mistral's own format; a config.json names its family
    if (folder / "params.json").is_file():
        fmt, args = "mistral", _read_args(folder / "params.json", ModelArgs.from_mistral_params)
        weights = _existing(folder, ["consolidated.safetensors"]) or sorted(folder.glob("consolidated*.safetensors"))
        tokenizer = _existing(folder, ["tokenizer.model.v3", "tokenizer.model", "tokenizer.model.v2",
                                       "tokenizer.model.v1"])
    elif (folder / "config.json").is_file():
        family = _read_family(folder / "config.json")
        fmt, args = "hf", _read_args(folder / "config.json", family.read_args)
        weights = _hf_weight_files(folder)
        tokenizer = _existing(folder, list(family.tokenizer_files))
    else:
        raise CheckpointError(f"{folder}: neither params.json (Mistral format) nor config.json "
                              "(Hugging Face format) found")
    if not weights:
        pickled = [p.name for pattern in PICKLED for p in folder.glob(pattern)]
        why = (f"only pickled weights ({', '.join(pickled)}); they are refused because loading them can run "
               "arbitrary code: convert them to safetensors") if pickled else "no .safetensors weights"
        raise CheckpointError(f"{folder}: {why}")
    if not tokenizer and family is not MISTRAL:
        raise CheckpointError(f"{folder}: no tokenizer ({' or '.join(family.tokenizer_files)})")
    if not tokenizer:
        tekken = " (tekken.json tokenizers are not supported)" if (folder / "tekken.json").exists() else ""
        raise CheckpointError(f"{folder}: no SentencePiece tokenizer (tokenizer.model.v3 or tokenizer.model){tekken}")
    return Checkpoint(folder, fmt, args, weights, tokenizer[0], family)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable JSON ({exc})") from exc


def _read_family(path: Path) -> Family:
    config = _read_json(path)
    try:
        return family_of(config if isinstance(config, dict) else {})
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _read_args(path: Path, parse) -> ModelArgs:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    try:
        args = parse(data)
    except KeyError as exc:
        raise CheckpointError(f"{path}: missing key {exc}") from exc
    except ZeroDivisionError as exc:
        raise CheckpointError(f"{path}: the number of attention heads (or key-value heads) is zero") from exc
    except TypeError as exc:
        raise CheckpointError(f"{path}: a value has the wrong type ({exc})") from exc
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim", "vocab_size"):
        value = getattr(args, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CheckpointError(f"{path}: {name} must be a positive integer, found {value!r}")
    return args


def _existing(folder: Path, names: list[str]) -> list[Path]:
    return [folder / n for n in names if (folder / n).is_file()]


def _hf_weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index)
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(n, str) for n in weight_map.values()):
            raise CheckpointError(f"{index}: no \"weight_map\" object from tensor names to shard files")
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise CheckpointError(f"{index}: lists shards that are missing: {', '.join(missing)}")
        return [folder / n for n in names]
    return _existing(folder, ["model.safetensors"])


def unpermute_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo Hugging Face's rotate-half permutation of wq/wk rows.

    Per head, HF orders a head's D rows as [x0, x2, x4, ..., x1, x3, ...] (first halves of the pairs,
    then second halves); Mistral keeps pairs together: [x0, x1, x2, x3, ...]. With D = 4:
    HF rows [r0, r2, r1, r3] -> Mistral rows [r0, r1, r2, r3].
    """
    rows, cols = w.shape
    return w.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def permute_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of `unpermute_rows`: Mistral's row order to Hugging Face's."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def hf_to_mistral_name(name: str, family: Family = MISTRAL) -> str | None:
    if name in family.names:
        return family.names[name]
    parts = name.split(".")  # model.layers.N.<module>.<sub>.weight
    if len(parts) >= 5 and parts[:2] == ["model", "layers"]:
        for end in range(len(parts) - 1, 3, -1):  # the longest module name the family maps: "mlp.up_proj",
            module = ".".join(parts[3:end])  # or "block_sparse_moe" for "block_sparse_moe.experts.0.w1"
            if module in family.layer_names:
                return ".".join(["layers", parts[2], family.layer_names[module], *parts[end:]])
    return None  # e.g. rotary inv_freq buffers: not weights


def to_hf_name(name: str, family: Family = MISTRAL) -> str:
    """Our parameter name in Hugging Face's names of `family`: the inverse of `hf_to_mistral_name`,
    by the longest of our module names the family maps ("feed_forward" of Mixtral's
    "feed_forward.experts.0.w1" is "block_sparse_moe"). Where two of its names map onto one of ours
    (StarCoder2's mlp.c_fc and Llama's mlp.gate_proj), the family's own, listed last, wins."""
    top = {ours: hf for hf, ours in family.names.items()}
    if name in top:
        return top[name]
    layer = {ours: hf for hf, ours in family.layer_names.items()}
    _, idx, *parts = name.split(".")  # layers.N.<module>.<leaf>
    for end in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:end])
        if module in layer:
            return ".".join(["model", "layers", idx, layer[module], *parts[end:]])
    raise ValueError(f"{name!r} has no name in the {family.name} family's checkpoints")


def to_hf_state(state: dict[str, torch.Tensor], args: ModelArgs, family: Family = MISTRAL) -> dict[str, torch.Tensor]:
    """Our state dict in Hugging Face's names and row order of `family` (the inverse of the loader's
    mapping, `read_tensors`); a tied output table is left out, as transformers saves it."""
    out = {}
    for name, t in state.items():
        if name == "output.weight" and args.tied_embeddings:
            continue
        t = t.contiguous()  # an inference model may hold its weights transposed (model.store_weights_transposed)
        if t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()  # a view of a larger tensor (`fuse_step_products`): safetensors writes whole storages
        module = name.split(".")[-2]
        if family.rotate_half and module in ("wq", "wk"):
            heads = args.n_heads if module == "wq" else args.n_kv_heads
            t = permute_rows(t.view(t.shape[0], -1), heads).view(t.shape).contiguous()  # a weight, or a bias [rows]
        out[to_hf_name(name, family)] = t
    return out


def save_hf_checkpoint(state: dict[str, torch.Tensor], args: ModelArgs, folder: str | Path,
                       family: Family = MISTRAL, shards: int = 1, extra_config: dict | None = None) -> Path:
    """Write `state` (ours: a model's state dict) as a Hugging Face folder of `family`: config.json
    (`Family.write_config`) and model.safetensors, or `shards` files listed in
    model.safetensors.index.json; a shard's tensors are converted only when it is written, so that
    one shard's copies are held at a time (a 1.5B float32 model is 6 GB)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {**family.write_config(args), **(extra_config or {})}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    names = sorted(state)
    if shards == 1:
        save_file(to_hf_state(state, args, family), str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder
    weight_map = {}
    for i in range(shards):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = to_hf_state({n: state[n] for n in names[i::shards]}, args, family)
        save_file(part, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
        del part
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def read_tensors(ckpt: Checkpoint) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (our parameter name, tensor) from the memory-mapped files, HF names converted."""
    for path in ckpt.weight_files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for key in f.keys():
                    name = key if ckpt.format == "mistral" else hf_to_mistral_name(key, ckpt.family)
                    if name is None:
                        continue
                    tensor = f.get_tensor(key)
                    if ckpt.format == "hf" and ckpt.family.rotate_half and name.split(".")[-2] in ("wq", "wk"):
                        heads = ckpt.args.n_heads if ".wq." in name else ckpt.args.n_kv_heads
                        rows = tensor.view(tensor.shape[0], -1)  # a weight [rows, dim] or a bias [rows] as [rows, 1]
                        tensor = unpermute_rows(rows, heads).view(tensor.shape)
                    yield name, tensor
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({exc})") from exc


def load_model(ckpt: Checkpoint, dtype: torch.dtype, device: torch.device | str) -> Transformer:
    """The checkpoint's model in `dtype` on `device`; a GGUF file's keeps, on the CPU, its quantized matrices
    as they are and its other tensors in float32, and is dequantized to `dtype` at load on CUDA and MPS
    (engine/checkpoints/gguf_reader.py)."""
    if ckpt.format == "gguf":
        from .gguf_reader import load_gguf_model

        return load_gguf_model(ckpt, device, None if torch.device(device).type == "cpu" else dtype)
    with torch.device("meta"):
        model = Transformer(ckpt.args)
    expected = {name: p.shape for name, p in model.state_dict().items()}
    state: dict[str, torch.Tensor] = {}
    for name, tensor in read_tensors(ckpt):
        if name not in expected:
            raise CheckpointError(f"{ckpt.folder}: unexpected tensor {name!r}; does the config match the weights?")
        if tensor.shape != expected[name]:
            raise CheckpointError(f"{ckpt.folder}: tensor {name!r} has shape {tuple(tensor.shape)} but the config "
                                  f"implies {tuple(expected[name])}; the config does not match the weights")
        state[name] = tensor.to(device=device, dtype=dtype)
    if ("output.weight" not in state or ckpt.args.tied_embeddings) and "tok_embeddings.weight" in state:
        state["output.weight"] = state["tok_embeddings.weight"]  # tied embeddings
    missing = sorted(set(expected) - set(state))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(f"{ckpt.folder}: tensors missing from the weights: {shown}")
    model.load_state_dict(state, assign=True)
    return model.eval()


def open_tokenizer(ckpt: Checkpoint):
    """The checkpoint's tokenizer: `tokenizer.json` through Hugging Face's `tokenizers` (with the
    family's FIM template and stops), else SentencePiece (Mistral's, Codestral's FIM)."""
    from .tokenizer import Tokenizer

    if ckpt.format == "gguf":
        from .gguf_reader import gguf_tokenizer

        return gguf_tokenizer(ckpt)
    if ckpt.tokenizer_file.suffix != ".json":
        return Tokenizer(ckpt.tokenizer_file)
    from .hf_tokenizer import HFTokenizer

    config = _read_json(ckpt.folder / "config.json")
    eos = config.get("eos_token_id")
    return HFTokenizer(ckpt.tokenizer_file, ckpt.family.fim, ckpt.args.vocab_size,
                       eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [],
                       chat=hf_chat_template(ckpt.folder))


def hf_chat_template(folder: Path):
    """The chat template of a Hugging Face folder's tokenizer_config.json (the default one where it lists
    several), or None; CheckpointError where it is there but unusable."""
    from .chat_template import ChatTemplate

    path = folder / "tokenizer_config.json"
    config = _read_json(path) if path.is_file() else {}
    source = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(source, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        source = next((t.get("template") for t in source if isinstance(t, dict) and t.get("name") == "default"), None)
    if not isinstance(source, str) or not source.strip():
        return None

    def token(key):
        value = config.get(key)
        return value.get("content") if isinstance(value, dict) else value if isinstance(value, str) else None

    try:
        return ChatTemplate(source, token("bos_token"), token("eos_token"))
    except ValueError as exc:
        raise CheckpointError(f"{folder / 'tokenizer_config.json'}: {exc}") from exc


def save_mistral_checkpoint(model: Transformer, folder: str | Path, tokenizer_file: str | Path | None = None,
                            dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write a model as a Mistral-format folder (params.json + consolidated.safetensors)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps(model.args.to_mistral_params(), indent=2) + "\n")
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "consolidated.safetensors"))
    if tokenizer_file is not None:
        target = folder / "tokenizer.model.v3"
        if Path(tokenizer_file).resolve() != target.resolve():
            target.write_bytes(Path(tokenizer_file).read_bytes())
    return folder
