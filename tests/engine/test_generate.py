"""Generation at the text level: stop strings, stop callbacks, limits, deadlines, cancellation, stats,
streaming, and sampling, on a tiny random model (its greedy text is arbitrary but deterministic)."""

from __future__ import annotations

import random
import time

import pytest
import torch

from engine.sampling import SamplingParams, probabilities, sample

EOS = 2
STATS = {"prompt_tokens", "reused_tokens", "prefill_ms", "decode_ms", "generated_tokens", "drafted_tokens",
         "accepted_tokens", "stop_reason"}


@pytest.fixture
def eng(make_engine):
    return make_engine(dim=32, n_layers=2, seed=3)


@pytest.fixture
def prompt(random_prompt):
    return [1] + random_prompt(random.Random(7), 11)


class ForwardCounter:
    """Counts forward passes of the model (prefill chunks and decode steps alike)."""

    def __init__(self, model):
        self.n, self.model = 0, model
        self.handle = model.register_forward_hook(self.hook)
        step_hidden = model.step_hidden

        def counted_step_hidden(tokens, cache):  # the lean path of step and greedy_step, linear caches only
            self.n += 1
            return step_hidden(tokens, cache)

        model.step_hidden = counted_step_hidden

    def hook(self, *args):
        self.n += 1

    def remove(self):
        self.handle.remove()
        del self.model.step_hidden  # the class's method again


def run(eng, prompt, **kwargs):
    gen = eng.stream_tokens(prompt, **kwargs)
    pieces = list(gen)
    return gen, pieces


def greedy_reference(eng, prompt, n):
    """Cache-free greedy tokens (stopping before EOS)."""
    out = []
    for _ in range(n):
        t = int(eng.logits(prompt + out)[-1].argmax())
        if t == EOS:
            break
        out.append(t)
    return out


@pytest.fixture
def full(eng, prompt):
    """The greedy completion of 16 tokens, with no stop rule: (tokens, text)."""
    gen, pieces = run(eng, prompt, max_tokens=16)
    assert gen.tokens == greedy_reference(eng, prompt, 16) and len(gen.tokens) == 16
    assert gen.stats["stop_reason"] == "max_tokens"
    assert "".join(pieces) == gen.text == eng.tokenizer.decode(gen.tokens)
    assert len(gen.text) >= 20
    return gen.tokens, gen.text


def token_boundaries(eng, tokens):
    """Text length after each token: [len(decode(tokens[:1])), len(decode(tokens[:2])), ...]."""
    return [len(eng.tokenizer.decode(tokens[: i + 1])) for i in range(len(tokens))]


# -- stop strings -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("at_token", [2, 5, 9])
def test_stop_string_spanning_tokens(eng, prompt, full, at_token):
    tokens, text = full
    ends = token_boundaries(eng, tokens)
    b = ends[at_token - 1]  # a token boundary inside the text
    stop = text[b - 2: b + 2]  # two characters of one token, two of the next
    assert len(stop) == 4
    cut = text.find(stop)
    # The stop string completes with the first token whose text reaches past cut + len(stop).
    needed = next(i + 1 for i, e in enumerate(ends) if e >= cut + len(stop))
    counter = ForwardCounter(eng.model)
    gen, pieces = run(eng, prompt, max_tokens=16, stop=[stop])
    counter.remove()
    assert gen.text == text[:cut]
    assert "".join(pieces) == gen.text  # nothing of the stop string was ever streamed
    assert gen.stats["stop_reason"] == "stop"
    assert gen.tokens == tokens[:needed]
    assert counter.n == 1 + needed - 1  # one prefill pass, then a decode pass per token but the last


def test_earliest_of_several_stop_strings_wins(eng, prompt, full):
    tokens, text = full
    late, early = text[14:17], text[6:8]
    gen, pieces = run(eng, prompt, max_tokens=16, stop=[late, early])
    assert gen.text == text[: min(text.find(late), text.find(early))]
    assert "".join(pieces) == gen.text


def test_partial_stop_match_is_held_back_then_released(eng, prompt, full):
    """A stop string whose beginning matches the end of a piece: held back, then released when it fails."""
    tokens, text = full
    ends = token_boundaries(eng, tokens)
    stop = text[ends[2] - 1] + "\x00never"
    gen = eng.stream_tokens(prompt, max_tokens=16, stop=[stop])
    emitted = []  # the text streamed so far, after each piece
    for piece in gen:
        emitted.append((emitted[-1] if emitted else "") + piece)
    assert text[: ends[2]] not in emitted  # after the third token its last character was held back
    assert text[: ends[2] - 1] in emitted
    assert emitted[-1] == gen.text == text
    assert gen.stats["stop_reason"] == "max_tokens"


def test_stop_string_in_the_first_token(eng, prompt, full):
    tokens, text = full
    gen, pieces = run(eng, prompt, max_tokens=16, stop=[text[0]])
    assert gen.text == "" and pieces in ([], [""]) and gen.tokens == tokens[:1]
    assert gen.stats["stop_reason"] == "stop"


# -- stop callback -----------------------------------------------------------------------------------------

def test_stop_fn_cut(eng, prompt, full):
    tokens, text = full
    calls = []

    def stop_fn(so_far: str):
        calls.append(so_far)
        return 10 if len(so_far) >= 10 else None

    gen, pieces = run(eng, prompt, max_tokens=16, stop_fn=stop_fn)
    assert gen.text == text[:10] == "".join(pieces)
    assert gen.stats["stop_reason"] == "stop"
    needed = next(i + 1 for i, e in enumerate(token_boundaries(eng, tokens)) if e >= 10)
    assert gen.tokens == tokens[:needed] and len(calls) == needed
    assert all(text.startswith(c) for c in calls)  # it sees the text so far, token by token


def test_stop_fn_cut_behind_streamed_text(eng, prompt, full):
    """A rule like "stop at a line that dedents" decides on a later token to cut text that is already out."""
    tokens, text = full
    ends = token_boundaries(eng, tokens)
    keep = ends[1]  # keep two tokens' text; decide only when the fourth arrives

    gen, pieces = run(eng, prompt, max_tokens=16, stop_fn=lambda s: keep if len(s) >= ends[3] else None)
    assert gen.text == text[:keep]
    assert "".join(pieces) == gen.text


# -- limits, deadline, cancellation ----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7])
def test_max_tokens(eng, prompt, full, n):
    counter = ForwardCounter(eng.model)
    gen, pieces = run(eng, prompt, max_tokens=n)
    counter.remove()
    assert gen.tokens == full[0][:n]
    assert gen.stats["stop_reason"] == "max_tokens" and gen.stats["generated_tokens"] == n
    assert "".join(pieces) == gen.text == eng.tokenizer.decode(full[0][:n])
    assert counter.n == 1 + n - 1  # the last sampled token is never pushed through the model


def test_deadline_in_the_past_stops_after_first_step(eng, prompt, full):
    counter = ForwardCounter(eng.model)
    gen, pieces = run(eng, prompt, max_tokens=16, deadline=time.monotonic() - 1.0)
    counter.remove()
    assert gen.stats["stop_reason"] == "deadline"
    assert gen.tokens == full[0][:1] and gen.stats["generated_tokens"] == 1
    assert "".join(pieces) == gen.text == eng.tokenizer.decode(full[0][:1])
    assert counter.n == 1  # the prefill only: no decode step after the deadline


def test_deadline_in_the_future_does_not_stop(eng, prompt, full):
    gen, _ = run(eng, prompt, max_tokens=16, deadline=time.monotonic() + 600)
    assert gen.tokens == full[0] and gen.stats["stop_reason"] == "max_tokens"


@pytest.mark.parametrize("after", [1, 3])
def test_cancelled_callback(eng, prompt, full, after):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) >= after

    counter = ForwardCounter(eng.model)
    gen, pieces = run(eng, prompt, max_tokens=16, cancelled=cancelled)
    counter.remove()
    assert gen.stats["stop_reason"] == "cancelled"
    assert gen.tokens == full[0][:after] and len(calls) == after
    assert "".join(pieces) == gen.text
    assert counter.n == 1 + after - 1


def test_linear_cache_full_stops_with_length(make_engine, random_prompt):
    """A full-attention cache of 16 positions and a prompt of 10: generation ends with "length" and the
    tokens it did produce are the right ones."""
    eng = make_engine(max_context=16, seed=3)
    prompt = [1] + random_prompt(random.Random(3), 9)
    gen, pieces = run(eng, prompt, max_tokens=50)
    assert gen.stats["stop_reason"] == "length"
    assert 6 <= len(gen.tokens) <= 7
    assert gen.tokens == greedy_reference(eng, prompt, len(gen.tokens))
    assert "".join(pieces) == gen.text


def test_linear_cache_full_uses_every_position(make_engine, random_prompt):
    """Positions 10..15 take the keys of generated tokens 1..6; the logits at 15 still give a 7th token."""
    eng = make_engine(max_context=16, seed=3)
    prompt = [1] + random_prompt(random.Random(3), 9)
    gen, _ = run(eng, prompt, max_tokens=50)
    assert len(gen.tokens) == 7


# -- EOS -------------------------------------------------------------------------------------------------------

def test_eos_stops_and_is_not_part_of_the_text(make_engine, prompt):
    eng = make_engine(seed=3, dim=32, n_layers=2)
    target = greedy_reference(eng, prompt, 4)[3]
    model = eng.model
    original = model.output.weight.detach().clone()
    try:
        with torch.no_grad():  # swap the output rows of EOS and of the 4th greedy token
            model.output.weight[[EOS, target]] = original[[target, EOS]]
        expected = greedy_reference(eng, prompt, 16)
        assert len(expected) <= 3
        gen, pieces = run(eng, prompt, max_tokens=16)
        assert gen.tokens == expected and EOS not in gen.tokens
        assert gen.stats["stop_reason"] == "eos" and gen.stats["generated_tokens"] == len(expected)
        assert "".join(pieces) == gen.text == eng.tokenizer.decode(expected)
    finally:
        with torch.no_grad():
            model.output.weight.copy_(original)


# -- stats and streaming -----------------------------------------------------------------------------------------

def test_stats(eng, prompt):
    gen, _ = run(eng, prompt, max_tokens=5, session="doc")
    s = gen.stats
    assert STATS <= set(s)
    assert s["prompt_tokens"] == len(prompt) and s["reused_tokens"] == 0
    assert s["generated_tokens"] == len(gen.tokens) == 5
    assert s["drafted_tokens"] == 0 and s["accepted_tokens"] == 0
    assert s["prefill_ms"] > 0 and s["decode_ms"] > 0 and s["stop_reason"] == "max_tokens"
    again, _ = run(eng, prompt + gen.tokens[:2], max_tokens=3, session="doc")
    assert STATS <= set(again.stats)
    assert again.stats["reused_tokens"] == len(prompt) + 1  # all but the last prompt token
    assert again.stats["prompt_tokens"] == len(prompt) + 2


def test_complete_and_stream_fim(eng):
    """The text-level facade: complete() == the concatenated stream of the same FIM request."""
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    c = eng.complete(prefix, suffix, max_tokens=8)
    gen = eng.stream(prefix, suffix, max_tokens=8)
    assert "".join(gen) == gen.text == c.text
    assert gen.tokens == c.tokens and STATS <= set(c.stats)
    assert c.stats["prompt_tokens"] == len(eng.tokenizer.encode_fim(prefix, suffix))


@pytest.mark.parametrize("seed", range(4))
def test_streamed_pieces_concatenate_to_text(make_engine, random_prompt, seed):
    eng = make_engine(seed=seed)
    prompt = [1] + random_prompt(random.Random(seed), 5 + seed)
    gen = eng.stream_tokens(prompt, max_tokens=24, temperature=1.5, seed=seed)
    pieces = list(gen)
    assert "".join(pieces) == gen.text == eng.tokenizer.decode(gen.tokens)
    assert all(p for p in pieces) and len(pieces) > 1  # streamed as it goes, not all at the end


# -- sampling ----------------------------------------------------------------------------------------------------

def test_seeded_sampling_is_reproducible(eng, prompt, full):
    a, _ = run(eng, prompt, max_tokens=10, temperature=1.0, seed=123)
    b, _ = run(eng, prompt, max_tokens=10, temperature=1.0, seed=123)
    c, _ = run(eng, prompt, max_tokens=10, temperature=1.0, seed=124)
    assert a.tokens == b.tokens and a.text == b.text
    assert a.tokens != c.tokens
    assert a.tokens != full[0][:10]  # temperature 1 on a random model is not greedy


def test_top_k_1_equals_greedy(eng, prompt, full):
    gen, _ = run(eng, prompt, max_tokens=16, temperature=1.0, top_k=1, seed=9)
    assert gen.tokens == full[0]
    tiny_p, _ = run(eng, prompt, max_tokens=16, temperature=1.0, top_p=1e-6, seed=9)
    assert tiny_p.tokens == full[0]


def test_probabilities_top_k_top_p():
    logits = torch.tensor([3.0, 1.0, 2.0, 0.0, -1.0])
    p = probabilities(logits, SamplingParams(temperature=1.0, top_k=2))
    assert (p > 0).tolist() == [True, False, True, False, False]
    assert torch.isclose(p.sum(), torch.tensor(1.0))
    full = torch.softmax(logits, -1)  # [0.665, 0.090, 0.245, 0.033, 0.012]
    p = probabilities(logits, SamplingParams(temperature=1.0, top_p=0.8))  # 0.665 < 0.8 <= 0.665 + 0.245
    assert (p > 0).tolist() == [True, False, True, False, False]
    torch.testing.assert_close(p[[0, 2]], full[[0, 2]] / full[[0, 2]].sum())
    p = probabilities(logits, SamplingParams(temperature=1.0, top_p=0.5))
    assert (p > 0).tolist() == [True, False, False, False, False]
    hot = probabilities(logits, SamplingParams(temperature=100.0))
    assert hot.max() - hot.min() < 0.05


def test_sample_greedy_and_seeded():
    logits = torch.randn(100)
    assert sample(logits, SamplingParams()) == int(logits.argmax())
    draw = [sample(logits, SamplingParams(temperature=1.0), torch.Generator().manual_seed(1)) for _ in range(3)]
    assert len(set(draw)) == 1


# -- bugs found in review, kept as regression tests -----------------------------------------------------------

@pytest.mark.parametrize("prefix", ["x = [" + "ab, " * 300, "x = 1\n" * 300], ids=["one-long-line", "short-lines"])
def test_fim_trimming_keeps_the_text_before_the_cursor(make_engine, prefix):
    eng = make_engine(max_context=64)
    room = 64 - 8 - 1
    tokens = eng.fim_tokens(prefix, "y", max_tokens=8)
    assert len(tokens) <= room
    assert tokens[:2] == [1, 13] and tokens.count(11) == 1
    kept = tokens[tokens.index(11) + 1:]
    assert len(kept) >= room // 2  # most of the room goes to the prefix, not to nothing
    assert eng.tokenizer.decode(kept).rstrip() and prefix.endswith(eng.tokenizer.decode(kept[-3:]))


def test_max_tokens_inside_a_character_leaves_no_replacement_char(make_engine, prompt):
    eng = make_engine(seed=3)
    first = greedy_reference(eng, prompt, 1)[0]
    lead_byte = eng.tokenizer.sp.piece_to_id("<0xF0>")  # the first of a 4-byte character
    with torch.no_grad():
        w = eng.model.output.weight
        w[[first, lead_byte]] = w[[lead_byte, first]]
    gen, pieces = run(eng, prompt, max_tokens=1)
    assert gen.tokens == [lead_byte]
    assert "\ufffd" not in gen.text and "\ufffd" not in "".join(pieces)


def test_empty_stop_string_is_ignored(eng, prompt, full):
    gen, _ = run(eng, prompt, max_tokens=16, stop=["", "\x00never"])
    assert gen.text == full[1]


def test_abandoned_stream_reports_why_it_stopped(eng, prompt):
    gen = eng.stream_tokens(prompt, max_tokens=16)
    it = iter(gen)
    next(it)
    it.close()
    assert gen.stats["stop_reason"] == "abandoned"
