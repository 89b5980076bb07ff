"""The facade: load a checkpoint once, then complete fill-in-the-middle requests.

    eng = Engine.load()                                  # the embedded default model
    c = eng.complete("def add(a, b):\\n    return ", "\\n")
    c.text, c.tokens, c.stats

Each request names a session (a document, say); its cache keeps the tokens of the last request, so
the next one prefills only what changed. `session=None` uses a private cache that is reset each time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from .checkpoints.loading import Checkpoint, embedded_draft_dir, find_checkpoint, is_instruct, load_model, open_tokenizer
from .checkpoints.tokenizer import Tokenizer
from .generate import Generation, Request, StopFn, decode, prefill
from .kv_cache import CachePool, KVCache, common_prefix_length
from .model import (Transformer, drop_output_tables, keep_embeddings_in_bfloat16, prepare_output_tables,
                    store_weights_transposed)
from .sampling import SamplingParams

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Completion:
    text: str
    tokens: list[int]
    stats: dict


def pick_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or mps")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device, n_params: int) -> torch.dtype:
    """`auto`: bfloat16 on CUDA, float16 on MPS; on the CPU float32 for small models (faster there:
    measured by `codestral-lsp bench`), bfloat16 above 1B parameters to halve the memory."""
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
        return DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if n_params > 1_000_000_000 else torch.float32


class Engine:
    def __init__(self, model: Transformer, tokenizer: Tokenizer, checkpoint: Checkpoint | None = None,
                 max_context: int | None = None, max_sessions: int = 4, cache_bytes: int | None = None,
                 prefill_chunk: int = 512, kv_dtype: torch.dtype | None = None):
        self.model, self.tokenizer, self.checkpoint = model, tokenizer, checkpoint
        self.args = model.args
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.kv_dtype = kv_dtype or self.dtype  # the keys and values a cache holds (`new_cache`)
        self.max_context = min(max_context or 8192, self.args.max_seq_len)
        self.prefill_chunk = prefill_chunk
        self.sessions = CachePool(self.new_cache, max_sessions=max_sessions, max_bytes=cache_bytes)
        self._private = None
        self.draft: Engine | None = None
        self.spec_k, self.spec_ngram = 4, 3  # speculative decoding: most tokens drafted, longest n-gram
        self.fused_status = "not tried"  # "on" when decode steps run fused, else why not (use_fused_step)
        self.fused_kernels: str | None = None  # with it on: "avx512", "avx2" or "scalar" (engine/csrc)
        # Chat prompts ([INST] ... [/INST]) only for checkpoints that declare instruction tuning.
        self.instruct = tokenizer.supports_instruct and is_instruct(checkpoint.folder if checkpoint else None)
        if tokenizer.vocab_size != self.args.vocab_size:
            raise ValueError(f"tokenizer {tokenizer.path.name} has {tokenizer.vocab_size} tokens but the model "
                             f"has {self.args.vocab_size}")

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto", dtype: str = "auto",
             quantize: str | None = None, **options) -> "Engine":
        """Load a checkpoint folder (None: the embedded default model). Raises CheckpointError."""
        ckpt = find_checkpoint(path)
        # A GGUF file runs on the CPU unless a device is named: its blocks stay as they are there (what it
        # holds in float runs in float32); CUDA and MPS get it dequantized at load (2 bytes a weight).
        dev = torch.device("cpu") if ckpt.format == "gguf" and device == "auto" else pick_device(device)
        gguf_on_cpu = ckpt.format == "gguf" and dev.type == "cpu"
        torch_dtype = torch.float32 if gguf_on_cpu else pick_dtype(dtype, dev, ckpt.args.n_params())
        tokenizer = open_tokenizer(ckpt)
        model = load_model(ckpt, torch_dtype, dev)
        if quantize == "int8" and ckpt.format == "gguf":
            raise ValueError(f"{ckpt.folder}: a GGUF file is quantized already; load it without int8")
        if quantize == "int8":
            from .quantize import quantize_int8

            quantize_int8(model)  # before the transposition below: int8 kernels want row-major weights
        elif quantize not in (None, "none"):
            raise ValueError(f"unknown quantization {quantize!r}: use int8 or none")
        if dev.type == "cpu":
            store_weights_transposed(model, output_tables=False)  # the float Linear layers that are left
        if ckpt.format == "gguf":
            ckpt.gguf = None  # the reader's parsed metadata (~50 MB for a 32K vocabulary); the tensors keep the map
        if gguf_on_cpu:  # float16 keys and values, as llama.cpp keeps them: half the bytes a step reads
            options.setdefault("kv_dtype", torch.float16)
        engine = cls(model, tokenizer, ckpt, **options)
        if dev.type == "cpu":
            keep_embeddings_in_bfloat16(model)  # after `cls`, which takes the dtype from the first parameter
        engine.use_fused_step(build=False)  # when this machine has built it already; returns freed heap pages
        return engine

    def use_fused_step(self, build: bool = False) -> str:
        """Decode with the fused C++ step (engine/fused.py) where it applies, building it first when
        `build` (about 40 s, once per machine). Returns "on", or why not (also `fused_status`, `info`)."""
        from . import fused

        if self.device.type != "cpu":
            self.fused_status = "the fused step is for the CPU"
            return self.fused_status
        if self.checkpoint is not None and self.checkpoint.format == "gguf":
            return self._use_quant_kernels(build)
        module = fused.load(build=build)
        self.fused_status = fused.attach(self.model, module)
        self.fused_kernels = module.isa if self.fused_status == "on" else None
        if self.draft is not None:
            self.draft.fused_status = fused.attach(self.draft.model, module)
        for engine in (self, self.draft):
            if engine is not None:
                engine._fit_output_tables()
        return_free_memory()
        return self.fused_status

    def compiled_extension(self):
        """What `use_fused_step(build=True)` compiles for this model (engine/fused.py `Extension`)."""
        from . import fused, quant_kernels

        return quant_kernels.EXTENSION if self.checkpoint is not None and self.checkpoint.format == "gguf" \
            else fused.STEP

    def _use_quant_kernels(self, build: bool) -> str:
        """A GGUF model's matrices through the compiled block kernels (engine/quant_kernels.py): the
        fused step takes bfloat16 matrices only, so for these the kernels are the fast path."""
        from . import fused, quant_kernels
        from .qlinear import attach_kernels

        kernels = quant_kernels if quant_kernels.load(build=build) is not None else None
        status = attach_kernels(self.model, kernels)
        failure = quant_kernels.failure()
        self.fused_status = f"quantized kernels {status}" if kernels is not None else \
            f"quantized kernels off: {failure}" if failure else fused.NOT_BUILT
        self.fused_kernels = quant_kernels.isa() if status == "on" else None
        return self.fused_status

    def _fit_output_tables(self) -> None:
        """The PyTorch step's output-table helpers only while it is the step that decodes; with the
        fused step on, the float32 output table goes too (its packed copy gives every logit)."""
        from .fused import release_output_table, restore_output_table

        if self.fused_status == "on":
            drop_output_tables(self.model)
            release_output_table(self.model)
            return
        restore_output_table(self.model)  # released by an earlier attach
        if self.model.greedy_screen is None and self.model.output_row_major is None:
            prepare_output_tables(self.model)

    def attach_draft(self, draft: "str | Path | Engine | None" = None) -> "Engine":
        """Use another checkpoint with the same tokenizer as the speculative draft (None: the embedded draft)."""
        from .speculative import check_draft

        if not isinstance(draft, Engine):
            draft = Engine.load(draft if draft is not None else embedded_draft_dir(), device=str(self.device),
                                max_context=self.max_context, max_sessions=self.sessions.max_sessions,
                                prefill_chunk=self.prefill_chunk)
        check_draft(self, draft)
        self.draft = draft
        return draft

    # -- caches ------------------------------------------------------------------------------------

    def new_cache(self) -> KVCache:
        a = self.args
        window = a.sliding_window if a.sliding_window and a.sliding_window < self.max_context else None
        capacity = window + self.prefill_chunk if window else self.max_context
        return KVCache(a.n_layers, a.n_kv_heads, a.head_dim, capacity, window, self.kv_dtype, self.device)

    def cache_for(self, session: str | None) -> KVCache:
        if session is not None:
            return self.sessions.get(session)
        if self._private is None:
            self._private = self.new_cache()
        self._private.reset()
        return self._private

    # -- prompts ---------------------------------------------------------------------------------

    def fim_tokens(self, prefix: str, suffix: str, max_tokens: int) -> list[int]:
        """The FIM prompt, trimmed to leave room for max_tokens in a linear (non-ring) cache.

        Trimming keeps the sequence start stable while the user types: the suffix keeps whole lines
        from its start within a quarter of the room, and the prefix drops whole lines from its top in
        blocks of 32, so the first kept line changes only once every 32 lines of growth.
        """
        tokens = self.tokenizer.encode_fim(prefix, suffix)
        room = self.max_context - max_tokens - 1
        if self.args.sliding_window and self.args.sliding_window < self.max_context or len(tokens) <= room:
            return tokens
        tok = self.tokenizer
        suffix_lines = suffix.splitlines(keepends=True)
        while suffix_lines and len(tok.encode_infill("".join(suffix_lines))) > room // 4:
            suffix_lines = suffix_lines[: len(suffix_lines) // 2]
        suffix = "".join(suffix_lines)
        prefix_lines = prefix.splitlines(keepends=True)
        for drop in range(32, len(prefix_lines), 32):  # always keep at least the last line
            tokens = tok.encode_fim("".join(prefix_lines[drop:]), suffix)
            if len(tokens) <= room:
                return tokens
        # Lines too long or too few to drop by blocks: keep the end of the prefix's tokens.
        suffix_ids = tok.encode_infill(suffix) if suffix else []
        head = len(tok.fim_ids([], suffix_ids))  # the template's tokens and the suffix
        prefix_ids = tok.encode("".join(prefix_lines[-32:]) if len(prefix_lines) > 32 else prefix)
        return tok.fim_ids(prefix_ids[len(prefix_ids) - (room - head):], suffix_ids)

    # -- inference ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def logits(self, tokens: list[int]) -> torch.Tensor:
        """Logits [len(tokens), vocab] in float32, computed without any cache."""
        x = torch.tensor([tokens], device=self.device)
        return self.model(x)[0]

    def stream(self, prefix: str, suffix: str = "", **kwargs) -> Generation:
        """Iterate for text pieces; afterwards `.text`, `.tokens` and `.stats` hold the completion."""
        max_tokens = kwargs.get("max_tokens", 64)
        return self.stream_tokens(self.fim_tokens(prefix, suffix, max_tokens), **kwargs)

    def complete(self, prefix: str, suffix: str = "", **kwargs) -> Completion:
        return _drained(self.stream(prefix, suffix, **kwargs))

    def chat(self, turns: list[tuple[str, str]], **kwargs) -> Completion:
        """Answer (role, content) turns with Mistral's instruct template; only for an instruct model.

        Raises ValueError when the model is not instruct-tuned or the prompt leaves no room to answer.
        """
        if not self.instruct:
            raise ValueError("this model is not instruction-tuned (no \"instruct\": true in its params)")
        prompt = self.tokenizer.encode_chat(turns)
        if len(prompt) + kwargs.get("max_tokens", 64) > self.max_context:
            raise ValueError(f"the chat prompt has {len(prompt)} tokens; the context holds {self.max_context}")
        return _drained(self.stream_tokens(prompt, **kwargs))

    def stream_tokens(self, prompt: list[int], max_tokens: int = 64, temperature: float = 0.0, top_k: int = 0,
                      top_p: float = 1.0, stop: list[str] | tuple[str, ...] | None = None,
                      stop_fn: StopFn | None = None, deadline: float | None = None, cancelled=None,
                      session: str | None = None, seed: int | None = None,
                      speculative: "str | None" = None) -> Generation:
        """Generate after an already tokenized prompt (FIM or plain).

        speculative: None or "off" (plain decoding), "ngram" (prompt lookup) or "draft" (the draft model
        attached with `attach_draft`). Greedy outputs are identical in every mode.
        """
        stops = tuple(s for s in stop or () if s)  # an empty stop string would match at once
        request = Request(max_tokens, SamplingParams(temperature, top_k, top_p), stops, stop_fn,
                          deadline, cancelled, seed)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        return self._run(prompt, request, session, generator, speculative)

    def _run(self, prompt: list[int], request: Request, session: str | None, generator,
             speculative: str | None = None) -> Generation:
        if not prompt:
            raise ValueError("empty prompt")
        cache = self.cache_for(session)
        previous = list(cache.tokens) if speculative == "ngram" else None  # recalled by prompt lookup
        stats = {"prompt_tokens": len(prompt), "drafted_tokens": 0, "accepted_tokens": 0}
        start = time.perf_counter()
        with torch.inference_mode():
            logits, reused = prefill(self.model, cache, prompt, self.prefill_chunk)
        stats["reused_tokens"] = reused
        stats["prefill_ms"] = (time.perf_counter() - start) * 1000.0
        if speculative in (None, "off"):
            steps = decode(self.model, cache, logits, request.sampling, generator)
        else:
            steps = self.speculative_steps(speculative, prompt, session, cache, logits, request, generator, stats,
                                           previous)
        steps = _inference_mode(steps)
        generation = Generation(self.tokenizer, steps, request, stats, time.perf_counter())
        generation.prompt, generation.session = prompt, session
        return generation

    @torch.inference_mode()
    def token_logprobs(self, generation: Generation) -> list[float]:
        """log p of each token a finished generation chose (its stop token included), given what came before.

        The session's cache already holds the prompt and the generated tokens, so this rolls back to the
        prompt's last token and runs the tokens once more for their logits: one pass of len(tokens) rows,
        like a speculative verification, and the cache ends as generation left it (prefix reuse goes on).
        """
        chosen = generation.tokens + ([generation.stop_token] if generation.stop_token is not None else [])
        if not chosen:
            return []
        cache = self.cache_for(generation.session)
        prompt = generation.prompt
        keep = min(common_prefix_length(cache.tokens, prompt), len(prompt) - 1)
        if not cache.rollback(keep):  # a ring that overwrote what it needs: reset, run it all again
            keep = 0
        rows = (prompt + chosen[:-1])[keep:]  # the last prompt token's row gives chosen[0], and so on
        logits = self.model.run(rows, cache, "logits", self.prefill_chunk)[-len(chosen):]  # [T, V]
        logprobs = torch.log_softmax(logits.float(), dim=-1)  # [T, V]
        return logprobs[torch.arange(len(chosen)), torch.tensor(chosen, device=logits.device)].tolist()

    def speculative_steps(self, mode, prompt, session, cache, logits, request, generator, stats, previous=None):
        """Decode steps that draft and verify several tokens at once (engine/speculative.py)."""
        from .speculative import speculative_decode

        return speculative_decode(self, mode, prompt, session, cache, logits, request, generator, stats, previous)

    def info(self) -> dict:
        a = self.args
        params = sum(p.numel() for p in self.model.parameters())
        if self.checkpoint is not None and self.checkpoint.format == "gguf":
            params = a.n_params()  # its quantized matrices are buffers of blocks (engine/qlinear.py), not parameters
        return {
            "model": str(self.checkpoint.folder) if self.checkpoint else None,
            "format": self.checkpoint.format if self.checkpoint else None,
            "family": self.checkpoint.family.name if self.checkpoint else None,
            "fim_template": self.tokenizer.fim_name,
            "parameters": params,
            "dim": a.dim, "n_layers": a.n_layers, "n_heads": a.n_heads, "n_kv_heads": a.n_kv_heads,
            "head_dim": a.head_dim, "hidden_dim": a.hidden_dim, "vocab_size": a.vocab_size,
            "sliding_window": a.sliding_window, "rope_theta": a.rope_theta,
            "max_context": self.max_context,
            "tokenizer": str(self.tokenizer.path), "fim": self.tokenizer.supports_fim,
            "instruct": self.instruct,
            "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
            "kv_cache_dtype": str(self.kv_dtype).replace("torch.", ""),
            "weights_mb": round(weights_bytes(self.model) / 2**20, 1),
            "cache_mb_per_session": round(self.new_cache().nbytes / 2**20, 1),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "fused_step": self.fused_status, "fused_kernels": self.fused_kernels,
        }


def _drained(gen: Generation) -> Completion:
    for _ in gen:
        pass
    return Completion(gen.text, gen.tokens, gen.stats)


def weights_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights as held: parameters and buffers (int8 layers keep theirs as buffers), each
    storage counted once, and the fused step's packed copies; a table that only the fused step holds
    (the output table, on the meta device in the model: `fused.release_output_table`) counts once."""
    from .fused import packed_bytes

    seen, total = set(), packed_bytes(model)
    for t in list(model.parameters()) + list(model.buffers()):
        if not t.is_meta and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def _inference_mode(steps: Iterator[list[int]]) -> Iterator[list[int]]:
    """Run each step of a generator under inference_mode (a context manager does not cross yields)."""
    while True:
        with torch.inference_mode():
            try:
                step = next(steps)
            except StopIteration:
                return
        yield step


def return_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc only; elsewhere nothing happens).

    Loading converts every tensor and packing the fused step copies the matrices; the freed buffers
    stay in the heap's free lists, about 35 MB of the embedded model's resident memory otherwise."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
