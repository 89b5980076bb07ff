"""The `codestral-lsp` command (DESIGN.md section 4). With --json the last line is one JSON object;
progress goes to stderr."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_engine(args, build_fused: bool = False):
    """The engine of --model; with build_fused (the benchmarks) the fused decode step is built first
    if this machine has not built it yet (engine/fused.py), so that they measure the fastest path."""
    from engine import CheckpointError, Engine

    try:
        engine = Engine.load(args.model, device=getattr(args, "device", "auto"), dtype=getattr(args, "dtype", "auto"),
                             quantize=getattr(args, "quantize", None))
    except (CheckpointError, ValueError, OSError) as exc:
        sys.exit(f"codestral-lsp: cannot load the model: {exc}")
    if build_fused:
        from engine.fused import NOT_BUILT

        if engine.fused_status == NOT_BUILT:
            progress("building the fused decode step (once per machine, about 40 s)...")
        progress(f"fused decode step: {engine.use_fused_step(build=True)}")
    return engine


def cmd_serve(args) -> None:
    from .lsp.protocol import serve_stdio, serve_tcp
    from .lsp.server import create_server

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    server = create_server(args.model)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        serve_tcp(server, host or "127.0.0.1", int(port))
    else:
        serve_stdio(server)


def cmd_serve_http(args) -> None:
    import os

    try:
        from .http.api import serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("starlette", "uvicorn", "anyio", "h11"):
            raise
        sys.exit(f"codestral-lsp: serve-http needs the optional HTTP dependencies ({exc.name} is missing): "
                 "pip install 'codestral-lsp[http]'")
    api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else None
    if api_key == "":
        sys.exit(f"codestral-lsp: --api-key-env {args.api_key_env}: that environment variable is unset or empty")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    serve(load_engine(args), args.host, args.port, api_key=api_key, served_names=tuple(args.served_model_name))


def parse_location(spec: str) -> tuple[Path, int, int]:
    """FILE:LINE:COL, both 1-based (COL counts characters)."""
    try:
        path, line, col = spec.rsplit(":", 2)
        return Path(path), int(line), int(col)
    except ValueError:
        sys.exit(f"codestral-lsp: expected FILE:LINE:COL (1-based), got {spec!r}")


def cmd_complete(args) -> None:
    from .context import language_from_uri
    from .pipeline import Completer, Document

    path, line, col = parse_location(args.location)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (OSError, UnicodeDecodeError) as exc:
        sys.exit(f"codestral-lsp: cannot read {path}: {exc}")
    lines = text.splitlines(keepends=True) or [""]
    if not 1 <= line <= len(lines) + 1:
        sys.exit(f"codestral-lsp: {path} has {len(lines)} lines; line {line} is out of range")
    start = sum(len(x) for x in lines[: line - 1])
    current = lines[line - 1].rstrip("\r\n") if line <= len(lines) else ""
    if not 1 <= col <= len(current) + 1:
        sys.exit(f"codestral-lsp: line {line} has {len(current)} characters; column {col} is out of range")
    offset = start + col - 1
    engine = load_engine(args)
    completer = Completer(engine)
    completer.settings.completion.max_tokens = args.max_tokens
    completer.settings.completion.timeout_ms = 120_000  # a one-off command waits for its answer
    result = completer.complete(Document(str(path), language_from_uri(str(path)), text), offset, use_recent=False)
    suggestion = result.suggestion.text if result.suggestion else ""
    if args.json:
        print(json.dumps({"completion": suggestion, "latency_ms": round(result.latency_ms, 1), **result.stats}))
    else:
        print(suggestion)
        progress(f"[{result.latency_ms:.0f} ms, {result.stats.get('generated_tokens', 0)} tokens, "
                 f"stop: {result.stats.get('stop_reason')}]")


def cmd_info(args) -> None:
    engine = load_engine(args)
    info = engine.info()
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:22} {value}")


def cmd_eval(args) -> None:
    from .pipeline import Completer
    from .tools.evaluate import evaluate, evaluate_lsp, language_table, read_records

    if args.redaction:
        from .tools.eval_redaction import evaluate_redaction

        result = evaluate_redaction(args.n or 20_000, args.seed)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return
    if args.calibration:
        from .tools.eval_calibration import calibrate

        completer = Completer(load_engine(args))
        completer.settings.speculative.mode = "off"
        completer.settings.completion.timeout_ms = 600_000  # scores must not depend on the machine's load
        result = calibrate(completer, read_records(args.calibration)[: args.limit], args.max_escalation,
                           progress=lambda n, total: n % 20 == 0 and progress(f"{n}/{total}"))
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return
    if args.make_actions:
        from .tools.eval_actions import make_tasks

        tasks = make_tasks(args.n or 100)
        with open(args.make_actions, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(t) + "\n" for t in tasks)
        progress(f"wrote {len(tasks)} tasks to {args.make_actions}")
        return
    if args.count_stubs is not None:
        from .tools.stub_counts import LANGUAGES, count_stubs

        languages = tuple(args.count_stubs.split(",")) if args.count_stubs else LANGUAGES
        result = count_stubs(languages, args.limit, progress)
        print(json.dumps(result) if args.json else "\n".join(f"{k:12} {v}" for k, v in result.items()))
        return
    if args.timing:
        from .tools.eval_actions import time_listing

        completer = Completer(load_engine(args))
        result = time_listing(completer, Path(args.timing).read_text(encoding="utf-8"))
        print(json.dumps(result) if args.json else "\n".join(f"{k:22} {v}" for k, v in result.items()))
        return
    if args.actions:
        from .tools.eval_actions import evaluate_actions

        completer = Completer(load_engine(args))
        completer.settings.speculative.mode = "off"
        result = evaluate_actions(completer, read_records(args.actions)[: args.limit],
                                  progress=lambda n, total: n % 10 == 0 and progress(f"{n}/{total}"))
        print(json.dumps(result) if args.json else "\n".join(f"{k:22} {v}" for k, v in result.items()))
        return
    if not args.data:
        sys.exit("codestral-lsp eval: give DATA.jsonl, --actions TASKS.jsonl or --make-actions OUT.jsonl")
    records = read_records(args.data)[: args.limit]

    def report(n, total, exact):
        if n % 10 == 0 or n == total:
            progress(f"{n}/{total} exact {exact}")

    if args.lsp:  # the same tasks through a real server process, as an editor asks
        settings = {"completion": {"timeoutMs": 600_000}, "model": {"quantize": args.quantize or "none"}}
        result = evaluate_lsp(records, args.model, execute=args.execute, progress=report, settings=settings,
                              by_language=args.by_language)
    else:
        completer = Completer(load_engine(args))
        completer.settings.speculative.mode = "off"
        completer.settings.completion.timeout_ms = 600_000  # scores must not depend on the machine's load
        result = evaluate(completer, records, execute=args.execute, progress=report, by_language=args.by_language)
    result["quantize"] = args.quantize or "none"  # so int8 and float scores are told apart
    if args.json:
        print(json.dumps(result))
        return
    languages = result.pop("by_language", None)
    print("\n".join(f"{k:16} {v}" for k, v in result.items()))
    if languages is not None:
        print("\n" + language_table(languages))


def cmd_bench(args) -> None:
    from .tools.bench import MODES, bench_typing, bench_typing_lsp

    def report(n, total):
        if n % 20 == 0 or n == total:
            progress(f"{n}/{total} events")

    if args.lsp and args.cascade:
        from .tools.bench import bench_cascade

        result = bench_cascade(args.file, args.events, args.model, args.remote_delay_ms, progress=report,
                               pause_ms=args.pause_ms)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return
    if args.lsp:
        result = bench_typing_lsp(args.file, args.events, args.model, progress=report)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return

    modes = tuple(m.strip() for m in args.modes.split(",")) if args.modes else ("cold", "cache")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        sys.exit(f"codestral-lsp: unknown mode {', '.join(unknown)}; modes are {', '.join(MODES)}")
    engine = load_engine(args, build_fused=True)
    engine.spec_k = args.spec_k
    if "cache+draft" in modes:
        engine.attach_draft(args.draft)
    result = bench_typing(engine, args.file, args.events, modes, progress=report)
    result["spec_k"] = args.spec_k
    result.update(fused_step=engine.fused_status, fused_kernels=engine.fused_kernels)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


def cmd_bench_engine(args) -> None:
    import torch  # in the baseline below: the interpreter and torch, before any weights

    from .tools.bench import bench_engine, rss_mb_now

    rss_before_load = rss_mb_now()

    if args.random_preset:
        from engine.config import PRESETS

        for name in (args.random_preset, args.step_beside):
            if name is not None and name not in PRESETS:
                sys.exit(f"codestral-lsp: unknown preset {name}; presets are {', '.join(PRESETS)}")
        engine = random_engine(args.random_preset, args.dtype, args.quantize, args.prompt_tokens + args.new_tokens)
    elif args.step_beside:
        sys.exit("codestral-lsp: --step-beside goes with --random-preset")
    else:
        engine = load_engine(args, build_fused=True)
    # transformers gets float weights only: with --quantize or a GGUF file its row would compare different models.
    gguf = engine.checkpoint is not None and engine.checkpoint.format == "gguf"
    result = bench_engine(engine, args.prompt_tokens, args.new_tokens, repeats=args.repeats,
                          with_transformers=not args.no_peers and not args.quantize and not gguf,
                          with_llama_cpp=not args.no_peers, rss_before_load_mb=rss_before_load)
    result.update(fused_step=engine.fused_status, fused_kernels=engine.fused_kernels)
    if args.step_beside:  # after transformers has gone: the twin's weights take its place
        from .tools.bench import bench_prompt, step_costs_beside

        twin = random_engine(args.step_beside, args.dtype, args.quantize, args.prompt_tokens + args.new_tokens)
        prompt = bench_prompt(args.prompt_tokens, engine.args.vocab_size)
        steps = step_costs_beside({args.random_preset: engine, args.step_beside: twin}, prompt)
        for t in (1, 5):
            steps[f"ratio_{t}"] = round(steps[f"{args.random_preset}_{t}"] / steps[f"{args.step_beside}_{t}"], 3)
        result["step_ms_beside"] = steps
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


def random_engine(preset: str, dtype: str, quantize: str | None, tokens: int):
    """An engine of a random model of `preset` (engine/config.py PRESETS), held as Engine.load holds a
    CPU model, with Codestral's tokenizer sized to its table (`engine.testing.preset_tokenizer`), and
    caches of room for `tokens` (a step reads only the positions held, so its cost is the same; a
    DeepSeek-Coder-1.3B cache of the default 8,192 positions is 3.2 GB in float32)."""
    import torch

    from engine.config import PRESETS
    from engine.engine import DTYPES, Engine
    from engine.model import store_weights_transposed
    from engine.testing import preset_tokenizer, random_model

    model = random_model(PRESETS[preset]).to(DTYPES.get(dtype, torch.float32))
    if quantize == "int8":
        from engine.quantize import quantize_int8

        quantize_int8(model)
    store_weights_transposed(model)  # the layout Engine.load gives CPU models
    return Engine(model, preset_tokenizer(model.args.vocab_size), max_context=tokens + 64)


def cmd_bench_peers(args) -> None:
    import torch

    from .tools.peers import SYSTEMS, bench_peers, plot

    systems = tuple(s.strip() for s in args.systems.split(",")) if args.systems else SYSTEMS
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        sys.exit(f"codestral-lsp: unknown system {', '.join(unknown)}; systems are {', '.join(SYSTEMS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = load_engine(args, build_fused=True)

    def report(system, n, total):
        if n % 20 == 0 or n == total:
            progress(f"{system}: {n}/{total} events")

    result, runs = bench_peers(engine, args.file, args.events, args.max_tokens, systems, args.gguf, progress=report,
                               speculative=None if args.speculative == "off" else args.speculative)
    result["codestral_speculative"] = args.speculative
    result.update(fused_step=engine.fused_status, fused_kernels=engine.fused_kernels)
    if args.plot:
        title = (f"{Path(args.file).name}: {result['events']} events, {args.max_tokens} tokens greedy, "
                 f"{result['threads']} thread{'s' if result['threads'] != 1 else ''}")
        progress(f"plot: {plot(runs, args.plot, title)}")
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


def cmd_bench_kernels(args) -> None:
    from .tools.bench import KERNEL_TYPES, bench_kernels

    types = tuple(t.strip().upper() for t in args.types.split(",")) if args.types else KERNEL_TYPES
    unknown = [t for t in types if t not in KERNEL_TYPES]
    if unknown:
        sys.exit(f"codestral-lsp: unknown type {', '.join(unknown)}; types are {', '.join(KERNEL_TYPES)}")
    result = bench_kernels(types, threads=args.threads, calls=args.calls)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


def cmd_bench_fuzz(args) -> None:
    from .tools.fuzz import fuzz_lsp, server_command

    if args.http:
        from .tools.fuzz_http import fuzz_http

        result = fuzz_http(args.model, args.requests, args.slow_sockets, args.seed,
                           progress=lambda n, total: progress(f"{n}/{total} requests"))
    else:
        result = fuzz_lsp(server_command(args.model), args.messages, args.seed,
                          progress=lambda n, total: progress(f"{n}/{total} messages"))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


def cmd_bench_soak(args) -> None:
    from .tools.fuzz import server_command
    from .tools.soak import soak

    result = soak(server_command(args.model), args.file, args.keystrokes,
                  progress=lambda n, total: progress(f"{n}/{total} keystrokes"))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


def cmd_train(args) -> None:
    from engine.training import train

    train.run(args)


def cmd_quantize(args) -> None:
    from engine import CheckpointError
    from engine.checkpoints.gguf import GGUFError, quantize_gguf

    progress(f"writing {args.out} ({args.type}) from {args.model_dir or 'the embedded model'}...")
    try:
        out = quantize_gguf(args.model_dir, args.out, args.type)
    except (CheckpointError, GGUFError, OSError) as exc:
        sys.exit(f"codestral-lsp: cannot quantize: {exc}")
    result = {"out": str(out), "type": args.type, "bytes": out.stat().st_size}
    print(json.dumps(result) if args.json else f"{out} ({out.stat().st_size / 2**20:.1f} MiB, {args.type})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="codestral-lsp", description="Inline code completions from a local "
                                "Codestral-style model, over LSP.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_model(sp):
        sp.add_argument("--model", help="checkpoint folder (Mistral or Hugging Face format) or GGUF file; "
                        "default: embedded")
        sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
        sp.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
        sp.add_argument("--quantize", default=None, choices=["int8"])
        return sp

    s = sub.add_parser("serve", help="run the language server (stdio unless --tcp)")
    s.add_argument("--tcp", metavar="HOST:PORT")
    s.add_argument("--stdio", action="store_true", help="LSP over stdio (the default; accepted because many "
                   "clients pass it)")
    s.add_argument("--model")
    s.set_defaults(func=cmd_serve)

    s = with_model(sub.add_parser("serve-http", help="Mistral- and OpenAI-compatible HTTP API (FIM, completions)"))
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key-env", metavar="NAME", help="require 'Authorization: Bearer KEY', KEY read from "
                   "this environment variable")
    s.add_argument("--served-model-name", nargs="+", metavar="NAME", default=[],
                   help="other model names requests may give, e.g. codestral-latest for Mistral's clients "
                   "(/v1/models still names the model that is loaded)")
    s.set_defaults(func=cmd_serve_http)

    s = with_model(sub.add_parser("complete", help="print the completion at FILE:LINE:COL (1-based)"))
    s.add_argument("location", metavar="FILE:LINE:COL")
    s.add_argument("--max-tokens", type=int, default=64)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_complete)

    s = with_model(sub.add_parser("eval", help="score completions on HumanEval-infilling style data"))
    s.add_argument("data", metavar="DATA.jsonl[.gz]", nargs="?")
    s.add_argument("--actions", metavar="TASKS.jsonl", help="score the code actions' quick fixes and stub bodies "
                   "(tasks from --make-actions)")
    s.add_argument("--make-actions", metavar="OUT.jsonl", help="write code-action tasks (half quick fixes, half "
                   "stubs) built from the held-out split of the training corpus's Python sources")
    s.add_argument("--timing", metavar="FILE.py", help="time listing the code actions at 50 random ranges of FILE")
    s.add_argument("--count-stubs", nargs="?", const="", metavar="LANG,...", help="count functions and the stubs "
                   "the code actions find in real files (Python: installed packages; others: the fetched corpus); "
                   "--limit: files per language")
    s.add_argument("--calibration", metavar="DATA.jsonl", help="the local model's confidence against its exact "
                   "matches on FIM tasks (held-out tasks: train --heldout-tasks): deciles and the cascade's threshold")
    s.add_argument("--max-escalation", type=float, default=0.3, help="with --calibration: the most requests the "
                   "threshold may send to the remote (default 0.3)")
    s.add_argument("--redaction", action="store_true", help="recall and false-positive rate of secret redaction on "
                   "a seeded corpus of planted secrets and look-alikes")
    s.add_argument("--n", type=int, help="how many tasks --make-actions writes (default 100); with --redaction, "
                   "how many positives and as many negatives (default 20,000)")
    s.add_argument("--seed", type=int, default=0, help="with --redaction: the corpus's seed")
    s.add_argument("--limit", type=int)
    s.add_argument("--execute", action="store_true", help="run the tests for pass@1 (runs generated code)")
    s.add_argument("--lsp", action="store_true", help="complete through a real server process over stdio")
    s.add_argument("--by-language", action="store_true", help="scores per task language (the records' "
                   "`language`, default python), single-line and multi-line gaps apart")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("bench", help="benchmarks")
    bench = s.add_subparsers(dest="bench", required=True)
    t = with_model(bench.add_parser("typing", help="replay typing a file; latency per keystroke"))
    t.add_argument("file")
    t.add_argument("--events", type=int, default=200)
    t.add_argument("--modes", help="comma-separated: cold,cache,cache+ngram,cache+draft")
    t.add_argument("--draft", help="draft checkpoint for cache+draft (default: the embedded draft)")
    t.add_argument("--lsp", action="store_true", help="replay through a real server process and LSP client")
    t.add_argument("--cascade", action="store_true", help="with --lsp: the replay with model.cascade off, then on "
                   "in front of a recorded remote on loopback (p50 of the local suggestion both ways)")
    t.add_argument("--remote-delay-ms", type=int, default=300, help="with --cascade: how long the recorded remote "
                   "takes to answer")
    t.add_argument("--pause-ms", type=float, default=150.0, help="with --cascade: the wait between keystrokes, "
                   "as a person types (the cascade asks nothing once the user has typed on)")
    t.add_argument("--spec-k", type=int, default=4, help="most tokens drafted per verification (speculative.k)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_bench)

    e = with_model(bench.add_parser("engine", help="prefill and decode tokens/s, ours and transformers' (llama.cpp's on a GGUF file)"))
    e.add_argument("--random-preset", help="measure a random model of this preset (engine/config.py PRESETS: embedded, "
                   "qwen2.5-coder-1.5b, deepseek-coder-1.3b, mixtral-8x-small, ...)")
    e.add_argument("--step-beside", metavar="PRESET", help="with --random-preset: also a random model of PRESET, "
                   "and both models' step_ms interleaved in this process (a sparse Mixtral beside its dense twin)")
    e.add_argument("--prompt-tokens", type=int, default=1500)
    e.add_argument("--new-tokens", type=int, default=64)
    e.add_argument("--repeats", type=int, default=3, help="runs of each system, the best reported (alternating)")
    e.add_argument("--no-peers", action="store_true", help="skip transformers (and llama.cpp on a GGUF file)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_bench_engine)

    pe = bench.add_parser("peers", help="the typing replay through our engine, transformers and llama.cpp")
    pe.add_argument("file")
    pe.add_argument("--model", help="checkpoint folder (Mistral or Hugging Face format); default: embedded")
    pe.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    pe.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16", "float16"],
                    help="weights of every system but llama.cpp (always a float32 GGUF)")
    pe.add_argument("--events", type=int, default=60)
    pe.add_argument("--max-tokens", type=int, default=32, help="greedy tokens per event (stops only at EOS)")
    pe.add_argument("--systems", help="comma-separated peers: transformers,transformers+lookup,llama.cpp "
                    "(codestral always runs: it is the reference)")
    pe.add_argument("--threads", type=int, help="torch and llama.cpp threads (default: torch's)")
    pe.add_argument("--gguf", help="use this GGUF file for llama.cpp instead of converting the weights")
    pe.add_argument("--plot", metavar="PNG", help="box plot of the latencies per event, log scale")
    pe.add_argument("--json", action="store_true")
    pe.add_argument("--speculative", default="ngram", choices=["ngram", "off"],
                    help="our engine's drafting (ngram: prompt lookup, the server's default)")
    pe.set_defaults(func=cmd_bench_peers)

    kb = bench.add_parser("kernels", help="the GGUF kernels' matrix products (Q8_0 ... BF16) at 1, 5 and 16 rows, "
                          "beside torch's float32 product")
    kb.add_argument("--types", help="comma-separated: Q8_0,Q4_0,Q4_K,Q5_K,Q6_K,F16,BF16 (default: all)")
    kb.add_argument("--threads", type=int, default=2)
    kb.add_argument("--calls", type=int, default=30, help="timed calls per figure (their median and best)")
    kb.add_argument("--json", action="store_true")
    kb.set_defaults(func=cmd_bench_kernels)

    f = bench.add_parser("fuzz", help="malformed and random LSP traffic into a real server: crashes, unanswered "
                         "requests, popups")
    f.add_argument("--model", help="checkpoint folder; default: embedded")
    f.add_argument("--messages", type=int, default=1000)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--http", action="store_true", help="fuzz serve-http instead: malformed requests, slow sockets")
    f.add_argument("--requests", type=int, default=2000, help="with --http: requests sent")
    f.add_argument("--slow-sockets", type=int, default=100, help="with --http: connections left half-sent")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_bench_fuzz)

    k = bench.add_parser("soak", help="type into a real server for a long time: latency percentiles, unanswered "
                         "requests, memory")
    k.add_argument("file")
    k.add_argument("--model", help="checkpoint folder; default: embedded")
    k.add_argument("--keystrokes", type=int, default=300)
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_bench_soak)

    s = with_model(sub.add_parser("info", help="model, tokenizer, device, dtype, memory"))
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("quantize", help="write a checkpoint as a GGUF file (quantized by llama.cpp) that both "
                       "llama.cpp and --model load")
    s.add_argument("model_dir", nargs="?", default=None, help="checkpoint folder; default: the embedded model")
    s.add_argument("out", help="the .gguf file to write")
    s.add_argument("--type", default="q8_0", choices=["q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k", "f16", "f32"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_quantize)

    from engine.training.train import add_arguments

    s = sub.add_parser("train", help="train or fine-tune a FIM model on the CPU")
    add_arguments(s)
    s.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
