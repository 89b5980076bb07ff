"""The README's GGUF memory figure: resident memory of a 126M-parameter random llama model as a Q8_0
GGUF file, in a fresh process, before and after loading and after an 8-token completion.

    python tests/engine/gguf_memory.py WORKDIR
"""
import sys, subprocess
from pathlib import Path
d = Path(sys.argv[1]); d.mkdir(exist_ok=True, parents=True)
out = d / "q8_0.gguf"
if not out.exists():
    from engine.testing import make_checkpoint
    from engine.checkpoints.gguf import quantize_gguf
    ck = make_checkpoint(d / "ckpt", dim=768, n_layers=12, n_heads=12, n_kv_heads=4, hidden_dim=2048)
    quantize_gguf(ck, out, "q8_0")
code = r'''
import json, sys, torch
def status():
    s = dict(l.split(":", 1) for l in open("/proc/self/status"))
    return {k: int(s[k].split()[0]) // 1024 for k in ("VmRSS", "RssAnon", "RssFile")}
base = status()
from engine import Engine
eng = Engine.load(sys.argv[1], device="cpu", max_sessions=1)
loaded = status()
c = eng.complete("def add(a, b):\n    return ", "\n", max_tokens=8)
after = status()
print(json.dumps({"params": eng.args.n_params(), "base_mb": base, "loaded_mb": loaded, "after_completion_mb": after,
                  "cache_mb": eng.info()["cache_mb_per_session"], "weights_mb": eng.info()["weights_mb"]}))
'''
r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
print(r.stdout, r.stderr[-2000:])
print("file MiB", out.stat().st_size / 2**20)
