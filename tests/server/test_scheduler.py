import asyncio
import threading
import time

import pytest

from codestral_lsp.lsp.scheduler import Scheduler, Superseded


async def test_newer_request_supersedes_the_older_one_between_steps():
    sched = Scheduler()
    steps = []
    started = threading.Event()

    def slow(cancelled):
        started.set()
        for i in range(200):
            if cancelled():
                return ("stopped", i)
            steps.append(i)
            time.sleep(0.005)
        return ("finished", 200)

    first = asyncio.create_task(sched.run("doc", slow))
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    second = await sched.run("doc", lambda cancelled: "second")
    outcome, at = await first
    assert second == "second"
    assert outcome == "stopped" and at < 200
    sched.shutdown()


async def test_debounce_collapses_a_burst_into_one_job():
    sched = Scheduler()
    ran = []
    tasks = [asyncio.create_task(sched.run("doc", lambda c, i=i: ran.append(i) or i, debounce_s=0.05)) for i in range(5)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert ran == [4]
    assert all(isinstance(r, Superseded) for r in results[:4]) and results[4] == 4
    sched.shutdown()


async def test_cancelling_the_task_stops_the_job():
    sched = Scheduler()
    seen = []

    def job(cancelled):
        for _ in range(400):
            if cancelled():
                seen.append("cancelled")
                return
            time.sleep(0.005)
        seen.append("finished")

    task = asyncio.create_task(sched.run("doc", job))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.get_running_loop().run_in_executor(None, lambda: sched.executor.submit(lambda: None).result())
    assert seen == ["cancelled"]
    sched.shutdown()


async def test_different_documents_do_not_supersede_each_other():
    sched = Scheduler()
    a = asyncio.create_task(sched.run("a", lambda c: "a"))
    b = asyncio.create_task(sched.run("b", lambda c: "b"))
    assert await asyncio.gather(a, b) == ["a", "b"]
    sched.shutdown()
