"""`bench typing --lsp --cascade` (tools/bench.py, tools/recorded_remote.py): real server processes, the
embedded model, and the recorded remote on loopback."""

from __future__ import annotations

from codestral_lsp.tools.bench import bench_cascade


def test_bench_cascade_measures_both_ways_and_the_remote_is_asked(tmp_path):
    """`bench typing --lsp --cascade`: one replay with the cascade off, one on in front of the recorded remote;
    with a pause between keystrokes the unsure or invoked requests reach the remote."""
    source = tmp_path / "f.py"
    source.write_text("def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n" * 3)
    result = bench_cascade(source, events=6, remote_delay_ms=10, pause_ms=400)
    assert result["events"] == 6 and set(result) >= {"cascade_off", "cascade_on"}
    for side in ("cascade_off", "cascade_on"):
        assert result[side]["p50_ms"] > 0 and 0 <= result[side]["shown_rate"] <= 1
    assert result["cascade_on"]["remote_requests"] >= 1
