"""The language server: settings, open documents, the backend, and the one inference worker.

Features live in `features/`, one module each, registered by `create_server`. This class holds the
state they share. The backend named by `model.backend` opens on the worker in the background (a
local model loads, a remote server is asked for its models); until it is ready, completion requests
get an empty answer at once and `codestral/status` says "loading". Features reach the backend only
through `self.completer` (pipeline.py); the server never asks which kind of backend it holds.

Failed requests (no server, wrong key, timeouts) get an empty answer and put the reason in
`codestral/status` ("error") until a request works again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from .. import __version__
from ..backends import Backend, backend_class, cascades, local_class, open_backend, open_local
from ..cascade import REFRESH, Cascade
from ..pipeline import Completer, Document
from ..settings import Settings, parse_settings
from .documents import DocumentStore
from .protocol import CodestralProtocol
from .scheduler import Scheduler

log = logging.getLogger(__name__)
STATUS = "codestral/status"


class CodestralServer(LanguageServer):
    def __init__(self, model_path: str | None = None):
        super().__init__("codestral-lsp", __version__, protocol_cls=CodestralProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.cli_model_path = model_path
        self.settings = Settings()
        self.scheduler = Scheduler()
        self.documents = DocumentStore()
        self.backend: Backend | None = None
        self.completer: Completer | None = None
        self.cascade: Cascade | None = None  # model.cascade: the remote asked after the local model
        self._pending: set[asyncio.Task] = set()  # the cascade's decisions under way
        self.state, self.state_message = "loading", "starting"
        self.settled = asyncio.Event()  # set while the state is anything but "loading"
        self.last_latency_ms: float | None = None
        self.last_backend: str | None = None  # the label of the backend that answered the last suggestion
        self.loaded_message = ""
        self.backend_error: str | None = None  # why the backend's requests fail, while they do
        self._last_latency_sent = 0.0  # when a completion's latency was last reported
        self._loaded_key: tuple | None = None
        self.ignore_files: dict[str, str] = {}  # workspace root -> its .codestralignore (context.exclude)

    # -- settings -----------------------------------------------------------------------------------

    def apply_settings(self, raw: Any) -> None:
        """Replace the settings tree; report invalid values; reload the model if its settings changed."""
        settings, problems = parse_settings(raw)
        for problem in problems:
            self.show(f"codestral settings: {problem}", types.MessageType.Warning)
        self.settings = settings
        if self.completer is not None:
            self.completer.use_settings(settings)
        if self.cascade is not None:
            self.cascade.remote.use_settings(settings)
            self.cascade.use_settings(settings)
        if self._loaded_key is not None and self._loaded_key != self.model_key():
            self.start_loading()
        elif self.backend is not None:
            self.set_status(*self.ready_status())

    def use_workspace(self, ignore_files: dict[str, str]) -> None:
        """The workspace roots and their .codestralignore texts."""
        self.ignore_files = ignore_files
        if self.completer is not None:
            self.completer.use_workspace(ignore_files)
        if self.cascade is not None:
            self.cascade.remote.use_workspace(ignore_files)

    def model_key(self) -> tuple:
        """The settings the backend was opened with; when they change, it opens again."""
        kind = backend_class(self.settings)
        key = (kind.__name__, *kind.reload_key(self.settings, self.cli_model_path))
        if cascades(self.settings):
            key += ("cascade", *local_class(self.settings).reload_key(self.settings, self.cli_model_path))
        return key

    # -- the backend --------------------------------------------------------------------------------

    def start_loading(self) -> None:
        key = self.model_key()
        self._loaded_key = key
        old, self.backend, self.completer = self.backend, None, None
        old_cascade, self.cascade = self.cascade, None
        self.backend_error = None
        self._loop = asyncio.get_running_loop()
        if old is not None:  # closed after the work already queued for it
            self.scheduler.submit_blocking(old.close)
        if old_cascade is not None:
            self.scheduler.submit_blocking(old_cascade.close)
        kind, settings = backend_class(self.settings), self.settings
        message = kind.opening_message(settings)
        self.set_status("loading", message)
        token = f"codestral-load-{time.monotonic_ns()}"
        progress = kind.shows_progress and self._begin_progress(token, message)
        self.scheduler.submit_blocking(lambda: self._open(key, settings, token if progress else None))

    def _begin_progress(self, token: str, message: str) -> bool:
        window = self.client_capabilities.window if self.client_capabilities else None
        if not (window and window.work_done_progress):
            return False
        try:
            self.work_done_progress.create(token)
            self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                title="Codestral", message=message, cancellable=False))
        except Exception as exc:  # the client refused the token: progress is optional
            log.debug("no progress: %s", exc)
            return False
        return True

    def _open(self, key: tuple, settings: Settings, token: str | None) -> None:
        """On the worker: open the backend and check it, then hand it to the event loop (transports are
        not thread-safe)."""
        remote = None
        try:
            backend = open_backend(settings, self.cli_model_path, report=self._from_worker(self._health, key),
                                   log=self._from_worker(self.log_message))
            if cascades(settings):  # the local model answers first; `backend` is the remote it escalates to
                remote, backend = backend, open_local(settings, self.cli_model_path,
                                                      log=self._from_worker(self.log_message))
        except Exception as exc:  # a missing or corrupt model, no tokenizer: the server must go on
            log.exception("opening the backend failed")
            if remote is not None:
                remote.close()
            self._loop.call_soon_threadsafe(self._load_failed, token, exc)
            return
        error = (remote or backend).check_health()
        self._loop.call_soon_threadsafe(self._opened, key, token, backend, error, remote)

    def _from_worker(self, method, *args):
        """method(*args, value), called on the event loop from any thread; dropped once the loop has closed."""
        loop = self._loop

        def call(value) -> None:
            try:
                loop.call_soon_threadsafe(method, *args, value)
            except RuntimeError:  # the event loop has closed: the server is exiting
                pass

        return call

    def _load_failed(self, token: str | None, exc: Exception) -> None:
        self.set_status("error", f"could not load the model: {exc}")
        self.show(f"codestral: could not load the model: {exc}", types.MessageType.Error)
        self._end_progress(token, "failed")

    def _opened(self, key: tuple, token: str | None, backend: Backend, error: str | None,
                remote: Backend | None = None) -> None:
        if key != self._loaded_key:  # settings changed meanwhile; a newer one is queued
            backend.close()
            if remote is not None:
                remote.close()
            return
        self.backend, self.backend_error = backend, error
        backend.configure(self.settings)  # what changed while it opened
        self.completer = Completer(backend, self.settings, self.ignore_files)  # requests go on after an error too
        self.loaded_message = backend.describe()
        if remote is not None:
            remote.configure(self.settings)
            self.cascade = Cascade(Completer(remote, self.settings, self.ignore_files), self.settings)
            self.loaded_message += f"; asks the {remote.describe()} when unsure (model.cascade)"
        opened_log = None if error else backend.opened_log()
        if opened_log:  # the log line first: a client that sees "ready" has the details already
            self.log_message(opened_log)
        self.set_status(*self.ready_status())
        if error:
            self.show(f"codestral: {error}", types.MessageType.Error)
        self._end_progress(token, "ready")

    def ready_status(self) -> tuple[str, str]:
        if not self.settings.completion.enabled:
            return "disabled", "completions are disabled (completion.enabled)"
        if self.backend_error:
            return "error", self.backend_error
        return "ready", self.loaded_message

    def _health(self, key: tuple, error: str | None) -> None:
        """A request of the current backend started failing, or worked again after failing."""
        if key != self._loaded_key or self.backend is None:
            return
        self.backend_error = error
        self.set_status(*self.ready_status())
        if error:
            self.log_message(f"codestral: {error}", types.MessageType.Warning)
        else:
            self.log_message(f"codestral: the {self.settings.model.backend} backend answers again")

    def record_latency(self, latency_ms: float, backend: str | None = None) -> None:
        """Keep the last latency, and the backend that answered when a suggestion is shown, and tell the
        client: at most once a second, or at once when another backend answered. Statuses sent for other
        reasons (ready, loading) do not count: the first completion after the server became ready is
        reported at once. Sent here, on the event loop, before the completion's answer: never later."""
        self.last_latency_ms = round(latency_ms, 1)
        changed = backend is not None and backend != self.last_backend
        self.last_backend = backend or self.last_backend
        now = time.monotonic()
        if self.state == "ready" and (changed or now - self._last_latency_sent >= 1.0):
            self._last_latency_sent = now
            self.set_status(self.state, self.state_message)

    def consider_escalating(self, result, invoked: bool, doc, snapshot: Document, offset: int,
                            others: list[Document], tab_size: int | None, insert_spaces: bool | None) -> None:
        """After the local answer went out: score it on the worker when the score can decide (a pass over its
        tokens, queued like a request), then escalate if the cascade says so. The local answer never waits."""
        cascade, completer = self.cascade, self.completer
        if cascade is None or completer is None:
            return

        async def decide() -> None:
            logprobs = None
            if cascade.wants_score(invoked, doc.uri):
                loop = asyncio.get_running_loop()
                logprobs = await loop.run_in_executor(self.scheduler.executor, completer.logprobs, result)
            if doc.version == snapshot.version and cascade.reason(logprobs, invoked, doc.uri):
                self.escalate(doc, snapshot, offset, others, tab_size, insert_spaces)

        task = asyncio.ensure_future(decide())
        self._pending.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._pending.discard)

    def escalate(self, doc, snapshot: Document, offset: int, others: list[Document], tab_size: int | None,
                 insert_spaces: bool | None) -> None:
        """Ask the cascade's remote for the request at (snapshot, offset); if it answers while the document is
        still at that version, keep the answer and tell the client to ask again (cascade.py, the contract)."""
        cascade = self.cascade
        if cascade is None:
            return
        loop = asyncio.get_running_loop()

        def still_current() -> bool:
            return self.cascade is cascade and self.documents.get(doc.uri) is doc and doc.version == snapshot.version

        def arrived(kept) -> None:  # on the event loop
            if kept is None or not still_current():
                return
            cascade.keep(doc.uri, kept)
            self.protocol.notify(REFRESH, {"uri": doc.uri, "version": snapshot.version})

        def done(kept) -> None:  # on the cascade's thread
            try:
                loop.call_soon_threadsafe(arrived, kept)
            except RuntimeError:  # the event loop has closed: the server is exiting
                pass

        cascade.ask(snapshot, offset, others, still_current, done, tab_size, insert_spaces)

    def _end_progress(self, token: str | None, message: str) -> None:
        if token:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))

    # -- documents -----------------------------------------------------------------------------------

    @property
    def position_encoding(self) -> str:
        caps = self.server_capabilities
        encoding = caps.position_encoding if caps is not None else None
        return str(getattr(encoding, "value", encoding) or "utf-16")

    def other_documents(self, uri: str) -> list[Document]:
        return [Document(d.uri, d.language_id, d.text) for d in self.documents.docs.values()
                if d.uri != uri and len(d.text) < 1_000_000]

    async def wait_settled(self, timeout_s: float) -> None:
        """Wait, at most timeout_s, until the model has loaded (or failed to): an explicitly invoked
        completion asked during the load is answered when it can be, not dropped."""
        try:
            await asyncio.wait_for(self.settled.wait(), timeout_s)
        except TimeoutError:
            pass

    # -- talking to the user ----------------------------------------------------------------------------

    def set_status(self, state: str, message: str) -> None:
        if state != self.state:
            self._last_latency_sent = 0.0  # the first completion in the new state is reported at once
        self.state, self.state_message = state, message
        if state == "loading":
            self.settled.clear()
        else:
            self.settled.set()
        self.protocol.notify(STATUS, {"state": state, "message": message, "lastLatencyMs": self.last_latency_ms,
                                      "model": self.status_model(), "lastBackend": self.last_backend})

    def status_model(self) -> str:
        if self.backend is not None:
            return self.backend.label
        return backend_class(self.settings).planned_label(self.settings, self.cli_model_path)

    def show(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def log_message(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.window_log_message(types.LogMessageParams(type=kind, message=message))


def create_server(model_path: str | None = None) -> CodestralServer:
    from .features import code_actions, completion, documents, inline_completion, lifecycle

    server = CodestralServer(model_path)
    for feature in (lifecycle, documents, inline_completion, completion, code_actions):
        feature.register(server)
    return server
