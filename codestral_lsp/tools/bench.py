"""`codestral-lsp bench typing`: replay typing a file and time a completion after every keystroke.

A region of FILE (default: its middle third, by lines) is removed and typed back one character at a
time. After each keystroke a completion is requested at the cursor through the same pipeline the
server uses (context windows, stop rules; no typeahead cache), once per mode, so every mode sees the
same events in the same process:

    cold         no reuse: the session cache is reset before each request
    cache        the session cache keeps the longest common token prefix
    cache+ngram  cache, plus speculative decoding drafted by prompt lookup
    cache+draft  cache, plus speculative decoding with the draft model

`identical_outputs` says whether all modes produced the same completion text at every event
(greedy decoding must make them identical).
"""

from __future__ import annotations

import copy
import inspect
import time
from pathlib import Path

from ..context import language_from_uri
from ..pipeline import Completer, Document
from .evaluate import percentile
from .replay import typing_events

MODES = ("cold", "cache", "cache+ngram", "cache+draft")


def mode_completer(engine, base_settings, mode: str) -> Completer:
    settings = copy.deepcopy(base_settings)
    settings.speculative.mode = {"cache+ngram": "ngram", "cache+draft": "draft"}.get(mode, "off")
    settings.completion.timeout_ms = 60_000  # the benchmark measures, it does not cut
    return Completer(engine, settings)


def bench_typing(engine, path: str | Path, events: int = 200, modes: tuple[str, ...] = ("cold", "cache"),
                 settings=None, progress=None) -> dict:
    from ..settings import Settings

    text = Path(path).read_text(encoding="utf-8")
    language = language_from_uri(str(path))
    evs = typing_events(text, events)
    completers = {m: mode_completer(engine, settings or Settings(), m) for m in modes}
    records = {m: [] for m in modes}
    outputs = {m: [] for m in modes}
    for n, (doc_text, offset) in enumerate(evs, 1):
        for mode in modes:
            doc = Document(f"bench://{mode}", language, doc_text, version=n)
            if mode == "cold":
                engine.sessions.drop(doc.uri)
            start = time.perf_counter()
            result = completers[mode].complete(doc, offset, use_recent=False)
            records[mode].append(((time.perf_counter() - start) * 1000, result.stats))
            outputs[mode].append(result.suggestion.text if result.suggestion else "")
        if progress:
            progress(n, len(evs))
    identical = all(outputs[m] == outputs[modes[0]] for m in modes)
    return {"events": len(evs), "identical_outputs": identical,
            "modes": {m: summarize(records[m]) for m in modes}}


def summarize(records: list[tuple[float, dict]]) -> dict:
    latencies = [ms for ms, _ in records]
    stats = [s for _, s in records]
    n = max(1, len(stats))
    generated = sum(s.get("generated_tokens", 0) for s in stats)
    decode_s = sum(s.get("decode_ms", 0.0) for s in stats) / 1000
    drafted = sum(s.get("drafted_tokens", 0) for s in stats)
    accepted = sum(s.get("accepted_tokens", 0) for s in stats)
    return {
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "mean_prompt_tokens": sum(s.get("prompt_tokens", 0) for s in stats) / n,
        "mean_reused_tokens": sum(s.get("reused_tokens", 0) for s in stats) / n,
        "mean_generated_tokens": generated / n,
        "decode_tokens_per_s": generated / decode_s if decode_s > 0 else None,
        "acceptance_rate": accepted / drafted if drafted else None,
    }


def bench_typing_lsp(path: str | Path, events: int = 200, model: str | None = None, settings: dict | None = None,
                     progress=None, pause_ms: float = 0.0) -> dict:
    """The same replay through a real server process over stdio: didChange, then inlineCompletion.

    Latency is the round trip a user waits for, with the server's debounce set to 0 (debounce is a
    choice, not a cost). Answers from the typeahead cache count: users see them too. pause_ms: a wait
    after each answer, as between a person's keystrokes (0: the next keystroke at once).
    """
    from ..lsp.documents import TextDocument
    from .lsp_client import merged, start_ready_server

    text = Path(path).read_text(encoding="utf-8")
    evs = typing_events(text, events)
    if not evs:
        return {"events": 0, "lsp": {}}
    server = start_ready_server(model, merged({"completion": {"timeoutMs": 60_000}}, settings or {}))
    try:
        uri = Path(path).resolve().as_uri()
        first_text, first_offset = evs[0]
        start_text = first_text[: first_offset - 1] + first_text[first_offset:]
        doc = TextDocument(uri, language_from_uri(uri), 1, start_text)
        server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": doc.language_id,
                                                                "version": 1, "text": start_text}})
        latencies, shown = [], 0
        for n, (new_text, offset) in enumerate(evs, 1):
            char = new_text[offset - 1]
            at = doc.position_at(offset - 1)
            doc.apply_change(char, _range(at, at))
            assert doc.text == new_text
            server.notify("textDocument/didChange", {
                "textDocument": {"uri": uri, "version": n + 1},
                "contentChanges": [{"range": _range_json(at), "text": char}]})
            cursor = doc.position_at(offset)
            start = time.perf_counter()
            answer = server.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": {"line": cursor.line, "character": cursor.character},
                "context": {"triggerKind": 2}})
            latencies.append((time.perf_counter() - start) * 1000)
            shown += bool(answer.get("result", {}).get("items"))
            if pause_ms:
                time.sleep(pause_ms / 1000)
            if progress:
                progress(n, len(evs))
    finally:
        server.close()
    return {"events": len(evs), "lsp": {"p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
                                        "shown_rate": shown / len(evs)}}


def bench_cascade(path: str | Path, events: int = 200, model: str | None = None, remote_delay_ms: int = 300,
                  progress=None, pause_ms: float = 150.0) -> dict:
    """`bench typing --lsp --cascade`: the same replay with model.cascade off (the local backend), then on in
    front of a recorded remote (`tools/recorded_remote.py`), in one run. The latency is the local
    suggestion's round trip either way (the remote's answer comes later, announced by a notification);
    `remote_requests` is how many requests the cascade escalated. Keystrokes come pause_ms apart, as a
    person types: the cascade decides after an answer and asks nothing once the user has typed on."""
    from .recorded_remote import RecordedRemote

    off = bench_typing_lsp(path, events, model, progress=progress, pause_ms=pause_ms)["lsp"]
    remote = RecordedRemote(delay_s=remote_delay_ms / 1000)
    try:
        settings = {"model": {"backend": "openai", "endpoint": remote.url, "cascade": "on"}}
        result = bench_typing_lsp(path, events, model, settings, progress=progress, pause_ms=pause_ms)
        on = {**result["lsp"], "remote_requests": remote.requests}
    finally:
        remote.close()
    return {"events": result["events"], "remote_delay_ms": remote_delay_ms, "pause_ms": pause_ms,
            "cascade_off": off, "cascade_on": on}


def _range(a, b):
    from lsprotocol.types import Range

    return Range(a, b)


def _range_json(p) -> dict:
    pos = {"line": p.line, "character": p.character}
    return {"start": pos, "end": pos}


def bench_engine(engine, prompt_tokens: int = 1500, new_tokens: int = 64, repeats: int = 3,
                 with_transformers: bool = True, with_llama_cpp: bool = True,
                 rss_before_load_mb: float | None = None) -> dict:
    """Raw engine speed on one prompt: cold prefill tokens/s and greedy decode tokens/s, best of
    `repeats`, and the same for transformers' own class of the model's family (MistralForCausalLM,
    Qwen2ForCausalLM, ...: `peers.transformers_model`) on the same weights when installed.
    `step_ms`: what one greedy step of 1 and of 5 tokens costs after the prompt, with the fused step
    beside the PyTorch one (`step_costs`), or the PyTorch step alone where there is no fused step
    (`quant_step_costs`: GGUF files, and models it refuses, like Mixtral's sparse experts).
    A GGUF model instead runs beside llama.cpp (llama-cpp-python) on the same file, same threads, and
    reports our resident memory (`memory`) against the file size plus one KV cache.

    The prompt is a fixed pseudo-random token sequence (speed does not depend on the text); decoding
    runs exactly new_tokens steps (no EOS or stop rule), so every system does the same work.
    """
    import torch

    gguf = engine.checkpoint is not None and engine.checkpoint.format == "gguf"
    rss_after_load = rss_mb_now()
    prompt = bench_prompt(prompt_tokens, engine.args.vocab_size)
    ours = {"prefill_tokens_per_s": 0.0, "decode_tokens_per_s": 0.0}
    # transformers' runs alternate with ours, so that on a shared machine both see the same load.
    theirs_once = _transformers_runner(engine, prompt, new_tokens) if with_transformers else None
    theirs = {"prefill_tokens_per_s": 0.0, "decode_tokens_per_s": 0.0} if callable(theirs_once) else theirs_once
    for _ in range(repeats):
        g = engine.stream_tokens(prompt, max_tokens=new_tokens, session=None)
        g.tokenizer = _NoEos(g.tokenizer)
        for _ in g:
            pass
        ours["prefill_tokens_per_s"] = max(ours["prefill_tokens_per_s"], prompt_tokens / g.stats["prefill_ms"] * 1000)
        ours["decode_tokens_per_s"] = max(ours["decode_tokens_per_s"],
                                          (g.stats["generated_tokens"] - 1) / g.stats["decode_ms"] * 1000)
        if callable(theirs_once):
            theirs = {k: max(v, theirs[k]) for k, v in theirs_once().items()}
    del theirs_once  # transformers' copy of the weights goes before the steps are timed
    result = {"prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "dtype": str(engine.dtype).split(".")[-1],
              "quantize": weight_quantization(engine.model), "weights_mb": engine.info()["weights_mb"],
              "threads": torch.get_num_threads(), "codestral": ours}
    if getattr(engine.model, "fused", None) is not None:
        result["step_ms"] = step_costs(engine.model, engine.new_cache, prompt)
    elif gguf:
        result["step_ms"] = quant_step_costs(engine.model, engine.new_cache, prompt)
    else:  # fewer calls: a ~1B model's step on one core takes a good part of a second
        result["step_ms"] = quant_step_costs(engine.model, engine.new_cache, prompt, rounds=3, calls=5,
                                             label="pytorch")
    if gguf:
        path = Path(engine.checkpoint.folder)  # a GGUF checkpoint's folder is the file
        cache_mb = _cache_bytes(engine) / 2**20
        file_mb = path.stat().st_size / 2**20
        rss_after_run = rss_mb_now()  # before llama.cpp loads the file into this process too
        result["memory"] = {
            "rss_before_load_mb": _round(rss_before_load_mb), "rss_after_load_mb": _round(rss_after_load),
            "rss_after_run_mb": _round(rss_after_run), "file_mb": round(file_mb, 1), "kv_cache_mb": round(cache_mb, 1),
            "rss_over_file_plus_cache": round(rss_after_run / (file_mb + cache_mb), 3) if rss_after_run else None}
        if with_llama_cpp:
            result["llama.cpp"] = _llama_cpp_speed(path, prompt, new_tokens, repeats, torch.get_num_threads(),
                                                   engine.max_context)
            theirs = result["llama.cpp"]
            if "error" not in theirs:
                result["ratio"] = {k: ours[k] / theirs[k] for k in ours}
    if with_transformers:
        result["transformers"] = theirs
        if "error" not in theirs:
            result["ratio"] = {k: ours[k] / theirs[k] for k in ours}
    return result


def bench_prompt(n: int, vocab_size: int) -> list[int]:
    """`bench_engine`'s prompt: n fixed pseudo-random ids of the model's vocabulary."""
    import torch

    return torch.randint(100, vocab_size, (n,), generator=torch.Generator().manual_seed(0)).tolist()


def step_costs_beside(engines: dict, prompt: list[int], rows: tuple[int, ...] = (1, 5), rounds: int = 3,
                      calls: int = 5) -> dict:
    """`quant_step_costs` of several engines' models ({name: engine}) interleaved round by round in one
    process, so that all see the same machine (a sparse model beside its dense twin): median
    milliseconds of a greedy step of T tokens after `prompt`, "<name>_<T>"."""
    import statistics

    import torch

    caches, times = {}, {f"{name}_{t}": [] for name in engines for t in rows}
    with torch.inference_mode():
        for name, engine in engines.items():
            cache = engine.new_cache()
            engine.model.run(prompt, cache, "last")
            caches[name] = cache, len(cache.tokens)
        for _ in range(rounds):
            for name, engine in engines.items():
                cache, base = caches[name]
                for t in rows:
                    for _ in range(calls):
                        started = time.perf_counter()
                        engine.model.run(prompt[:t], cache, "greedy")
                        times[f"{name}_{t}"].append((time.perf_counter() - started) * 1000)
                        cache.rollback(base)
    return {key: round(statistics.median(ms), 3) for key, ms in times.items()}


def step_costs(model, new_cache, prompt: list[int], rows: tuple[int, ...] = (1, 5), rounds: int = 5,
               calls: int = 20) -> dict:
    """Median milliseconds of a greedy step of T tokens after `prompt` (T = 1: decoding; T = k + 1: a
    speculative verification), with the fused step and with the PyTorch step, interleaved round by
    round so that both see the same machine; the cache is rolled back after every call."""
    import statistics

    import torch

    from engine.fused import release_output_table, restore_output_table
    from engine.model import drop_output_tables, prepare_output_tables

    fused, cache = model.fused, new_cache()
    times: dict[str, list[float]] = {}
    released = model.output.weight.is_meta  # an Engine's model while the fused step is on
    restore_output_table(model)
    prepare_output_tables(model)  # the PyTorch step as it runs without the fused one
    try:
        with torch.inference_mode():
            model.run(prompt, cache, "last")  # the steps below attend to the whole prompt
            base = len(cache.tokens)
            for _ in range(rounds):
                for kind in ("fused", "pytorch"):
                    model.fused = fused if kind == "fused" else None
                    for t in rows:
                        tokens = prompt[:t]
                        for _ in range(calls):
                            started = time.perf_counter()
                            model.run(tokens, cache, "greedy")
                            times.setdefault(f"{kind}_{t}", []).append((time.perf_counter() - started) * 1000)
                            cache.rollback(base)
    finally:
        model.fused = fused
        drop_output_tables(model)
        if released:
            release_output_table(model)
    result = {name: round(statistics.median(ms), 3) for name, ms in times.items()}
    for t in rows:
        result[f"speedup_{t}"] = round(result[f"pytorch_{t}"] / result[f"fused_{t}"], 2)
    return result


def quant_step_costs(model, new_cache, prompt: list[int], rows: tuple[int, ...] = (1, 5), rounds: int = 5,
                     calls: int = 10, label: str = "quant") -> dict:
    """`step_costs` for a model without a fused step to compare (a GGUF model, whose products run in
    the block kernels; or one on the PyTorch path, `label` "pytorch"): median milliseconds of a greedy
    step of T tokens after `prompt` ("<label>_<T>"), and the cost of 5 rows over 1 (a 4-token
    speculative verification against a decode step)."""
    import statistics

    import torch

    cache, times = new_cache(), {t: [] for t in rows}
    with torch.inference_mode():
        model.run(prompt, cache, "last")
        base = len(cache.tokens)
        for _ in range(rounds):
            for t in rows:
                for _ in range(calls):
                    started = time.perf_counter()
                    model.run(prompt[:t], cache, "greedy")
                    times[t].append((time.perf_counter() - started) * 1000)
                    cache.rollback(base)
    result = {f"{label}_{t}": round(statistics.median(ms), 3) for t, ms in times.items()}
    if {1, 5} <= set(rows):
        result["cost_5_over_1"] = round(result[f"{label}_5"] / result[f"{label}_1"], 2)
    return result


def _llama_cpp_speed(path: Path, prompt: list[int], new_tokens: int, repeats: int, threads: int, n_ctx: int) -> dict:
    """llama.cpp on the same GGUF file, as `bench_engine` times ours: prefill of the prompt from an empty
    cache, then new_tokens - 1 greedy steps (argmax of the last logits, no sampler), best of `repeats`."""
    import numpy as np

    from .peers import BENCH_EXTRA, llama_cpp_model

    try:
        import llama_cpp
    except ImportError as exc:
        return {"error": f"llama-cpp-python is not installed ({exc}); {BENCH_EXTRA}"}
    try:
        llm = llama_cpp_model(path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    except Exception as exc:  # a peer that cannot load is reported, not fatal
        return {"error": f"llama.cpp could not load {path.name}: {type(exc).__name__}: {exc}"}
    n_vocab = llm.n_vocab()

    def last_argmax() -> int:
        logits = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return int(np.ctypeslib.as_array(logits, shape=(n_vocab,)).argmax())

    best = {"prefill_tokens_per_s": 0.0, "decode_tokens_per_s": 0.0}
    try:
        for _ in range(repeats):
            llm.reset()  # the next eval drops the whole cache
            start = time.perf_counter()
            llm.eval(prompt)
            token = last_argmax()
            prefill_s = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(new_tokens - 1):
                llm.eval([token])
                token = last_argmax()
            decode_s = time.perf_counter() - start
            best["prefill_tokens_per_s"] = max(best["prefill_tokens_per_s"], len(prompt) / prefill_s)
            best["decode_tokens_per_s"] = max(best["decode_tokens_per_s"], (new_tokens - 1) / decode_s)
    except Exception as exc:
        return {"error": f"llama.cpp failed: {type(exc).__name__}: {exc}"}
    finally:
        llm.close()
    return {**best, "threads": threads, "version": getattr(llama_cpp, "__version__", None)}


def _cache_bytes(engine) -> int:
    """Bytes of one KV cache as `engine.new_cache` allocates it (k and v), computed, not allocated."""
    import torch

    a = engine.args  # the capacity as new_cache sets it: the window's or the context's
    window = a.sliding_window if a.sliding_window and a.sliding_window < engine.max_context else None
    capacity = window + engine.prefill_chunk if window else engine.max_context
    return 2 * a.n_layers * a.n_kv_heads * capacity * a.head_dim * torch.empty((), dtype=engine.kv_dtype).element_size()


def rss_mb_now() -> float | None:
    import os

    from .soak import rss_mb

    return rss_mb(os.getpid())


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def weight_quantization(model) -> str:
    from engine.quantize import Int8Linear

    return "int8" if any(isinstance(m, Int8Linear) for m in model.modules()) else "none"


class _NoEos:
    """A tokenizer view whose EOS never matches, so decoding runs its full length."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.eos_id = -1
        self.stop_ids = frozenset()

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def _transformers_runner(engine, prompt: list[int], new_tokens: int):
    """transformers' own class of the engine's family on its weights (`peers.transformers_model`), and
    a function that times one run as `bench_engine` times ours: prefill of the prompt (the last
    position's logits, as its `generate` asks for them), then new_tokens - 1 greedy steps; or
    {"error"} when transformers is missing."""
    import torch

    from .peers import transformers_model

    try:
        model = transformers_model(engine)
    except ImportError as exc:
        return {"error": f"transformers is not installed ({exc})"}
    x = torch.tensor([prompt])
    # (the output table's product for every prompt position would be 15% of a 1.5B Qwen's prefill)
    last = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}

    def once() -> dict:
        with torch.inference_mode():
            start = time.perf_counter()
            out = model(x, use_cache=True, **last)
            prefill_s = time.perf_counter() - start
            start = time.perf_counter()
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            for _ in range(new_tokens - 1):
                step = model(token, past_key_values=past, use_cache=True)
                past, token = step.past_key_values, step.logits[:, -1:].argmax(-1)
            decode_s = time.perf_counter() - start
        return {"prefill_tokens_per_s": len(prompt) / prefill_s, "decode_tokens_per_s": (new_tokens - 1) / decode_s}

    return once


KERNEL_SHAPES = ((5632, 2048), (2048, 5632))  # [N, K] of a ~1B model's w1/w3 and w2
KERNEL_TYPES = ("Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16")


def bench_kernels(types: tuple[str, ...] = KERNEL_TYPES, shapes=KERNEL_SHAPES, rows: tuple[int, ...] = (1, 5, 16),
                  threads: int = 2, calls: int = 30) -> dict:
    """Milliseconds of `quant_kernels.qmatmul` per type, shape and rows of x: the median of `calls`
    and the best wall-clock times, and the best CPU time of the process (all threads together), the
    GB/s of weight bytes of the best, the cost of 5 rows over 1 (a speculative verification against
    a decode step), and beside them torch's float32 matmul with the dequantized matrix (4 bytes a
    weight). On a loaded machine a call longer than the scheduler's slice is always interrupted, so
    its wall-clock figures grow with the load; its CPU time does not (with one thread it is the
    kernel's own time). The same matrix is multiplied call after call, so on a CPU whose last-level
    cache holds it (12 MB; 480 MiB of L3 on the development Xeon) the GB/s are cache figures: in a
    model, whose weights stream from memory, `bench engine` is the measure."""
    import statistics

    import torch

    from engine import quant_kernels

    module = quant_kernels.load(build=True)
    if module is None:
        return {"error": f"the quantized kernels are not available: {quant_kernels.failure()}"}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)

    def timed(fn, *args) -> tuple[float, float, float]:  # (median, best, best CPU time) milliseconds
        for _ in range(3):
            fn(*args)
        times, cpu = [], []
        for _ in range(calls):
            started, started_cpu = time.perf_counter(), time.process_time()
            fn(*args)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        return statistics.median(times), min(times), min(cpu)

    result = {"isa": module.isa, "threads": threads, "calls": calls, "kernels": {},
              "llama.cpp": "llama-cpp-python binds llama.h only: no single matrix product to time"}
    gen = torch.Generator().manual_seed(0)
    try:
        for n, k in shapes:
            for name in types:
                qtype = quant_kernels.QTYPES[name]
                raw = _random_blocks(name, n, k, gen)
                dense = quant_kernels.dequantize_rows(raw, qtype)  # [N, K] float32, for torch
                entry = {"weight_mb": round(raw.numel() / 1e6, 2)}
                for t in rows:
                    x, out = torch.randn(t, k, generator=gen), torch.empty(t, n)
                    ms, best, cpu = timed(module.qmatmul, x, raw, qtype, out)
                    torch_ms, torch_best, torch_cpu = timed(lambda x, w, out: torch.mm(x, w, out=out), x, dense.t(), out)
                    entry[f"rows_{t}"] = {"ms": round(ms, 3), "best_ms": round(best, 3), "cpu_ms": round(cpu, 3),
                                          "gb_per_s": round(raw.numel() / best / 1e6, 1),
                                          "torch_float32_ms": round(torch_ms, 3), "torch_float32_best_ms": round(torch_best, 3),
                                          "torch_float32_cpu_ms": round(torch_cpu, 3)}
                if {1, 5} <= set(rows):
                    entry["cost_5_over_1"] = round(entry["rows_5"]["best_ms"] / entry["rows_1"]["best_ms"], 2)
                    entry["cpu_cost_5_over_1"] = round(entry["rows_5"]["cpu_ms"] / entry["rows_1"]["cpu_ms"], 2)
                result["kernels"][f"{name} {n}x{k}"] = entry
    finally:
        torch.set_num_threads(previous)
    return result


def _random_blocks(name: str, n: int, k: int, gen):
    """[n, row_bytes] uint8: random codes with every block's f16 scales 0.005 (speed does not depend
    on the values, as long as they are finite numbers)."""
    import torch
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    if name in ("F16", "BF16"):
        return torch.randn(n, k, generator=gen).to(torch.float16 if name == "F16" else torch.bfloat16).view(torch.uint8)
    block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[name]]
    raw = torch.randint(0, 256, (n, k // block, nbytes), dtype=torch.uint8, generator=gen)
    at, fields = (208, 1) if name == "Q6_K" else (0, 1 if block == 32 else 2)  # d (and dmin) of each block
    raw[:, :, at:at + 2 * fields] = torch.full((fields,), 0.005, dtype=torch.float16).view(torch.uint8)
    return raw.reshape(n, -1)
