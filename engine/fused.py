"""The fused decode step: one C++ call per decode step or speculative verification (engine/csrc).

A PyTorch decode step of the embedded model runs ~300 small operators at 10-20 us each on a 2-core
CPU, around ~1 ms of arithmetic; `FusedDecoder` does the step in one call, reading the matrices in
bfloat16 and multiplying in float32 (csrc/fused_step.cpp). It is used only where that changes
nothing but the summation order: float32 models on the CPU whose matrices hold bfloat16 values (the
embedded model and any checkpoint saved in bfloat16), with a linear cache (no sliding-window ring).
Its packed output table also gives prefill's logits, so an Engine whose model decodes with it keeps
no float32 output table (`release_output_table`: 32 MB of the embedded model's resident memory).

The extension is compiled once per machine (about 40 s: g++ and ninja, through
torch.utils.cpp_extension) into ~/.cache/codestral-lsp/fused/<key>, the key covering the source,
torch's version and the CPU's flags. Nothing waits for it by default: `Engine.load` uses it when it
is already built, the language server builds it in the background and switches when it is ready, and
the benchmarks build it first (`build=True`). CODESTRAL_LSP_FUSED=off turns it off everywhere.
`Extension` is that build machinery; engine/quant_kernels.py builds the GGUF kernels with it.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import torch
import xxhash
from torch import nn

NAME = "codestral_fused_step"
SOURCE = Path(__file__).parent / "csrc" / "fused_step.cpp"
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]
NOT_BUILT = "not built yet"  # the status that a build (`load(build=True)`) would change
MAX_PARAMS = 1_000_000_000  # Engine.load's float32/bfloat16 line on the CPU (engine.pick_dtype)


def enabled() -> bool:
    return os.environ.get("CODESTRAL_LSP_FUSED", "auto").lower() not in ("off", "0", "false", "no")


def cflags() -> list[str]:
    """The compiler's flags: CFLAGS, then CODESTRAL_LSP_FUSED_CFLAGS (space-separated), with which a
    developer builds another path of the kernels, e.g. "-mno-avx512f" for AVX2 or "-mno-avx2 -mno-fma"
    for the plain loops (docs/DEVELOPMENT.md)."""
    return CFLAGS + os.environ.get("CODESTRAL_LSP_FUSED_CFLAGS", "").split()


class Extension:
    """One C++ source of engine/csrc, compiled once per machine into the cache and imported on demand:
    the fused step here, the quantized kernels in engine/quant_kernels.py. Each keeps its own library,
    failure and locks; all share the flags, the cache and the CODESTRAL_LSP_FUSED switch."""

    def __init__(self, name: str, source: Path):
        self.name, self.source = name, source
        self.module = None
        self.failure: str | None = None  # why it could not be built in this process
        self.lock = threading.Lock()  # importing the built library
        self.build_lock = threading.Lock()  # compiling it (tens of seconds)

    def build_dir(self) -> Path:
        """Where this machine's build lives: the key changes with the source, torch and the CPU's flags."""
        cpu = ""
        try:
            cpu = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
        except OSError:
            cpu = platform.processor()
        key = xxhash.xxh64("\0".join([self.source.read_text(), torch.__version__, " ".join(cflags()), platform.machine(),
                                      cpu, sys.version]).encode()).hexdigest()
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "codestral-lsp" / "fused"
        return root / key

    def load(self, build: bool = False):
        """The compiled extension, or None: not built yet (and build False), turned off, or it cannot be
        built here (`failure` says why). Building compiles in a temporary folder and moves the library
        into place, so an interrupted build leaves nothing half-written behind. Only builds wait for each
        other: a load without build never waits for a compilation (a model reload in the server while the
        background build runs returns at once)."""
        if not enabled():
            return None
        if self.module is not None:
            return self.module
        library = self.build_dir() / f"{self.name}.so"
        if not library.exists():
            if not build:
                return None
            with self.build_lock:
                if not library.exists():
                    if self.failure is not None:
                        return None
                    try:
                        self._compile(library)
                    except Exception as exc:  # no compiler, no ninja, a compiler error: the PyTorch code remains
                        text = str(exc).strip()
                        self.failure = f"{type(exc).__name__}: {text.splitlines()[-1] if text else exc}"
                        return None
        return self._import(library)

    def _import(self, library: Path):
        with self.lock:
            if self.module is None:
                spec = importlib.util.spec_from_file_location(self.name, library)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                self.module = module
            return self.module

    def _compile(self, library: Path) -> None:
        from torch.utils.cpp_extension import load as build_extension

        library.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="build-", dir=library.parent))
        try:
            build_extension(name=self.name, sources=[str(self.source)], extra_cflags=cflags(),
                            extra_ldflags=["-fopenmp"], build_directory=str(work), verbose=False)
            built = next(work.glob(f"{self.name}*.so"))
            staged = library.with_suffix(".so.partial")
            shutil.copyfile(built, staged)
            os.replace(staged, library)
        finally:
            shutil.rmtree(work, ignore_errors=True)


STEP = Extension(NAME, SOURCE)


def build_dir() -> Path:
    return STEP.build_dir()


def failure() -> str | None:
    """Why the fused step is not available after `load(build=True)` returned None."""
    return STEP.failure


def load(build: bool = False):
    """The fused step's compiled extension, or None (`Extension.load`)."""
    return STEP.load(build)


def build_in_background(done, extension: Extension | None = None) -> threading.Thread:
    """Build (or load) the extension (default: the fused step's; a GGUF model's engine names the
    quantized kernels, `Engine.compiled_extension`) on a daemon thread, then call done(module or None). The thread,
    and the compiler it starts, run at a lower CPU priority (Linux: nice 10 for this thread only), so
    that completions served meanwhile keep their speed."""
    def run():
        try:
            me = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, me, max(10, os.getpriority(os.PRIO_PROCESS, me)))  # never higher
        except (AttributeError, OSError):  # not Linux, or not allowed: build at normal priority
            pass
        done((extension or STEP).load(build=True))

    thread = threading.Thread(target=run, name="fused-step-build", daemon=True)
    thread.start()
    return thread


def unsupported(model: nn.Module) -> str | None:
    """Why `model` cannot take the fused step, or None when it can."""
    from .model import Transformer

    if not isinstance(model, Transformer):
        return "not a Transformer"
    a = model.args
    if type(model.output) is not nn.Linear:
        return "a quantized model"
    w = model.output.weight
    if w.device.type != "cpu" or w.dtype != torch.float32:
        return "the fused step runs float32 models on the CPU"
    if a.n_params() > MAX_PARAMS:  # it keeps a bfloat16 copy of the matrices beside the float32 ones
        return f"models above {MAX_PARAMS / 1e9:.0f}B parameters load in bfloat16 on the CPU; the fused step is for small ones"
    if (a.norm, a.mlp, a.dense_bias) != ("rms", "swiglu", False):
        return "LayerNorm, GELU MLPs and biases (StarCoder2) are not in the fused step; the PyTorch step runs them"
    if a.n_experts:
        return "a mixture of experts (Mixtral) is not in the fused step; the PyTorch step runs it"
    if a.qkv_bias:  # rope scaling and tied tables need nothing of it: rotations and tables come from Python
        return "biases on q, k and v (Qwen2) are not in the fused step; the PyTorch step runs them"
    outputs = (a.dim, 2 * a.hidden_dim, (a.n_heads + 2 * a.n_kv_heads) * a.head_dim, a.vocab_size)
    if a.n_heads % a.n_kv_heads or a.head_dim % 2 or any(n % 64 for n in outputs):
        return "the fused step packs matrices in tiles of 64 rows: dim, 2 hidden_dim, the QKV width and " \
               "the vocabulary must be multiples of 64"
    for layer in model.layers:
        if layer.attention.wqkv is None or layer.feed_forward.w13 is None or type(layer.attention.wo) is not nn.Linear \
                or type(layer.feed_forward.w2) is not nn.Linear:
            return "quantized or unfused layers"
    for name, matrix in _matrices(model):
        if not torch.equal(matrix, matrix.bfloat16().float()):
            return f"{name} holds values that bfloat16 cannot represent (a float32 checkpoint)"
    return None


def _matrices(model) -> list[tuple[str, torch.Tensor]]:
    out = [("output", model.output.weight.detach())]
    for i, layer in enumerate(model.layers):
        out += [(f"layers.{i}.wqkv", layer.attention.wqkv.detach()), (f"layers.{i}.wo", layer.attention.wo.weight.detach()),
                (f"layers.{i}.w13", layer.feed_forward.w13.detach()), (f"layers.{i}.w2", layer.feed_forward.w2.weight.detach())]
    return out


def packed_bytes(model: nn.Module) -> int:
    """Bytes of the matrices the fused decoder holds packed in bfloat16 (none while it is off)."""
    return 0 if getattr(model, "fused", None) is None else sum(2 * w.numel() for _, w in _matrices(model))


def attach(model: nn.Module, module) -> str:
    """Give `model` a fused decoder (`model.fused`) from the extension `module` (`load()`); returns "on",
    or why it could not."""
    if module is None:
        return failure() or ("turned off (CODESTRAL_LSP_FUSED)" if not enabled() else NOT_BUILT)
    from .model import STEP_ROWS

    restore_output_table(model)  # attached again (a benchmark's build=True): the checks below read it

    if module.max_rows != STEP_ROWS:  # a library built from another source: `run` would send it too many rows
        return f"the extension takes {module.max_rows} tokens per call where the model's step takes {STEP_ROWS}"
    reason = unsupported(model)
    if reason is not None:
        return reason
    a, layers = model.args, model.layers
    bf16 = lambda w: w.detach().to(torch.bfloat16).contiguous()  # exact: checked by `unsupported`
    norm = lambda w: w.detach().float().contiguous()
    table = model.tok_embeddings.weight.detach()  # float32, or bfloat16 (model.keep_embeddings_in_bfloat16): read as is
    model.fused = module.FusedDecoder(
        table.contiguous() if table.dtype == torch.bfloat16 else table.float().contiguous(),
        [norm(l.attention_norm.weight) for l in layers], [bf16(l.attention.wqkv) for l in layers],
        [bf16(l.attention.wo.weight) for l in layers], [norm(l.ffn_norm.weight) for l in layers],
        [bf16(l.feed_forward.w13) for l in layers], [bf16(l.feed_forward.w2.weight) for l in layers],
        norm(model.norm.weight), bf16(model.output.weight), a.n_heads, a.n_kv_heads, a.head_dim, a.norm_eps)
    return "on"


def release_output_table(model: nn.Module) -> None:
    """While `model.fused` is on, its packed bfloat16 output table gives every logit (the steps', and
    prefill's through `Transformer.logits_of`), so the model's float32 table (32 MB of the embedded
    model) goes; a tensor on the meta device keeps its shape. `restore_output_table` gives it back,
    exactly: `unsupported` checked that its values are bfloat16 values."""
    weight = model.output.weight
    if model.fused is not None and not weight.is_meta:
        model.output.weight = nn.Parameter(torch.empty_like(weight, device="meta"), requires_grad=False)


def restore_output_table(model: nn.Module) -> None:
    """The float32 output table again after `release_output_table`, for the PyTorch step (`bench`'s
    step costs time it) or another attach, in the layout `store_weights_transposed` gives it."""
    weight = getattr(getattr(model, "output", None), "weight", None)
    if isinstance(weight, torch.Tensor) and weight.is_meta:
        table = model.fused.output_weight().float()  # [vocab, dim]
        model.output.weight = nn.Parameter(table.t().contiguous().t(), requires_grad=False)


def weights_as_values(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with a released output table given back as float32 values (unpacked from
    the fused step's copy, not kept), for what reads every weight (a GGUF file, transformers)."""
    state = model.state_dict()
    table = state.get("output.weight")
    if table is not None and table.is_meta:
        state["output.weight"] = model.fused.output_weight().float()
    return state
