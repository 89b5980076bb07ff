"""The JSON-RPC side of the server: what pygls' protocol and its reader do differently for us.

pygls's reader trusts each frame's Content-Length: a huge one makes it allocate or wait for ever, and
one that is off by a few bytes loses the next header and with it every later message. Ours (`Framer`)
caps a message's size and, after a bad frame, picks up again at the next `Content-Length:` header,
logging what it dropped. Malformed JSON-RPC gets a JSON-RPC error (-32700, -32600) and a log line,
never a popup in the editor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import threading
from typing import Any, Awaitable, BinaryIO, Callable

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdoutWriter
from pygls.protocol import JsonRPCProtocol, LanguageServerProtocol

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 << 20  # a 20 MB source file, JSON-escaped, still fits
CHUNK_BYTES = 1 << 16
PARSE_ERROR, INVALID_REQUEST = -32700, -32600

# The header may follow junk on the same line (the tail of a frame that was longer than declared). A
# JSON body cannot contain it: a raw line break is never inside a JSON string.
_CONTENT_LENGTH = re.compile(rb"Content-Length:[ \t]*(\d{1,20})[ \t]*\r?\n", re.IGNORECASE)
_MORE_HEADERS = re.compile(rb"(?:[A-Za-z0-9-]+:[^\r\n]*\r?\n)*\r?\n")  # other headers, then the empty line
_ONLY_HEADERS = re.compile(rb"(?:[A-Za-z0-9-]+:[^\r\n]*\r?\n|\r?\n)*")
_MAX_HEADER_BYTES = 4096


def _strict_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {json.dumps(value)[:40]}")
    return value


class CodestralProtocol(LanguageServerProtocol):
    """Answers requests whose params fail validation with InvalidParams (-32602), and logs notifications
    that do.

    pygls reports such a request with a window/showMessage and never answers it, so the editor
    would wait forever; we send the error response ourselves and drop the message. A string field
    must hold a string: cattrs would turn `"text": null` into the text "None".
    """

    def __init__(self, server, converter):
        converter.register_structure_hook(str, _strict_str)
        super().__init__(server, converter)

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcInvalidParams as exc:
            reason = f"invalid params for {data.get('method')}: {exc.__cause__ or exc}"
            if "id" in data and "method" in data:
                self._send_response(data["id"], error=types.ResponseError(
                    code=JsonRpcInvalidParams.CODE, message=reason))
            else:
                log.warning("dropped a notification with %s", reason)
                self.notify(types.WINDOW_LOG_MESSAGE, types.LogMessageParams(types.MessageType.Warning,
                                                                             f"codestral: dropped {reason}"))
            return _Dropped()

    # Document sync is ours (features/documents.py): pygls's copy splits lines with str.splitlines,
    # which also breaks at \x0c and \u2028 and so drifts from the editor's text. Plain methods
    # without `method_name` are not registered as built-in features.
    def lsp_text_document__did_open(self, params):
        return None

    def lsp_text_document__did_change(self, params):
        return None

    def lsp_text_document__did_close(self, params):
        return None


class _Dropped:
    jsonrpc = "dropped"  # handle_message ignores messages whose version is not 2.0


# -- framing ------------------------------------------------------------------------------------------

class Unparsable:
    """A frame whose body is not JSON (or not UTF-8)."""

    def __init__(self, body: bytes, reason: str):
        self.body, self.reason = body, reason


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return Unparsable(body, str(exc))


_NEED_MORE = object()  # Framer._next: no whole message in the buffer yet


class Framer:
    """Splits a byte stream into LSP messages, each a parsed JSON value or an `Unparsable`.

    A frame may be shorter than its Content-Length says (the next header turns up inside its body: the
    body ends there) or longer (the body is not JSON, but is with the bytes up to the next header: a
    client that counts characters instead of UTF-8 bytes). A frame that declares more than `max_bytes`
    is skipped, and bytes that belong to no frame are dropped up to the next header and logged.
    """

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES):
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.length: int | None = None  # the declared size of the body being read, once its header is in
        self.scanned = 0  # how far that body has been searched for a header that cuts it short
        self.skipped, self.preview = 0, b""  # bytes dropped since the last good header, and how they began

    def feed(self, data: bytes) -> list[Any]:
        """The messages that `data`, with what came before it, completes."""
        self.buf += data
        out = []
        while (message := self._next()) is not _NEED_MORE:  # a body may be JSON null: that is a message
            out.append(message)
        return out

    def close(self) -> None:
        """The stream ended: report what was left unread."""
        self._drop(len(self.buf))
        self._report_skipped("at the end of the stream")

    def _next(self) -> Any:
        while self.length is None:
            if not self._read_header():
                return _NEED_MORE
        end = self._body_end()
        if end is None:
            return _NEED_MORE
        body = bytes(self.buf[:end])
        del self.buf[:end]
        declared, self.length, self.scanned = self.length, None, 0
        if end < declared:
            log.warning("a message ended %d bytes into its declared %d: the next header began there", end, declared)
        return self._parse(body)

    def _read_header(self) -> bool:
        """Consume what precedes the next header, and the header; False when more bytes are needed."""
        found = _CONTENT_LENGTH.search(self.buf)  # its groups read the buffer: take them before it changes
        if found is None:
            self._drop(max(0, len(self.buf) - 64))  # keep enough for a header split across reads
            return False
        start, header_end, length = found.start(), found.end() - found.start(), int(found.group(1))
        if _ONLY_HEADERS.fullmatch(bytes(self.buf[:start])):  # Content-Type may come first
            del self.buf[:start]
        else:
            self._drop(start)
        rest = _MORE_HEADERS.match(self.buf, header_end)
        if rest is None:
            return self._incomplete_header(header_end)
        self._report_skipped("before a header")
        del self.buf[:rest.end()]
        if length > self.max_bytes:
            log.warning("skipping a message that declares %d bytes (the limit is %d)", length, self.max_bytes)
        else:
            self.length = length
        return True

    def _incomplete_header(self, header_end: int) -> bool:
        """After a Content-Length line: wait for the other headers, or drop a header that cannot end well."""
        lines = _ONLY_HEADERS.match(self.buf, header_end).end()
        partial = bytes(self.buf[lines:])
        if len(self.buf) < _MAX_HEADER_BYTES and re.fullmatch(rb"[A-Za-z0-9-]*(?::[^\r\n]*)?\r?", partial):
            return False
        self._drop(header_end)  # e.g. no empty line after the headers: resynchronise on the next one
        return True

    def _body_end(self) -> int | None:
        """Where the body ends: its declared length, or an earlier header; None while bytes are missing."""
        window = min(len(self.buf), self.length + 64)
        cut = _CONTENT_LENGTH.search(self.buf, max(0, self.scanned - 64), window)
        if cut is not None and cut.start() < self.length:
            return cut.start()
        if len(self.buf) >= self.length:
            return self.length
        self.scanned = len(self.buf)
        return None

    def _parse(self, body: bytes) -> Any:
        message = _loads(body)
        if not isinstance(message, Unparsable):
            return message
        header = _CONTENT_LENGTH.search(self.buf)
        extra = bytes(self.buf[:header.start() if header else len(self.buf)])
        if extra and len(body) + len(extra) <= self.max_bytes:
            longer = _loads(body + extra)
            if not isinstance(longer, Unparsable):
                log.warning("a message was %d bytes longer than its Content-Length (%d): a client counting "
                            "characters, not UTF-8 bytes?", len(extra), len(body))
                del self.buf[:len(extra)]
                return longer
        return message

    def _drop(self, n: int) -> None:
        if n <= 0:
            return
        if not self.skipped:
            self.preview = bytes(self.buf[:min(n, 80)])
        self.skipped += n
        del self.buf[:n]

    def _report_skipped(self, where: str) -> None:
        if self.skipped:
            log.warning("dropped %d bytes that were not a message %s: %r...", self.skipped, where, self.preview)
            self.skipped, self.preview = 0, b""


# -- dispatch -----------------------------------------------------------------------------------------

def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def envelope_problem(message: Any) -> str | None:
    """What makes `message` no JSON-RPC 2.0 request, notification or response; None when nothing does."""
    if not isinstance(message, dict):
        return f"a JSON {type(message).__name__}, not an object"
    if message.get("jsonrpc") != JsonRPCProtocol.VERSION:
        return f'"jsonrpc" is {message.get("jsonrpc")!r}, not "2.0"'
    if "id" in message and not _is_id(message["id"]) and not (message["id"] is None and "error" in message):
        return f"the id {message['id']!r} is neither an integer nor a string"
    if "method" in message:
        if not isinstance(message["method"], str):
            return f"the method {message['method']!r} is not a string"
        if not isinstance(message.get("params"), (dict, list, type(None))):
            return "params are neither an object nor an array"
    elif "result" not in message and "error" not in message:
        return "neither a request, a notification nor a response"
    return None


def _expects_answer(message: Any) -> bool:
    """JSON-RPC answers every invalid message but notifications and responses."""
    if not isinstance(message, dict):
        return True
    if "id" in message:
        return "method" in message or ("result" not in message and "error" not in message)
    return "method" not in message and "result" not in message and "error" not in message


def reply_error(protocol: JsonRPCProtocol, msg_id: Any, code: int, message: str) -> None:
    if msg_id is None:  # lsprotocol's converter would leave out the "id": null that JSON-RPC requires
        protocol._send_data({"jsonrpc": JsonRPCProtocol.VERSION, "id": None, "error": {"code": code, "message": message}})
    else:
        protocol._send_response(msg_id, error=types.ResponseError(code=code, message=message))


def dispatch(protocol: JsonRPCProtocol, message: Any) -> None:
    """Hand one parsed message to pygls, or answer it with the JSON-RPC error it deserves."""
    if isinstance(message, Unparsable):
        log.warning("a message that is not JSON (%s): %r", message.reason, message.body[:200])
        reply_error(protocol, None, PARSE_ERROR, f"parse error: {message.reason}")
        return
    problem = envelope_problem(message)
    if problem is not None:
        log.warning("invalid JSON-RPC message (%s): %.200r", problem, message)
        if _expects_answer(message):
            msg_id = message.get("id") if isinstance(message, dict) and _is_id(message.get("id")) else None
            reply_error(protocol, msg_id, INVALID_REQUEST, f"invalid request: {problem}")
        return
    try:
        protocol.handle_message(protocol.structure_message(message))
    except JsonRpcException as exc:
        log.warning("cannot handle %s: %s", message.get("method", "a response"), exc)
        if "id" in message and "method" in message:
            reply_error(protocol, message["id"], exc.code, f"{message['method']}: {exc.message}")
    except Exception:
        log.exception("cannot handle %s", message.get("method", "a response"))


async def run_framed(stop_event: threading.Event, read: Callable[[], Awaitable[bytes]],
                     protocol: JsonRPCProtocol, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
    """pygls's `run_async`, with our framing and dispatch: read until the stream ends or the server stops."""
    framer = Framer(max_bytes)
    while not stop_event.is_set():
        data = await read()
        if not data:
            framer.close()
            return
        for message in framer.feed(data):
            dispatch(protocol, message)


def serve_stdio(server, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
    """`LanguageServer.start_io`, reading with `run_framed`."""
    stdin = stdin or sys.stdin.buffer
    read_some = getattr(stdin, "read1", None) or stdin.readline  # whatever has arrived, up to n bytes
    server._stop_event = threading.Event()  # what pygls's shutdown sets
    server.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))

    async def read() -> bytes:
        return await asyncio.get_running_loop().run_in_executor(server.thread_pool, read_some, CHUNK_BYTES)

    try:
        asyncio.run(run_framed(server._stop_event, read, server.protocol))
    except BrokenPipeError:
        log.error("the connection to the client is lost: shutting down")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


def serve_tcp(server, host: str, port: int) -> None:
    """`LanguageServer.start_tcp`, reading with `run_framed`."""
    server._stop_event = stop_event = threading.Event()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def read() -> bytes:
            try:
                return await reader.read(CHUNK_BYTES)
            except ConnectionError:
                return b""

        server.protocol.set_writer(writer)
        await run_framed(stop_event, read, server.protocol)
        server.shutdown()

    async def listen() -> None:
        server._server = await asyncio.start_server(connection, host, port)
        log.info("serving on %s", ", ".join(str(sock.getsockname()) for sock in server._server.sockets))
        async with server._server:
            await server._server.serve_forever()

    try:
        asyncio.run(listen())
    except asyncio.CancelledError:
        pass
