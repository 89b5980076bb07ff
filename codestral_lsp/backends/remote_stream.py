"""One streamed request to a remote server: the reader thread, server-sent events, stopping early.

Stop rules run here, on the text as it streams in, by the same rule as the local engine
(`engine.stopping.StopRule`). When a rule fires, the request is cancelled (`cancelled()` turns true)
or its deadline passes, the HTTP response is closed at once, so the server stops generating
(`serve-http` cancels on disconnect).

Why a reader thread: a blocking socket read cannot notice a cancellation or a deadline. The reader
thread does the HTTP; the caller waits on a queue with a short timeout and, when it stops early,
shuts the socket down, which ends the blocked read.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from engine.stopping import StopRule

    from .remote import RemoteBackend


POLL_S = 0.02  # how often a waiting caller looks at cancelled() and the deadline
FINISH = {"stop": "eos", "eos": "eos", "length": "max_tokens"}


class RemoteError(Exception):
    """A request that failed; the message is meant for the user's status line."""

    def __init__(self, message: str, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.message, self.retryable, self.retry_after = message, retryable, retry_after


class RemoteGeneration:
    """One streamed request; iterate for text pieces, then read `text`, `tokens` (always empty) and `stats`."""

    def __init__(self, backend: RemoteBackend, prefix: str, suffix: str, body: dict, rule: StopRule,
                 deadline: float | None, cancelled: Callable[[], bool] | None):
        self.backend, self.prefix, self.suffix, self.body = backend, prefix, suffix, body
        self.rule, self.deadline, self.cancelled = rule, deadline, cancelled
        self.text, self.tokens = "", []
        self.stats: dict = {"prompt_tokens": 0, "reused_tokens": 0, "prefill_ms": 0.0, "decode_ms": 0.0,
                            "generated_tokens": 0, "drafted_tokens": 0, "accepted_tokens": 0,
                            "stop_reason": None, "backend": backend.config.backend}
        self.requests = 0  # HTTP attempts made, retries included
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._ended = False  # the reader has read the whole response: the connection may be reused

    def __iter__(self) -> Iterator[str]:
        events: queue.Queue = queue.Queue()
        started = time.perf_counter()
        first: float | None = None
        raw, emitted, pieces, opened = "", 0, 0, False
        reason, error, usage = "abandoned", None, None  # "abandoned" until the loop ends by itself
        if self.backend.config.error:
            events.put(("error", RemoteError(self.backend.config.error)))
        else:
            threading.Thread(target=self._read, args=(events,), name="remote-read", daemon=True).start()
        try:
            while True:
                if self.cancelled is not None and self.cancelled():
                    reason = "cancelled"
                    break
                wait = POLL_S
                if self.deadline is not None:
                    left = self.deadline - time.monotonic()
                    if left <= 0:
                        reason = "deadline"
                        if not opened:  # not even the response's headers: the server is down or stuck
                            ms = (time.perf_counter() - started) * 1000
                            error = RemoteError(f"{self.backend.config.label}: no answer from "
                                                f"{self.backend.config.endpoint} within {ms:.0f} ms "
                                                "(completion.timeoutMs)")
                        break
                    wait = min(wait, left)
                try:
                    kind, value = events.get(timeout=wait)
                except queue.Empty:
                    continue
                if kind == "open":
                    opened = True
                    continue
                if kind == "error":
                    reason, error = "error", value
                    break
                if kind == "done":
                    finish, usage = value
                    reason = FINISH.get(finish, "eos")
                    break
                if first is None:
                    first = time.perf_counter()
                pieces += 1
                raw += value
                cut = self.rule.cut(raw)
                if cut is not None:
                    raw, reason = raw[:cut], "stop"
                    break
                safe = self.rule.final(raw, emitted)
                if safe > emitted:
                    yield raw[emitted:safe]
                    emitted = safe
            if reason != "error" and len(raw) > emitted:
                yield raw[emitted:]
        finally:
            self._stop.set()
            if reason not in ("eos", "max_tokens"):
                self._abort()
            self.text = raw
            self._finish(reason, error, usage, started, first, pieces)

    def _finish(self, reason: str, error: RemoteError | None, usage: dict | None, started: float,
                first: float | None, pieces: int) -> None:
        now = time.perf_counter()
        s = self.stats
        s["stop_reason"] = "error" if error is not None else reason
        s["prefill_ms"] = ((first or now) - started) * 1000.0  # time to the first text: queue, prefill, network
        s["decode_ms"] = (now - first) * 1000.0 if first else 0.0
        usage = usage or {}
        s["generated_tokens"] = usage.get("completion_tokens") or pieces  # a streamed piece is about one token
        s["prompt_tokens"] = usage.get("prompt_tokens") or self._count_prompt()
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        s["reused_tokens"] = cached if isinstance(cached, int) else 0
        if error is not None:
            s["error"] = error.message
            self.backend.note(error.message)
        elif reason in ("eos", "max_tokens", "stop") or (reason == "deadline" and first is not None):
            self.backend.note(None)

    def _count_prompt(self) -> int:
        prompt = self.body.get("prompt")
        if isinstance(prompt, list):
            return len(prompt)
        try:
            return len(self.backend.tokenizer.encode_fim(self.prefix, self.suffix))
        except ValueError:  # a tokenizer without FIM tokens
            return 0

    def _abort(self) -> None:
        """Close the connection under a reader blocked in recv (close() alone would not wake it)."""
        sock = self._sock
        if sock is not None and not self._ended:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- the reader thread --------------------------------------------------------------------------

    def _timeout(self) -> httpx.Timeout:
        """The request timeout, shortened to just past the deadline: a reader still waiting for the
        headers when its caller has given up (no socket to shut down yet) then ends soon too."""
        seconds = self.backend.config.timeout_s
        if self.deadline is not None:
            seconds = min(seconds, max(0.1, self.deadline - time.monotonic() + 0.5))
        return httpx.Timeout(seconds)

    def _read(self, events: queue.Queue) -> None:
        """POST with retries (connection errors, 429 and 5xx, before any text), then stream the events."""
        eng, config = self.backend, self.backend.config
        if "model" not in self.body and not eng.models_listed:  # the server was down when we connected
            try:
                eng.list_models()
            except RemoteError:
                pass  # the completion request fails the same way, with retries
            if eng.model:
                self.body["model"] = eng.model
        for attempt in range(config.retries + 1):
            if self._stop.is_set():
                return
            opened = False
            try:
                self.requests += 1
                with eng.client.stream("POST", eng.path, json=self.body, timeout=self._timeout()) as response:
                    if response.status_code != 200:
                        raise eng.http_error(response.status_code, response.read()[:8192], response.headers)
                    self._sock = network_socket(response)
                    if self._stop.is_set():
                        return  # the caller gave up while the server answered
                    opened = True
                    events.put(("open", None))
                    for event in parse_sse(response.iter_lines()):
                        if self._stop.is_set():
                            return  # leaving the block unread closes the connection
                        events.put(event)
                    self._ended = True
                    return
            except RemoteError as exc:
                error = exc
            except httpx.HTTPError as exc:
                error = eng.transport_error(exc)
            except Exception as exc:  # a broken stream must reach the caller as an error, never hang it
                error = RemoteError(f"{config.label}: {type(exc).__name__}: {exc}")
            if self._stop.is_set():
                return
            retry = error.retryable and not opened and attempt < config.retries
            delay = backoff(config.backoff_s, attempt, error.retry_after)
            if retry and self.deadline is not None and time.monotonic() + delay >= self.deadline:
                retry = False  # the answer would come too late anyway
            if not retry:
                events.put(("error", error))
                return
            if self._stop.wait(delay):
                return


def backoff(base_s: float, attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry number attempt + 1: base, 2 base, 4 base...; at least what Retry-After asks,
    capped at 10 s."""
    return min(10.0, max(base_s * 2 ** attempt, retry_after or 0.0))


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """("text", piece) for each streamed piece, then ("done", (finish_reason, usage)); raises RemoteError.

    Accepts both chunk shapes: choices[0].delta.content (Mistral FIM, chat) and choices[0].text (OpenAI
    completions), so a server that answers either way works with either backend.
    """
    finish, usage = None, None
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), event:/id: fields
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise RemoteError(f"the server sent an event that is not JSON: {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            raise RemoteError(f"the server reported an error while streaming: {error_detail(data.encode())}")
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            continue
        choice = choices[0]
        text = choice.get("text")
        if text is None:
            text = (choice.get("delta") or {}).get("content")
        if isinstance(text, list):  # content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if isinstance(text, str) and text:
            yield "text", text
        finish = choice.get("finish_reason") or finish
    yield "done", (finish, usage)


def error_detail(body: bytes) -> str:
    """The message of an error body: {"error": {"message"}}, {"message"}, {"detail"}, or the text itself."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(data, dict):
        err = data.get("error")
        for value in (err.get("message") if isinstance(err, dict) else err, data.get("message"), data.get("detail")):
            if isinstance(value, str) and value:
                return value[:300]
            if value:
                return json.dumps(value)[:300]
    return text[:300]


def network_socket(response: httpx.Response) -> socket.socket | None:
    stream = response.extensions.get("network_stream")
    try:
        return stream.get_extra_info("socket") if stream is not None else None
    except (AttributeError, KeyError):  # a transport without sockets (tests' MockTransport)
        return None
