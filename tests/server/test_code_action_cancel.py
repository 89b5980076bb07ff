"""A `codeAction/resolve` superseded by typing: the real handler, scheduler, completer and a tiny random
engine. The fill stops at the next decode step, the action comes back without an edit, and what runs
next for the document (the inline completion that typing asked for) answers exactly what a cold cache
answers: the cancelled fill left nothing behind."""

from __future__ import annotations

import asyncio
import threading

import pytest
from lsprotocol import types

from codestral_lsp.lsp.documents import DocumentStore
from codestral_lsp.lsp.features import code_actions
from codestral_lsp.lsp.scheduler import Scheduler
from codestral_lsp.pipeline import Completer, Document
from engine import Engine
from engine.testing import make_checkpoint

TEXT = "def total(xs):\n    pass\n\n\nprint(total([1, 2]))\n"
URI = "file:///cancel/m.py"


class Server:
    """What the handlers use of CodestralServer; `feature` records them by method name."""

    def __init__(self, completer: Completer):
        self.handlers, self.logged = {}, []
        self.documents, self.scheduler, self.completer = DocumentStore(), Scheduler(), completer
        self.position_encoding = "utf-16"

    def feature(self, method, options=None):
        def register(fn):
            self.handlers[method] = fn
            return fn
        return register

    def other_documents(self, uri):
        return []

    def log_message(self, message, kind=None):
        self.logged.append(message)


class Steps:
    """Counts decode steps (one-token runs) of an engine; the third one waits until `release` is set."""

    def __init__(self, engine: Engine):
        self.count, self.reached, self.release = 0, threading.Event(), threading.Event()
        run = engine.model.run

        def counted(tokens, cache, want="logits", chunk=None):
            if len(tokens) == 1:
                self.count += 1
                if self.count == 3:
                    self.reached.set()
                    assert self.release.wait(60), "the test never released the decode step"
            return run(tokens, cache, want, chunk)
        engine.model.run = counted


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.mark.asyncio
async def test_a_resolve_superseded_by_typing_stops_and_leaves_nothing_behind(checkpoint):
    engine = Engine.load(checkpoint, max_sessions=4)
    completer = Completer(engine)
    completer.settings.completion.timeout_ms = 600_000  # only the supersede may stop this fill
    server = Server(completer)
    code_actions.register(server)
    doc = server.documents.open(URI, "python", 1, TEXT)
    params = types.CodeActionParams(types.TextDocumentIdentifier(URI), types.Range(types.Position(1, 0),
                                                                                   types.Position(1, 0)),
                                    types.CodeActionContext(diagnostics=[]))
    listed = await server.handlers[types.TEXT_DOCUMENT_CODE_ACTION](server, params)
    body = next(a for a in listed if a.title == "Codestral: complete body of total")

    steps = Steps(engine)
    resolving = asyncio.ensure_future(server.handlers[types.CODE_ACTION_RESOLVE](server, body))
    assert await asyncio.get_running_loop().run_in_executor(None, steps.reached.wait, 60), "the fill never decoded"

    # The user types: a didChange, then the inline completion it triggers, for the same document.
    typed = TEXT.replace("    pass", "    s = 0")
    doc.apply_changes([(typed, None)], 2)
    offset = typed.index("s = 0") + len("s = 0")

    def complete(cancelled):
        return completer.complete(Document(URI, "python", typed, 2), offset, cancelled=cancelled, use_recent=False)
    completing = asyncio.ensure_future(server.scheduler.run(URI, complete))
    await asyncio.sleep(0)  # the supersede happens when the request is queued
    at_supersede = steps.count
    steps.release.set()

    resolved = await asyncio.wait_for(resolving, 60)
    assert resolved.edit is None, "a superseded resolve offered an edit"
    assert steps.count - at_supersede <= 1, f"{steps.count - at_supersede} decode steps after the supersede"
    after = await asyncio.wait_for(completing, 60)

    cold = Completer(Engine.load(checkpoint, max_sessions=4))
    expected = cold.complete(Document("file:///cancel/fresh.py", "python", typed, 1), offset, use_recent=False)
    assert after.stats["reused_tokens"] > 0  # the document's cache was used, and was consistent
    assert (after.suggestion, after.stats["generated_tokens"]) == (expected.suggestion,
                                                                  expected.stats["generated_tokens"])
    server.scheduler.shutdown()
