"""One inference worker for the whole server; stale and cancelled requests stop between decode steps.

A request is keyed (by document): a newer request with the same key supersedes the older one, whose
`cancelled()` then turns true, so its generation stops at the next decode step and the worker moves
on. `$/cancelRequest` cancels the awaiting task, which sets the same flag. The debounce wait happens
on the event loop before the job is queued, so a burst of keystrokes queues one job, not one each.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


class Superseded(Exception):
    """The request was replaced by a newer one for the same key before it ran."""


class Scheduler:
    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._latest: dict[str, int] = {}
        self._tickets = itertools.count(1)

    def submit_blocking(self, fn: Callable[[], Any]):
        """Queue work that is not a request (model loading) on the same worker."""
        return self.executor.submit(fn)

    async def run(self, key: str, fn: Callable[[Callable[[], bool]], Any], debounce_s: float = 0.0) -> Any:
        """Run fn(cancelled) on the worker after the debounce; raise Superseded if replaced first."""
        ticket = next(self._tickets)
        self._latest[key] = ticket
        stop = threading.Event()

        def cancelled() -> bool:
            return stop.is_set() or self._latest.get(key) != ticket

        if debounce_s > 0:
            await asyncio.sleep(debounce_s)
        if cancelled():
            raise Superseded(key)

        def job():
            if cancelled():
                raise Superseded(key)
            return fn(cancelled)

        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, job)
        except asyncio.CancelledError:
            stop.set()
            raise

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
