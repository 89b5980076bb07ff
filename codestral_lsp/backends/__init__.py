"""Where completions come from: the local engine or a remote server (Mistral's API, OpenAI-compatible).

Every kind implements `base.Backend`; `KINDS` is the one table from `model.backend` to its class,
and `open_backend` makes one from the settings. Nothing else names a kind.
"""

from __future__ import annotations

from importlib import import_module

from ..settings import Settings
from .base import Backend, Completion, Log, Report, TextStream

# model.backend -> (module, class); imported when used: the local one needs torch, the remote ones httpx
KINDS: dict[str, tuple[str, str]] = {
    "local": ("local", "LocalBackend"),
    "mistral": ("remote", "RemoteBackend"),
    "openai": ("remote", "RemoteBackend"),
}


def backend_class(settings: Settings, kind: str | None = None) -> type[Backend]:
    """The class of `kind`, by default settings.model.backend."""
    module, name = KINDS[kind or settings.model.backend]
    return getattr(import_module(f"{__name__}.{module}"), name)


def open_backend(settings: Settings, model_path: str | None = None, report: Report | None = None,
                 log: Log | None = None) -> Backend:
    """Open the backend the settings name (blocking: a local model loads here). model_path: the
    command line's --model, which wins over model.path."""
    return backend_class(settings).open(settings, model_path, report, log)


def cascades(settings: Settings) -> bool:
    """Whether `model.cascade` puts the local model in front of the remote backend: on, with a remote kind."""
    return settings.model.cascade == "on" and backend_class(settings).remote


def local_class(settings: Settings) -> type[Backend]:
    """The local model's class, whatever model.backend names (the cascade's first answer)."""
    return backend_class(settings, "local")


def open_local(settings: Settings, model_path: str | None = None, report: Report | None = None,
               log: Log | None = None) -> Backend:
    return local_class(settings).open(settings, model_path, report, log)


def as_backend(source) -> Backend:
    """A backend as it is; an `engine.Engine` (scripts, tools, tests) wrapped as the local backend."""
    if isinstance(source, Backend):
        return source
    from .local import LocalBackend

    return LocalBackend(source)


__all__ = ["KINDS", "Backend", "Completion", "Log", "Report", "TextStream", "as_backend", "backend_class",
           "cascades", "local_class", "open_backend", "open_local"]
