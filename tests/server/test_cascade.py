"""The cascade's decisions (codestral_lsp/cascade.py): when the remote is asked, the budget, what is kept
for the client's second request. The server end to end: tests/e2e/test_cascade_lsp.py."""

from __future__ import annotations

import math

import pytest

from codestral_lsp.cascade import SCORE, SCORES, Budget, Cascade, Kept, confidence
from codestral_lsp.context import Suggestion
from codestral_lsp.settings import parse_settings


class FakeRemote:
    def __init__(self, excluded=()):
        self.excluded = set(excluded)

    def kept_out(self, uri):
        return uri in self.excluded


def cascade(threshold=-1.0, per_minute=10, excluded=()):
    settings, problems = parse_settings({"model": {"cascade": "on", "cascadeThreshold": threshold,
                                                   "cascadeRemotePerMinute": per_minute}})
    assert problems == []
    return Cascade(FakeRemote(excluded), settings)


def test_scores_of_log_probabilities():
    lp = [math.log(0.9), math.log(0.5), math.log(0.8)]
    assert SCORES["mean"](lp) == pytest.approx(sum(lp) / 3) and SCORES["min"](lp) == pytest.approx(math.log(0.5))
    assert SCORES["first"](lp) == pytest.approx(math.log(0.9)) and SCORES["sum"](lp) == pytest.approx(sum(lp))
    assert confidence(None) is None and confidence(lp) == SCORES[SCORE](lp)


def test_unsure_or_invoked_requests_go_to_the_remote():
    c = cascade(threshold=-1.0)
    assert c.reason([-0.1, -0.2], invoked=False, uri="a") is None  # sure enough: local only
    assert c.reason([-3.0, -0.2], invoked=False, uri="a") == "unsure"
    assert c.reason([-0.1], invoked=True, uri="a") == "invoked"
    assert c.reason(None, invoked=False, uri="a") is None  # no score (nothing generated): not asked


def test_excluded_documents_never_go():
    c = cascade(threshold=0.0, excluded={"file:///.env"})
    assert c.reason([-5.0], invoked=True, uri="file:///.env") is None
    assert c.reason([-5.0], invoked=True, uri="file:///x.py") == "invoked"


def test_the_budget_counts_a_sliding_minute():
    now = [0.0]
    budget = Budget(3, clock=lambda: now[0])
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 59.9
    assert not budget.take()
    now[0] = 60.0  # the first three leave the window together
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    assert not Budget(0).take()


def test_the_budget_applies_to_decisions():
    c = cascade(threshold=0.0, per_minute=2)
    assert c.wants_score(False, "a") and not c.wants_score(True, "a")  # invoked: goes without a score
    assert [c.reason([-1.0], False, "a") for _ in range(3)] == ["unsure", "unsure", None]
    assert not c.wants_score(False, "a")  # over the budget: no use scoring
    assert not cascade(excluded={"b"}).wants_score(False, "b")


def test_a_kept_answer_is_for_its_version_and_cursor_only():
    c = cascade()
    c.keep("a", Kept(4, 10, Suggestion("x + 1", 10), "openai:recorded"))
    assert c.answer_for("a", 4, 10).suggestion.text == "x + 1"
    assert c.answer_for("a", 5, 10) is None and c.answer_for("a", 4, 11) is None and c.answer_for("b", 4, 10) is None
    c.forget("a")
    assert c.answer_for("a", 4, 10) is None


def test_new_settings_drop_kept_answers_and_take_the_threshold():
    c = cascade(threshold=-1.0)
    c.keep("a", Kept(1, 0, Suggestion("y", 0), "r"))
    settings, _ = parse_settings({"model": {"cascadeThreshold": -9.0}})
    c.use_settings(settings)
    assert c.answer_for("a", 1, 0) is None and c.threshold == -9.0
