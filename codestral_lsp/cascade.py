"""The cascade (`model.cascade`): the local model answers every request at once, and a remote one is asked
when the local answer is unsure or the user invoked completion; the remote answer replaces the local
one if the user has not typed on.

Inline completion is pull-based: the editor asks, the server answers once. So the replacement is a
contract between server and client (docs/ARCHITECTURE.md, "The cascade"):

1. The server answers the request with the local suggestion, as without the cascade.
2. If it escalates, it asks the remote off the inference worker (`Cascade.ask`, one thread of its own).
3. When the remote answers and the document still has the version and the cursor the request had, the
   server keeps that answer (`Cascade.kept`) and sends `codestral/inlineCompletionRefresh` `{uri, version}`.
4. A client whose document is at that version asks again (VS Code: `editor.action.inlineSuggest.trigger`;
   Neovim: `require("codestral").request()` in insert mode); the server answers from the kept answer.
   Any edit changes the version, so an answer that comes after the user typed on is never shown.

Confidence is a score of the log-probabilities of the tokens the local model chose (`SCORES`); which
one the cascade uses (`SCORE`) was picked by `codestral-lsp eval --calibration`, by the area under the
ROC curve on held-out tasks, and the default threshold is the one that command reports.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .context import Suggestion
from .settings import Settings

log = logging.getLogger(__name__)

# A score from the chosen tokens' log-probabilities (the stop token last); higher: more sure.
SCORES: dict[str, Callable[[list[float]], float]] = {
    "mean": lambda lp: sum(lp) / len(lp) if lp else 0.0,
    "min": lambda lp: min(lp, default=0.0),
    "first": lambda lp: lp[0] if lp else 0.0,
    "sum": lambda lp: sum(lp),
}
SCORE = "mean"
REFRESH = "codestral/inlineCompletionRefresh"


def confidence(logprobs: list[float] | None) -> float | None:
    return None if logprobs is None else SCORES[SCORE](logprobs)


class Budget:
    """At most `per_minute` remote requests in any 60 seconds."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self.times: deque[float] = deque()

    def available(self) -> bool:
        now = self.clock()
        while self.times and now - self.times[0] >= 60.0:
            self.times.popleft()
        return len(self.times) < self.per_minute

    def take(self) -> bool:
        if not self.available():
            return False
        self.times.append(self.clock())
        return True


@dataclass
class Kept:
    """A remote answer waiting for the client to ask again at the same place."""

    version: int
    offset: int
    suggestion: Suggestion
    backend: str


class Cascade:
    """When to ask the remote, asking it on a thread of its own, and its answers kept per document.

    `remote` is a `pipeline.Completer` over the remote backend, so its guardrails apply as they do
    without the cascade: excluded documents are never sent, secrets are redacted.
    """

    def __init__(self, remote, settings: Settings):
        self.remote = remote
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cascade-remote")
        self.kept: dict[str, Kept] = {}
        self.use_settings(settings)

    def use_settings(self, settings: Settings) -> None:
        self.threshold = settings.model.cascade_threshold
        self.budget = Budget(settings.model.cascade_remote_per_minute)
        self.kept.clear()

    def answer_for(self, uri: str, version: int, offset: int) -> Kept | None:
        kept = self.kept.get(uri)
        return kept if kept and (kept.version, kept.offset) == (version, offset) else None

    def wants_score(self, invoked: bool, uri: str) -> bool:
        """Whether the local answer's score could send it to the remote: not when the request goes anyway
        (invoked), nor when it cannot (over the budget, an excluded document). Scoring costs a pass."""
        return not invoked and self.budget.available() and not self.remote.kept_out(uri)

    def reason(self, logprobs: list[float] | None, invoked: bool, uri: str) -> str | None:
        """Why this request goes to the remote ("invoked", "unsure"), or None; takes from the budget."""
        score = confidence(logprobs)
        why = "invoked" if invoked else "unsure" if score is not None and score < self.threshold else None
        if why is None or self.remote.kept_out(uri):
            return None
        if not self.budget.take():
            log.debug("cascade: over the remote budget, not asked")
            return None
        return why

    def ask(self, doc, offset: int, others, still_current: Callable[[], bool], done: Callable[[Kept | None], None],
            tab_size: int | None = None, insert_spaces: bool | None = None) -> Future:
        """Ask the remote on the cascade's thread; done(Kept or None) runs on that thread when it answers.
        The request stops early once `still_current()` is false (the user typed on)."""

        def work():
            if not still_current():
                return done(None)
            result = self.remote.complete(doc, offset, others, lambda: not still_current(), tab_size, insert_spaces,
                                          use_recent=False)
            if result.suggestion is None or not result.suggestion.text:
                return done(None)
            return done(Kept(doc.version, offset, result.suggestion, result.backend or self.remote.backend.label))

        return self.executor.submit(work)

    def keep(self, uri: str, kept: Kept) -> None:
        self.kept[uri] = kept

    def forget(self, uri: str) -> None:
        self.kept.pop(uri, None)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.remote.backend.close()
