"""The model in this process: `engine.Engine` behind the backend interface.

The engine's API stays as it is (users' scripts and the tests use it); this class adds only what
the server needs to open, describe and reconfigure it. Streaming is the engine's own: no work is
added per decode step.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..settings import Settings
from .base import Backend, Log, Report

if TYPE_CHECKING:  # imported where a model loads: torch is slow to import and remote backends never need it
    from engine import Engine


class LocalBackend(Backend):
    shows_progress = True

    def __init__(self, engine: Engine, model_path: str | None = None, load_seconds: float = 0.0):
        self.engine, self.model_path, self.load_seconds = engine, model_path, load_seconds
        self.tokenizer = engine.tokenizer

    @property
    def instruct(self) -> bool:
        return self.engine.instruct

    @classmethod
    def reload_key(cls, settings: Settings, model_path: str | None) -> tuple:
        m, cache, spec = settings.model, settings.cache, settings.speculative
        return (model_path or m.path, m.device, m.dtype, m.quantize, cache.sessions, cache.memory_mb,
                spec.draft_path, spec.mode)

    @classmethod
    def opening_message(cls, settings: Settings) -> str:
        return "loading the model"

    @classmethod
    def planned_label(cls, settings: Settings, model_path: str | None) -> str:
        return model_path or settings.model.path or "embedded"

    @classmethod
    def open(cls, settings: Settings, model_path: str | None = None, report: Report | None = None,
             log: Log | None = None) -> LocalBackend:
        """Load the checkpoint (and the draft); start building the fused decode step if this machine lacks it."""
        from engine import Engine

        m, cache = settings.model, settings.cache
        started = time.perf_counter()
        engine = Engine.load(model_path or m.path, device=m.device, dtype=m.dtype, max_sessions=cache.sessions,
                             cache_bytes=cache.memory_mb * 2**20, quantize=None if m.quantize == "none" else m.quantize)
        if settings.speculative.mode == "draft":
            engine.attach_draft(settings.speculative.draft_path)
        backend = cls(engine, model_path or m.path, time.perf_counter() - started)
        backend.configure(settings)
        backend.build_fused_step(log)
        return backend

    def build_fused_step(self, log: Log | None) -> None:
        """Once per machine: decode in PyTorch until the fused step is built, then switch to it (a plain
        attribute swap that a running completion may see between two steps: both compute the same values)."""
        from engine import fused

        if self.engine.fused_status != fused.NOT_BUILT:
            return

        def built(module) -> None:
            status = self.engine.use_fused_step()
            if log is not None:
                log(f"codestral: fused decode step: {status}")

        fused.build_in_background(built, self.engine.compiled_extension())

    def configure(self, settings: Settings) -> None:
        self.engine.spec_k, self.engine.spec_ngram = settings.speculative.k, settings.speculative.ngram

    def stream(self, prefix: str, suffix: str = "", **options):
        return self.engine.stream(prefix, suffix, **options)

    def chat(self, turns: list[tuple[str, str]], **options):
        return self.engine.chat(turns, **options)

    def logprobs(self, stream) -> list[float]:
        return self.engine.token_logprobs(stream)  # one verification-sized pass over the chosen tokens

    def forget(self, session: str) -> None:
        self.engine.sessions.drop(session)

    @property
    def label(self) -> str:
        return self.model_path or "embedded"

    @property
    def model_name(self) -> str | None:
        checkpoint = self.engine.checkpoint
        return str(checkpoint.folder) if checkpoint else None

    def _name(self) -> str:
        return self.engine.checkpoint.folder.name if self.engine.checkpoint else "model"

    def describe(self) -> str:
        return f"{self._name()} loaded in {self.load_seconds:.1f}s on {self.engine.device}"

    def opened_log(self) -> str:
        e = self.engine
        fused = e.fused_status.replace("not built yet", "building")  # see build_fused_step
        return (f"codestral: {self._name()} loaded in {self.load_seconds:.1f}s ({e.info()['parameters']:,} "
                f"parameters, {e.dtype}, {e.device}, fused decode step: {fused})")

