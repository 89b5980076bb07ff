"""The README's GGUF figures: per file, the worst logit difference against llama.cpp on the same file
and on a float32 file of our decoded weights, and greedy 64 tokens after ten FIM prompts against both.

    python tests/engine/gguf_report.py WORKDIR embedded              # the embedded model as Q8_0
    python tests/engine/gguf_report.py WORKDIR random q8_0 q4_k_m    # a tiny random llama at those types
"""
import sys, time, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)
from gguf_util import llama, llama_logits, llama_greedy, quantize, write_dequantized
from engine import Engine
from engine.checkpoints.gguf import convert, quantize_gguf
from engine.checkpoints.tokenizer import v3_tokenizer_path
from engine.testing import make_checkpoint
PROMPTS = [("def add(a, b):\n    return ", "\n"), ("for i in range(", "):\n    print(i)\n"),
           ("class Point:\n    def __init__(self, x, y):\n        self.", "\n"), ("import os\nimport ", "\n\nprint(sys.argv)\n"),
           ("def fib(n):\n    if n < 2:\n        return n\n    return ", "\n"), ("with open(path) as f:\n    data = ", "\n"),
           ("fn main() {\n    let v: Vec<u32> = ", ";\n}\n"), ("const sum = (a, b) => ", ";\n"),
           ("SELECT name FROM users WHERE ", ";\n"), ("#include <stdio.h>\nint main() {\n    printf(", ");\n}\n")]
d, which = Path(sys.argv[1]), sys.argv[2]
d.mkdir(exist_ok=True, parents=True)
if which == "embedded":
    files = {"q8_0": quantize_gguf(None, d / "embedded-q8_0.gguf", "q8_0") if not (d / "embedded-q8_0.gguf").exists() else d / "embedded-q8_0.gguf"}
else:
    ck = d / "ckpt"
    if not ck.exists(): make_checkpoint(ck, dim=256, hidden_dim=512, n_layers=2)
    f32 = d / "f32.gguf"
    if not f32.exists(): convert(ck, f32)
    files = {k: quantize(f32, d / f"{k}.gguf", k) for k in sys.argv[3:]}
for kind, path in files.items():
    t0 = time.time()
    eng = Engine.load(path, device="cpu")
    same = llama(path, logits_all=True)
    exact = llama(write_dequantized(eng.model, v3_tokenizer_path(), d / f"decoded-{which}-{kind}.gguf"), logits_all=True)
    worst_same = worst_exact = scale = 0.0
    g_same = g_exact = 0
    first_diff = []
    for pre, suf in PROMPTS:
        ids = eng.tokenizer.encode_fim(pre, suf)
        ours = eng.logits(ids)
        scale = max(scale, ours.abs().max().item())
        worst_same = max(worst_same, (llama_logits(same, ids) - ours).abs().max().item())
        worst_exact = max(worst_exact, (llama_logits(exact, ids) - ours).abs().max().item())
        gen = eng.stream_tokens(ids, max_tokens=64); [*gen]; toks = gen.tokens
        a = llama_greedy(same, ids, 64, eng.tokenizer.stop_ids)
        b = llama_greedy(exact, ids, 64, eng.tokenizer.stop_ids)
        g_same += toks == a; g_exact += toks == b
        first_diff.append(next((i for i, (x, y) in enumerate(zip(toks, a)) if x != y), None) if toks != a else None)
    print(f"RESULT {which} {kind}: worst|dlogit| same-file {worst_same:.4f} decoded-f32 {worst_exact:.2e} "
          f"(max|logit| {scale:.2f}); greedy 64 tok x10: same-file {g_same}/10 decoded-f32 {g_exact}/10; "
          f"first divergence vs same-file {first_diff}; {time.time()-t0:.0f}s", flush=True)
