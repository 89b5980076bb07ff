"""The text-level stopping rule, one home for every streaming loop: the engine's and the remote backends'.

While text streams in, a caller's stop strings and stop callback decide where it ends (`cut`) and
how much of it is final and may be shown (`final`):

    rule = StopRule(stops=("\\n\\n",))
    rule.cut("a = 1\\n\\nb")   -> 5     the text ends before the first stop string
    rule.final("a = 1\\n")     -> 5     "\\n" could still grow into "\\n\\n": held back

With a stop callback everything is held back until the end: the callback may cut behind text
already seen, and streamed text cannot be taken back.
"""

from __future__ import annotations

from collections.abc import Callable

StopFn = Callable[[str], "int | None"]  # text so far -> length of text to keep and stop, or None


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of text could still grow into a stop string."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest


class StopRule:
    """Stop strings and a stop callback, applied to the whole text generated so far."""

    __slots__ = ("stop_fn", "stops")

    def __init__(self, stops: tuple[str, ...] = (), stop_fn: StopFn | None = None):
        self.stops = tuple(s for s in stops if s)  # an empty stop string would match at once
        self.stop_fn = stop_fn

    def cut(self, text: str) -> int | None:
        """Where text ends when a stop string or the callback fires (the earliest), else None."""
        cuts = [i for s in self.stops if (i := text.find(s)) >= 0]
        if self.stop_fn is not None:
            keep = self.stop_fn(text)
            if keep is not None:
                cuts.append(keep)
        return min(cuts) if cuts else None

    def final(self, text: str, emitted: int) -> int:
        """How much of text may be shown now (never less than `emitted`, what was shown already)."""
        if self.stop_fn is not None:
            return emitted
        return max(emitted, len(text) - held_back(text, self.stops))
