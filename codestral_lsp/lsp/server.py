"""The language server: settings, open documents, the model, and the one inference worker.

Features live in `features/`, one module each, registered by `create_server`. This class holds the
state they share. The model loads on the worker in the background; until it is ready, completion
requests get an empty answer at once and `codestral/status` says "loading".

With `model.backend` "mistral" or "openai" no model is loaded: a `remote.RemoteEngine` stands in for
the engine, and failed requests (no server, wrong key, timeouts) get an empty answer and put the
reason in `codestral/status` ("error") until a request works again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from .. import __version__
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
        self.engine = None
        self.completer: Completer | None = None
        self.state, self.state_message = "loading", "starting"
        self.last_latency_ms: float | None = None
        self.loaded_message = ""
        self.backend_error: str | None = None  # why the remote backend fails, while it does
        self._last_latency_sent = 0.0  # when a completion's latency was last reported
        self._loaded_key: tuple | None = None

    # -- settings -----------------------------------------------------------------------------------

    def apply_settings(self, raw: Any) -> None:
        """Replace the settings tree; report invalid values; reload the model if its settings changed."""
        settings, problems = parse_settings(raw)
        for problem in problems:
            self.show(f"codestral settings: {problem}", types.MessageType.Warning)
        self.settings = settings
        if self.completer is not None:
            self.completer.settings = settings
            self.completer.recent.clear()  # suggestions made under the old settings
        if self.engine is not None:
            self.engine.spec_k, self.engine.spec_ngram = settings.speculative.k, settings.speculative.ngram
        if self._loaded_key is not None and self._loaded_key != self.model_key():
            self.start_loading()
        elif self.engine is not None:
            self.set_status(*self.ready_status())

    def model_key(self) -> tuple:
        m = self.settings.model
        if m.backend != "local":
            return ("remote", m.backend, m.endpoint, m.api_key_env, m.remote_model, m.fim_prompt,
                    m.request_timeout_ms, m.retries)
        return (self.cli_model_path or m.path, m.device, m.dtype, m.quantize, self.settings.cache.sessions,
                self.settings.cache.memory_mb, self.settings.speculative.draft_path, self.settings.speculative.mode)

    # -- model ------------------------------------------------------------------------------------------

    def start_loading(self) -> None:
        key = self.model_key()
        self._loaded_key = key
        old, self.engine, self.completer = self.engine, None, None
        self.backend_error = None
        self._loop = asyncio.get_running_loop()
        if hasattr(old, "close"):  # a remote client: closed after the work already queued for it
            self.scheduler.submit_blocking(old.close)
        model = self.settings.model
        if model.backend != "local":
            self.set_status("loading", f"connecting to the {model.backend} backend")
            self.scheduler.submit_blocking(lambda: self._connect(key, model))
            return
        self.set_status("loading", "loading the model")
        token = f"codestral-load-{time.monotonic_ns()}"
        progress = self._begin_progress(token)
        self.scheduler.submit_blocking(lambda: self._load(key, token if progress else None))

    def _begin_progress(self, token: str) -> bool:
        window = self.client_capabilities.window if self.client_capabilities else None
        if not (window and window.work_done_progress):
            return False
        try:
            self.work_done_progress.create(token)
            self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                title="Codestral", message="loading the model", cancellable=False))
        except Exception as exc:  # the client refused the token: progress is optional
            log.debug("no progress: %s", exc)
            return False
        return True

    def _load(self, key: tuple, token: str | None) -> None:
        """On the worker: load, then hand the result to the event loop (transports are not thread-safe)."""
        from engine import Engine

        path, device, dtype, quantize, sessions, memory_mb, draft_path, spec_mode = key
        started = time.perf_counter()
        try:
            engine = Engine.load(path, device=device, dtype=dtype, max_sessions=sessions,
                                 cache_bytes=memory_mb * 2**20, quantize=None if quantize == "none" else quantize)
            if spec_mode == "draft":
                engine.attach_draft(draft_path)
            engine.spec_k, engine.spec_ngram = self.settings.speculative.k, self.settings.speculative.ngram
        except Exception as exc:  # a missing or corrupt model must not kill the server
            log.exception("model load failed")
            self._loop.call_soon_threadsafe(self._load_failed, token, exc)
            return
        from engine import fused

        if engine.fused_status == fused.NOT_BUILT:  # once per machine: decode in PyTorch until it is ready
            fused.build_in_background(lambda module: self._fused_built(engine))
        self._loop.call_soon_threadsafe(self._loaded, key, token, engine, time.perf_counter() - started)

    def _fused_built(self, engine) -> None:
        """On the build thread: switch the engine to the fused decode step (a plain attribute swap that a
        running completion may see between two steps: both steps compute the same values)."""
        status = engine.use_fused_step()
        try:
            self._loop.call_soon_threadsafe(self.log_message, f"codestral: fused decode step: {status}")
        except RuntimeError:  # the server stopped meanwhile
            pass

    def _load_failed(self, token: str | None, exc: Exception) -> None:
        self.set_status("error", f"could not load the model: {exc}")
        self.show(f"codestral: could not load the model: {exc}", types.MessageType.Error)
        self._end_progress(token, "failed")

    def _loaded(self, key: tuple, token: str | None, engine, seconds: float) -> None:
        if key != self._loaded_key:  # settings changed while loading; a newer load is queued
            return
        self.engine = engine
        self.completer = Completer(engine, self.settings)
        name = engine.checkpoint.folder.name if engine.checkpoint else "model"
        self.loaded_message = f"{name} loaded in {seconds:.1f}s on {engine.device}"
        fused = engine.fused_status.replace("not built yet", "building")  # see _load
        # The log line first: a client that sees "ready" has the load's details already.
        self.log_message(f"codestral: {name} loaded in {seconds:.1f}s ({engine.info()['parameters']:,} parameters, "
                         f"{engine.dtype}, {engine.device}, fused decode step: {fused})")
        self.set_status(*self.ready_status())
        self._end_progress(token, "ready")

    def ready_status(self) -> tuple[str, str]:
        if not self.settings.completion.enabled:
            return "disabled", "completions are disabled (completion.enabled)"
        if self.backend_error:
            return "error", self.backend_error
        return "ready", self.loaded_message

    # -- remote backends -----------------------------------------------------------------------------

    def _connect(self, key: tuple, model) -> None:
        """On the worker: make the remote client and ask the server for its models (reachable? key accepted?)."""
        from ..backends.remote import RemoteConfig, RemoteEngine, RemoteError

        loop = self._loop

        def report(error: str | None) -> None:
            try:
                loop.call_soon_threadsafe(self._remote_health, key, error)
            except RuntimeError:  # the event loop has closed: the server is exiting
                pass

        try:
            engine = RemoteEngine(RemoteConfig.from_settings(model), report=report)
        except Exception as exc:  # no tokenizer for the context budgets
            log.exception("remote backend setup failed")
            loop.call_soon_threadsafe(self._load_failed, None, exc)
            return
        try:
            engine.check()
            error = None
        except RemoteError as exc:
            error = exc.message
        except Exception as exc:  # whatever happens, the status must leave "loading"
            log.exception("remote backend check failed")
            error = f"{model.backend} backend: {type(exc).__name__}: {exc}"
        engine.last_error = error
        loop.call_soon_threadsafe(self._connected, key, engine, error)

    def _connected(self, key: tuple, engine, error: str | None) -> None:
        if key != self._loaded_key:  # settings changed meanwhile; a newer connection is queued
            engine.close()
            return
        self.engine, self.backend_error = engine, error
        self.completer = Completer(engine, self.settings)  # requests go on even after an error: it may pass
        self.loaded_message = engine.describe()
        self.set_status(*self.ready_status())
        if error:
            self.show(f"codestral: {error}", types.MessageType.Error)
        else:
            self.log_message(f"codestral: using the {self.loaded_message}")

    def _remote_health(self, key: tuple, error: str | None) -> None:
        """A request of the current remote engine started failing, or worked again after failing."""
        if key != self._loaded_key or self.engine is None:
            return
        self.backend_error = error
        self.set_status(*self.ready_status())
        if error:
            self.log_message(f"codestral: {error}", types.MessageType.Warning)
        else:
            self.log_message(f"codestral: the {self.settings.model.backend} backend answers again")

    def record_latency(self, latency_ms: float) -> None:
        """Keep the last latency and tell the client, at most once a second. Statuses sent for other
        reasons (ready, loading) do not count: the first completion after the server became ready is
        reported at once. Sent here, on the event loop, before the completion's answer: never later."""
        self.last_latency_ms = round(latency_ms, 1)
        now = time.monotonic()
        if self.state == "ready" and now - self._last_latency_sent >= 1.0:
            self._last_latency_sent = now
            self.set_status(self.state, self.state_message)

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

    # -- talking to the user ----------------------------------------------------------------------------

    def set_status(self, state: str, message: str) -> None:
        if state != self.state:
            self._last_latency_sent = 0.0  # the first completion in the new state is reported at once
        self.state, self.state_message = state, message
        self.protocol.notify(STATUS, {"state": state, "message": message, "lastLatencyMs": self.last_latency_ms,
                                      "model": self.status_model()})

    def status_model(self) -> str:
        m = self.settings.model
        if m.backend != "local":
            name = getattr(self.engine, "model", None) or m.remote_model
            return f"{m.backend}:{name}" if name else m.backend
        return self.cli_model_path or m.path or "embedded"

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
