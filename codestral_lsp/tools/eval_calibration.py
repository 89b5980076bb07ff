"""`codestral-lsp eval --calibration DATA`: how well the local model's confidence says when it is wrong.

Each held-out FIM task (the `eval` record format) is completed through the pipeline, as the server
would, with the chosen tokens' log-probabilities (`Engine.token_logprobs`, the stop token included).
Every candidate score in `cascade.SCORES` is computed from them; the report gives, for each, its
AUROC at telling right (exact match) from wrong answers, and for the chosen one (`cascade.SCORE`):
the exact-match rate by confidence decile (1: least confident) and the threshold that escalates at
most `max_escalation` of the requests (score below it) while catching the largest share of wrong
answers. JSON:

    {"n", "exact_match", "model", "score", "auroc": {NAME: value}, "deciles": [{"decile", "n", "low",
     "high", "exact_match"}], "max_escalation", "threshold", "escalated", "wrong_caught"}
"""

from __future__ import annotations

from ..cascade import SCORE, SCORES
from ..pipeline import Completer, Document


def confidences(completer: Completer, records: list[dict], progress=None) -> list[tuple[bool, list[float]]]:
    """(exact match, the chosen tokens' log-probabilities) for each task."""
    out = []
    for n, rec in enumerate(records, 1):
        text, offset = rec["prompt"] + rec["suffix"], len(rec["prompt"])
        doc = Document(f"eval://{rec['task_id']}", rec.get("language", "python"), text)
        result = completer.complete(doc, offset, use_recent=False, logprobs=True)
        shown = result.suggestion.text if result.suggestion else ""
        out.append((shown.rstrip() == rec["canonical_solution"].rstrip(), result.logprobs or []))
        if progress:
            progress(n, len(records))
    return out


def auroc(right: list[float], wrong: list[float]) -> float | None:
    """The chance that a right answer scores above a wrong one (ties count half)."""
    if not right or not wrong:
        return None
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def deciles(scored: list[tuple[float, bool]]) -> list[dict]:
    ordered = sorted(scored)
    rows = []
    for d in range(10):
        part = ordered[d * len(ordered) // 10: (d + 1) * len(ordered) // 10]
        if part:
            rows.append({"decile": d + 1, "n": len(part), "low": round(part[0][0], 4), "high": round(part[-1][0], 4),
                         "exact_match": round(sum(ok for _, ok in part) / len(part), 4)})
    return rows


def best_threshold(scored: list[tuple[float, bool]], max_escalation: float) -> tuple[float | None, float, float]:
    """(threshold, share escalated, share of wrong answers escalated): escalating means score < threshold;
    a higher threshold never catches fewer wrong answers, so it is the highest one within the limit."""
    n, wrong = len(scored), sum(not ok for _, ok in scored)
    best = (None, 0.0, 0.0)
    for t in sorted({s for s, _ in scored}):
        below = [ok for s, ok in scored if s < t]
        if len(below) > max_escalation * n:
            break
        best = (t, len(below) / n, sum(not ok for ok in below) / wrong if wrong else 0.0)
    return best


def calibrate(completer: Completer, records: list[dict], max_escalation: float = 0.3, progress=None) -> dict:
    results = confidences(completer, records, progress)
    report = {"n": len(results), "exact_match": round(sum(ok for ok, _ in results) / max(1, len(results)), 4),
              "model": completer.backend.model_name, "score": SCORE, "auroc": {}}
    for name, fn in SCORES.items():
        area = auroc([fn(lp) for ok, lp in results if ok], [fn(lp) for ok, lp in results if not ok])
        report["auroc"][name] = None if area is None else round(area, 4)
    scored = [(SCORES[SCORE](lp), ok) for ok, lp in results]
    threshold, escalated, caught = best_threshold(scored, max_escalation)
    report.update(deciles=deciles(scored), max_escalation=max_escalation,
                  threshold=None if threshold is None else round(threshold, 4),
                  escalated=round(escalated, 4), wrong_caught=round(caught, 4))
    return report
