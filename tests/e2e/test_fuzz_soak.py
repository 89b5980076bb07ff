"""The fuzzer and the soak of `codestral-lsp bench fuzz` / `bench soak` against a real server, at the
sizes CI can afford (longer runs are benchmarks, in the README): no crash, every request answered,
no popup from malformed traffic, memory flat while typing."""

from __future__ import annotations

from pathlib import Path

from codestral_lsp.tools.fuzz import Traffic, fuzz_lsp, server_command
from codestral_lsp.tools.soak import soak
from tests.e2e.test_server import MODEL

ROOT = Path(__file__).resolve().parents[2]


def test_traffic_is_a_function_of_the_seed_and_mixes_every_kind():
    a, b = Traffic(7), Traffic(7)
    first = [a.next() for _ in range(500)]
    assert first == [b.next() for _ in range(500)]
    kinds = {kind for kind, _ in first}
    assert {"open", "change", "complete", "bad_params", "bad_envelope", "bad_json", "bad_frame"} <= kinds


def test_a_thousand_fuzzed_messages_neither_kill_nor_wedge_the_server():
    result = fuzz_lsp(server_command(MODEL), messages=1000, seed=1, drain_s=60)
    assert result["requests"] > 300, result
    assert not result["crashed"], result
    assert result["unanswered"] == 0, result
    assert result["popups"] == 0, result  # malformed traffic is logged, never shown
    assert "-32603" not in result["errors"], result  # no handler failed on what it was sent
    assert result["alive_after"], result


def test_three_hundred_keystrokes_all_answered_with_flat_memory():
    result = soak(server_command(MODEL), ROOT / "engine" / "kv_cache.py", keystrokes=300)
    assert len(result["samples"]) == 4, result  # after the first keystroke, then every 100
    assert result["unanswered"] == 0 and result["errors"] == 0, result
    assert result["p50_ms"] is not None, result
    assert result["rss_growth_mb"] is not None and result["rss_growth_mb"] <= 20, result


def test_fuzzed_http_requests_and_slow_sockets_leave_the_api_serving():
    from codestral_lsp.tools.fuzz_http import fuzz_http

    result = fuzz_http(MODEL, requests=300, slow=100, seed=3)
    assert not result["crashed"] and result["failed"] == 0, result
    assert result["server_errors"] == 0, result  # bad input gets a 4xx, never a 500
    assert result["fim_ms_with_slow_sockets"] is not None, result  # answered while 100 sockets stall
    assert result["status"].get("200", 0) > 0 and result["fim_ok_after"], result
    assert "503" not in result["status"], result
