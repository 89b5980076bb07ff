"""Fixed-size key/value caches, one per session, and the LRU pool that holds them.

A cache is a pair of buffers allocated once, `[L, B=1, H_kv, S, D]`, plus the token ids whose keys and
values it holds (`tokens[i]` sits at absolute position i). `reserve(tokens)` hands out the next
positions (appending the tokens), `rollback(length)` takes back the ones from `length` on: the
length of `tokens` is the cache's only write pointer. Position p lives in slot `p % S`:

- Without a sliding window S is the longest context, so slot == position and nothing is overwritten.
- With a sliding window W the buffer is a ring of S = W + slack slots. Each slot remembers the position
  it holds (`slot_pos`, -1 when empty), and the attention mask is derived from it: a query at position
  q sees slot s iff `0 <= slot_pos[s] <= q` and `q - slot_pos[s] < W`.

Worked example, W = 4, slack = 2, so S = 6 slots. After 9 tokens (positions 0..8):

    slot      0  1  2  3  4  5
    slot_pos  6  7  8  3  4  5      (positions 0..2 were overwritten by 6..8)

The query at position 9 needs positions 6..9 (W = 4 including itself); 9 goes to slot 3, over 3.
A chunk of C new tokens starting at p0 overwrites positions p0+C-1-S and earlier; its first query
needs p0-W+1, so chunks (and speculative verifications) must satisfy C <= slack + 1.

Rolling back from length n to m (keeping positions 0..m-1) is exact only if positions m-W+1..m-1 are
still in the ring, i.e. none was overwritten: n - S <= m - W + 1, i.e. n - m <= slack + 1. In the
example (n = 9, ring holding 3..8) a rollback to m = 6 keeps 3, 4, 5 and is exact; to m = 5 it is not,
since position 5 would need position 2, already overwritten by 8. Above that depth the
caller must re-prefill; `rollback` says which by its return value. (Keys at a position depend on all
earlier positions through the layers, so re-prefilling only the last W tokens would not be exact.)

The depth rule assumes the ring was filled in order up to n. After an earlier rollback it holds less:
continuing the example, roll back to 7 (slot_pos 6 -1 -1 3 4 5) and append position 7 (slot_pos
6 7 -1 3 4 5): now n = 8 and the ring holds 3..7, but position 2 is gone (its slot took 8, then
emptied). A rollback to m = 5 passes the depth rule (8 - 5 = 3) yet needs position 2. So `rollback`
checks on `slot_pos` itself that every position in max(0, m-W+1)..m-1 still sits in its slot.
"""

from __future__ import annotations

from collections import OrderedDict

import torch


class KVCache:
    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, capacity: int, window: int | None,
                 dtype: torch.dtype, device: torch.device | str = "cpu"):
        self.capacity, self.window = capacity, window
        shape = (n_layers, 1, n_kv_heads, capacity, head_dim)  # [L, B, H_kv, S, D]
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.slot_pos = torch.full((capacity,), -1, dtype=torch.long, device=device)  # [S]
        self.tokens: list[int] = []
        self.used = 0  # slots [0, used) have ever been written
        self.is_ring = window is not None and window < capacity  # fixed at allocation, read every step
        # Longest run of tokens one forward pass may append (see the module docstring): the whole
        # buffer when linear, slack + 1 = S - W + 1 in a ring.
        self.max_chunk = capacity - window + 1 if self.is_ring else capacity

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    @property
    def max_positions(self) -> int | None:
        """How many positions the cache can hold in all: unbounded for a ring, S for a linear buffer."""
        return None if self.is_ring else self.capacity

    def begin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Claim slots for the new positions [T]; return (slots [T], attention mask [T, S_used] or None
        when every used slot is visible to every query)."""
        last = int(positions[-1])
        if not self.is_ring and last >= self.capacity:
            raise ValueError(f"position {last} exceeds the cache capacity {self.capacity}")
        slots = positions % self.capacity  # [T]
        self.slot_pos[slots] = positions
        if not self.is_ring:
            # Linear buffer: slot == position, so slots [0, last] hold exactly the positions a query
            # may see, and anything past `last` is stale. One query (a decode step) sees them all:
            # no mask, which lets attention take its fast path.
            self.used = last + 1
            if positions.numel() == 1:
                return slots, None
        else:
            self.used = max(self.used, min(self.capacity, last + 1))
        held = self.slot_pos[: self.used][None, :]  # [1, S_used]
        q = positions[:, None]  # [T, 1]
        mask = (held >= 0) & (held <= q)
        if self.window is not None:
            mask &= q - held < self.window
        return slots, mask  # [T], [T, S_used]

    def update(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Write k, v [B, H_kv, T, D] into `slots` [T]; return this layer's used keys and values."""
        self.k[layer].index_copy_(2, slots, k.to(self.k.dtype))  # a float16 cache under float32 (GGUF)
        self.v[layer].index_copy_(2, slots, v.to(self.v.dtype))
        return self.k[layer, :, :, : self.used], self.v[layer, :, :, : self.used]  # [B, H_kv, S_used, D]

    def reserve(self, tokens: list[int]) -> int:
        """Append `tokens` at positions pos..pos+T-1 and return pos, the length before: where a step
        writes their keys and values. A linear cache claims the slots here (slot == position); a ring's
        slots and mask depend on the window and come from `begin`, which the general forward calls.

        Worked example: a linear cache holding 5 tokens reserves [a, b, c] -> 5; slots 5, 6, 7 are
        claimed, `used` is 8, and `tokens` ends with a, b, c. A rollback to 6 then keeps a and drops b, c.
        Nothing is appended when the positions exceed a linear cache (ValueError).
        """
        pos = len(self.tokens)
        if not self.is_ring:
            self.claim(pos, len(tokens))
        self.tokens.extend(tokens)
        return pos

    def check_room(self, pos: int, count: int) -> None:
        """ValueError unless positions pos..pos+count-1 fit: always in a ring, below S in a linear buffer."""
        if not self.is_ring and pos + count > self.capacity:
            raise ValueError(f"position {pos + count - 1} exceeds the cache capacity {self.capacity}")

    def claim(self, pos: int, count: int = 1) -> None:
        """`begin` for positions pos..pos+count-1 of a linear cache (slot == position), without tensors."""
        assert not self.is_ring, "a ring cache needs begin(): its slots and mask depend on the window"
        self.check_room(pos, count)
        self.slot_pos[pos: pos + count] = torch.arange(pos, pos + count, device=self.slot_pos.device) if count > 1 else pos
        self.used = pos + count

    def put(self, layer: int, pos: int, k: torch.Tensor, v: torch.Tensor):
        """`update` for the positions just claimed: write k, v [H_kv, T, D] at pos..pos+T-1; return the
        layer's used keys and values [1, H_kv, S_used, D]."""
        self.k[layer, 0, :, pos: pos + k.shape[1]] = k
        self.v[layer, 0, :, pos: pos + v.shape[1]] = v
        return self.k[layer, :, :, : self.used], self.v[layer, :, :, : self.used]

    def rollback(self, length: int) -> bool:
        """Keep positions [0, length): the next `reserve` hands out `length` again, and the slots of
        the dropped positions are rewritten then. False if that state is no longer exact (a ring that
        overwrote context the kept positions need) and the cache was reset instead."""
        old = len(self.tokens)
        if length >= old:
            return True
        if self.is_ring and not self._holds_context_of(length):
            self.reset()
            return length == 0
        self.slot_pos[self.slot_pos >= length] = -1
        del self.tokens[length:]
        return True

    truncate = rollback  # the earlier name (tools/bench.py)

    def _holds_context_of(self, length: int) -> bool:
        """Whether positions max(0, length-W+1) .. length-1 (what a query at `length` sees) are all held."""
        needed = torch.arange(max(0, length - self.window + 1), length, device=self.slot_pos.device)  # [<= W-1]
        return bool((self.slot_pos[needed % self.capacity] == needed).all())

    def reset(self) -> None:
        self.slot_pos.fill_(-1)
        self.tokens.clear()
        self.used = 0


def common_prefix_length(a: list[int], b: list[int], block: int = 64) -> int:
    """How many leading items a and b share. Blocks of `block` items are compared as slices (in C), then
    items one by one inside the first block that differs: a prompt of 1,000 tokens that shares all but
    its last few with the previous one costs ~16 slice comparisons instead of 1,000 Python steps.

    >>> common_prefix_length([1, 2, 3, 4], [1, 2, 9], block=2)
    2
    """
    n = min(len(a), len(b))
    i = 0
    while i + block <= n and a[i: i + block] == b[i: i + block]:
        i += block
    while i < n and a[i] == b[i]:
        i += 1
    return i


class CachePool:
    """Per-session caches, least recently used evicted first, within a count and a byte budget."""

    def __init__(self, make_cache, max_sessions: int = 4, max_bytes: int | None = None):
        self.make_cache, self.max_sessions, self.max_bytes = make_cache, max_sessions, max_bytes
        self.caches: OrderedDict[str, KVCache] = OrderedDict()

    def get(self, session: str) -> KVCache:
        cache = self.caches.pop(session, None)
        if cache is None:
            cache = self._recycle() or self.make_cache()
        self.caches[session] = cache
        return cache

    def _recycle(self) -> KVCache | None:
        """Evict least recently used sessions until a new cache fits; reuse an evicted buffer."""
        spare = None
        while self.caches and (len(self.caches) >= self.max_sessions or self._over_budget()):
            _, spare = self.caches.popitem(last=False)
        if spare is not None:
            spare.reset()
        return spare

    def _over_budget(self) -> bool:
        if self.max_bytes is None or not self.caches:
            return False
        per_cache = next(iter(self.caches.values())).nbytes
        return (len(self.caches) + 1) * per_cache > self.max_bytes

    def drop(self, session: str) -> None:
        self.caches.pop(session, None)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.caches.values())
