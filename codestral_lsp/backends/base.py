"""The one interface every source of completions implements: the local engine, Mistral's API, an
OpenAI-compatible server.

The pipeline streams FIM completions and asks for chats through it; the server opens, checks,
describes and closes a backend through it and never asks which kind it holds. What differs between
kinds (the settings that need a reload, the status label, the health check) lives in the classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..settings import Settings

if TYPE_CHECKING:  # the engine package imports torch: the server starts without it
    from engine.stopping import StopFn

Log = Callable[[str], None]  # a line for the client's log, from any thread
Report = Callable[["str | None"], None]  # a request started failing (the reason) or works again (None)


@dataclass
class Completion:
    text: str
    tokens: list[int]
    stats: dict


class TextStream(Protocol):
    """One streamed completion: iterate for text pieces; afterwards `text`, `tokens` (empty from a remote
    server) and `stats` hold the result (`stats["stop_reason"]`: eos, max_tokens, stop, deadline,
    cancelled, abandoned, length or error)."""

    text: str
    tokens: list[int]
    stats: dict

    def __iter__(self) -> Iterator[str]: ...


class Backend(ABC):
    """A source of completions. Blocking calls (open, check_health, stream, chat) run on the worker."""

    tokenizer: object  # the tokenizer the context budgets count with (`encode(text) -> ids`)
    instruct: bool = False  # answers `chat`: the instruct code actions are offered
    shows_progress: ClassVar[bool] = False  # `open` takes long enough for a $/progress report
    remote: ClassVar[bool] = False  # prompts leave the machine: excluded documents and secrets stay out of them

    @classmethod
    @abstractmethod
    def reload_key(cls, settings: Settings, model_path: str | None) -> tuple:
        """The settings this kind is opened with: when they change, the server opens it again."""

    @classmethod
    @abstractmethod
    def opening_message(cls, settings: Settings) -> str:
        """The status message while `open` runs."""

    @classmethod
    @abstractmethod
    def planned_label(cls, settings: Settings, model_path: str | None) -> str:
        """The model's name for the status line, before the backend is open."""

    @classmethod
    @abstractmethod
    def open(cls, settings: Settings, model_path: str | None = None, report: Report | None = None,
             log: Log | None = None) -> Backend:
        """Make the backend (a local model loads here); raises when it cannot exist at all."""

    def check_health(self) -> str | None:
        """Why requests will fail (server down, key refused), or None: asked once after `open`."""
        return None

    @abstractmethod
    def stream(self, prefix: str, suffix: str = "", *, max_tokens: int = 64, temperature: float = 0.0,
               stop: list[str] | tuple[str, ...] | None = None, stop_fn: StopFn | None = None,
               deadline: float | None = None, cancelled: Callable[[], bool] | None = None,
               session: str | None = None, seed: int | None = None, speculative: str | None = None) -> TextStream:
        """A FIM completion between prefix and suffix, streamed. session names a document whose state the
        backend may keep; speculative is "ngram", "draft" or None (a hint: remote servers decide)."""

    def complete(self, prefix: str, suffix: str = "", **options) -> Completion:
        """`stream`, run to the end."""
        gen = self.stream(prefix, suffix, **options)
        for _ in gen:
            pass
        return Completion(gen.text, gen.tokens, gen.stats)

    def logprobs(self, stream: TextStream) -> list[float] | None:
        """The log-probability of each token a finished stream chose (its stop token last), or None where the
        backend does not know them (remote servers): what the cascade's confidence is computed from."""
        return None

    def chat(self, turns: list[tuple[str, str]], **options) -> Completion:
        """Answer (role, content) turns; only when `instruct`. Raises ValueError otherwise."""
        raise ValueError(f"{self.describe()} does not answer instructions")

    def forget(self, session: str) -> None:
        """The document is closed: drop what is kept for it."""

    def configure(self, settings: Settings) -> None:
        """Settings that apply without opening again (outside `reload_key`)."""

    @property
    @abstractmethod
    def label(self) -> str:
        """The model's name for the status line."""

    @property
    @abstractmethod
    def model_name(self) -> str | None:
        """The model's identity in reports (a checkpoint folder, a served model's name)."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the status: what answers, and where."""

    def opened_log(self) -> str | None:
        """The log line once open and healthy, or None."""
        return f"codestral: using the {self.describe()}"

    def close(self) -> None:
        """Release connections; called after the work already queued for this backend."""
