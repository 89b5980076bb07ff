"""The language server with remote backends, over real HTTP, streaming included: `codestral-lsp serve-http`
on a tiny random model in one process, the LSP server in another (driven by pytest-lsp with Neovim's
client capabilities), the backend switched live with workspace/didChangeConfiguration.

The oracle is independent of the HTTP path: the local engine on the same tiny checkpoint, in this
process, through the same pipeline. Greedy decoding, so the remote suggestions must be the same text."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from engine.testing import make_checkpoint

KEY_ENV, KEY = "CODESTRAL_TEST_KEY", "test-secret-key"
WRONG_ENV = "CODESTRAL_TEST_WRONG_KEY"
TINY = str(make_checkpoint(Path(tempfile.mkdtemp(prefix="codestral-remote-")) / "tiny"))
ENV = {**os.environ, KEY_ENV: KEY, WRONG_ENV: "not-the-key", "OMP_NUM_THREADS": "1"}
BASE = {"completion": {"maxTokens": 16, "debounceMs": 0, "timeoutMs": 20000}, "context": {"neighbourFiles": 0}}
pytestmark = pytest.mark.asyncio(loop_scope="module")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def http_url():
    """`codestral-lsp serve-http` on the tiny model, requiring the key in CODESTRAL_TEST_KEY."""
    port = free_port()
    proc = start([sys.executable, "-m", "codestral_lsp", "serve-http", "--model", TINY, "--port", str(port),
                  "--api-key-env", KEY_ENV], port, "serve-http")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def start(command: list[str], port: int, what: str) -> subprocess.Popen:
    """A server process, once its port accepts connections (its output goes to a file: a full pipe
    would block it)."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(command, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                pytest.fail(f"{what} did not start: {log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on a GGUF export of the tiny model."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: pip install 'llama-cpp-python[server]'")
    try:
        import llama_cpp.server.app  # noqa: F401  (importable with its extra dependencies: fastapi, ...?)
    except ImportError as exc:
        pytest.skip(f"llama_cpp.server is not importable ({exc}): pip install 'llama-cpp-python[server]'")
    try:
        from engine.checkpoints.gguf import convert
    except ImportError:
        pytest.skip("engine/checkpoints/gguf.py (the GGUF export) is not in this copy")
    model = convert(TINY, tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    port = free_port()
    proc = start([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "tiny-gguf",
                  "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
                  "--verbose", "False"], port, "llama_cpp.server")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def oracle():
    """The same pipeline on the local engine: what the remote suggestions must equal."""
    from codestral_lsp.pipeline import Completer, Document
    from codestral_lsp.settings import parse_settings
    from engine import Engine

    completer = Completer(Engine.load(TINY), parse_settings(BASE)[0])

    def expect(uri: str, language: str, text: str, offset: int):
        return completer.complete(Document(uri, language, text, 1), offset, use_recent=False).suggestion

    return expect


def remote(url: str, backend: str = "openai", **model) -> dict:
    return {**BASE, "model": {"backend": backend, "endpoint": url, "apiKeyEnv": KEY_ENV, **model}}


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "codestral_lsp", "serve",
                                                              "--model", TINY], server_env=ENV),
                    scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient, http_url):
    lsp_client.status_log = []

    @lsp_client.feature("codestral/status")
    def on_status(params):
        lsp_client.status_log.append({"state": params.state, "message": params.message, "model": params.model})

    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim"), initialization_options=remote(http_url)))
    note = await wait_status(lsp_client, 0)
    assert note["state"] == "ready", note
    yield
    await lsp_client.shutdown_session()


async def wait_status(client: LanguageClient, start: int, timeout: float = 60.0) -> dict:
    """The first ready, error or disabled status after the first `start` ones."""
    async def loop():
        while True:
            for note in client.status_log[start:]:
                if note["state"] in ("ready", "error", "disabled"):
                    return note
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(loop(), timeout)


async def configure(client: LanguageClient, settings: dict) -> dict:
    start = len(client.status_log)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"codestral": settings}))
    return await wait_status(client, start)


def open_doc(client: LanguageClient, uri: str, text: str, language: str = "python") -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))


def position(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    return types.Position(line, offset - (text.rfind("\n", 0, offset) + 1))  # ASCII documents only


async def inline(client: LanguageClient, uri: str, pos: types.Position) -> list[types.InlineCompletionItem]:
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=pos,
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
    return list(result.items if hasattr(result, "items") else result)


DOCS = [
    ("python", "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \n", -1),
    ("python", "import os\n\nprint(os.", 0),
    ("javascript", "function f(x) {\n  return \n}\n", -3),
    ("python", "x = [1, 2, 3]\ny = \n", -1),
    ("python", "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.", 0),
]


async def assert_same_as_local(client: LanguageClient, oracle, tag: str) -> None:
    """Each document, opened under a fresh name, gets the local engine's suggestion, or none when it has none."""
    shown = 0
    for i, (language, text, back) in enumerate(DOCS):
        uri = f"file:///remote/{tag}/{i}.{'py' if language == 'python' else 'js'}"
        offset = len(text) + back
        open_doc(client, uri, text, language)
        items = await inline(client, uri, position(text, offset))
        expected = oracle(uri, language, text, offset)
        if expected is None:
            assert items == [], (uri, items)
            continue
        assert [item.insert_text for item in items] == [expected.text], uri
        assert items[0].range.start == position(text, offset)
        assert items[0].range.end == position(text, expected.replace_end)
        shown += 1
    assert shown >= 3  # the comparison is not vacuous


async def test_openai_backend_gives_the_local_engines_completions(client: LanguageClient, oracle):
    assert client.status_log[-1]["model"] == "openai:tiny"  # discovered with GET /v1/models
    assert client.status_log[-1]["message"].startswith("openai backend: tiny at http://127.0.0.1:")
    await assert_same_as_local(client, oracle, "openai")


async def test_a_refused_request_puts_the_reason_in_the_status(client: LanguageClient, http_url):
    """fimPrompt "tokens" (meant for vLLM) sends the prompt as token ids, which our server refuses (it
    takes text only): the 400 and the server's reason reach the status, the answer is empty."""
    note = await configure(client, remote(http_url, fimPrompt="tokens"))
    assert note["state"] == "ready"
    open_doc(client, "file:///remote/tokens.py", "x = ")
    assert await inline(client, "file:///remote/tokens.py", types.Position(0, 4)) == []
    note = client.status_log[-1]  # sent before the answer
    assert note["state"] == "error" and "400 Bad Request" in note["message"], note
    assert "'prompt' must be a string" in note["message"]


async def test_mistral_backend_with_the_key_from_the_environment(client: LanguageClient, http_url, oracle):
    note = await configure(client, remote(http_url, "mistral", remoteModel="tiny"))
    assert note["state"] == "ready", note
    assert note["message"] == f"mistral backend: tiny at {http_url}"
    await assert_same_as_local(client, oracle, "mistral")


async def test_code_actions_use_the_remote_backend(client: LanguageClient):
    uri = "file:///remote/stub.py"
    open_doc(client, uri, "def square(x):\n    pass\n")
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri), range=types.Range(types.Position(0, 0), types.Position(0, 0)),
        context=types.CodeActionContext(diagnostics=[])))
    body = next(a for a in actions if "complete body" in a.title)
    resolved = await asyncio.wait_for(client.code_action_resolve_async(body), 60)
    assert resolved.title == body.title
    assert resolved.edit is not None, "the body was not resolved through the remote backend"
    (edit,) = resolved.edit.changes[uri]  # the seeded tiny model writes noise, but some
    assert (edit.range.start, edit.range.end) == (types.Position(1, 0), types.Position(1, 8))
    assert edit.new_text.strip()
    assert all(not line.strip() or line.startswith("    ") for line in edit.new_text.splitlines()), edit.new_text


async def test_wrong_key_gives_a_clear_error_and_empty_answers(client: LanguageClient, http_url, oracle):
    note = await configure(client, remote(http_url, "mistral", remoteModel="tiny", apiKeyEnv=WRONG_ENV))
    assert note["state"] == "error"
    assert note["message"] == f"mistral backend: 401 Unauthorized — is {WRONG_ENV} set to a valid key?"
    open_doc(client, "file:///remote/401.py", "x = ")
    assert await inline(client, "file:///remote/401.py", types.Position(0, 4)) == []
    note = client.status_log[-1]  # a timeout or the deadline would have replaced the 401
    assert note["state"] == "error" and "401 Unauthorized" in note["message"], note

    note = await configure(client, remote(http_url, "mistral", apiKeyEnv="CODESTRAL_TEST_UNSET_VARIABLE"))
    assert note["state"] == "error" and "CODESTRAL_TEST_UNSET_VARIABLE is not set" in note["message"]
    assert await inline(client, "file:///remote/401.py", types.Position(0, 4)) == []

    note = await configure(client, remote(http_url, "openai"))  # the server kept serving
    assert note["state"] == "ready", note
    await assert_same_as_local(client, oracle, "after-401")


async def test_connection_refused_answers_empty_at_once(client: LanguageClient):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    note = await configure(client, remote(url, retries=0))
    assert note["state"] == "error" and f"cannot connect to {url}" in note["message"], note
    open_doc(client, "file:///remote/refused.py", "x = ")
    assert await inline(client, "file:///remote/refused.py", types.Position(0, 4)) == []
    note = client.status_log[-1]  # ended by the refused connection (no retries): the deadline's reason never came
    assert note["state"] == "error" and f"cannot connect to {url}" in note["message"], note
    assert "no answer" not in note["message"]


async def test_a_silent_server_times_out(client: LanguageClient):
    with socket.socket() as listener:  # accepts connections (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        settings = remote(url, retries=0, requestTimeoutMs=300)
        settings["completion"] = {**BASE["completion"], "timeoutMs": 800}
        note = await configure(client, settings)
        assert note["state"] == "error" and "sent nothing for 300 ms" in note["message"], note
        open_doc(client, "file:///remote/silent.py", "x = ")
        assert await inline(client, "file:///remote/silent.py", types.Position(0, 4)) == []
        note = client.status_log[-1]  # the request timeout (300 ms) ended it, not the deadline (800 ms)
        assert note["state"] == "error" and "sent nothing for 300 ms" in note["message"], note


async def test_switching_back_to_the_local_engine(client: LanguageClient, oracle):
    note = await configure(client, BASE)
    assert note["state"] == "ready" and "loaded" in note["message"], note
    assert client.status_log[-1]["model"] == TINY
    await assert_same_as_local(client, oracle, "local")


async def test_llama_cpp_server_as_a_third_party_peer(client: LanguageClient, llama_url):
    """llama-cpp-python's server, on a GGUF export of the same tiny model: model discovery, streamed
    completions through the whole pipeline, stop rules closing the stream, and no errors.

    Its suggestions cannot be compared with ours: that server takes text prompts only (no token ids)
    and builds a FIM prompt from `suffix` with placeholder token ids (0) where [SUFFIX] and [PREFIX]
    belong, so the model sees another prompt."""
    note = await configure(client, {**BASE, "model": {"backend": "openai", "endpoint": llama_url}})
    assert note["state"] == "ready" and note["message"] == f"openai backend: tiny-gguf at {llama_url}", note
    shown = 0
    for i, (language, text, back) in enumerate(DOCS):
        uri = f"file:///remote/llama/{i}.{'py' if language == 'python' else 'js'}"
        open_doc(client, uri, text, language)
        items = await inline(client, uri, position(text, len(text) + back))
        assert all(isinstance(item.insert_text, str) and item.insert_text for item in items)
        shown += bool(items)
    assert shown >= 1
    assert client.status_log[-1]["state"] == "ready", client.status_log[-1]

    from codestral_lsp.backends.remote import RemoteBackend as RemoteEngine, RemoteConfig
    from codestral_lsp.settings import parse_settings

    config = RemoteConfig.from_settings(parse_settings({"model": {"backend": "openai", "endpoint": llama_url}})[0]
                                        .model, {})
    eng = RemoteEngine(config)

    def stream(**kwargs):
        gen = eng.stream("def f(x):\n    return ", "\n", max_tokens=8, **kwargs)
        return list(gen), gen.stats

    pieces, stats = await asyncio.to_thread(stream)
    assert len(pieces) >= 2 and stats["stop_reason"] == "max_tokens"  # streamed piece by piece
    pieces, stats = await asyncio.to_thread(stream, stop_fn=lambda text: 0)
    assert pieces == [] and stats["stop_reason"] == "stop"
    pieces, stats = await asyncio.to_thread(stream)  # the server still serves after the disconnect
    assert stats["stop_reason"] == "max_tokens"
    eng.close()
