"""Where a GGUF model's decode step goes: wall milliseconds of a one-token greedy step after a prompt,
with the compiled step (`qlinear.compiled_step`) and with the Python step it replaces, and of the
Python step the quantized products (`QuantLinear.multiply`, by matrix shape and type); the rest is
attention, norms, RoPE and the interpreter. docs/DEVELOPMENT.md quotes it.

    python tests/engine/gguf_step_profile.py FILE.gguf [PROMPT_TOKENS=1500] [THREADS=2]
"""
import sys
import time

import torch

from engine import Engine, qlinear

path, prompt_tokens = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1500
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
engine = Engine.load(path, device="cpu")
engine.use_fused_step(build=True)  # the compiled block kernels
spent: dict[tuple, float] = {}
multiply = qlinear.QuantLinear.multiply


def timed(self, x):
    started = time.perf_counter()
    out = multiply(self, x)
    key = (self.out_features, self.in_features, self.type_name)
    spent[key] = spent.get(key, 0.0) + time.perf_counter() - started
    return out


qlinear.QuantLinear.multiply = timed
prompt = torch.randint(100, engine.args.vocab_size, (prompt_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
cache, steps = engine.new_cache(), 20
compiled = engine.model.quant_step


def step_ms() -> float:
    for _ in range(3):  # warm-up
        engine.model.run(prompt[:1], cache, "greedy")
        cache.rollback(base)
    spent.clear()
    started = time.perf_counter()
    for _ in range(steps):
        engine.model.run(prompt[:1], cache, "greedy")
        cache.rollback(base)
    return (time.perf_counter() - started) / steps * 1000


with torch.inference_mode():
    engine.model.run(prompt, cache, "last")
    base = len(cache.tokens)
    one_call = step_ms() if compiled is not None else None
    engine.model.quant_step = None
    python_step = step_ms()
print(f"step {python_step:.1f} ms after {prompt_tokens} tokens, {torch.get_num_threads()} threads; "
      f"products {sum(spent.values()) / steps * 1000:.1f} ms; compiled step: "
      f"{f'{one_call:.1f} ms' if one_call is not None else 'not for this model'}")
for (n, k, kind), seconds in sorted(spent.items(), key=lambda item: -item[1]):
    print(f"  {kind} {n}x{k}: {seconds / steps * 1000:.2f} ms")
