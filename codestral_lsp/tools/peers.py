"""`codestral-lsp bench peers`: the typing replay of `bench typing`, through our engine and its peers.

Every event of the replay (a keystroke, see `replay.typing_events`) becomes one FIM prompt, built once
by the server's own pipeline (context windows, then `Engine.fim_tokens`); every system gets exactly
those token ids and decodes greedily until EOS or `max_tokens` (no stop rules, so all do the same
work). Systems, each in its best configuration for this workload:

    codestral            our engine: the session KV cache reused across events + prompt-lookup drafting
    transformers         the family's own class (MistralForCausalLM, ...).generate on the same weights
                         (its cache lives for one call)
    transformers+lookup  the same with its prompt-lookup decoding (prompt_lookup_num_tokens)
    llama.cpp            llama-cpp-python on the same weights converted to GGUF (float32); its Llama
                         object keeps the KV cache and reuses the longest common prefix of consecutive calls

Reported per system: p50/p95 of the end-to-end latency per event (ms), `ratio` = its p50 / ours, and
`agreement` = the share of events whose generated token ids equal ours (greedy decoding of the same
fp32 weights must agree; less than ~1.0 means different numerics or a conversion error). A peer that
cannot run (package missing, conversion refused) is reported as {"error": ...}; the others still run.

Peers are optional (`pip install 'codestral-lsp[bench]'`) and imported only here, inside functions.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .evaluate import percentile
from .replay import typing_events

SYSTEMS = ("codestral", "transformers", "transformers+lookup", "llama.cpp")
BENCH_EXTRA = "pip install 'codestral-lsp[bench]'"
Progress = Callable[[str, int, int], None]  # (system, events done, events)


@dataclass
class Run:
    """One system's pass over the events: latency and generated ids per event, or why it could not run."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    outputs: list[list[int]] = field(default_factory=list)
    error: str | None = None


def peer_prompts(engine, path: str | Path, events: int | None, max_tokens: int, settings=None) -> list[list[int]]:
    """The FIM prompt ids of each event, as the server would build them (no neighbour files)."""
    from ..context import language_from_uri
    from ..pipeline import Completer, Document

    text = Path(path).read_text(encoding="utf-8")
    language = language_from_uri(str(path))
    completer = Completer(engine, settings)
    prompts = []
    for n, (doc_text, offset) in enumerate(typing_events(text, events), 1):
        doc = Document("bench://peers", language, doc_text, version=n)
        tree = completer.parses.get(doc.uri, doc.version, doc.text, doc.language_id)
        window = completer.window_for(doc, offset, tree=tree)
        prompts.append(engine.fim_tokens(window.prefix, window.suffix, max_tokens))
    return prompts


def _until_eos(ids: list[int], eos: int, max_tokens: int) -> list[int]:
    """Generated ids up to (not including) the first EOS, at most max_tokens.

    >>> _until_eos([5, 6, 2, 7], eos=2, max_tokens=32)
    [5, 6]
    """
    out = []
    for t in ids[:max_tokens]:
        if t == eos:
            break
        out.append(t)
    return out


def _timed(run: Run, prompts: list[list[int]], generate: Callable[[list[int]], list[int]],
           progress: Progress | None) -> Run:
    for n, prompt in enumerate(prompts, 1):
        start = time.perf_counter()
        ids = generate(prompt)
        run.latencies_ms.append((time.perf_counter() - start) * 1000)
        run.outputs.append(ids)
        if progress:
            progress(run.name, n, len(prompts))
    return run


def run_codestral(engine, prompts: list[list[int]], max_tokens: int, speculative: str | None = "ngram",
                  progress: Progress | None = None) -> Run:
    """Our engine, one session for the whole replay (the server keeps one per document)."""
    session = "bench://peers"
    engine.sessions.drop(session)

    def generate(prompt: list[int]) -> list[int]:
        gen = engine.stream_tokens(prompt, max_tokens=max_tokens, session=session, speculative=speculative)
        for _ in gen:
            pass
        return gen.tokens  # EOS is never among them

    return _timed(Run("codestral"), prompts, generate, progress)


def transformers_model(engine):
    """transformers' own class of the engine's family (MistralForCausalLM, LlamaForCausalLM,
    Qwen2ForCausalLM, MixtralForCausalLM, Starcoder2ForCausalLM) holding the engine's weights: written
    as that family's checkpoint (`loading.save_hf_checkpoint`, the inverse of the loader's names and
    row order) to a temporary folder and read back by `from_pretrained`, as transformers reads a
    published model (its in-memory layout may differ from its files': Mixtral's experts are fused)."""
    import math

    from transformers import AutoModelForCausalLM

    from engine.checkpoints.families import family_of_args
    from engine.checkpoints.loading import save_hf_checkpoint
    from engine.fused import weights_as_values

    a = engine.args
    state = weights_as_values(engine.model)  # the fused step on: the output table is its copy alone
    if any(not t.is_floating_point() for t in state.values()):
        raise ValueError("the engine's weights are quantized; transformers needs the float weights")
    checkpoint = engine.checkpoint
    family = family_of_args(a, checkpoint.family if checkpoint is not None else None)
    size = sum(t.numel() * t.element_size() for t in state.values())
    tokens = {"bos_token_id": engine.tokenizer.bos_id, "eos_token_id": engine.tokenizer.eos_id}
    with tempfile.TemporaryDirectory(prefix="codestral-lsp-transformers-") as folder:
        # Shards of about 1 GB: no more than one shard's converted copies beside the two models.
        save_hf_checkpoint(state, a, folder, family, shards=max(1, math.ceil(size / 2**30)), extra_config=tokens)
        del state
        # Read into its own memory, not mapped from the folder: mapped pages of a ~1B model are dropped
        # under memory pressure and read again from the disk during its decode steps.
        model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=engine.dtype, output_loading_info=True,
                                                           disable_mmap=True)
        model = model.to(engine.device).eval()
    missing = [m for m in info.get("missing_keys", ()) if "rotary" not in m]
    if missing or info.get("unexpected_keys") or info.get("mismatched_keys"):
        raise ValueError(f"weights do not map onto {type(model).__name__}: missing {missing}, "
                         f"unexpected {info.get('unexpected_keys')}, mismatched {info.get('mismatched_keys')}")
    return model


def run_transformers(engine, prompts: list[list[int]], max_tokens: int, lookup: bool = False,
                     progress: Progress | None = None) -> Run:
    """`generate` per event, greedy; with lookup, prompt-lookup drafts of our k and n-gram length."""
    run = Run("transformers+lookup" if lookup else "transformers")
    try:
        import torch

        model = transformers_model(engine)
    except ImportError as exc:
        run.error = f"transformers is not installed ({exc}); {BENCH_EXTRA}"
        return run
    except Exception as exc:  # a peer that cannot load is reported, not fatal
        run.error = f"transformers could not load the weights: {exc}"
        return run
    eos = engine.tokenizer.eos_id
    options = dict(max_new_tokens=max_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    if lookup:
        options.update(prompt_lookup_num_tokens=engine.spec_k, max_matching_ngram_size=engine.spec_ngram)

    def generate(prompt: list[int]) -> list[int]:
        with torch.inference_mode():
            out = model.generate(torch.tensor([prompt], device=engine.device), **options)
        return _until_eos(out[0, len(prompt):].tolist(), eos, max_tokens)

    try:
        return _timed(run, prompts, generate, progress)
    except Exception as exc:
        return Run(run.name, error=f"transformers failed: {type(exc).__name__}: {exc}")


def llama_cpp_model(path: str | Path, **kwargs):
    """`llama_cpp.Llama` on a GGUF file with llama.cpp's extra CPU buffer types (AMX, repacked layouts)
    off: with them on, llama-cpp-python 0.3.x crashes (a segfault in decode) on quantized files on
    AVX-512/AMX CPUs; the plain CPU buffers run the same products. `Llama` takes its model parameters
    from `llama_model_default_params` and has no argument for this one, so that function is wrapped
    while the model loads."""
    import llama_cpp.llama as module

    original = module.llama_cpp.llama_model_default_params

    def params():
        p = original()
        if hasattr(p, "use_extra_bufts"):  # llama.cpp builds before the field have no extra buffers to turn off
            p.use_extra_bufts = False
        return p

    module.llama_cpp.llama_model_default_params = params
    try:
        return module.Llama(model_path=str(path), **kwargs)
    finally:
        module.llama_cpp.llama_model_default_params = original


def run_llama_cpp(engine, prompts: list[list[int]], max_tokens: int, threads: int | None = None,
                  gguf_path: str | Path | None = None, progress: Progress | None = None) -> Run:
    """llama-cpp-python, greedy, on the engine's weights written as a float32 GGUF file (or gguf_path).

    `Llama.generate` compares a new prompt with the tokens its KV cache holds and evaluates only from
    the first difference: llama.cpp's equivalent of our session cache.
    """
    run = Run("llama.cpp")
    try:
        import llama_cpp  # noqa: F401 (installed?)
        import torch
    except ImportError as exc:
        run.error = f"llama-cpp-python is not installed ({exc}); {BENCH_EXTRA}"
        return run
    threads = threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="codestral-peers-") as tmp:
        try:
            if gguf_path is None:
                from engine.checkpoints.gguf import write_gguf
                from engine.fused import weights_as_values

                gguf_path = write_gguf(weights_as_values(engine.model).items(), engine.args, engine.tokenizer.path,
                                       Path(tmp) / "model.gguf", "f32")
            llm = llama_cpp_model(gguf_path, n_ctx=engine.max_context, n_batch=min(512, engine.max_context),
                                  n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)
        except Exception as exc:
            run.error = f"llama.cpp could not load the weights: {type(exc).__name__}: {exc}"
            return run
        eos = engine.tokenizer.eos_id

        def generate(prompt: list[int]) -> list[int]:
            out: list[int] = []
            for token in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
                if token == eos:
                    break
                out.append(token)
                if len(out) >= max_tokens:
                    break
            return out

        try:
            return _timed(run, prompts, generate, progress)
        except Exception as exc:
            return Run(run.name, error=f"llama.cpp failed: {type(exc).__name__}: {exc}")
        finally:
            if hasattr(llm, "close"):  # frees the model before the temporary folder goes
                llm.close()


def summarize(runs: list[Run], prompts: list[list[int]], max_tokens: int, threads: int) -> dict:
    """The JSON of DESIGN.md section 4, plus ratio (their p50 / ours) and mean generated tokens."""
    ours = runs[0]
    base = percentile(ours.latencies_ms, 50) if ours.latencies_ms else None
    systems: dict[str, dict] = {}
    for run in runs:
        if run.error is not None:
            systems[run.name] = {"error": run.error}
            continue
        p50 = percentile(run.latencies_ms, 50)
        same = sum(a == b for a, b in zip(run.outputs, ours.outputs))
        systems[run.name] = {
            "p50_ms": round(p50, 2), "p95_ms": round(percentile(run.latencies_ms, 95), 2),
            "agreement": same / len(ours.outputs) if ours.outputs else None,
            "ratio": round(p50 / base, 3) if base else None,
            "mean_generated_tokens": sum(map(len, run.outputs)) / max(1, len(run.outputs)),
        }
    return {"events": len(prompts), "max_tokens": max_tokens, "threads": threads,
            "mean_prompt_tokens": sum(map(len, prompts)) / max(1, len(prompts)), "systems": systems}


def bench_peers(engine, path: str | Path, events: int = 60, max_tokens: int = 32,
                systems: tuple[str, ...] = SYSTEMS, gguf_path: str | Path | None = None,
                progress: Progress | None = None, speculative: str | None = "ngram") -> tuple[dict, list[Run]]:
    """Run every system over the same prompts, one system after the other (one model in memory at a time
    besides ours). Returns the summary and the runs (latencies per event, for `plot`)."""
    import torch

    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system {', '.join(unknown)}; systems are {', '.join(SYSTEMS)}")
    prompts = peer_prompts(engine, path, events, max_tokens)
    runs = [run_codestral(engine, prompts, max_tokens, speculative, progress=progress)]  # the reference: first
    for name in systems:
        if name == "transformers":
            runs.append(run_transformers(engine, prompts, max_tokens, progress=progress))
        elif name == "transformers+lookup":
            runs.append(run_transformers(engine, prompts, max_tokens, lookup=True, progress=progress))
        elif name == "llama.cpp":
            runs.append(run_llama_cpp(engine, prompts, max_tokens, gguf_path=gguf_path, progress=progress))
    return summarize(runs, prompts, max_tokens, torch.get_num_threads()), runs


def plot(runs: list[Run], png: str | Path, title: str = "") -> Path:
    """Box plot of the per-event latencies of each system that ran, log-scale y; headless (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [r for r in runs if r.error is None and r.latencies_ms]
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(ran), 4.2), dpi=120)
    ax.boxplot([r.latencies_ms for r in ran], whis=(5, 95), showfliers=True, flierprops={"markersize": 3})
    ax.set_xticks(range(1, len(ran) + 1), [r.name for r in ran])
    ax.set_yscale("log")
    ax.set_ylabel("ms per event (end to end)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return Path(png)
