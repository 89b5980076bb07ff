"""`eval --redaction` (codestral_lsp/tools/eval_redaction.py): the seeded corpus, the scoring, and the targets
of issue #27 on a small sample (recall >= 99% of planted secrets, false positives <= 1% of look-alikes).
The README reports the figures on 20,000 of each from other seeds."""

from __future__ import annotations

import json

from codestral_lsp.cli import main
from codestral_lsp.tools.eval_redaction import NEGATIVES, POSITIVES, corpus, covered, evaluate_redaction

SEED = 12345


def test_the_targets_hold_on_a_seeded_sample():
    result = evaluate_redaction(1500, seed=SEED)
    assert result["positives"] == result["negatives"] == 1500
    assert result["recall"] >= 0.99, result["missed"]
    assert result["false_positive_rate"] <= 0.01, result["false_positives"]
    assert set(result["recall_by_kind"]) == set(POSITIVES) and set(result["false_positives_by_kind"]) == set(NEGATIVES)
    assert min(result["recall_by_kind"].values()) >= 0.95, result["recall_by_kind"]


def test_the_corpus_is_seeded_and_plants_what_it_says():
    assert corpus(200, 3) == corpus(200, 3) and corpus(200, 3) != corpus(200, 4)
    positives, negatives = corpus(300, 3)
    for kind, text, secrets in positives:
        assert all(s and s in text for s in secrets), (kind, text)
    assert len({text for _, text in negatives}) > 250  # look-alikes vary


def test_the_scores_can_fail():
    """A redactor that finds nothing catches nothing; one that hides every line hides every look-alike."""
    nothing = evaluate_redaction(200, seed=SEED, find=lambda text: [])
    assert nothing["recall"] == 0 and nothing["false_positive_rate"] == 0
    everything = evaluate_redaction(200, seed=SEED, find=lambda text: [(0, len(text))])
    assert everything["recall"] == 1 and everything["false_positive_rate"] == 1
    half = lambda text: [(0, len(text) // 2)]  # noqa: E731  (a secret cut in half is not caught)
    assert evaluate_redaction(200, seed=SEED, find=half)["recall"] < 0.2


def test_covered_needs_every_character_of_every_occurrence():
    text = 'a = "SECRET"; b = "SECRET"'
    assert covered(text, "SECRET", [(5, 11), (19, 25)])
    assert not covered(text, "SECRET", [(5, 11)]) and not covered(text, "SECRET", [(5, 10), (19, 25)])


def test_the_command_prints_one_json_object(capsys):
    main(["eval", "--redaction", "--n", "300", "--seed", "7", "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["positives"] == 300 and result["seed"] == 7 and 0 <= result["recall"] <= 1
