"""Speculative decoding: draft k tokens cheaply, verify them with one forward pass of the target.

Drafts come from prompt lookup (`mode="ngram"`: the tokens that followed the latest earlier occurrence
of the last n tokens) or from a small draft model with the same tokenizer (`mode="draft"`).

Verification. Let `cur` be the last token emitted (not yet in the target's cache) and d_1..d_k the
draft. One forward pass over [cur, d_1, ..., d_k] gives k+1 rows of logits; row i is the target's
next-token distribution p_i after cur, d_1..d_i. Scanning i = 0..k-1:

- greedy: accept d_{i+1} while it equals argmax p_i; at the first mismatch emit argmax p_i instead.
- sampling (Leviathan et al. 2023, Chen et al. 2023): with q_i the draft's distribution for d_{i+1},
  accept with probability min(1, p_i(d) / q_i(d)); on the first rejection emit a sample of
  r(x) = max(p_i(x) - q_i(x), 0) / Z. The emitted token then has law exactly p_i:

      P(x) = q(x) min(1, p(x)/q(x)) + (1 - sum_y min(p(y), q(y))) r(x)
           = min(p(x), q(x)) + Z r(x) = min(p(x), q(x)) + max(p(x) - q(x), 0) = p(x),

  since Z = sum_y max(p(y) - q(y), 0) = 1 - sum_y min(p(y), q(y)). Prompt lookup proposes d without
  a distribution: q is the point mass on d, so d is accepted with probability p(d) and r is p with d
  removed, renormalised.

If all k are accepted the last row p_k gives one more token for free. Each step therefore emits
accepted + 1 tokens, and greedy output equals plain greedy decoding token for token.

Positions, worked example. Invariant between steps: the target cache holds every context token but
the last, `len(cache.tokens) == len(context) - 1`. Say the context has 10 tokens (positions 0..9);
the cache holds 0..8 and cur sits at position 9. With k = 3 the step feeds [cur, d1, d2, d3] at
positions 9..12 (the cache now holds 13); row i of the logits predicts position 10 + i. If d1 is
accepted and d2 rejected (n = 1 accepted), the step emits [d1, t] at positions 10, 11 (t from row 1)
and rolls the cache back to 9 + 1 + n = 11: positions 0..10, i.e. up to d1; d2 and d3 at 11, 12 are
dropped. The context now has 12 tokens and t (position 11) is the new cur: the invariant holds. The
rollback depth is k - n <= k, and k + 1 <= `cache.max_chunk` keeps it exact for a ring cache too.

The draft model's cache holds the whole context before drafting (positions 0..9 above) and then d1, d2
at 10, 11 (d3 is sampled, never fed). After the step it keeps what agrees with the new context,
0..10, and feeds only t. Had all three been accepted it would hold 0..11 and miss d3: the next step
feeds [d3, new cur] in one forward pass.

Prompt lookup finds the end e of the latest occurrence of the last n tokens that has a continuation
(e < len(context)). For the context [5, 7, 9, 5, 7] and n = 2 the earlier (5, 7) ends at e = 2 (the
trailing one, which ends at 5, has no continuation), so the draft is context[2:5] = [9, 5, 7] for
k = 3. A draft that runs past the end copies itself (period len - e), so a repeating loop drafts a
full k.

Draft length: k grows after a fully accepted draft and shrinks to what was accepted (plus one) after
a rejection. Two wholly rejected drafts in a row pause drafting for 1 plain step; each failed probe
after a pause doubles it, up to 64. The state lasts across an engine's requests, so a drafter that is
always wrong costs one 2-token verification (and a draft-model catch-up) per ~64 tokens.

Drafts that are often right can still cost more than they save: on a CPU verifying 5 positions costs
~1.4x a decode step of the embedded model, and a draft model's own steps are not free. So the draft
length also keeps the speed of each kind of step (tokens per second, a moving average, timed around
drafting, verification and rollback): while speculative steps are slower than plain ones, drafting
pauses the same way, probing after 1, 2, 4, ... 64 plain steps; one faster probe ends the pauses.
The first speculative step is followed by a plain one, so both speeds are known. Timing decides only
how much is drafted, never which tokens are emitted.
"""

from __future__ import annotations

import functools
import hashlib
import time
import weakref
from array import array
from typing import Iterator, Protocol

import torch

from .generate import prefill
from .kv_cache import KVCache, common_prefix_length
from .model import Transformer
from .sampling import SamplingParams, probabilities, sample

MAX_PAUSE = 64  # longest run of plain steps after drafts keep failing
_LENGTHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> {drafter: DraftLength}


class Drafter(Protocol):
    def propose(self, context: list[int], k: int, sampling: SamplingParams,
                generator: torch.Generator | None) -> tuple[list[int], torch.Tensor | None]:
        """Up to k tokens to follow context, and their draft distributions [len, V] (None: point masses)."""


def speculative_decode(engine, mode: str, prompt: list[int], session: str | None, cache: KVCache,
                       logits: torch.Tensor, request, generator: torch.Generator | None,
                       stats: dict, previous: list[int] | None = None) -> Iterator[list[int]]:
    """Engine entry point: steps of tokens after `prompt`, whose K/V `cache` holds; `logits` [V] follow it.

    Reads `engine.spec_k` (most tokens drafted, default 4), `engine.spec_ngram` (longest n-gram looked
    up, default 3) and for mode "draft" `engine.draft`, an Engine with the same tokenizer. `previous`:
    what the session's cache held before this request's prefill; prompt lookup recalls the previous
    completion from it (`recalled_continuation`).
    """
    if mode == "ngram":
        recalled = recalled_continuation(engine.tokenizer, previous, prompt) if previous else None
        drafter = PromptLookup(max(1, int(getattr(engine, "spec_ngram", 3))), recalled)
    elif mode == "draft":
        draft = getattr(engine, "draft", None)
        if draft is None:
            raise ValueError("speculative='draft' needs a draft model: call engine.attach_draft(path) first "
                             "(setting speculative.draftPath), or use speculative='ngram'")
        check_draft(engine, draft)
        drafter = ModelDrafter(draft.model, draft.cache_for(session), draft.prefill_chunk, engine.tokenizer.eos_id)
    else:
        raise ValueError(f"unknown speculative mode {mode!r}: use None, 'off', 'ngram' or 'draft'")
    drafter_key = (mode, id(engine.draft) if mode == "draft" else None)  # a new draft model starts afresh
    length = draft_length(engine, drafter_key, max(0, int(getattr(engine, "spec_k", 4))))
    return speculate(engine.model, cache, logits, list(prompt), drafter, request.sampling, generator, stats,
                     length, request.max_tokens)


def draft_length(engine, drafter_key: tuple, k_max: int) -> DraftLength:
    """The engine's draft length for a drafter, kept across requests: a drafter that keeps failing stays
    paused from one completion to the next. It decides how many tokens are drafted, never which are emitted."""
    lengths = _LENGTHS.setdefault(engine, {})
    if drafter_key not in lengths or lengths[drafter_key].k_max != k_max:
        lengths[drafter_key] = DraftLength(k_max)
    return lengths[drafter_key]


def speculate(model: Transformer, cache: KVCache, logits: torch.Tensor, context: list[int], drafter: Drafter,
              sampling: SamplingParams, generator: torch.Generator | None, stats: dict, length: DraftLength,
              max_new: int | None = None) -> Iterator[list[int]]:
    """Yield steps (lists of tokens) after `context`, the tokens `cache` holds; `logits` [V] follow them.

    Like `generate.decode`, a step's work runs only when the consumer asks for it, and generation
    stops when a linear cache is full. `context` grows with every emitted token.
    """
    token = sample(logits, sampling, generator)
    context.append(token)
    yield [token]
    produced = 1
    limit = cache.max_positions
    while True:
        if limit is not None and len(cache.tokens) >= limit:  # as `decode`: cur has no position left
            return
        k = min(length.next(), cache.max_chunk - 1)  # verify k + 1 <= max_chunk positions at once
        if limit is not None:
            k = min(k, limit - 1 - len(cache.tokens))  # positions base..base+k all below limit
        if max_new is not None:
            k = min(k, max(0, max_new - produced - 1))  # a step emits at most k + 1 tokens
        started = time.perf_counter()
        draft, q = drafter.propose(context, k, sampling, generator) if k > 0 else ([], None)
        if not draft and sampling.greedy:  # a plain step, without the verification's bookkeeping
            token = model.run([context[-1]], cache, "greedy")[0]
            length.timed(0, 1, time.perf_counter() - started)
            context.append(token)
            produced += 1
            yield [token]
            continue
        base = len(cache.tokens)  # == len(context) - 1: cur is at position base
        fed = [context[-1], *draft]
        if sampling.greedy:  # accept while the draft is the target's greedy choice
            target = model.run(fed, cache, "greedy")  # [k+1]
            n = common_prefix_length(draft, target)
            token = target[n]
        else:
            n, token = verify(model.run(fed, cache), draft, q, sampling, generator)  # logits [k+1, V]
        kept = cache.rollback(base + 1 + n)  # keep cur and the accepted drafts
        assert kept, f"rollback of {len(draft) - n} positions was not exact (max_chunk {cache.max_chunk})"
        stats["drafted_tokens"] = stats.get("drafted_tokens", 0) + len(draft)
        stats["accepted_tokens"] = stats.get("accepted_tokens", 0) + n
        length.update(len(draft), n)
        length.timed(len(draft), n + 1, time.perf_counter() - started)
        step = [*draft[:n], token]
        context.extend(step)
        produced += len(step)
        yield step


def verify(logits: torch.Tensor, draft: list[int], q: torch.Tensor | None, sampling: SamplingParams,
           generator: torch.Generator | None = None) -> tuple[int, int]:
    """(drafts accepted, the token emitted after them) from the target's logits [k+1, V]."""
    if sampling.greedy:
        target = logits.argmax(-1).tolist()  # [k+1]
        n = common_prefix_length(draft, target)
        return n, target[n]
    p = probabilities(logits, sampling)  # [k+1, V]
    device = generator.device if generator is not None else p.device
    u = torch.rand(len(draft) + 1, generator=generator, device=device).to(p.device)  # [k+1]
    return accept_or_resample(p, None if q is None else q.to(p.device), draft, u)


def accept_or_resample(p: torch.Tensor, q: torch.Tensor | None, draft: list[int],
                       u: torch.Tensor) -> tuple[int, int]:
    """The Leviathan/Chen rule as a pure function of uniforms u [k+1] in [0, 1).

    p: target distributions [k+1, V]; q: draft distributions [k, V], or None for point masses on the
    draft tokens. Draft i is accepted iff u[i] * q_i(d_i) < p_i(d_i) (probability min(1, p/q)); the
    token after the n accepted ones is drawn from max(p_n - q_n, 0) (or p_k if all were accepted) by
    inverting its CDF at u[k]. Returns (n, token).
    """
    k = len(draft)
    rows, d = torch.arange(k, device=p.device), torch.tensor(draft, dtype=torch.long, device=p.device)
    pd = p[rows, d]  # [k]
    qd = q[rows, d] if q is not None else torch.ones_like(pd)  # [k]
    accepted = u[:k] * qd < pd  # [k]
    n = int(accepted.long().cumprod(0).sum()) if k else 0  # leading acceptances
    if n == k:
        residual = p[k]  # [V]
    elif q is not None:
        residual = (p[n] - q[n]).clamp_min(0)  # [V]
    else:
        residual = p[n].clone()
        residual[draft[n]] = 0.0
    if not residual.sum() > 0:  # p_n <= q_n everywhere: rejection had probability 0 (rounding)
        residual = p[n]
    cdf = residual.double().cumsum(0)  # [V]
    token = int(torch.searchsorted(cdf, u[k].double() * cdf[-1], right=True).clamp_max(len(cdf) - 1))
    return n, token


class DraftLength:
    """How many tokens to draft next: grows on success, shrinks on failure, pauses when drafts keep
    failing or when speculative steps turn out slower than plain ones (see the module docstring)."""

    SMOOTHING = 0.2  # weight of the newest step in the speed averages

    def __init__(self, k_max: int):
        self.k_max, self.k = k_max, k_max
        self.pause, self.backoff, self.misses = 0, 1, 0
        self.plain_speed: float | None = None  # tokens/s of plain steps, a moving average
        self.draft_speed: float | None = None  # tokens/s of speculative steps
        self.slow_backoff = 1

    def next(self) -> int:
        if self.pause > 0:
            self.pause -= 1
            return 0
        if self.plain_speed is None and self.draft_speed is not None:
            return 0  # a drafter that never fails would never be compared: one plain step to time
        return self.k

    def update(self, drafted: int, accepted: int) -> None:
        if drafted == 0:
            return
        if accepted == drafted:
            self.k = min(self.k + 1, self.k_max)
        else:
            self.k = max(1, min(self.k - 1, accepted + 1))
        if accepted > 0:
            self.misses, self.backoff = 0, 1
            return
        self.misses += 1
        if self.misses >= 2 or self.backoff > 1:  # two misses in a row, or a probe after a pause
            self.pause, self.backoff, self.misses = self.backoff, min(2 * self.backoff, MAX_PAUSE), 0

    def timed(self, drafted: int, emitted: int, seconds: float) -> None:
        """Record a step's duration; pause drafting while speculative steps are the slower kind."""
        speed = emitted / max(seconds, 1e-9)
        if drafted == 0:
            self.plain_speed = _average(self.plain_speed, speed, self.SMOOTHING)
            return
        self.draft_speed = _average(self.draft_speed, speed, self.SMOOTHING)
        if self.plain_speed is None or self.draft_speed >= self.plain_speed:
            self.slow_backoff = 1
        elif self.pause == 0:
            self.pause = self.slow_backoff
            self.slow_backoff = min(2 * self.slow_backoff, MAX_PAUSE)


def _average(old: float | None, new: float, weight: float) -> float:
    return new if old is None else (1 - weight) * old + weight * new


class PromptLookup:
    """Draft the tokens that followed the latest earlier occurrence of the last n tokens, n = n_max..n_min.

    n_min is 2 unless n_max is 1: the token after an earlier occurrence of one token is a poor guess
    (on the typing benchmark drafts from single tokens cost more verification than they saved).

    `recalled`, when given, is searched before the context at every n: a sequence that is expected
    to continue the context, such as the session's previous completion (`recalled_continuation`).
    Its drafts stop at its end instead of repeating.

    The context is searched as bytes (4 per token) with `bytes.rfind`, in C: no index to build per
    request, which for a 1,000-token prompt cost ~0.3 ms of Python, as much as half a decode step.
    """

    def __init__(self, n_max: int = 3, recalled: list[int] | None = None, n_min: int = 2):
        self.n_max, self.n_min = n_max, min(n_min, n_max)
        self.haystack = bytearray()  # the context's tokens as 4-byte integers, extended as it grows
        self.recalled = list(recalled or [])
        self.recalled_tables: list[dict[tuple[int, ...], int]] = [{} for _ in range(n_max)]
        for n, table in enumerate(self.recalled_tables, 1):  # earliest occurrence: the start is the anchor
            for e in range(len(self.recalled) - 1, n - 1, -1):
                table[tuple(self.recalled[e - n: e])] = e

    def propose(self, context: list[int], k: int, sampling: SamplingParams = SamplingParams(),
                generator: torch.Generator | None = None) -> tuple[list[int], None]:
        L = len(context)
        if len(self.haystack) > 4 * L:  # a different context: start again
            self.haystack = bytearray()
        self.haystack += array("i", context[len(self.haystack) // 4:]).tobytes()
        for n in range(min(self.n_max, L), self.n_min - 1, -1):
            key = tuple(context[L - n:])
            e = self.recalled_tables[n - 1].get(key)
            if e is not None:
                return self.recalled[e: e + k], None
            e = self._context_match(context, n)
            if e is not None:
                out: list[int] = []
                for j in range(k):  # past the end, the draft continues with itself (period L - e)
                    out.append(context[e + j] if e + j < L else out[e + j - L])
                return out, None
        return [], None

    def _context_match(self, context: list[int], n: int) -> int | None:
        """The end e of the latest occurrence of the last n tokens within context[:-1] (so that
        context[e] continues it), or None. Worked example: context [5, 7, 9, 5, 7], n = 2: the bytes of
        [5, 7] are searched in those of [5, 7, 9, 5]; the match at byte 0 gives e = 0 + 2. A match at a
        byte offset that is not a multiple of 4 straddles two tokens: the search goes on before it."""
        key = array("i", context[len(context) - n:]).tobytes()
        end = 4 * (len(context) - 1)
        while True:
            i = self.haystack.rfind(key, 0, end)
            if i < 0:
                return None
            if i % 4 == 0:
                return i // 4 + n
            end = i + len(key) - 1  # matches starting before i


def recalled_continuation(tokenizer, previous: list[int], prompt: list[int], anchor: int = 3) -> list[int]:
    """What the session's previous request went on to generate after the text this prompt ends with,
    as [last `anchor` prompt tokens, *continuation]; [] when the prompt does not lead into it.

    While a user types, each keystroke asks again at a cursor one character further, and the model
    mostly goes on as it said the keystroke before: that completion is a draft accepted far more often
    than n-grams of the prompt. `previous` is what the session's cache held: the previous prompt and
    its generated tokens (all but the last). Example, tokens written as text: previous = [..., "self",
    ".", "c", "ache", "[", "key", "]"], prompt = [..., "self", ".", "ca"] (the user typed the "a" that was
    proposed). They share [..., "self", "."]; the old tail reads "cache[key]" and starts with the new
    tail "ca", so the continuation is "che[key]", encoded as text that continues other text:
    ["che", "[", "key", "]"], and the result is [..., "self", ".", "ca", "che", "[", "key", "]"] with
    the last three prompt tokens as the anchor that prompt lookup matches. Tails holding special
    tokens (the window moved, the suffix changed) give [].
    """
    c = common_prefix_length(previous, prompt)
    old_tail, new_tail = previous[c:], prompt[c:]
    special = {tokenizer.bos_id, tokenizer.eos_id, tokenizer.prefix_id, tokenizer.suffix_id}
    if not old_tail or special.intersection(old_tail) or special.intersection(new_tail):
        return []
    old_text, new_text = tokenizer.decode(old_tail), tokenizer.decode(new_tail)
    if len(old_text) <= len(new_text) or not old_text.startswith(new_text):
        return []
    return prompt[-anchor:] + tokenizer.encode_infill(old_text[len(new_text):])


class ModelDrafter:
    """Draft with a small model whose cache follows the target's context, rolled back on rejection."""

    def __init__(self, model: Transformer, cache: KVCache, chunk: int = 512, eos_id: int | None = None):
        self.model, self.cache, self.chunk, self.eos_id = model, cache, chunk, eos_id
        self.synced = 0  # the cache's first `synced` tokens are known to agree with the context

    def propose(self, context: list[int], k: int, sampling: SamplingParams,
                generator: torch.Generator | None = None) -> tuple[list[int], torch.Tensor | None]:
        limit = self.cache.max_positions
        k = min(k, self.cache.max_chunk)  # rollback depth k - 1 stays exact in a ring
        if limit is not None:
            k = min(k, limit - len(context) + 1)  # drafts d_1..d_{k-1} are fed at len(context)..
        if k <= 0:
            return [], None
        logits = self._sync(context)  # [V]
        if sampling.greedy:
            tokens = [int(logits.argmax())]
            while len(tokens) < k and tokens[-1] != self.eos_id:
                tokens.append(self.model.run(tokens[-1:], self.cache, "greedy")[0])
            self.synced = len(context)
            return tokens, None
        tokens, dists = [], []
        for i in range(k):
            dists.append(probabilities(logits, sampling))  # [V]
            token = int(torch.multinomial(dists[-1], 1, generator=generator))
            tokens.append(token)
            if i == k - 1 or token == self.eos_id:
                break
            logits = self.model.run([token], self.cache, "last")  # [V]
        self.synced = len(context)
        return tokens, torch.stack(dists)  # [n, V]

    def _sync(self, context: list[int]) -> torch.Tensor:
        """Bring the cache to `context`: keep what agrees, feed the rest; logits after it [V]."""
        if self.synced == 0:  # first step of a request: reuse what the session's cache holds
            return prefill(self.model, self.cache, context, self.chunk)[0]
        held, s = self.cache.tokens, self.synced
        keep = min(s + common_prefix_length(held[s:], context[s:]), len(held), len(context) - 1)
        if not self.cache.rollback(keep):
            return prefill(self.model, self.cache, context, self.chunk)[0]
        return self.model.run(context[keep:], self.cache, "last", self.chunk)  # [V]


def check_draft(target, draft) -> None:
    """Raise ValueError unless the two engines share a vocabulary, piece by piece."""
    a, b = target.tokenizer, draft.tokenizer
    if (a.vocab_size, target.args.vocab_size) != (b.vocab_size, draft.args.vocab_size):
        raise ValueError(f"the draft model has a vocabulary of {b.vocab_size} tokens (model {draft.args.vocab_size}) "
                         f"but the target has {a.vocab_size} (model {target.args.vocab_size}): speculative decoding "
                         "needs the same tokenizer")
    if _pieces_digest(a) != _pieces_digest(b):
        i, pa, pb = next((i, x, y) for i, (x, y) in enumerate(zip(_pieces(a), _pieces(b))) if x != y)
        raise ValueError(f"the draft tokenizer ({b.path}) differs from the target's ({a.path}) at id {i}: "
                         f"{pb!r} where the target has {pa!r}; speculative decoding needs the same tokenizer")


def _pieces(tokenizer) -> list[str]:
    return tokenizer.pieces()


@functools.lru_cache(maxsize=8)
def _pieces_digest(tokenizer) -> str:
    return hashlib.sha256("\0".join(_pieces(tokenizer)).encode("utf-8")).hexdigest()
