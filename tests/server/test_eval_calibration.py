"""`eval --calibration` (codestral_lsp/tools/eval_calibration.py): AUROC, deciles and the escalation threshold,
checked against values worked out by hand, and the report's shape on made-up confidences."""

from __future__ import annotations

import pytest

from codestral_lsp.tools import eval_calibration
from codestral_lsp.tools.eval_calibration import auroc, best_threshold, calibrate, deciles, spearman


def test_auroc_counts_pairs():
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0 and auroc([0.1], [0.9]) == 0.0
    assert auroc([0.5, 0.9], [0.5, 0.1]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)  # the tie counts half
    assert auroc([], [0.1]) is None


def test_spearman_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [5, 5, 9]) == pytest.approx(1.0) and spearman([1], [2]) is None


def test_deciles_split_by_score():
    scored = [(i / 100, i >= 50) for i in range(100)]  # right answers are the sure half
    rows = deciles(scored)
    assert [r["n"] for r in rows] == [10] * 10
    assert [r["exact_match"] for r in rows] == [0.0] * 5 + [1.0] * 5
    assert rows[0]["low"] == 0.0 and rows[-1]["high"] == 0.99


def test_the_threshold_escalates_at_most_the_limit_and_catches_most_wrong_answers():
    # ten answers; the four least sure are wrong, and one sure one is wrong too
    scored = [(-5, False), (-4, False), (-3, False), (-2, False), (-1, True), (-0.9, True), (-0.8, True),
              (-0.7, False), (-0.6, True), (-0.5, True)]
    threshold, escalated, caught = best_threshold(scored, 0.3)
    assert threshold == -2 and escalated == 0.3 and caught == pytest.approx(3 / 5)
    threshold, escalated, caught = best_threshold(scored, 0.5)
    assert threshold == -0.9 and escalated == 0.5 and caught == pytest.approx(4 / 5)
    assert best_threshold(scored, 0.0)[1:] == (0.0, 0.0)


def test_the_report(monkeypatch):
    class Backend:
        model_name = "fake"

    class FakeCompleter:
        backend = Backend()

    made_up = [(i % 4 != 0, 1.0 if i % 4 else 0.2, [-0.1 if i % 4 else -2.0, -0.2])  # 8 wrong ones, all unsure
               for i in range(30)]
    monkeypatch.setattr(eval_calibration, "confidences", lambda completer, records, progress=None: made_up)
    report = calibrate(FakeCompleter(), [{}] * 30)
    assert report["n"] == 30 and report["exact_match"] == pytest.approx(22 / 30, abs=1e-4)
    assert report["auroc"]["mean"] == 1.0 and report["auroc"]["sum"] == 1.0 and report["score"] in report["auroc"]
    assert report["escalated"] == pytest.approx(8 / 30, abs=1e-4) and report["wrong_caught"] == 1.0
    assert len(report["deciles"]) == 10 and report["model"] == "fake"
    assert report["spearman"]["mean"] > 0.9 and report["deciles"][-1]["edit_similarity"] == 1.0
