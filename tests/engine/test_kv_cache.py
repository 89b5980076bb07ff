"""The KV-cache invariant: outputs with reuse equal outputs from a cold cache, for any edit.

Unit tests pin the ring arithmetic of kv_cache.py's docstring; property tests drive an `Engine` over
random edit scripts (insertions, deletions, cursor jumps, window wraps, chunked prefill, sessions
evicted and resumed) and compare each session-cached run with a cold run and with cache-free logits.
"""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.engine as engine_module
from engine.kv_cache import CachePool, KVCache, common_prefix_length

ENGINE = settings.get_profile("engine")  # registered in conftest.py

ATOL = 1e-4
EOS = 2


# -- ring arithmetic --------------------------------------------------------------------------------

def ring(window=4, slack=2) -> KVCache:
    return KVCache(n_layers=1, n_kv_heads=1, head_dim=2, capacity=window + slack, window=window,
                   dtype=torch.float32)


def visible(cache: KVCache, mask_row: torch.Tensor | None) -> list[int]:
    """Positions a query sees; a None mask (a single query on a linear cache) sees every used slot."""
    if mask_row is None:
        return sorted(int(cache.slot_pos[s]) for s in range(cache.used))
    return sorted(int(cache.slot_pos[s]) for s in range(mask_row.numel()) if mask_row[s])


def append(cache: KVCache, n: int, chunk: int | None = None, check: bool = False) -> torch.Tensor:
    """Append n positions in chunks of at most max_chunk; return the last chunk's mask. With check, every
    query of every chunk must see exactly its window, max(0, q-W+1)..q, in slots written so far."""
    chunk = chunk or cache.max_chunk
    mask = None
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        p0 = len(cache.tokens)
        positions = torch.arange(p0, p0 + count)
        slots, mask = cache.begin(positions)
        assert slots.tolist() == [p % cache.capacity for p in positions.tolist()]
        if check:
            # The mask is computed after the whole chunk claimed its slots; a query must not lose a
            # position of its window to a later query of the same chunk.
            for i, q in enumerate(positions.tolist()):
                lo = 0 if cache.window is None else max(0, q - cache.window + 1)
                row = None if mask is None else mask[i]
                assert visible(cache, row) == list(range(lo, q + 1)), (q, p0, count)
        cache.tokens.extend(range(p0, p0 + count))
    return mask


def test_worked_example_slots():
    c = ring()
    assert (c.capacity, c.max_chunk, c.is_ring, c.max_positions) == (6, 3, True, None)
    append(c, 9)
    assert c.slot_pos.tolist() == [6, 7, 8, 3, 4, 5]
    mask = append(c, 1)  # position 9 goes to slot 3, over 3, and sees 6..9
    assert c.slot_pos.tolist() == [6, 7, 8, 9, 4, 5]
    assert visible(c, mask[0]) == [6, 7, 8, 9]


def test_worked_example_truncate_within_slack_is_exact():
    c = ring()
    append(c, 9)
    assert c.truncate(6) is True
    assert c.tokens == list(range(6))
    assert c.slot_pos.tolist() == [-1, -1, -1, 3, 4, 5]
    mask = append(c, 1)  # position 6 sees 3..6: all there
    assert visible(c, mask[0]) == [3, 4, 5, 6]


def test_worked_example_truncate_deeper_than_slack_resets():
    c = ring()
    append(c, 9)
    assert c.truncate(5) is False
    assert c.tokens == [] and c.slot_pos.tolist() == [-1] * 6 and c.used == 0


def test_truncate_after_partial_refill_checks_what_the_ring_holds():
    """Docstring's second example: 9 tokens, back to 7, one more (n = 8), then back to 5.

    The depth (3) is within slack + 1, but position 2 was overwritten by 8 before 8 was rolled back:
    keeping positions 0..4 would leave the next query without position 2. This failed before the fix
    (truncate compared only depths and returned True)."""
    c = ring()
    append(c, 9)
    assert c.truncate(7) is True
    append(c, 1)
    assert c.slot_pos.tolist() == [6, 7, -1, 3, 4, 5]
    assert c.truncate(5) is False
    assert c.tokens == []
    # While a rollback whose context is still held stays exact: back to 6 needs 3, 4, 5.
    c2 = ring()
    append(c2, 9)
    c2.truncate(7)
    append(c2, 1)
    assert c2.truncate(6) is True and c2.tokens == list(range(6))


@pytest.mark.parametrize("window,slack", [(4, 2), (8, 1), (8, 8), (5, 3)])
def test_truncate_depth_rule_on_a_fresh_ring(window, slack):
    """Filled in order to n, a rollback to m is kept iff n - m <= slack + 1 (or m == 0)."""
    n = 3 * (window + slack) + 1
    for m in range(0, n + 1):
        c = ring(window, slack)
        append(c, n)
        kept = c.truncate(m)
        assert kept == (n - m <= slack + 1 or m == 0), m
        assert len(c.tokens) == (m if n - m <= slack + 1 else 0)


@pytest.mark.parametrize("window,slack", [(4, 2), (8, 1), (3, 5)])
def test_chunks_of_max_chunk_keep_every_window(window, slack):
    """Chunks of exactly slack + 1 tokens are the longest that stay exact (docstring), and they are."""
    c = ring(window, slack)
    assert c.max_chunk == slack + 1
    append(c, 5 * (window + slack) + 3, chunk=slack + 1, check=True)


def test_a_chunk_longer_than_max_chunk_would_lose_context():
    """Why max_chunk is what it is: one token more and the first query's window is overwritten."""
    c = ring(4, 2)
    append(c, 9)
    positions = torch.arange(9, 9 + c.max_chunk + 1)  # 4 new positions: 12 overwrites 6, which 9 needs
    _, mask = c.begin(positions)
    assert 6 not in visible(c, mask[0])


def test_linear_cache_truncates_anywhere():
    c = KVCache(1, 1, 2, capacity=32, window=None, dtype=torch.float32)
    assert not c.is_ring and c.max_positions == 32 and c.max_chunk == 32
    append(c, 30, chunk=7)
    assert c.truncate(3) is True and c.tokens == [0, 1, 2]
    assert c.slot_pos[:4].tolist() == [0, 1, 2, -1]
    with pytest.raises(ValueError, match="capacity"):
        c.begin(torch.arange(3, 40))


def test_linear_cache_single_query_sees_exactly_its_past_after_rollback():
    """A decode step on a linear cache gets no mask: the used slots must then be exactly 0..q."""
    c = KVCache(1, 1, 2, capacity=32, window=None, dtype=torch.float32)
    append(c, 20, chunk=6)
    c.truncate(5)
    slots, mask = c.begin(torch.tensor([5]))
    assert mask is None and slots.tolist() == [5] and visible(c, None) == [0, 1, 2, 3, 4, 5]


@settings(ENGINE, max_examples=60)
@given(window=st.integers(2, 8), slack=st.integers(1, 6), data=st.data())
def test_ring_mask_is_exactly_the_window(window, slack, data):
    """After any mix of appends and rollbacks, each new query sees exactly positions q-W+1..q (all held),
    as long as truncate reported the rollback as exact. Rollbacks are mostly within slack + 1: the
    interesting ones."""
    c = ring(window, slack)
    ops = data.draw(st.lists(st.tuples(st.booleans(), st.integers(1, slack + 2)), min_size=1, max_size=20))
    append(c, data.draw(st.integers(0, 3 * (window + slack))), chunk=data.draw(st.integers(1, slack + 1)), check=True)
    for is_append, n in ops:
        if is_append:
            for _ in range(n):
                q = len(c.tokens)
                mask = append(c, 1)
                assert visible(c, mask[0]) == list(range(max(0, q - window + 1), q + 1))
        else:
            target = max(0, len(c.tokens) - n)
            if not c.truncate(target):
                assert c.tokens == []


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2


@settings(settings.get_profile("engine"), max_examples=60)
@given(shared=st.integers(0, 300), a_tail=st.lists(st.integers(0, 3), max_size=70),
       b_tail=st.lists(st.integers(0, 3), max_size=70), block=st.sampled_from([1, 2, 7, 64]))
def test_common_prefix_length_by_blocks_equals_item_by_item(shared, a_tail, b_tail, block):
    prefix = list(range(shared))
    a, b = prefix + a_tail, prefix + b_tail
    expected = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    assert common_prefix_length(a, b, block) == expected


# -- the invariant, through the Engine ----------------------------------------------------------------

class PrefillRecorder:
    """Wraps engine.engine.prefill to keep the logits each session-cached request started from."""

    def __init__(self, prefill):
        self.prefill, self.calls = prefill, []

    def __call__(self, model, cache, prompt, chunk=512):
        logits, reused = self.prefill(model, cache, prompt, chunk)
        self.calls.append((logits.clone(), reused))
        return logits, reused


def reference_greedy(eng, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding with no cache at all: the whole sequence through the model every step."""
    out: list[int] = []
    for _ in range(n):
        with torch.inference_mode():
            token = int(eng.model(torch.tensor([prompt + out]), last_only=True)[0, -1].argmax())
        if token == EOS:
            break
        out.append(token)
    return out


def apply_edit(doc: list[int], op: tuple, rng: random.Random) -> list[int]:
    kind, a, b = op
    pos = round(a * len(doc))
    new = [rng.randrange(1000, 32768) for _ in range(b)]
    if kind == "insert":  # typing at a cursor anywhere (a cursor jump when it moves)
        doc = doc[:pos] + new + doc[pos:]
    elif kind == "delete":
        doc = doc[:pos] + doc[pos + b:]
    elif kind == "type":  # typing at the end: the FIM-typical edit
        doc = doc + new
    elif kind == "backspace":
        doc = doc[: len(doc) - b]
    elif kind == "replace_tail":
        doc = doc[:pos] + new
    return doc if len(doc) >= 2 else doc + new + [1000, 1001]


EDIT = st.tuples(st.sampled_from(["insert", "delete", "type", "backspace", "replace_tail", "same"]),
                 st.floats(0, 1), st.integers(1, 10))
STEP = st.tuples(EDIT, st.integers(0, 2), st.integers(1, 5))  # (edit, session, max_tokens)


def run_script(eng, base: list[int], steps, seed: int) -> dict:
    """Run an edit script; assert the invariant at every step. Returns counters for coverage checks."""
    rng = random.Random(seed)
    docs = {s: list(base) for s in range(3)}
    counters = {"reused": 0, "resets": 0, "evicted": 0, "wrapped": 0}
    recorder = PrefillRecorder(engine_module.prefill)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_module, "prefill", recorder)
        for edit, session, max_tokens in steps:
            sid = f"doc{session}"
            docs[session] = prompt = apply_edit(docs[session], edit, rng)
            before = eng.sessions.caches.get(sid)
            held = list(before.tokens) if before is not None else None
            warm = eng.stream_tokens(prompt, max_tokens=max_tokens, session=sid)
            warm_text = "".join(warm)
            logits, reused = recorder.calls[-1]

            # Logits after prefill equal cache-free logits of the whole prompt.
            torch.testing.assert_close(logits, eng.logits(prompt)[-1], atol=ATOL, rtol=0)
            # Greedy tokens equal a cold run and a cache-free reference.
            cold = eng.stream_tokens(prompt, max_tokens=max_tokens)
            assert "".join(cold) == warm_text
            assert warm.tokens == cold.tokens == reference_greedy(eng, prompt, max_tokens)
            assert cold.stats["reused_tokens"] == 0

            # Reuse is the longest common prefix (all but the last prompt token at most), or 0 when the
            # session was evicted or the ring could not roll back that far.
            expected = 0 if held is None else min(common_prefix_length(held, prompt), len(prompt) - 1)
            assert warm.stats["reused_tokens"] == reused
            cache = eng.sessions.caches[sid]
            if cache.is_ring:
                assert reused in (expected, 0)
                if held is not None and len(held) - expected <= 1:
                    # The last forward pass saw positions n-W..n-1, so a rollback by one is always exact.
                    assert reused == expected
                counters["resets"] += reused != expected
                counters["wrapped"] += len(prompt) > cache.capacity
            else:
                assert reused == expected
            counters["reused"] += reused > 0
            counters["evicted"] += held is None
            assert len(eng.sessions.caches) <= eng.sessions.max_sessions
    return counters


@settings(ENGINE, max_examples=10)
@given(window=st.sampled_from([8, 12, 16]), chunk=st.sampled_from([1, 2, 3, 5, 8]),
       base_len=st.integers(2, 40), steps=st.lists(STEP, min_size=1, max_size=8), seed=st.integers(0, 99))
def test_invariant_sliding_window_ring(make_engine, window, chunk, base_len, steps, seed):
    eng = make_engine(sliding_window=window, prefill_chunk=chunk, max_sessions=2)
    assert eng.new_cache().is_ring and eng.new_cache().capacity == window + chunk
    base = [1] + [random.Random(seed).randrange(1000, 32768) for _ in range(base_len - 1)]
    run_script(eng, base, steps, seed)


@settings(ENGINE, max_examples=6)
@given(chunk=st.sampled_from([1, 3, 7, 512]), base_len=st.integers(2, 40),
       steps=st.lists(STEP, min_size=1, max_size=8), seed=st.integers(0, 99))
def test_invariant_full_attention(make_engine, chunk, base_len, steps, seed):
    eng = make_engine(sliding_window=None, prefill_chunk=chunk, max_sessions=2, max_context=128)
    assert not eng.new_cache().is_ring
    base = [1] + [random.Random(seed).randrange(1000, 32768) for _ in range(base_len - 1)]
    run_script(eng, base, steps, seed)


def typing_script(n_events: int, rng: random.Random) -> list:
    """Mostly typing at the end, some backspaces and cursor jumps; three sessions over max_sessions=2."""
    steps = []
    for i in range(n_events):
        kind = rng.choice(["type"] * 4 + ["backspace", "insert", "delete", "replace_tail"])
        steps.append(((kind, rng.random(), rng.randint(1, 4)), 0 if i % 5 else rng.randint(0, 2),
                      rng.randint(1, 6)))
    return steps


@pytest.mark.parametrize("window,chunk", [(8, 2), (12, 3)])
def test_invariant_long_typing_replay(make_engine, random_prompt, window, chunk):
    """A deterministic, longer replay that surely wraps the ring, resets, reuses and evicts."""
    rng = random.Random(window * 100 + chunk)
    eng = make_engine(sliding_window=window, prefill_chunk=chunk, max_sessions=2)
    counters = run_script(eng, [1] + random_prompt(rng, 30), typing_script(30, rng), seed=chunk)
    assert counters["reused"] >= 10 and counters["wrapped"] >= 10 and counters["evicted"] >= 2
    assert counters["resets"] >= 1


def test_regression_rollback_after_partial_refill(make_engine, random_prompt):
    """Three requests (W = 8, chunk 4, so a ring of 12): 20 tokens; the first 17 kept + 1 new; the first 13
    kept + 3 new. The third rollback (18 -> 13) is within slack + 1 = 5, but positions 6 and 7 were
    overwritten by 18 and 19 in the first request. Before the fix it reused 13 tokens anyway and its
    logits were off by ~2e-3; now it re-prefills."""
    eng = make_engine(sliding_window=8, prefill_chunk=4)
    a = random_prompt(random.Random(0), 20)
    steps = [(("same", 0, 1), 0, 1), (("replace_tail", 17 / 20, 1), 0, 1), (("replace_tail", 13 / 18, 3), 0, 1)]
    counters = run_script(eng, a, steps, seed=0)
    assert counters == {"reused": 1, "resets": 1, "evicted": 1, "wrapped": 3}


# -- memory ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("window", [None, 8])
def test_memory_stays_within_budget_over_100_sessions(make_engine, random_prompt, window):
    probe = make_engine(sliding_window=window, prefill_chunk=4, max_context=256)
    per_cache = probe.new_cache().nbytes
    assert per_cache == 2 * 2 * 2 * probe.new_cache().capacity * 8 * 4  # k and v, [L, 1, Hkv, S, D] float32
    budget = 3 * per_cache + per_cache // 2
    eng = make_engine(sliding_window=window, prefill_chunk=4, max_context=256, max_sessions=100, cache_bytes=budget)
    rng = random.Random(1)
    buffers = set()
    for i in range(100):
        gen = eng.stream_tokens(random_prompt(rng, 6), max_tokens=1, session=f"s{i}")
        list(gen)
        assert eng.sessions.nbytes <= budget
        assert len(eng.sessions.caches) <= 3
        buffers.add(id(eng.sessions.caches[f"s{i}"].k))
    assert list(eng.sessions.caches) == ["s97", "s98", "s99"]  # least recently used go first
    assert len(buffers) == 3  # evicted buffers are recycled, not reallocated


def test_lru_keeps_the_session_in_use(make_engine, random_prompt):
    eng = make_engine(max_sessions=2, max_context=64)
    rng = random.Random(2)
    prompt = random_prompt(rng, 8)
    list(eng.stream_tokens(prompt, max_tokens=1, session="active"))
    for i in range(5):
        list(eng.stream_tokens(random_prompt(rng, 4), max_tokens=1, session=f"other{i}"))
        again = eng.stream_tokens(prompt, max_tokens=1, session="active")
        list(again)
        assert again.stats["reused_tokens"] == len(prompt) - 1
    assert set(eng.sessions.caches) == {"active", "other4"}


def test_cache_pool_counts_and_drop():
    made = []

    def make():
        made.append(KVCache(1, 1, 2, capacity=4, window=None, dtype=torch.float32))
        return made[-1]

    pool = CachePool(make, max_sessions=2)
    a, b = pool.get("a"), pool.get("b")
    assert pool.get("a") is a and pool.nbytes == 2 * a.nbytes
    a.tokens.extend([5, 6])
    c = pool.get("c")  # evicts b (least recently used), recycling its buffer
    assert c is b and c.tokens == [] and list(pool.caches) == ["a", "c"]
    pool.drop("a")
    assert list(pool.caches) == ["c"] and len(made) == 2
