"""Tests written for mutmut's survivors in kv_cache.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

import pytest
import torch

from engine.kv_cache import CachePool, KVCache


def linear(capacity=8) -> KVCache:
    return KVCache(n_layers=1, n_kv_heads=1, head_dim=2, capacity=capacity, window=None, dtype=torch.float32)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_reserve_claims_one_slot_per_position(count):
    cache = linear()
    cache.reserve([7])
    assert cache.reserve(list(range(count))) == 1
    assert cache.slot_pos.tolist() == [0] + list(range(1, 1 + count)) + [-1] * (7 - count)
    assert cache.used == 1 + count


def test_claim_takes_one_position_by_default():
    cache = linear()
    cache.claim(3)
    assert cache.used == 4 and cache.slot_pos.tolist() == [-1, -1, -1, 3, -1, -1, -1, -1]


def test_claim_refuses_a_ring():
    ring = KVCache(n_layers=1, n_kv_heads=1, head_dim=2, capacity=6, window=4, dtype=torch.float32)
    with pytest.raises(AssertionError, match="^a ring cache needs begin"):
        ring.claim(0)


def test_dropping_an_unknown_session_is_a_no_op():
    pool = CachePool(linear, max_sessions=2)
    a = pool.get("a")
    pool.drop("nobody")
    assert list(pool.caches) == ["a"] and pool.get("a") is a


def kv(t, layers_heads=1):
    k = torch.arange(t * 2 * layers_heads, dtype=torch.float32).reshape(layers_heads, t, 2) + 1
    return k, -k


def test_put_writes_keys_and_values_at_the_claimed_positions():
    cache = KVCache(n_layers=2, n_kv_heads=1, head_dim=2, capacity=8, window=None, dtype=torch.float32)
    cache.reserve([5, 6])
    k0, v0 = kv(2)
    cache.put(1, 0, k0, v0)
    cache.reserve([7, 8, 9])
    k1, v1 = kv(3)
    keys, values = cache.put(1, 2, k1 * 10, v1 * 10)
    assert keys.shape == (1, 1, 5, 2) and values.shape == (1, 1, 5, 2)
    assert torch.equal(keys[0, 0], torch.cat([k0[0], k1[0] * 10]))
    assert torch.equal(values[0, 0], torch.cat([v0[0], v1[0] * 10]))
    assert not cache.k[0].any() and not cache.v[0].any()  # the other layer is untouched


def test_update_writes_into_the_given_slots_of_a_ring():
    cache = KVCache(n_layers=2, n_kv_heads=1, head_dim=2, capacity=6, window=4, dtype=torch.float32)
    slots, _ = cache.begin(torch.arange(0, 3))
    k, v = kv(3)
    keys, values = cache.update(1, slots, k[None], v[None])
    assert keys.shape == (1, 1, 3, 2) and torch.equal(keys[0, 0], k[0]) and torch.equal(values[0, 0], v[0])
    slots, _ = cache.begin(torch.arange(3, 8))  # positions 6, 7 wrap to slots 0, 1
    k2, v2 = kv(5)
    keys, values = cache.update(1, slots, k2[None] * 10, v2[None] * 10)
    assert slots.tolist() == [3, 4, 5, 0, 1] and keys.shape == (1, 1, 6, 2)
    assert torch.equal(keys[0, 0], torch.cat([k2[0, 3:], k[0, 2:], k2[0, :3]]) * torch.tensor([[10.], [10.], [1.], [10.], [10.], [10.]]))
    assert torch.equal(values[0, 0], -keys[0, 0])
    assert not cache.k[0].any() and not cache.v[0].any()


def test_check_room_of_a_linear_cache():
    cache = linear(capacity=4)
    cache.check_room(0, 4)
    cache.check_room(3, 1)
    with pytest.raises(ValueError, match="position 4 exceeds the cache capacity 4"):
        cache.check_room(2, 3)
    with pytest.raises(ValueError):
        cache.reserve([1, 2, 3, 4, 5])
    assert cache.tokens == [] and cache.used == 0


def test_pool_keeps_four_sessions_by_default_and_returns_the_same_cache():
    pool = CachePool(linear)
    assert pool.max_sessions == 4
    a = pool.get("a")
    a.tokens.extend([1, 2])
    assert pool.get("a") is a and a.tokens == [1, 2]
    for name in "bcd":
        pool.get(name)
    assert list(pool.caches) == ["a", "b", "c", "d"]
    pool.get("e")
    assert list(pool.caches) == ["b", "c", "d", "e"]


@pytest.mark.parametrize("fits", [1, 2, 3])
def test_pool_evicts_to_stay_within_the_byte_budget(fits):
    per_cache = linear().nbytes
    pool = CachePool(linear, max_sessions=10, max_bytes=fits * per_cache)
    for name in "abcd":
        pool.get(name)
    assert list(pool.caches) == list("abcd")[-fits:]
    assert pool.nbytes == fits * per_cache


def test_buffers_take_the_requested_dtype_and_device():
    cache = KVCache(n_layers=1, n_kv_heads=1, head_dim=2, capacity=4, window=None, dtype=torch.float64)
    assert cache.k.dtype == cache.v.dtype == torch.float64 and cache.slot_pos.dtype == torch.long
    meta = KVCache(n_layers=1, n_kv_heads=1, head_dim=2, capacity=4, window=None, dtype=torch.float16,
                   device="meta")
    assert meta.k.device.type == meta.v.device.type == meta.slot_pos.device.type == "meta"
    assert meta.k.dtype == meta.v.dtype == torch.float16


def test_a_window_as_long_as_the_buffer_is_linear():
    cache = KVCache(n_layers=1, n_kv_heads=1, head_dim=2, capacity=4, window=4, dtype=torch.float32)
    assert not cache.is_ring and cache.max_positions == 4 and cache.max_chunk == 4


def test_begin_refuses_the_position_equal_to_the_capacity():
    cache = linear(capacity=4)
    cache.begin(torch.tensor([3]))
    with pytest.raises(ValueError, match="position 4 exceeds the cache capacity 4"):
        cache.begin(torch.tensor([4]))
