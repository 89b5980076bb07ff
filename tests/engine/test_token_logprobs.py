"""Engine.token_logprobs: the log-probabilities of a finished generation's tokens, the confidence score the
cascade reads. The oracle is a cache-free forward pass over prompt + tokens (`Engine.logits`)."""

from __future__ import annotations

import random

import pytest
import torch

EOS = 2


def oracle(eng, prompt, chosen):
    logits = eng.logits(prompt + chosen[:-1])[len(prompt) - 1:]  # [T, V]
    logprobs = torch.log_softmax(logits.float(), -1)
    return [logprobs[i, t].item() for i, t in enumerate(chosen)]


@pytest.mark.parametrize("session", [None, "doc"])
@pytest.mark.parametrize("speculative", [None, "ngram"])
@pytest.mark.parametrize("window", [None, 24])
def test_logprobs_equal_a_cache_free_pass(make_engine, random_prompt, session, speculative, window):
    eng = make_engine(seed=5, sliding_window=window, prefill_chunk=8)
    prompt = [1] + random_prompt(random.Random(2), 30)
    gen = eng.stream_tokens(prompt, max_tokens=12, session=session, speculative=speculative)
    list(gen)
    got = eng.token_logprobs(gen)
    assert len(got) == len(gen.tokens) > 0 and all(x <= 0 for x in got)
    assert got == pytest.approx(oracle(eng, prompt, gen.tokens), abs=1e-4)


def test_the_cache_goes_on_as_generation_left_it(make_engine, random_prompt):
    """Scoring in between changes nothing for the next request of the same session (prefix reuse included)."""
    prompt = [1] + random_prompt(random.Random(4), 40)
    plain, scored = make_engine(seed=6), make_engine(seed=6)
    outputs = []
    for eng, score in ((plain, False), (scored, True)):
        runs = []
        for extra in ([], [1500], [1500, 1600]):
            gen = eng.stream_tokens(prompt + extra, max_tokens=8, session="doc")
            list(gen)
            if score:
                eng.token_logprobs(gen)
            runs.append((gen.tokens, gen.stats["reused_tokens"] > 0 if extra else None))
        outputs.append(runs)
    assert outputs[0] == outputs[1]
    assert all(reused for _, reused in outputs[1][1:])


def test_the_stop_token_is_scored(make_engine, random_prompt):
    eng = make_engine(seed=3, dim=32, n_layers=2)
    prompt = [1] + random_prompt(random.Random(7), 11)
    first = eng.logits(prompt)[-1].argmax().item()
    third = eng.logits(prompt + [first, eng.logits(prompt + [first])[-1].argmax().item()])[-1].argmax().item()
    weight = eng.model.output.weight
    with torch.no_grad():  # EOS takes the third greedy token's row: two tokens, then EOS
        weight[[EOS, third]] = weight[[third, EOS]].clone()
    gen = eng.stream_tokens(prompt, max_tokens=8)
    list(gen)
    assert len(gen.tokens) == 2 and gen.stop_token == EOS and gen.stats["stop_reason"] == "eos"
    got = eng.token_logprobs(gen)
    assert len(got) == 3 and got == pytest.approx(oracle(eng, prompt, gen.tokens + [EOS]), abs=1e-4)
