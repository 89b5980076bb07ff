"""FIM training recipe for the embedded model (and for fine-tuning any small model on your own code).

    codestral-lsp train --out RUN_DIR [--tokens 20e6] [--resume] [--corpus DIR ...] [--init MODEL_DIR]
                        [--languages python,typescript,...]
    codestral-lsp train --fetch-corpus          # once, before training on languages other than Python

Each training example is a document window in Codestral's FIM order,

    [BOS] [SUFFIX] suffix [PREFIX] prefix middle [EOS]

tokenized piece by piece exactly as `Tokenizer.encode_fim` does at inference (prefix with the dummy
leading space, suffix and middle without), so the token boundary at the cursor is the one the model
will see. Middles are cut like an editor asks (the rest of a line, a few whole lines) or as random
character spans (Bavarian et al. 2022); 10% of examples are plain left-to-right text.

Compute goes where it matters: the 32k-way output projection is the costliest part on a CPU, so the
loss is taken on every middle token and on a random quarter of the other positions.

Examples are packed into fixed-length rows. Batches are a pure function of (seed, step), so a resumed
run sees exactly the batches it would have seen. State (weights and AdamW moments) is saved as
safetensors with a JSON sidecar; the model is exported in Mistral's folder format.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..checkpoints.loading import find_checkpoint, load_model, save_mistral_checkpoint
from ..checkpoints.tokenizer import Tokenizer, v3_tokenizer_path
from ..config import PRESETS
from ..model import Transformer
# PACKAGES, gather_sources and is_heldout stay importable from here, as before the corpus moved out.
from .corpus import (  # noqa: F401
    DEFAULT_CACHE,
    LANGUAGES,
    PACKAGES,
    Corpus,
    corpus_sources,
    gather_sources,
    is_heldout,
)
from .heldout import heldout_tasks

IGNORE = -100


# -- FIM examples -----------------------------------------------------------------------------------

def choose_span(text: str, rng: random.Random) -> tuple[int, int]:
    """Pick the middle [start, end) of a document the way completions are requested.

    - 35%: from a cursor inside a line to the end of that line (single-line completion),
    - 15%: one to three whole lines from a line's start, indentation and final line break included
      (HumanEval-infilling's single- and multi-line gaps: the suffix starts with the next line's text),
    - 20%: one to eight whole lines from a line's indentation (a multi-line completion),
    - 30%: a random character span of up to 256 characters (Bavarian et al. 2022).
    The end excludes the newline for the other line spans, as the editor's suffix begins with it.
    """
    n = len(text)
    r = rng.random()
    cursor = rng.randrange(n)
    line_start = text.rfind("\n", 0, cursor) + 1
    line_end = text.find("\n", cursor)
    line_end = n if line_end < 0 else line_end
    if r < 0.35:
        return cursor, line_end
    if r < 0.50:
        end = line_end
        for _ in range(rng.choice((0, 0, 0, 1, 2))):
            nxt = text.find("\n", end + 1)
            end = nxt if nxt >= 0 else end
        return line_start, min(n, end + 1)
    if r < 0.70:
        indent = len(text[line_start:line_end]) - len(text[line_start:line_end].lstrip(" \t"))
        start, end = line_start + indent, line_end
        for _ in range(rng.randint(0, 7)):
            nxt = text.find("\n", end + 1)
            if nxt < 0:
                break
            end = nxt
        return start, end
    return cursor, min(n, cursor + rng.randint(1, 256))


def fim_example(text: str, tok: Tokenizer, rng: random.Random, max_prefix_chars: int = 3000,
                max_suffix_chars: int = 1000) -> tuple[list[int], list[int]]:
    """(tokens, loss weights): weights 1 on middle tokens and EOS, 0 on the rest of the prompt."""
    start, end = choose_span(text, rng)
    prefix = text[max(0, start - rng.randint(50, max_prefix_chars)): start]
    suffix = text[end: end + rng.randint(0, max_suffix_chars)]
    middle = text[start:end]
    prompt = tok.encode_fim(prefix, suffix)
    target = tok.encode_infill(middle) + [tok.eos_id]
    return prompt + target, [0] * len(prompt) + [1] * len(target)


def lm_example(text: str, tok: Tokenizer, rng: random.Random, max_chars: int = 3000) -> tuple[list[int], list[int]]:
    start = rng.randrange(len(text))
    start = text.rfind("\n", 0, start) + 1
    ids = tok.encode(text[start: start + max_chars], bos=True)
    return ids, [0] * len(ids)


def make_batch(corpus: Corpus, pick, tok: Tokenizer, rng: random.Random, batch: int, seq_len: int,
               fim_rate: float = 0.9):
    """Pack examples into [batch, seq_len + 1] rows: inputs, targets and a per-target 'middle' flag."""
    rows, flags = [], []
    for _ in range(batch):
        ids, mid = [], []
        while len(ids) < seq_len + 1:
            path = pick(rng)  # corpus.pick_train or corpus.pick_heldout
            text = corpus.text(path)
            example = fim_example(text, tok, rng) if rng.random() < fim_rate else lm_example(text, tok, rng)
            ids += example[0]
            mid += example[1]
        rows.append(ids[: seq_len + 1])
        flags.append(mid[: seq_len + 1])
    data = torch.tensor(rows)
    middle = torch.tensor(flags, dtype=torch.bool)
    return data[:, :-1], data[:, 1:], middle[:, 1:]


# -- training -------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    out: str
    preset: str = "embedded"
    tokens: float = 20e6
    seq_len: int = 1024
    batch: int = 8
    lr: float = 1.5e-3
    min_lr: float = 1.5e-4
    warmup_steps: int = 200
    weight_decay: float = 0.1
    clip: float = 1.0
    other_frac: float = 0.1  # share of non-middle positions that get a loss
    bf16: bool = False  # autocast to bfloat16: only where the CPU has native bf16 (AVX512-BF16, AMX)
    seed: int = 1234
    eval_every: int = 250
    save_every_s: float = 600.0
    threads: int = 0  # 0: all cores
    mix: dict[str, float] | None = None  # language shares overriding corpus.LANGUAGES' (renormalised)

    @property
    def total_steps(self) -> int:
        return max(1, int(self.tokens // (self.batch * self.seq_len)))


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def init_weights(model: Transformer, seed: int) -> None:
    torch.manual_seed(seed)
    depth_scale = 1 / math.sqrt(2 * model.args.n_layers)
    for name, p in model.named_parameters():
        if p.dim() == 2:
            std = 0.02 * (depth_scale if name.endswith(("wo.weight", "w2.weight")) else 1.0)
            torch.nn.init.normal_(p, std=std)


def loss_fn(model: Transformer, x, y, middle, other_frac: float, generator: torch.Generator | None = None):
    """Cross-entropy on middle targets and a random share of the others. x, y, middle: [B, T]."""
    h = model.hidden(x)  # [B, T, dim]
    keep = middle | (torch.rand(y.shape, generator=generator) < other_frac)
    logits = model.output(h[keep]).float()  # [N, V]
    return F.cross_entropy(logits, y[keep])


def middle_loss(model: Transformer, batches) -> float:
    """Mean loss on middle tokens only: the held-out number that tracks completion quality."""
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y, middle in batches:
            h = model.hidden(x)
            logits = model.output(h[middle]).float()
            total += F.cross_entropy(logits, y[middle], reduction="sum").item()
            count += int(middle.sum())
    return total / max(1, count)


def heldout_batches(corpus: Corpus, tok: Tokenizer, cfg: TrainConfig, n: int = 4) -> list:
    """The held-out rows the run evaluates: a function of the seed, the files held out and the recipe."""
    rng = random.Random(cfg.seed + 1)
    return [make_batch(corpus, corpus.pick_heldout, tok, rng, cfg.batch, cfg.seq_len) for _ in range(n)]


def optimizer_for(model: Transformer, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() == 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": other, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))


def save_state(out: Path, model: Transformer, opt: torch.optim.AdamW, meta: dict) -> None:
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {f"model.{n}": p.detach().contiguous() for n, p in model.named_parameters()}
    for p, s in opt.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"{key}.{names[id(p)]}"] = s[key].contiguous()
        meta.setdefault("adam_step", float(s["step"]))
    tmp = out / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(out / "state.safetensors")
    (out / "state.json").write_text(json.dumps(meta, indent=2))


def load_state(out: Path, model: Transformer, opt: torch.optim.AdamW) -> dict:
    meta = json.loads((out / "state.json").read_text())
    tensors = load_file(str(out / "state.safetensors"))
    model.load_state_dict({n[6:]: t for n, t in tensors.items() if n.startswith("model.")})
    for n, p in model.named_parameters():
        opt.state[p] = {"step": torch.tensor(meta["adam_step"]), "exp_avg": tensors[f"exp_avg.{n}"],
                        "exp_avg_sq": tensors[f"exp_avg_sq.{n}"]}
    return meta


def mix_weights(overrides: dict[str, float] | None) -> dict[str, float]:
    """The default mix with some languages' weights replaced; Corpus renormalises over those present.

    >>> round(mix_weights({"python": 0.55})["python"], 2), mix_weights(None)["go"]
    (0.55, 0.08)
    """
    mix = {lang: spec.mix for lang, spec in LANGUAGES.items()}
    return {**mix, **(overrides or {})}


def parse_mix(value: str) -> dict[str, float]:
    """`python=0.55,go=0.1` -> {"python": 0.55, "go": 0.1}, with one clear error for a bad entry."""
    out = {}
    for item in filter(None, (x.strip() for x in value.split(","))):
        lang, _, weight = item.partition("=")
        if lang not in LANGUAGES:
            raise argparse.ArgumentTypeError(f"unknown language {lang!r} in --mix; known: {', '.join(LANGUAGES)}")
        try:
            out[lang] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--mix {item!r}: expected LANGUAGE=WEIGHT, e.g. python=0.55") from None
        if out[lang] < 0:
            raise argparse.ArgumentTypeError(f"--mix {item!r}: a weight cannot be negative")
    return out


def train(cfg: TrainConfig, corpus_dirs: list[str] | None = None, init: str | None = None,
          resume: bool = False, languages: list[str] | None = None, cache: Path = DEFAULT_CACHE) -> Path:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tok = Tokenizer(v3_tokenizer_path())
    languages = languages or ["python"]
    log(f"reading corpus ({', '.join(languages)})...")
    corpus = Corpus(corpus_sources(languages, corpus_dirs, cache), mix_weights(cfg.mix))
    (out / "corpus.json").write_text(json.dumps(corpus.manifest(), indent=2))
    log(f"corpus: {len(corpus.train)} training files, {len(corpus.heldout)} held out, "
        f"{sum(s.chars for s in corpus.sources) / 1e6:.1f}M characters; mix "
        + ", ".join(f"{lang} {share:.0%}" for lang, share in corpus.mix.items()))

    if init:
        model = load_model(find_checkpoint(init), torch.float32, "cpu").train()
        args = model.args
    else:
        args = PRESETS[cfg.preset]
        model = Transformer(args)
        init_weights(model, cfg.seed)
    model.train()
    opt = optimizer_for(model, cfg)
    step, tokens_seen = 0, 0
    if resume and (out / "state.json").is_file():
        meta = load_state(out, model, opt)
        step, tokens_seen = meta["step"], meta["tokens_seen"]
        log(f"resumed at step {step} ({tokens_seen / 1e6:.1f}M tokens)")
    (out / "config.json").write_text(json.dumps({"train": asdict(cfg), "model": asdict(args)}, indent=2))

    heldout = heldout_batches(corpus, tok, cfg)
    gen = torch.Generator()
    total = cfg.total_steps
    last_save = time.monotonic()
    window_start, window_tokens, ema = time.monotonic(), 0, None
    logf = open(out / "log.jsonl", "a")
    stop_requested = []
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop cleanly: save state and export the model first
        signal.signal(sig, lambda *_: stop_requested.append(True))
    while step < total and not stop_requested:
        rng = random.Random(cfg.seed * 1_000_003 + step)
        gen.manual_seed(cfg.seed * 1_000_003 + step)  # the loss positions too: a resumed run draws the same
        x, y, middle = make_batch(corpus, corpus.pick_train, tok, rng, cfg.batch, cfg.seq_len)
        lr = lr_at(cfg, step)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = loss_fn(model, x, y, middle, cfg.other_frac, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        step += 1
        tokens_seen += x.numel()
        window_tokens += x.numel()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 10 == 0 or step == total:
            elapsed = time.monotonic() - window_start
            tok_s = window_tokens / max(elapsed, 1e-6)
            eta_s = (total - step) * cfg.batch * cfg.seq_len / max(tok_s, 1e-6)
            log(f"step {step}/{total} loss {ema:.3f} lr {lr:.2e} {tok_s:,.0f} tok/s "
                f"{tokens_seen / 1e6:.2f}M tokens eta {eta_s / 60:.0f} min")
            logf.write(json.dumps({"step": step, "loss": ema, "lr": lr, "tok_s": tok_s, "tokens": tokens_seen}) + "\n")
            logf.flush()
            window_start, window_tokens = time.monotonic(), 0
        if step % cfg.eval_every == 0 or step == total:
            model.eval()
            held = middle_loss(model, heldout)
            model.train()
            log(f"held-out middle loss {held:.3f} at step {step}")
            logf.write(json.dumps({"step": step, "heldout_middle_loss": held, "tokens": tokens_seen}) + "\n")
        if time.monotonic() - last_save > cfg.save_every_s or step == total or stop_requested:
            save_state(out, model, opt, {"step": step, "tokens_seen": tokens_seen})
            save_mistral_checkpoint(model, out / "model", v3_tokenizer_path())
            last_save = time.monotonic()
    logf.close()
    log(f"{'stopped' if stop_requested else 'done'}: {tokens_seen / 1e6:.2f}M tokens; model in {out / 'model'}")
    return out / "model"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run folder: state, logs and the exported model")
    p.add_argument("--preset", default="embedded", choices=sorted(PRESETS))
    p.add_argument("--tokens", type=float, default=20e6, help="training tokens in all (sets the schedule)")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast only with native CPU bf16)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's saved state")
    p.add_argument("--corpus", action="append", help="train on this folder's .py files instead (fine-tuning)")
    p.add_argument("--languages", type=lambda v: [x.strip() for x in v.split(",") if x.strip()], default=["python"],
                   help="comma-separated languages to train on (python, typescript, javascript, go, rust, java, "
                   "cpp, c); all but python come from the fetched corpus (default: python)")
    p.add_argument("--mix", type=parse_mix, default=None, metavar="LANG=W,...",
                   help="replace some languages' shares of the training mix (e.g. python=0.55; the rest keep "
                   "their defaults, all renormalised over --languages)")
    p.add_argument("--fetch-corpus", action="store_true", help="download, licence-check, filter and deduplicate "
                   "the pinned non-Python packages into the corpus cache, print their sizes, and exit")
    p.add_argument("--corpus-cache", default=str(DEFAULT_CACHE), help="where --fetch-corpus puts the corpus")
    p.add_argument("--init", help="start from this checkpoint folder instead of random weights")
    p.add_argument("--heldout-loss", nargs="+", metavar="MODEL_DIR", help="print each checkpoint's held-out middle "
                   "loss on the rows a run evaluates (to compare checkpoints on the same rows), then exit")
    p.add_argument("--heldout-tasks", metavar="FILE.jsonl", help="write infilling tasks from the held-out files of "
                   "each language in --languages (for `codestral-lsp eval`) and exit")
    p.add_argument("--heldout-n", type=int, default=200, help="single-line tasks per language (default 200)")
    p.add_argument("--heldout-multiline", type=int, default=0, help="multi-line tasks (a block's body) per "
                   "language, after the single-line ones (default 0)")
    p.add_argument("--heldout-seed", type=int, default=7, help="the seed of --heldout-tasks' draws (default 7: "
                   "the tasks every earlier figure was measured on)")


def main(argv: list[str] | None = None) -> None:  # python -m engine.training.train
    p = argparse.ArgumentParser(prog="codestral-lsp train", description=__doc__.split("\n")[0])
    add_arguments(p)
    run(p.parse_args(argv))


def run(a: argparse.Namespace) -> None:
    if a.fetch_corpus:
        from .fetch import fetch_corpus

        fetch_corpus(Path(a.corpus_cache))
        return
    if a.heldout_loss:
        if a.threads:
            torch.set_num_threads(a.threads)
        tok = Tokenizer(v3_tokenizer_path())
        corpus = Corpus(corpus_sources(a.languages, a.corpus, Path(a.corpus_cache)))
        batches = heldout_batches(corpus, tok, TrainConfig(out="", seq_len=a.seq_len, batch=a.batch, seed=a.seed))
        for folder in a.heldout_loss:
            model = load_model(find_checkpoint(folder), torch.float32, "cpu")
            print(f"{folder}\theld-out middle loss {middle_loss(model, batches):.3f}", flush=True)
        return
    if a.heldout_tasks:
        corpus = Corpus(corpus_sources(a.languages, a.corpus, Path(a.corpus_cache)))
        tasks = heldout_tasks(corpus, a.heldout_n, a.heldout_seed, a.heldout_multiline, a.languages)
        with open(a.heldout_tasks, "w") as f:
            f.writelines(json.dumps(task) + "\n" for task in tasks)
        log(f"wrote {len(tasks)} tasks to {a.heldout_tasks}")
        return
    if not a.out:
        raise SystemExit("codestral-lsp train: --out RUN_DIR is required")
    cfg = TrainConfig(out=a.out, preset=a.preset, tokens=a.tokens, seq_len=a.seq_len, batch=a.batch, lr=a.lr,
                      min_lr=a.lr / 10, seed=a.seed, threads=a.threads, bf16=a.bf16, mix=a.mix)
    train(cfg, a.corpus, a.init, a.resume, a.languages, Path(a.corpus_cache))


if __name__ == "__main__":
    main()
