"""An HTTP API in Mistral's and OpenAI's shapes over the engine: `codestral-lsp serve-http`.

    POST /v1/fim/completions   Mistral's FIM API: `prompt` is the text before the gap, `suffix` after it
    POST /v1/completions       OpenAI's legacy completions; fill-in-the-middle when `suffix` is given
    POST /v1/chat/completions  only for an instruct model (`engine.checkpoints.loading.is_instruct`), with Mistral's v3 template
    GET  /v1/models            the one loaded model (and GET /v1/models/{id})

Answers and `stream: true` server-sent events (`data: {chunk}` ... `data: [DONE]`) have the shapes of the
originals; errors are `{"error": {"message", "type", "param", "code"}}` with a 4xx or 5xx status.
Our defaults: temperature 0 (greedy), max_tokens 128 (at most half the context). Fields we do not
implement are ignored, except those that would change the answer (`n` > 1, `logprobs`, `echo`): refused.

Inference runs on one worker thread (the engine is not thread-safe), one request at a time, first in
first out; at most `max_queue` requests wait, the next gets 503. A client that disconnects cancels its
request: a waiting one is skipped, a running one stops at the next decode step.

Exposure: loopback by default, where requests must also name a loopback Host (so a web page that
rebinds its DNS name to 127.0.0.1 cannot use the API); an optional bearer key; bodies over 1 MiB get 413;
a body labelled other than `Content-Type: application/json` gets 415, and so does an unlabelled one
when there is no key (a web page can send those without the browser asking first); a connection that has not sent a request's headers within
HEADER_TIMEOUT seconds is closed, so slow sockets cannot fill the connection cap.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from engine import Engine

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # bytes of JSON one request may carry
DRAIN_LIMIT = 16 << 20  # an oversized body is read and dropped up to this, so its sender sees the 413
DEFAULT_MAX_TOKENS = 128
HEADER_TIMEOUT = 10.0  # seconds a connection has to send each request's headers
MAX_CONNECTIONS = 1024  # open connections at once (uvicorn's limit_concurrency)
SESSION = "http"  # one KV-cache session for all requests: each reuses its common prefix with the last
FINISH = {"eos": "stop", "stop": "stop", "max_tokens": "length", "length": "length", "deadline": "length"}
ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 500: "server_error", 503: "server_error"}


class ApiError(Exception):
    """A request that gets an error answer; raised anywhere before the answer starts."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def body(self) -> dict:
        kind = ERROR_TYPES.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), self.status, self.headers)


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code, param)


# -- request bodies ------------------------------------------------------------------------------

TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}


def field(body: dict, name: str, kind: type, default=None):
    """body[name] checked against kind (float accepts any number; bool is never a number); null is absent."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, (int, float) if kind is float else kind):
        raise invalid(f"'{name}' must be {TYPE_NAMES[kind]}, not {json.dumps(value)[:40]}", name, "invalid_type")
    return float(value) if kind is float else value


def parse_sampling(body: dict, max_context: int) -> dict:
    """The keyword arguments of `Engine.stream_tokens` that a request body sets."""
    limit = max_context // 2
    max_tokens = field(body, "max_tokens", int, DEFAULT_MAX_TOKENS)
    if not 1 <= max_tokens <= limit:
        raise invalid(f"'max_tokens' must be from 1 to {limit} (half the model's context)", "max_tokens")
    temperature = field(body, "temperature", float, 0.0)
    if not 0.0 <= temperature <= 2.0:
        raise invalid("'temperature' must be from 0 to 2", "temperature")
    top_p = field(body, "top_p", float, 1.0)
    if not 0.0 < top_p <= 1.0:
        raise invalid("'top_p' must be above 0 and at most 1", "top_p")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [] if stop is None else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("'stop' must be a string or a list of strings", "stop", "invalid_type")
    seed = field(body, "random_seed", int, field(body, "seed", int))  # Mistral's name, then OpenAI's
    if seed is not None and seed < 0:
        raise invalid("the seed must not be negative", "random_seed")
    if field(body, "n", int, 1) != 1:
        raise invalid("only one choice per request (n=1) is supported", "n", "unsupported")
    return {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "stop": stops, "seed": seed}


@dataclass
class Call:
    """A validated request: what to generate, and the shape of the answer."""

    kind: str  # "fim", "completion" or "chat": the answer's shape
    model: str | None
    prompt: Callable[[Engine], list[int]]  # tokenizes on the worker
    options: dict  # Engine.stream_tokens keyword arguments
    stream: bool
    fim: bool


def parse_fim(body: dict, max_context: int) -> Call:
    prompt = field(body, "prompt", str)
    if prompt is None:
        raise invalid("'prompt' is required: the text before the gap", "prompt", "missing")
    suffix = field(body, "suffix", str, "")
    options = parse_sampling(body, max_context)
    return Call("fim", field(body, "model", str), lambda eng: eng.fim_tokens(prompt, suffix, options["max_tokens"]),
                options, field(body, "stream", bool, False), fim=True)


def parse_completion(body: dict, max_context: int) -> Call:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid("'prompt' must be a string (or a list of one string)", "prompt", "invalid_type")
    suffix = field(body, "suffix", str)
    if field(body, "echo", bool, False) or body.get("logprobs") not in (None, 0):
        raise invalid("'echo' and 'logprobs' are not supported", "logprobs", "unsupported")
    options = parse_sampling(body, max_context)
    if suffix is None:
        build = lambda eng: plain_tokens(eng, eng.tokenizer.encode(prompt, bos=True))  # noqa: E731
    else:
        build = lambda eng: eng.fim_tokens(prompt, suffix, options["max_tokens"])  # noqa: E731
    return Call("completion", field(body, "model", str), build, options, field(body, "stream", bool, False),
                fim=suffix is not None)


def parse_chat(body: dict, max_context: int) -> Call:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list", "messages", "invalid_type")
    turns = [parse_message(m, i) for i, m in enumerate(messages)]
    roles = [role for role, _ in turns if role != "system"]
    if len(roles) % 2 == 0 or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"]:
        raise invalid("messages must alternate user and assistant, starting and ending with user "
                      "(system messages may appear anywhere)", "messages", "invalid_conversation")
    options = parse_sampling(body, max_context)
    return Call("chat", field(body, "model", str), lambda eng: plain_tokens(eng, eng.tokenizer.encode_chat(turns)),
                options, field(body, "stream", bool, False), fim=False)


def parse_message(message, i: int) -> tuple[str, str]:
    role = message.get("role") if isinstance(message, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        content = "".join(p["text"] for p in content)  # OpenAI's content parts, text only
    if role not in ("system", "user", "assistant") or not isinstance(content, str):
        raise invalid(f"messages[{i}] needs a role (system, user or assistant) and a text content",
                      f"messages[{i}]", "invalid_message")
    return role, content


def plain_tokens(engine: Engine, tokens: list[int]) -> list[int]:
    """A prompt that cannot be trimmed: refused when it leaves no room to generate."""
    if len(tokens) >= engine.max_context:
        raise invalid(f"the prompt has {len(tokens)} tokens; the model's context holds {engine.max_context}",
                      "prompt", "context_length_exceeded")
    return tokens


# -- answers ---------------------------------------------------------------------------------------

def usage(stats: dict) -> dict:
    prompt, completion = stats.get("prompt_tokens", 0), stats.get("generated_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Shape:
    """One answer's envelope, whole (`full`) or as stream chunks (`chunk`)."""

    def __init__(self, kind: str, model: str):
        self.kind, self.model = kind, model
        self.id = f"{'cmpl' if kind == 'completion' else 'chatcmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def full(self, text: str, stats: dict) -> dict:
        finish = FINISH.get(stats.get("stop_reason"), "stop")
        if self.kind == "completion":
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            return self._envelope("text_completion", choice, usage=usage(stats))
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return self._envelope("chat.completion", choice, usage=usage(stats))

    def chunk(self, text: str, stats: dict | None = None, first: bool = False) -> dict:
        """A piece of text; the last chunk (with stats) carries finish_reason and usage."""
        finish = FINISH.get(stats.get("stop_reason"), "stop") if stats else None
        extra = {"usage": usage(stats)} if stats else {}
        if self.kind == "completion":
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            return self._envelope("text_completion", choice, **extra)
        delta = {"role": "assistant", "content": text} if first else {"content": text}
        return self._envelope("chat.completion.chunk", {"index": 0, "delta": delta, "finish_reason": finish}, **extra)

    def _envelope(self, obj: str, choice: dict, **extra) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": [choice],
                **extra}


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


# -- the inference worker --------------------------------------------------------------------------

class Job:
    """One request's generation: runs on the worker, reports to the event loop through `events`:
    ("start", None), then ("text", piece) while streaming, then ("done", (text, stats)) or ("error", ApiError)."""

    def __init__(self, call: Call, loop: asyncio.AbstractEventLoop):
        self.call, self.loop = call, loop
        self.cancel = threading.Event()
        self.events: asyncio.Queue = asyncio.Queue()

    def emit(self, kind: str, value=None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop has closed: nobody is listening
            self.cancel.set()

    def run(self, engine: Engine) -> dict:
        try:
            prompt = self.call.prompt(engine)
            gen = engine.stream_tokens(prompt, cancelled=self.cancel.is_set, session=SESSION, **self.call.options)
            self.emit("start")
            text, strip = "", self.call.kind == "chat"  # an answer's first "▁" marks a word, not a space
            for piece in gen:
                if strip and piece:
                    piece, strip = piece.removeprefix(" "), False
                text += piece
                if self.call.stream and piece:
                    self.emit("text", piece)
        except ApiError as exc:
            self.emit("error", exc)
            return {"stop_reason": "refused"}
        except Exception as exc:  # the worker must survive anything a request does
            log.exception("inference failed")
            self.emit("error", ApiError(500, f"inference failed: {exc}", "internal_error"))
            return {"stop_reason": "failed"}
        self.emit("done", (text, gen.stats))
        return gen.stats

    def skip(self) -> None:
        self.emit("error", ApiError(503, "the request was cancelled before it ran", "cancelled"))


class Worker:
    """The one thread that touches the engine; runs jobs in arrival order from a bounded queue."""

    def __init__(self, engine: Engine, max_queue: int = 16):
        self.engine = engine
        self.jobs: queue.Queue = queue.Queue(maxsize=max_queue)
        self.counts: Counter[str] = Counter()  # finished jobs by stop_reason, plus "skipped"
        self.last_stats: dict = {}
        self.current: Job | None = None
        self.thread = threading.Thread(target=self._loop, name="http-inference", daemon=True)

    def submit(self, job: Job) -> None:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise ApiError(503, f"the server is busy ({self.jobs.maxsize} requests waiting); retry later",
                           "queue_full", headers={"Retry-After": "1"}) from None

    def stop(self) -> None:
        """Cancel the running and waiting jobs and end the thread."""
        while True:
            try:
                self.jobs.get_nowait().cancel.set()
            except queue.Empty:
                break
        if self.current is not None:
            self.current.cancel.set()
        self.jobs.put(None)
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            if job.cancel.is_set():
                job.skip()
                self.counts["skipped"] += 1
                continue
            self.current = job
            stats = job.run(self.engine)
            self.current, self.last_stats = None, stats
            self.counts[stats.get("stop_reason")] += 1


@asynccontextmanager
async def cancel_on_disconnect(request: Request, cancel: threading.Event):
    """Set `cancel` when the client goes away (or the handler is cancelled) while the block runs.
    The body must have been read: the next message from the server is then the disconnect."""

    async def listen():
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel.set()

    listener = asyncio.create_task(listen())
    try:
        yield
    except BaseException:
        cancel.set()
        raise
    finally:
        listener.cancel()


# -- the application ---------------------------------------------------------------------------------

class HttpApi:
    def __init__(self, engine: Engine, api_key: str | None = None, check_host: bool = True, max_queue: int = 16,
                 max_body: int = MAX_BODY, served_names: tuple[str, ...] = ()):
        self.engine, self.api_key, self.check_host, self.max_body = engine, api_key, check_host, max_body
        folder = engine.checkpoint.folder if engine.checkpoint else None
        self.model_id = folder.name if folder else "codestral-lsp"
        # Other names requests may give (--served-model-name), e.g. "codestral-latest" for Mistral's own
        # clients; answers and /v1/models still name the model that is loaded.
        self.names = {self.model_id, *served_names}
        self.instruct = engine.instruct
        self.created = int(time.time())
        self.worker = Worker(engine, max_queue)
        routes = [Route("/v1/models", self.models, methods=["GET"]),
                  Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
                  Route("/v1/fim/completions", self.fim, methods=["POST"]),
                  Route("/v1/completions", self.completions, methods=["POST"]),
                  Route("/v1/chat/completions", self.chat, methods=["POST"])]
        handlers = {ApiError: self.api_error, HTTPException: self.http_error, Exception: self.crash}
        self.app = Starlette(routes=routes, exception_handlers=handlers, lifespan=self.lifespan)

    @asynccontextmanager
    async def lifespan(self, app):
        self.worker.thread.start()
        log.info("serving %s (fill-in-the-middle: %s, chat: %s)", self.model_id,
                 self.engine.tokenizer.supports_fim, self.instruct)
        yield
        self.worker.stop()

    # -- endpoints -------------------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        self.admit(request)
        return JSONResponse({"object": "list", "data": [self.card()]})

    async def model(self, request: Request) -> Response:
        self.admit(request)
        self.check_model(request.path_params["model_id"])
        return JSONResponse(self.card())

    async def fim(self, request: Request) -> Response:
        return await self.generate(request, parse_fim)

    async def completions(self, request: Request) -> Response:
        return await self.generate(request, parse_completion)

    async def chat(self, request: Request) -> Response:
        return await self.generate(request, parse_chat)

    def card(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "codestral-lsp",
                "max_context_length": self.engine.max_context,
                "capabilities": {"completion_fim": self.engine.tokenizer.supports_fim,
                                 "completion_chat": self.instruct}}

    async def generate(self, request: Request, parse: Callable[[dict, int], Call]) -> Response:
        self.admit(request)
        call = parse(await self.read_json(request), self.engine.max_context)
        self.check_model(call.model)
        if call.kind == "chat" and not self.instruct:
            raise invalid(f"model {self.model_id!r} is a fill-in-the-middle model with no chat template; use "
                          "/v1/fim/completions or /v1/completions, or serve an instruct model (one whose "
                          "params.json or config.json has \"instruct\": true)", "messages", "chat_not_supported")
        if call.fim and not self.engine.tokenizer.supports_fim:
            raise invalid(f"model {self.model_id!r} has no fill-in-the-middle tokens", "suffix", "fim_not_supported")
        job = Job(call, asyncio.get_running_loop())
        self.worker.submit(job)
        shape = Shape(call.kind, self.model_id)
        async with cancel_on_disconnect(request, job.cancel):
            kind, value = await job.events.get()  # waits in the queue, then for the prefill
            if kind == "error":
                raise value
            if not call.stream:
                kind, value = await job.events.get()
                if kind == "error":
                    raise value
                return JSONResponse(shape.full(*value))
        return StreamingResponse(self.stream(job, shape), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def stream(self, job: Job, shape: Shape) -> AsyncIterator[str]:
        """Server-sent events; Starlette cancels this when the client disconnects, which cancels the job."""
        try:
            if shape.kind != "completion":
                yield sse(shape.chunk("", first=True))
            while True:
                kind, value = await job.events.get()
                if kind == "text":
                    yield sse(shape.chunk(value))
                    continue
                yield sse(shape.chunk("", value[1]) if kind == "done" else value.body())
                break
            yield sse("[DONE]")
        finally:
            job.cancel.set()

    # -- checks ----------------------------------------------------------------------------------

    def admit(self, request: Request) -> None:
        if self.check_host and not is_loopback(host_name(request.headers.get("host", ""))):
            raise ApiError(403, "this server listens on loopback and answers only requests addressed to a "
                           "loopback host (localhost, 127.0.0.1, [::1])", "forbidden_host")
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                           "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def check_model(self, model: str | None) -> None:
        if model is not None and model not in self.names:
            raise ApiError(404, f"model {model!r} is not served here; this server answers to "
                           f"{', '.join(map(repr, sorted(self.names)))}", "model_not_found", "model")

    async def read_json(self, request: Request) -> dict:
        """The body as a JSON object. An oversized one is read to its end (up to DRAIN_LIMIT) and dropped:
        a client that sends its whole body before reading then sees the 413, not a reset connection."""
        too_large = ApiError(413, f"the request body is over {self.max_body} bytes", "request_too_large",
                             headers={"Connection": "close"})
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        # A page cannot send the key (the header needs the browser to ask first), but can send a body
        # with no Content-Type: only a key-less server must refuse that.
        if media_type != "application/json" and (media_type or self.api_key is None):
            raise ApiError(415, f"the request body must be 'Content-Type: application/json', not {media_type!r}",
                           "unsupported_media_type", headers={"Connection": "close"})
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > DRAIN_LIMIT:
            raise too_large
        size, chunks = 0, []
        async for chunk in request.stream():
            size += len(chunk)
            if size <= self.max_body:
                chunks.append(chunk)
            elif size > DRAIN_LIMIT:
                break
        if size > self.max_body:
            raise too_large
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise invalid(f"the request body is not valid JSON: {exc}", None, "invalid_json") from None
        if not isinstance(body, dict):
            raise invalid("the request body must be a JSON object", None, "invalid_json")
        return body

    async def api_error(self, request: Request, exc: ApiError) -> Response:
        return exc.response()

    async def http_error(self, request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code,
                        headers=exc.headers).response()

    async def crash(self, request: Request, exc: Exception) -> Response:
        return ApiError(500, f"internal error: {type(exc).__name__}", "internal_error").response()


def host_name(header: str) -> str:
    """The host of a Host header: "[::1]:8000" -> "::1", "localhost:8000" -> "localhost"."""
    if header.startswith("["):
        return header[1:header.find("]")]
    return header.rpartition(":")[0] if ":" in header else header


def is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request's headers.

    uvicorn times out a connection only while it idles between requests; one that sends its first
    request's headers a byte at a time holds a place under the connection cap for ever. The deadline
    starts when the connection opens and again when an answer is complete; a request that begins
    (a new cycle) before it passes is safe, else the connection is closed.
    """

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._start_header_deadline()

    def _start_header_deadline(self) -> None:
        waiting_for = self.cycle  # the request that came before: the deadline passes unless a new one begins
        self.loop.call_later(self.header_timeout, self._header_deadline, waiting_for)

    def _header_deadline(self, waiting_for) -> None:
        if self.cycle is waiting_for and not self.transport.is_closing():
            log.info("closing a connection from %s: no request headers in %.0f s", self.client, self.header_timeout)
            self.transport.close()


def build_server(engine: Engine, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                 max_queue: int = 16, header_timeout: float = HEADER_TIMEOUT, served_names: tuple[str, ...] = (),
                 **uvicorn_options) -> tuple[uvicorn.Server, HttpApi]:
    """The API and a uvicorn server for it; `server.run()` serves until interrupted."""
    api = HttpApi(engine, api_key=api_key, check_host=is_loopback(host), max_queue=max_queue,
                  served_names=served_names)
    protocol = type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": header_timeout})
    # Connections beyond limit_concurrency get uvicorn's plain 503. The queue bounds the work waiting;
    # this bounds open connections, which cost little (asyncio), so it is high enough that 100 sockets
    # stalled in their headers leave room for real clients until HeaderDeadline closes them.
    options = {"log_level": "info", "lifespan": "on", "timeout_graceful_shutdown": 5, "http": protocol,
               "limit_concurrency": MAX_CONNECTIONS, "server_header": False, **uvicorn_options}
    return uvicorn.Server(uvicorn.Config(api.app, host=host, port=port, **options)), api


def serve(engine: Engine, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          served_names: tuple[str, ...] = ()) -> None:
    if api_key is None and not is_loopback(host):
        log.warning("serving on %s without an API key: anyone who can reach this address can use the model "
                    "(see --api-key-env)", host)
    server, _ = build_server(engine, host, port, api_key, served_names=served_names)
    server.run()
