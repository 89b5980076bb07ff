"""`codestral-lsp eval --calibration DATA`: how well the local model's confidence says when it is wrong.

Each held-out FIM task (the `eval` record format) is completed through the pipeline, as the server
would, with the chosen tokens' log-probabilities (`Engine.token_logprobs`, the stop token included).
Every candidate score in `cascade.SCORES` is computed from them; the report gives, for each, its
AUROC at telling right (exact match) from wrong answers and its rank correlation with the answers'
edit similarity (a weak model is rarely exactly right: the similarity still ranks how wrong), and for
the chosen one (`cascade.SCORE`): exact match and edit similarity by confidence decile (1: least
confident) and the threshold that escalates at most `max_escalation` of the requests (score below it)
while catching the largest share of wrong answers. JSON:

    {"n", "exact_match", "edit_similarity", "model", "score", "auroc": {NAME: value},
     "spearman": {NAME: value}, "deciles": [{"decile", "n", "low", "high", "exact_match",
     "edit_similarity"}], "max_escalation", "threshold", "escalated", "wrong_caught"}
"""

from __future__ import annotations

from ..cascade import SCORE, SCORES
from ..pipeline import Completer, Document
from .evaluate import edit_similarity


def confidences(completer: Completer, records: list[dict], progress=None) -> list[tuple[bool, float, list[float]]]:
    """(exact match, edit similarity, the chosen tokens' log-probabilities) for each task."""
    out = []
    for n, rec in enumerate(records, 1):
        text, offset = rec["prompt"] + rec["suffix"], len(rec["prompt"])
        doc = Document(f"eval://{rec['task_id']}", rec.get("language", "python"), text)
        result = completer.complete(doc, offset, use_recent=False, logprobs=True)
        shown, target = (result.suggestion.text if result.suggestion else "").rstrip(), rec["canonical_solution"].rstrip()
        out.append((shown == target, edit_similarity(shown, target), result.logprobs or []))
        if progress:
            progress(n, len(records))
    return out


def auroc(right: list[float], wrong: list[float]) -> float | None:
    """The chance that a right answer scores above a wrong one (ties count half)."""
    if not right or not wrong:
        return None
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Rank correlation (average ranks for ties)."""
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        r = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    if len(xs) < 2:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else None


def deciles(scored: list[tuple[float, bool]], similarity: list[float] | None = None) -> list[dict]:
    """Rows of the tasks by score, least sure first; `similarity` in the order of `scored`."""
    order = sorted(range(len(scored)), key=lambda i: scored[i])
    rows = []
    for d in range(10):
        part = order[d * len(order) // 10: (d + 1) * len(order) // 10]
        if part:
            row = {"decile": d + 1, "n": len(part), "low": round(scored[part[0]][0], 4),
                   "high": round(scored[part[-1]][0], 4),
                   "exact_match": round(sum(scored[i][1] for i in part) / len(part), 4)}
            if similarity is not None:
                row["edit_similarity"] = round(sum(similarity[i] for i in part) / len(part), 4)
            rows.append(row)
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
    n = max(1, len(results))
    similarity = [sim for _, sim, _ in results]
    report = {"n": len(results), "exact_match": round(sum(ok for ok, _, _ in results) / n, 4),
              "edit_similarity": round(sum(similarity) / n, 4), "model": completer.backend.model_name,
              "score": SCORE, "auroc": {}, "spearman": {}}
    for name, fn in SCORES.items():
        area = auroc([fn(lp) for ok, _, lp in results if ok], [fn(lp) for ok, _, lp in results if not ok])
        report["auroc"][name] = None if area is None else round(area, 4)
        rho = spearman([fn(lp) for _, _, lp in results], similarity)
        report["spearman"][name] = None if rho is None else round(rho, 4)
    scored = [(SCORES[SCORE](lp), ok) for ok, _, lp in results]
    threshold, escalated, caught = best_threshold(scored, max_escalation)
    report.update(deciles=deciles(scored, similarity), max_escalation=max_escalation,
                  threshold=None if threshold is None else round(threshold, 4),
                  escalated=round(escalated, 4), wrong_caught=round(caught, 4))
    return report
