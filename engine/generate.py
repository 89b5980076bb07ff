"""Prefill with prefix reuse, the decode loop, and the text-level stopping rules.

Token level: `prefill` brings a session's cache up to a prompt, reusing the longest common token
prefix, and `decode` yields one token at a time; both run tokens through `Transformer.run`. The forward pass for a token runs only when the
consumer asks for the next one, so a caller that stops early wastes no decode step.

Text level: `Generation` turns those tokens into streamed text and stops at EOS, max_tokens, a stop
string, the caller's stop callback, a deadline or a cancellation, filling in the stats of DESIGN.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from .checkpoints.tokenizer import Tokenizer
from .kv_cache import KVCache, common_prefix_length
from .model import Transformer
from .sampling import SamplingParams, sample
from .stopping import StopFn, StopRule, held_back  # noqa: F401  (held_back: re-exported)


@dataclass
class Request:
    max_tokens: int = 64
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    stop_fn: StopFn | None = None
    deadline: float | None = None  # time.monotonic() after which generation stops
    cancelled: Callable[[], bool] | None = None
    seed: int | None = None


def prefill(model: Transformer, cache: KVCache, prompt: list[int], chunk: int = 512) -> tuple[torch.Tensor, int]:
    """Bring the cache to `prompt`; return (logits after its last token [V], tokens reused).

    At least the last prompt token is always recomputed: its logits are what the first sample needs.
    """
    reused = min(common_prefix_length(cache.tokens, prompt), len(prompt) - 1)
    if not cache.rollback(reused):
        reused = 0
    return model.run(prompt[reused:], cache, "last", chunk), reused


def decode(model: Transformer, cache: KVCache, logits: torch.Tensor, sampling: SamplingParams,
           generator: torch.Generator | None = None) -> Iterator[list[int]]:
    """Yield one sampled token at a time (as a one-element list); stops when the cache is full."""
    limit = cache.max_positions
    token = sample(logits, sampling, generator)
    while True:
        yield [token]
        if limit is not None and len(cache.tokens) >= limit:
            return
        if sampling.greedy:
            token = model.run([token], cache, "greedy")[0]
        else:
            token = sample(model.run([token], cache, "last"), sampling, generator)


class Generation:
    """Iterate to receive text pieces; afterwards `text`, `tokens` and `stats` hold the result."""

    def __init__(self, tokenizer: Tokenizer, steps: Iterator[list[int]], request: Request, stats: dict,
                 started: float):
        self.tokenizer, self.steps, self.request, self.stats = tokenizer, steps, request, stats
        self.text, self.tokens = "", []
        self.stop_token: int | None = None  # the stop id that ended it (stop_reason "eos")
        self.prompt: list[int] = []  # set by the engine, with `session`: what `Engine.token_logprobs` scores after
        self.session: str | None = None
        self._started = started
        self._done = False

    def __iter__(self) -> Iterator[str]:
        """Text pieces as they become final.

        Text that could still become a stop string is held back. With a stop callback everything is
        held back until the end: the callback may cut behind text already seen, and streamed text
        cannot be taken back. A character cut off by max_tokens or EOS is dropped, never shown as U+FFFD.
        """
        req, decoder = self.request, self.tokenizer.stream_decoder()
        stop_ids = self.tokenizer.stop_ids  # EOS, and a FIM template's end-of-middle tokens
        rule = StopRule(req.stop, req.stop_fn)
        emitted, raw = 0, ""
        reason = "abandoned"  # until the loop ends by itself: a consumer that stops iterating
        try:
            for step in self.steps:
                cut = None
                for token in step:
                    if token in stop_ids:
                        reason, self.stop_token = "eos", token
                        break
                    self.tokens.append(token)
                    raw += decoder.push(token)
                    cut = rule.cut(raw)
                    if cut is not None or len(self.tokens) >= req.max_tokens:
                        break
                if reason == "eos" or cut is not None:
                    reason = "eos" if reason == "eos" else "stop"
                    raw = raw if cut is None else raw[:cut]
                    break
                if len(self.tokens) >= req.max_tokens:
                    reason = "max_tokens"
                    break
                safe = rule.final(raw, emitted)
                if safe > emitted:
                    yield raw[emitted:safe]
                    emitted = safe
                if req.cancelled is not None and req.cancelled():
                    reason = "cancelled"
                    break
                if req.deadline is not None and time.monotonic() >= req.deadline:
                    reason = "deadline"
                    break
            else:
                reason = "length"  # the steps ran out: the context is full
            if len(raw) > emitted:
                yield raw[emitted:]
        finally:
            self.steps.close() if hasattr(self.steps, "close") else None
            self.text = raw
            self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self._done:
            return
        self._done = True
        self.stats["generated_tokens"] = len(self.tokens)
        self.stats["decode_ms"] = (time.perf_counter() - self._started) * 1000.0
        self.stats["stop_reason"] = reason
