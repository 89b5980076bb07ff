"""Speculative decoding: greedy outputs equal plain decoding, sampled outputs follow the target's law.

Greedy invariants run on tiny random engines (fixtures in conftest.py) with drafts that are always
right (the target as its own draft), always wrong, and random (another random model), through ring
caches and session reuse. The sampling rule is checked by chi-square tests on toy bigram models with
a vocabulary of 6, where the exact distributions are known, and the tests prove they have the power
to catch a broken rule.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from engine import speculative
from engine.kv_cache import KVCache
from engine.sampling import SamplingParams, probabilities
from engine.speculative import DraftLength, ModelDrafter, PromptLookup, accept_or_resample, speculate

N_NEW = 24


def run(engine, prompt, mode, n=N_NEW, **kwargs):
    gen = engine.stream_tokens(prompt, max_tokens=n, speculative=mode, **kwargs)
    for _ in gen:
        pass
    return gen.tokens, gen.stats


def echo_prompt(engine, rng, random_prompt, n=20):
    """X + Y + X, with Y the model's own greedy continuation of X: prompt lookup will draft Y again."""
    x = random_prompt(rng, n)
    y, _ = run(engine, x, None, n=16)
    return x + y + x


def assert_consistent(stats):
    assert 0 <= stats["accepted_tokens"] <= stats["drafted_tokens"], stats


# -- greedy: same tokens as plain decoding ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["repetitive", "random"])
def test_greedy_equals_plain(make_engine, tokenizer, random_prompt, kind):
    eng = make_engine()
    eng.draft = make_engine(seed=1, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=32)
    if kind == "repetitive":  # code, then a passage the model repeats for a while before it diverges
        code = tokenizer.encode("def f(x):\n    return x + 1\n\n" * 4, bos=True)
        prompt = code + echo_prompt(eng, random.Random(1), random_prompt)
    else:
        prompt = random_prompt(random.Random(1), 40)
    plain, _ = run(eng, prompt, None)
    for mode in ("ngram", "draft"):
        tokens, stats = run(eng, prompt, mode)
        assert tokens == plain, mode
        assert_consistent(stats)
        if mode == "draft" or kind == "repetitive":
            assert stats["drafted_tokens"] > 0, (mode, stats)
        if mode == "ngram" and kind == "repetitive":
            assert 0 < stats["accepted_tokens"] < stats["drafted_tokens"], stats  # accepted and rejected


def test_target_as_its_own_draft_accepts_everything(make_engine, random_prompt):
    eng = make_engine()
    eng.draft = make_engine()  # the same weights, its own caches
    prompt = random_prompt(random.Random(2), 30)
    plain, _ = run(eng, prompt, None)
    tokens, stats = run(eng, prompt, "draft")
    assert tokens == plain
    assert stats["accepted_tokens"] == stats["drafted_tokens"] >= N_NEW - 6, stats


def test_wrong_drafts_fall_back_to_plain_steps(make_engine, random_prompt, monkeypatch):
    eng = make_engine(sliding_window=8, prefill_chunk=4)  # a ring: rollbacks deeper than 4 would not be exact
    eng.spec_k = 9
    prompt = random_prompt(random.Random(3), 28)
    n = 64
    plain, _ = run(eng, prompt, None, n=n)
    wrong = next(t for t in range(1000, 32768) if t not in plain)  # never the target's argmax here
    monkeypatch.setattr(PromptLookup, "propose", lambda self, context, k, *a: ([wrong] * k, None))
    forwards = count_calls(monkeypatch, eng.model)
    tokens, stats = run(eng, prompt, "ngram", n=n)
    assert tokens == plain
    assert stats["accepted_tokens"] == 0 < stats["drafted_tokens"]
    decode = forwards[len(prompt) // 4:]  # after 7 prefill chunks
    assert len(decode) == n - 1, "one forward pass per token, as plain decoding"
    assert max(decode) <= 5, "k + 1 <= max_chunk"
    assert sum(decode) - (n - 1) == stats["drafted_tokens"] <= n // 6, "drafting should pause"
    tokens, stats = run(eng, prompt, "ngram", n=n)  # the next request starts where this one left off
    assert tokens == plain and stats["drafted_tokens"] <= 2, stats


def test_random_draft_model_and_shrinking_k(make_engine, random_prompt):
    eng = make_engine()
    eng.draft = make_engine(seed=7)
    eng.spec_k = 6
    prompt = random_prompt(random.Random(4), 30)
    plain, _ = run(eng, prompt, None, n=40)
    tokens, stats = run(eng, prompt, "draft", n=40)
    assert tokens == plain
    assert_consistent(stats)
    assert stats["drafted_tokens"] < 40, "k should shrink and drafting pause when nothing is accepted"


@pytest.mark.parametrize("mode", ["ngram", "draft"])
def test_sliding_window_ring_wraps(make_engine, random_prompt, mode):
    # window 8 with chunks of 4: a ring of 12 slots, verification of at most 5 positions (k <= 4)
    eng = make_engine(sliding_window=8, prefill_chunk=4)
    eng.draft = make_engine(sliding_window=8, prefill_chunk=4)  # always right: long accepted runs
    eng.spec_k = 9  # more than the ring allows: clamped
    prompt = echo_prompt(eng, random.Random(5), random_prompt)
    assert eng.cache_for(None).is_ring
    plain, _ = run(eng, prompt, None, n=40)
    tokens, stats = run(eng, prompt, mode, n=40)
    assert tokens == plain
    assert stats["accepted_tokens"] > 10, stats  # prompt lookup finds Y after the repeated X
    assert_consistent(stats)


@pytest.mark.parametrize("window", [None, 8])
def test_session_reuse_edits_and_rollbacks(make_engine, random_prompt, window):
    args = dict(sliding_window=window, prefill_chunk=4) if window else {}
    eng = make_engine(**args)
    eng.draft = make_engine(seed=3, **args)
    rng = random.Random(6)
    base = echo_prompt(eng, rng, random_prompt)
    edits = [base, base + random_prompt(rng, 3), base[:-6] + random_prompt(rng, 2), base[:25], base,
             base + random_prompt(rng, 1)]
    modes = ["ngram", "draft", None, "draft", "ngram", "draft"]
    for prompt, mode in zip(edits, modes):
        cold, _ = run(eng, prompt, None, n=16)  # session None: a fresh private cache
        tokens, stats = run(eng, prompt, mode, n=16, session="doc")
        assert tokens == cold, (mode, len(prompt))
    assert eng.sessions.caches and eng.draft.sessions.caches


def test_full_linear_cache_stops_like_plain(make_engine, random_prompt):
    eng = make_engine(max_context=48)
    prompt = random_prompt(random.Random(8), 36)
    plain, plain_stats = run(eng, prompt, None, n=40)
    assert len(plain) < 40 and plain_stats["stop_reason"] == "length"
    tokens, stats = run(eng, prompt, "ngram", n=40)
    assert tokens == plain and stats["stop_reason"] == "length"
    for draft_context in (48, 44):  # always right, up to the end; then one too short to draft to the end
        eng.draft = make_engine(max_context=draft_context)
        tokens, stats = run(eng, prompt, "draft", n=40)
        assert tokens == plain and stats["stop_reason"] == "length", draft_context
        assert stats["accepted_tokens"] == stats["drafted_tokens"] >= len(plain) - 5 - (48 - draft_context), stats


def test_draft_cache_follows_the_context(make_engine, random_prompt, monkeypatch):
    """Every draft equals the draft model's greedy continuation of the context, computed without a cache."""
    eng = make_engine(sliding_window=8, prefill_chunk=4)
    # a smaller ring than the target's (10 slots, max_chunk 3): drafts of at most 3 tokens
    eng.draft = make_engine(seed=4, sliding_window=8, prefill_chunk=2, dim=16, n_layers=2, n_heads=2,
                            n_kv_heads=1, hidden_dim=32)
    proposals, propose = [], ModelDrafter.propose

    def recorded(self, context, k, *args):
        draft, q = propose(self, context, k, *args)
        proposals.append((list(context), draft))
        return draft, q

    monkeypatch.setattr(ModelDrafter, "propose", recorded)
    monkeypatch.setattr(DraftLength, "update", lambda self, drafted, accepted: None)  # draft at every step
    prompt = random_prompt(random.Random(16), 20)
    for session_prompt in (prompt, prompt[:-3] + [5000, 5001], prompt):  # rollbacks between requests too
        run(eng, session_prompt, "draft", n=24, session="doc")
    assert len(proposals) > 10 and max(len(d) for _, d in proposals) == 3
    for context, draft in proposals:
        expected = list(context)
        for _ in draft:
            expected.append(int(eng.draft.logits(expected)[-1].argmax()))
        assert draft == expected[len(context):]


def test_model_drafter_drops_stale_drafts_after_plain_steps(make_engine, random_prompt):
    """Rejected drafts left in the draft cache are dropped, also when plain steps came in between."""
    draft = make_engine(seed=4, dim=16, n_layers=2, n_heads=2, n_kv_heads=1, hidden_dim=32)
    drafter, rng = ModelDrafter(draft.model, draft.new_cache(), 4), random.Random(17)
    sampling, gen = SamplingParams(temperature=1.0), torch.Generator().manual_seed(17)
    context = random_prompt(rng, 20)
    with torch.inference_mode():
        for accepted in (0, 1, 2, 3):  # then 3 plain steps the drafter does not see
            proposal, q = drafter.propose(context, 3, sampling, gen)
            logits = draft.logits(context + proposal[:-1])[len(context) - 1:]  # without a cache [3, V]
            torch.testing.assert_close(q, probabilities(logits, sampling), rtol=1e-4, atol=1e-9)
            context += proposal[:accepted] + [t + 1 for t in proposal[accepted: accepted + 1]]
            context += random_prompt(rng, 3)


# -- no work before the consumer asks -------------------------------------------------------------------

def count_calls(monkeypatch, model: nn.Module) -> list[int]:
    """Record the number of tokens of every forward pass of model (`forward`, or the lean path's
    `step_hidden`, which `step` and `greedy_step` take on a linear cache)."""
    calls, forward, step_hidden = [], model.forward, model.step_hidden

    def counted(tokens, *args, **kwargs):
        calls.append(tokens.shape[1])
        return forward(tokens, *args, **kwargs)

    def counted_step_hidden(tokens, cache):
        calls.append(len(tokens))
        return step_hidden(tokens, cache)

    monkeypatch.setattr(model, "forward", counted)
    monkeypatch.setattr(model, "step_hidden", counted_step_hidden)
    return calls


@pytest.mark.parametrize("mode", ["ngram", "draft"])
def test_stop_after_the_first_token_wastes_no_forward(make_engine, random_prompt, monkeypatch, mode):
    eng = make_engine()
    eng.draft = make_engine(seed=2, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=32)
    prompt = random_prompt(random.Random(9), 20)
    target, draft = count_calls(monkeypatch, eng.model), count_calls(monkeypatch, eng.draft.model)
    tokens, stats = run(eng, prompt, mode, n=1)
    assert len(tokens) == 1 and len(target) == 1 and draft == [], (target, draft)
    tokens, stats = run(eng, prompt, mode, n=20, stop_fn=lambda text: 0)  # the stop rule fires at once
    assert len(target) == 2 and draft == [] and stats["stop_reason"] == "stop"


# -- errors -----------------------------------------------------------------------------------------

def test_draft_mode_needs_a_matching_draft(make_engine, tokenizer, random_prompt):
    eng = make_engine()
    prompt = random_prompt(random.Random(10), 10)
    with pytest.raises(ValueError, match="attach_draft"):
        eng.stream_tokens(prompt, speculative="draft")
    with pytest.raises(ValueError, match="unknown speculative mode"):
        eng.stream_tokens(prompt, speculative="medusa")

    class Other:  # a tokenizer that spells one piece differently
        def __init__(self, vocab_size=tokenizer.vocab_size, swap=None):
            self.vocab_size, self.swap, self.path = vocab_size, swap, "other.model"

        def pieces(self):
            return ["▁different" if i == self.swap else p for i, p in enumerate(tokenizer.pieces())]

    draft = make_engine(seed=1)
    draft.tokenizer = Other(swap=4321)
    eng.draft = draft
    with pytest.raises(ValueError, match="at id 4321"):
        eng.stream_tokens(prompt, speculative="draft")
    draft.tokenizer = Other(vocab_size=32000)
    with pytest.raises(ValueError, match="vocabulary of 32000"):
        eng.stream_tokens(prompt, speculative="draft")


# -- the drafters and the draft length --------------------------------------------------------------

def test_prompt_lookup_worked_example():
    lookup = PromptLookup(n_max=3)
    assert lookup.propose([5, 7, 9, 5, 7], 3) == ([9, 5, 7], None)  # the docstring's example
    assert lookup.propose([5, 7, 9, 5, 7, 9], 4) == ([5, 7, 9, 5], None)  # copies itself past the end
    assert PromptLookup(2, n_min=1).propose([1, 2, 3, 1, 2, 4, 2], 2) == ([4, 2], None)  # latest occurrence of 2
    assert PromptLookup(2).propose([1, 2, 3, 1, 2, 4, 2], 2) == ([], None)  # single tokens are not looked up
    assert PromptLookup(2, n_min=1).propose([1, 2, 3, 9, 2, 4, 1, 2], 2) == ([3, 9], None)  # 2-gram beats 1-gram
    assert PromptLookup(3).propose([1, 2, 3], 2) == ([], None)
    assert PromptLookup(1).propose([1, 2, 1], 2) == ([2, 1], None)  # n_max 1 looks up single tokens


def test_prompt_lookup_searches_the_recalled_sequence_first():
    recalled = [7, 8, 9, 4, 5, 6]  # an anchor [7, 8, 9], then what followed it last time
    lookup = PromptLookup(3, recalled)
    assert lookup.propose([1, 8, 9, 1, 7, 8, 9], 2) == ([4, 5], None)  # not the context's [1, 7]
    assert lookup.propose([1, 8, 9, 1, 7, 8, 9, 4], 9) == ([5, 6], None)  # stops at its end
    context = [5, 8, 9, 2, 5, 8, 9]
    assert PromptLookup(3, recalled).propose(context, 3) == ([2, 5, 8], None)  # a longer match wins...
    assert PromptLookup(2, recalled).propose(context, 3) == ([4, 5, 6], None)  # ...equal lengths: the recalled


def test_recalled_continuation_worked_example(tokenizer):
    from engine.speculative import recalled_continuation

    prompt_before = tokenizer.encode_fim("x = self.c", "\nreturn x\n")
    previous = prompt_before + tokenizer.encode_infill("ache[key]\n")  # the cache: prompt and completion
    typed = tokenizer.encode_fim("x = self.ca", "\nreturn x\n")  # the user typed the proposed "a"
    recalled = recalled_continuation(tokenizer, previous, typed)
    assert recalled == typed[-3:] + tokenizer.encode_infill("che[key]\n")
    assert tokenizer.decode(recalled[3:]) == "che[key]\n"
    erased = tokenizer.encode_fim("x = self.", "\nreturn x\n")  # backspace: the "c" comes back too
    assert tokenizer.decode(recalled_continuation(tokenizer, previous, erased)[3:]) == "cache[key]\n"
    other = tokenizer.encode_fim("x = self.co", "\nreturn x\n")  # typed something else: nothing to recall
    assert recalled_continuation(tokenizer, previous, other) == []
    moved = tokenizer.encode_fim("x = self.ca", "\nreturn y\n")  # the suffix changed: the tails hold [PREFIX]
    assert recalled_continuation(tokenizer, previous, moved) == []
    assert recalled_continuation(tokenizer, [], typed) == []


def test_the_previous_completion_is_recalled_as_a_draft(make_engine, tokenizer, monkeypatch):
    """The next keystroke's request drafts what the session generated last time, and stays exact."""
    eng = make_engine()
    prompt = tokenizer.encode_fim("def add(a, b):\n    return a", "\n\nprint(add(1, 2))\n")
    first, _ = run(eng, prompt, "ngram", n=16, session="doc")
    monkeypatch.setattr(PromptLookup, "_context_match", lambda self, context, n: None)  # no drafts from the context
    typed = prompt + first[:1]  # the user accepted the first token
    plain, _ = run(eng, typed, None, n=12)
    tokens, stats = run(eng, typed, "ngram", n=12, session="doc")
    assert tokens == plain
    assert stats["accepted_tokens"] >= 4, stats  # the model goes on as it said the keystroke before


def lookup_reference(context, k, n_max, n_min):
    """Brute force: latest earlier occurrence of the longest suffix n-gram, continuation extended."""
    L = len(context)
    for n in range(min(n_max, L - 1), n_min - 1, -1):
        for e in range(L - 1, n - 1, -1):
            if context[e - n: e] == context[L - n:]:
                ext = list(context)
                while len(ext) < e + k:
                    ext.append(ext[len(ext) - (L - e)])
                return ext[e: e + k]
    return []


def test_prompt_lookup_matches_brute_force():
    """Small alphabets (many matches, some at byte offsets that straddle two tokens: ids 256 and 1
    are the bytes 00 01 00 00 and 01 00 00 00) and a growing context."""
    rng = random.Random(11)
    for _ in range(60):
        alphabet = rng.choice([[0, 1, 2, 3, 4], [0, 1, 256, 65536, 65537]])
        n_max, context = rng.randint(1, 4), [rng.choice(alphabet) for _ in range(rng.randint(1, 10))]
        n_min = rng.randint(1, n_max)
        lookup = PromptLookup(n_max, n_min=n_min)
        for _ in range(15):
            k = rng.randint(0, 5)
            assert lookup.propose(context, k)[0] == lookup_reference(context, k, n_max, n_min), (context, k, n_max)
            context += [rng.choice(alphabet) for _ in range(rng.randint(1, 3))]


def test_draft_length_adapts():
    length = DraftLength(4)
    assert length.next() == 4
    length.update(4, 4)
    assert length.next() == 4  # bounded by k_max
    length.update(4, 1)
    assert length.next() == 2  # shrinks to what was accepted plus one
    length.update(2, 2)
    assert length.next() == 3
    length.update(3, 0)
    assert length.next() == 1
    pauses = []
    for _ in range(9):  # always wrong: a pause after two misses, then one probe per pause, doubling
        length.update(1, 0)
        pauses.append(0)
        while length.next() == 0:
            pauses[-1] += 1
    assert pauses == [1, 2, 4, 8, 16, 32, 64, 64, 64]
    length.update(1, 1)
    assert length.next() == 2 and length.backoff == 1


@pytest.mark.timed_drafting
def test_drafting_pauses_while_speculative_steps_are_slower():
    length = DraftLength(4)
    length.timed(0, 1, 0.010)  # plain steps: 100 tokens/s
    length.timed(4, 5, 0.025)  # 200 tokens/s: drafting pays, no pause
    assert length.next() == 4
    pauses = []
    for _ in range(8):  # then every speculative step makes 2 tokens in 40 ms: 50 tokens/s
        length.timed(1, 2, 0.040)
        pauses.append(0)
        while length.next() == 0:
            pauses[-1] += 1
    # the average goes 170, 146, 127, 111, then below 100 (99): pauses of 1, then doubling at each probe
    assert pauses == [0, 0, 0, 0, 1, 2, 4, 8], pauses
    for _ in range(6):
        length.timed(4, 5, 0.010)  # fast again (500 tokens/s): the average recovers, the pauses end
    assert length.slow_backoff == 1 and length.next() == 4
    assert length.plain_speed == pytest.approx(100)

    first = DraftLength(4)
    first.timed(4, 5, 0.010)  # a speculative step before any plain one
    assert first.next() == 0 and first.next() == 0  # plain until one is timed
    first.timed(0, 1, 0.010)
    assert first.next() == 4


# -- sampling: the output distribution is the target's -------------------------------------------------

V = 6


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, float]:
    """(statistic, critical value at 0.1%) of Pearson's test; cells expecting < 5 are pooled."""
    n = counts.sum()
    expected = probs.flatten().double() * n
    counts = counts.flatten().double()
    small = expected < 5
    e = torch.cat([expected[~small], expected[small].sum().view(1)])
    o = torch.cat([counts[~small], counts[small].sum().view(1)])
    keep = e > 0
    stat = float(((o[keep] - e[keep]) ** 2 / e[keep]).sum())
    df = int(keep.sum()) - 1
    z = 3.090  # the 99.9% normal quantile; Wilson-Hilferty approximation of the chi-square quantile
    critical = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    return stat, critical


def random_dists(gen, rows, sharpness=2.0):
    return torch.softmax(sharpness * torch.randn(rows, V, generator=gen, dtype=torch.float64), -1).float()


def accept_always(p, q, draft, u):
    return len(draft), int(torch.multinomial(p[len(draft)], 1))


def resample_from_p(p, q, draft, u):  # the acceptance test is right, the residual is not
    n, _ = accept_or_resample(p, q, draft, u)
    return n, int(torch.searchsorted(p[n].double().cumsum(0), u[-1].double(), right=True).clamp_max(V - 1))


def bonus_from_the_wrong_row(p, q, draft, u):  # p_k replaced by p_{k-1}
    return accept_or_resample(torch.cat([p[:-1], p[-2:-1]]), q, draft, u)


def sample_emitted(rule, p, q, n_samples, gen):
    """Counts [k+1, V] of the i-th token a step emits, given that it emits more than i."""
    counts = torch.zeros(len(p), V)
    for _ in range(n_samples):
        draft = [int(torch.multinomial(q[i], 1, generator=gen)) for i in range(len(q))]
        n, token = rule(p, q, draft, torch.rand(len(draft) + 1, generator=gen))
        for i, t in enumerate([*draft[:n], token]):
            counts[i, t] += 1
    return counts


@pytest.mark.parametrize("rule,right", [(accept_or_resample, True), (accept_always, False),
                                        (resample_from_p, False), (bonus_from_the_wrong_row, False)])
def test_accept_or_resample_keeps_the_target_distribution(rule, right):
    """Token i of a step follows p_i, the target's law after the drafts before it, whatever they were."""
    gen = torch.Generator().manual_seed(12)
    p, q = random_dists(gen, 3), random_dists(gen, 2)
    torch.manual_seed(12)
    counts = sample_emitted(rule, p, q, 1200 if right else 400, gen)
    tests = [chi_square(counts[i], p[i]) for i in range(3)]
    assert all(stat < crit for stat, crit in tests) == right, tests


def test_point_mass_drafts_keep_the_target_distribution():
    gen = torch.Generator().manual_seed(13)
    p = random_dists(gen, 2)
    draft = [int(p[0].argmax())]  # the likeliest token: accepted often, never always
    counts = torch.zeros(V)
    for _ in range(1000):
        n, token = accept_or_resample(p, None, draft, torch.rand(2, generator=gen))
        counts[[*draft[:n], token][0]] += 1
    stat, crit = chi_square(counts, p[0])
    assert stat < crit, (stat, crit)


class Bigram(nn.Module):
    """A stand-in model whose next-token law depends on the last token only: log P[last]."""

    def __init__(self, probs: torch.Tensor):
        super().__init__()
        self.log_probs = probs.log()  # [V, V]

    def forward(self, tokens, start_pos=0, cache=None, last_only=False):
        logits = self.log_probs[tokens]  # [1, T, V]
        return logits[:, -1:] if last_only else logits

    def run(self, tokens, cache, want="logits", chunk=None):
        cache.reserve(tokens)
        logits = self.log_probs[tokens]  # [T, V]
        return logits[-1] if want == "last" else logits.argmax(-1).tolist() if want == "greedy" else logits


def toy_cache():
    return KVCache(1, 1, 2, 64, None, torch.float32)


@pytest.mark.parametrize("mode,k_max,right", [("draft", 2, True), ("ngram", 1, True), ("draft", 1, False)])
def test_speculative_sampling_matches_the_target(monkeypatch, mode, k_max, right):
    """The joint law of the 2nd and 3rd tokens of `speculate`, against the exact one of the target."""
    gen = torch.Generator().manual_seed(14)
    P, Q = random_dists(gen, V), random_dists(gen, V)  # target and draft bigram tables [V, V]
    target, draft_model = Bigram(P), Bigram(Q)
    prompt = [int(t) for t in torch.randint(V, (12,), generator=gen)]
    if not right:
        monkeypatch.setattr(speculative, "accept_or_resample", accept_always)
    cache, draft_cache = toy_cache(), toy_cache()
    cache.tokens.extend(prompt)
    logits = target.log_probs[prompt[-1]]
    sampling, counts, stats = SamplingParams(temperature=1.0), torch.zeros(V, V), {}
    for _ in range(1000 if right else 300):
        cache.truncate(len(prompt))
        drafter = ModelDrafter(draft_model, draft_cache) if mode == "draft" else PromptLookup(3)
        steps = speculate(target, cache, logits, list(prompt), drafter, sampling, gen, stats, DraftLength(k_max))
        tokens = []
        while len(tokens) < 3:
            tokens += next(steps)
        counts[tokens[1], tokens[2]] += 1
    exact = (P[prompt[-1]] @ P)[:, None] * P  # P(x1, x2) = sum_x0 P(x0) P(x1 | x0) P(x2 | x1)
    stat, crit = chi_square(counts, exact)
    assert_consistent(stats)
    assert stats["accepted_tokens"] > 0.1 * stats["drafted_tokens"] > 0, stats
    assert (stat < crit) == right, (stat, crit)


@pytest.mark.parametrize("mode", ["ngram", "draft"])
def test_sampling_through_the_engine_is_reproducible(make_engine, random_prompt, mode):
    eng = make_engine()
    eng.draft = make_engine()
    prompt = random_prompt(random.Random(15), 20)
    a, stats = run(eng, prompt, mode, temperature=0.8, top_k=50, seed=5)
    b, _ = run(eng, prompt, mode, temperature=0.8, top_k=50, seed=5)
    assert a == b and len(a) == N_NEW
    assert_consistent(stats)
    if mode == "draft":  # same weights, so p == q: every draft is accepted
        assert stats["accepted_tokens"] == stats["drafted_tokens"] > 0, stats
