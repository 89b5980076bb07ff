"""Remote backends: completions from Mistral's FIM API or from an OpenAI-compatible server.

    mistral  POST {endpoint}/v1/fim/completions  {model, prompt, suffix, max_tokens, temperature, stop, stream}
             stream chunks: choices[0].delta.content
    openai   POST {endpoint}/v1/completions      {model, prompt, suffix, ...}, or prompt = the FIM token ids
             stream chunks: choices[0].text

Both kinds are one class, `RemoteBackend`; what differs between them is a row of `SERVICES`. The
tokenizer (for the context budgets) is the embedded model's v3 tokenizer, which Codestral shares.

A request streams in `remote_stream.RemoteGeneration`: stop rules, cancellation, deadlines, retries.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ..settings import ModelSettings, Settings
from .base import Backend, Log, Report
from .remote_stream import RemoteError, RemoteGeneration, backoff, error_detail

if TYPE_CHECKING:
    from engine.stopping import StopFn


@dataclass(frozen=True)
class Service:
    """What one kind of server expects: where it is, its key, its default model, its FIM route."""

    endpoint: str
    key_env: str
    key_required: bool
    model: str | None
    path: str
    seed_field: str  # the request field of the sampling seed
    token_prompts: bool  # model.fimPrompt "tokens" applies: the prompt may be sent as FIM token ids


SERVICES = {
    "mistral": Service("https://api.mistral.ai", "MISTRAL_API_KEY", True, "codestral-latest", "/v1/fim/completions",
                       "random_seed", False),
    "openai": Service("http://127.0.0.1:8000", "OPENAI_API_KEY", False, None, "/v1/completions", "seed", True),
}


@dataclass
class RemoteConfig:
    """Where and how to reach the server; built from the `model` settings group by `from_settings`."""

    backend: str
    endpoint: str
    key_env: str
    api_key: str | None = field(default=None, repr=False)  # never logged, never shown
    model: str | None = None
    fim_prompt: str = "suffix"
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.25
    error: str | None = None  # a configuration that cannot work: every request fails with this at once

    @classmethod
    def from_settings(cls, m: ModelSettings, environ: Mapping[str, str] = os.environ) -> RemoteConfig:
        """The configuration of m.backend ("mistral" or "openai"), the key read from environ."""
        spec = SERVICES[m.backend]
        endpoint = (m.endpoint or spec.endpoint).strip().rstrip("/")
        endpoint = endpoint.removesuffix("/v1")  # OpenAI clients' base URLs end in /v1; our paths add it
        key_env = m.api_key_env or spec.key_env
        key = environ.get(key_env) or None
        error = None
        if not is_http_url(endpoint):
            error = f"{m.backend} backend: model.endpoint must be an http:// or https:// URL, got {endpoint!r}"
        elif key is None and (spec.key_required or m.api_key_env):
            error = (f"{m.backend} backend: the environment variable {key_env} is not set; set it to your API key "
                     "in the environment the editor starts the server from (or name another variable in "
                     "model.apiKeyEnv)")
        return cls(m.backend, endpoint, key_env, key, m.remote_model or spec.model, m.fim_prompt,
                   m.request_timeout_ms / 1000, m.retries, error=error)

    @property
    def service(self) -> Service:
        return SERVICES[self.backend]

    @property
    def label(self) -> str:
        return f"{self.backend} backend"


def default_tokenizer():
    """The embedded model's tokenizer (Codestral's v3), else mistral-common's copy of it."""
    from engine.checkpoints.loading import find_checkpoint
    from engine.checkpoints.tokenizer import Tokenizer

    try:
        return Tokenizer(find_checkpoint(None).tokenizer_file)
    except ValueError:  # CheckpointError, TokenizerError: this copy ships no embedded model
        from engine.checkpoints.tokenizer import v3_tokenizer_path

        return Tokenizer(v3_tokenizer_path())


class RemoteBackend(Backend):
    """One remote server, one keep-alive HTTP client."""

    remote = True

    def __init__(self, config: RemoteConfig, tokenizer=None, report: Report | None = None,
                 transport: httpx.BaseTransport | None = None):
        self.config = config
        self.tokenizer = tokenizer if tokenizer is not None else default_tokenizer()
        self.report = report
        self.model: str | None = config.model  # for openai without a name: the first one the server lists
        self.models_listed = False  # the server answered GET /v1/models (404 included)
        self.last_error: str | None = None
        self._lock = threading.Lock()
        headers = {"Accept": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self.client = httpx.Client(base_url=config.endpoint if config.error is None else "http://invalid",
                                   headers=headers, timeout=httpx.Timeout(config.timeout_s), transport=transport)

    @classmethod
    def opening_message(cls, settings: Settings) -> str:
        return f"connecting to the {settings.model.backend} backend"

    @classmethod
    def reload_key(cls, settings: Settings, model_path: str | None) -> tuple:
        m = settings.model
        return ("remote", m.backend, m.endpoint, m.api_key_env, m.remote_model, m.fim_prompt,
                m.request_timeout_ms, m.retries)

    @classmethod
    def planned_label(cls, settings: Settings, model_path: str | None) -> str:
        m = settings.model
        return f"{m.backend}:{m.remote_model}" if m.remote_model else m.backend

    @classmethod
    def open(cls, settings: Settings, model_path: str | None = None, report: Report | None = None,
             log: Log | None = None) -> RemoteBackend:
        """The client of settings.model; raises only without a tokenizer for the context budgets."""
        return cls(RemoteConfig.from_settings(settings.model), report=report)

    def check_health(self) -> str | None:
        try:
            self.check()
            error = None
        except RemoteError as exc:
            error = exc.message
        except Exception as exc:  # whatever happens, the status must leave "loading"
            error = f"{self.config.label}: {type(exc).__name__}: {exc}"
        self.last_error = error
        return error

    @property
    def path(self) -> str:
        return self.config.service.path

    @property
    def label(self) -> str:
        return f"{self.config.backend}:{self.model}" if self.model else self.config.backend

    @property
    def model_name(self) -> str | None:
        return self.model

    def describe(self) -> str:
        return f"{self.config.backend} backend: {self.model or 'the served model'} at {self.config.endpoint}"

    def close(self) -> None:
        self.client.close()

    # -- health ------------------------------------------------------------------------------------

    def check(self) -> str:
        """Ask the server for its models (GET /v1/models): proves it is reachable and the key is accepted.

        Returns describe(); raises RemoteError. A server without that route (404, 405) passes: the
        first completion will tell. For openai with no model name, the first model listed is used.
        """
        if self.config.error:
            raise RemoteError(self.config.error)
        for attempt in range(self.config.retries + 1):
            try:
                self.list_models()
                return self.describe()
            except RemoteError as exc:
                if not exc.retryable or attempt == self.config.retries:
                    raise
                time.sleep(backoff(self.config.backoff_s, attempt, exc.retry_after))
        raise AssertionError("unreachable")

    def list_models(self) -> None:
        """GET /v1/models; without a model name, take the first one listed. Raises RemoteError."""
        try:
            response = self.client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise self.transport_error(exc) from None
        if response.status_code not in (200, 404, 405):
            raise self.http_error(response.status_code, response.content, response.headers)
        self.models_listed = True
        if response.status_code == 200 and self.model is None:
            self.model = first_model(response)

    def note(self, error: str | None) -> None:
        """Tell the server when requests start failing or work again (not on every request)."""
        with self._lock:
            changed, self.last_error = error != self.last_error, error
        if changed and self.report is not None:
            self.report(error)

    def transport_error(self, exc: Exception) -> RemoteError:
        c = self.config
        if isinstance(exc, httpx.ConnectTimeout):
            return RemoteError(f"{c.label}: could not connect to {c.endpoint} within {c.timeout_s * 1000:.0f} ms",
                               retryable=True)
        if isinstance(exc, httpx.ConnectError):
            reason = str(exc) or type(exc).__name__
            return RemoteError(f"{c.label}: cannot connect to {c.endpoint} ({reason}); is the server running?",
                               retryable=True)
        if isinstance(exc, httpx.TimeoutException):
            return RemoteError(f"{c.label}: {c.endpoint} sent nothing for {c.timeout_s * 1000:.0f} ms "
                               "(model.requestTimeoutMs)")
        return RemoteError(f"{c.label}: {type(exc).__name__}: {exc}")

    def http_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> RemoteError:
        c = self.config
        phrase = httpx.codes.get_reason_phrase(status)
        detail = error_detail(body)
        if status in (401, 403):
            hint = (f"is {c.key_env} set to a valid key?" if c.api_key else
                    f"no API key was sent: set {c.key_env} (or name another variable in model.apiKeyEnv)")
            return RemoteError(f"{c.label}: {status} {phrase} — {hint}")
        message = f"{c.label}: {status} {phrase} from {c.endpoint}" + (f": {detail}" if detail else "")
        if status == 404:
            message += " (is model.endpoint or model.remoteModel wrong?)"
        if status == 400 and "suffix" in detail.lower() and c.service.token_prompts:
            message += " (this server refuses 'suffix': set model.fimPrompt to \"tokens\")"
        retry_after = None
        if status == 429:
            try:
                retry_after = float(headers.get("retry-after", ""))
            except ValueError:
                pass
        return RemoteError(message, retryable=status == 429 or status >= 500, retry_after=retry_after)

    # -- generation ----------------------------------------------------------------------------------

    def body(self, prefix: str, suffix: str, max_tokens: int, temperature: float, top_p: float,
             stops: tuple[str, ...], seed: int | None) -> dict:
        body: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "stream": True}
        if self.model:
            body["model"] = self.model
        if self.config.service.token_prompts and self.config.fim_prompt == "tokens":
            body["prompt"] = self.tokenizer.encode_fim(prefix, suffix)
        else:
            body["prompt"], body["suffix"] = prefix, suffix
        if top_p < 1.0:
            body["top_p"] = top_p
        if stops:
            body["stop"] = list(stops)
        if seed is not None:
            body[self.config.service.seed_field] = seed
        return body

    def stream(self, prefix: str, suffix: str = "", *, max_tokens: int = 64, temperature: float = 0.0,
               top_p: float = 1.0, stop: list[str] | tuple[str, ...] | None = None, stop_fn: StopFn | None = None,
               deadline: float | None = None, cancelled: Callable[[], bool] | None = None,
               session: str | None = None, seed: int | None = None, speculative: str | None = None,
               **ignored: Any) -> RemoteGeneration:
        """Iterate for text pieces; afterwards `.text` and `.stats` hold the completion.

        session and speculative (and top_k) are the local engine's; the server decides those.
        """
        from engine.stopping import StopRule  # the engine package imports torch: not at server start

        rule = StopRule(tuple(stop or ()), stop_fn)
        body = self.body(prefix, suffix, max_tokens, temperature, top_p, rule.stops, seed)
        return RemoteGeneration(self, prefix, suffix, body, rule, deadline, cancelled)


def is_http_url(text: str) -> bool:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def first_model(response: httpx.Response) -> str | None:
    try:
        data = response.json().get("data") or []
        return data[0]["id"] if data and isinstance(data[0].get("id"), str) else None
    except (ValueError, AttributeError, KeyError, TypeError, IndexError):
        return None
