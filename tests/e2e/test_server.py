"""The real server process driven by a real LSP client (pytest-lsp), with Neovim's and VS Code's
recorded client capabilities. The embedded model is used when this copy ships it, else a tiny random
checkpoint (completions are then arbitrary text, but the protocol is exercised the same way)."""

from __future__ import annotations

import asyncio
import sys
import tempfile

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from engine.checkpoints.loading import embedded_model_dir

from lsp_edits import apply, assert_parses, assert_stays_in_block, encoding_of, width  # tests/e2e is on sys.path (rootdir import mode)

if (embedded_model_dir() / "params.json").is_file():
    MODEL = str(embedded_model_dir())
else:
    from engine.testing import make_checkpoint

    MODEL = str(make_checkpoint(tempfile.mkdtemp(prefix="codestral-e2e-")))

SERVER = [sys.executable, "-m", "codestral_lsp", "serve", "--model", MODEL]
PY = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \n"
pytestmark = pytest.mark.asyncio(loop_scope="module")


async def wait_ready(client: LanguageClient, timeout: float = 120.0, start: int = 0) -> dict:
    """The first ready or error status after the first `start` ones."""
    async def loop():
        while True:
            for note in getattr(client, "status_log", [])[start:]:
                if note["state"] in ("ready", "error"):
                    return note
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(loop(), timeout)


def record_status(client: LanguageClient) -> None:
    client.status_log = []

    @client.feature("codestral/status")
    def on_status(params):
        client.status_log.append({"state": params.state, "message": params.message,
                                  "lastLatencyMs": getattr(params, "lastLatencyMs", None)})


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), params=["neovim", "visual_studio_code"],
                    scope="module", loop_scope="module")
async def client(request, lsp_client: LanguageClient):
    record_status(lsp_client)
    result = await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities(request.param),
        initialization_options={"completion": {"maxTokens": 16, "debounceMs": 0}}))
    lsp_client.init_result = result
    note = await wait_ready(lsp_client)
    assert note["state"] == "ready", note
    yield
    await lsp_client.shutdown_session()


def open_doc(client: LanguageClient, uri: str, text: str, language: str = "python") -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))


async def inline(client: LanguageClient, uri: str, line: int, character: int) -> types.InlineCompletionList:
    return await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(line, character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))


async def test_capabilities(client: LanguageClient):
    caps = client.init_result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert caps.code_action_provider.resolve_provider is True
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental


async def test_inline_completion_range_starts_at_the_cursor(client: LanguageClient):
    open_doc(client, "file:///e2e/a.py", PY)
    result = await inline(client, "file:///e2e/a.py", 5, 4)
    if isinstance(result, list):
        result = types.InlineCompletionList(items=result)
    assert result.items, "no suggestion for the body of mul"
    for item in result.items:
        assert item.range.start == types.Position(5, 4)
        assert isinstance(item.insert_text, str) and item.insert_text.strip()
        apply(PY, item.range, item.insert_text)  # the range lies inside the document
        assert_stays_in_block(item.insert_text, 4)  # cut by maxTokens 16: need not parse yet


async def test_status_reports_the_latency_of_a_completion(client: LanguageClient):
    """The first completion after the server became ready reports its latency at once, however
    recently "ready" was sent; the next ones within a second add no status (typing is not a burst of
    notifications)."""
    open_doc(client, "file:///e2e/latency.py", PY)
    start = len(client.status_log)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"codestral": {
        "cache": {"sessions": 5}, "completion": {"maxTokens": 16, "debounceMs": 0}}}))  # reloads the model
    assert (await wait_ready(client, start=start))["state"] == "ready"
    seen = len(client.status_log)
    await inline(client, "file:///e2e/latency.py", 5, 4)
    await asyncio.sleep(0.2)  # the status goes out before the answer; let the client read it
    reported = client.status_log[seen:]
    assert reported and isinstance(reported[-1]["lastLatencyMs"], (int, float)), client.status_log
    assert reported[-1]["lastLatencyMs"] >= 0 and reported[-1]["state"] == "ready"
    await inline(client, "file:///e2e/latency.py", 5, 4)
    await asyncio.sleep(0.2)
    assert len(client.status_log) == seen + len(reported)
    start = len(client.status_log)  # back to the module's settings, loaded, for the tests after this one
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"codestral": {"completion": {"maxTokens": 16, "debounceMs": 0}}}))
    assert (await wait_ready(client, start=start))["state"] == "ready"


async def test_edits_and_non_ascii_positions(client: LanguageClient):
    uri = "file:///e2e/u.py"
    open_doc(client, uri, "s = '😀'\nx = \n")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(0, 5), types.Position(0, 7)), text="é€")]))
    result = await inline(client, uri, 1, 4)
    assert result.items, "no suggestion after a non-ASCII edit"
    for item in result.items:
        assert item.range.start == types.Position(1, 4)
        assert item.insert_text.strip()
        assert_parses(apply("s = 'é€'\nx = \n", item.range, item.insert_text, encoding_of(client.init_result)))


async def test_completion_fallback(client: LanguageClient):
    open_doc(client, "file:///e2e/c.py", PY)
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier("file:///e2e/c.py"), position=types.Position(5, 4)))
    assert result.is_incomplete is True
    assert result.items, "no completion item for the body of mul"
    for item in result.items:
        assert item.text_edit.range.end == types.Position(5, 4)
        assert item.text_edit.new_text.strip()
        apply(PY, item.text_edit.range, item.text_edit.new_text)  # the range lies inside the document
        assert_stays_in_block(item.text_edit.new_text, 4)


async def test_unknown_document_and_positions_past_the_end_get_empty_answers(client: LanguageClient):
    result = await inline(client, "file:///e2e/never-opened.py", 0, 0)
    assert list(result.items) == []
    open_doc(client, "file:///e2e/short.py", "x = 1\n")
    result = await inline(client, "file:///e2e/short.py", 50, 3)
    assert list(result.items) == []


async def test_huge_and_binary_documents_do_not_kill_the_server(client: LanguageClient):
    big = "x = 1\n" * 900_000  # ~5 MB
    open_doc(client, "file:///e2e/big.py", big)
    result = await asyncio.wait_for(inline(client, "file:///e2e/big.py", 450_000, 0), 60)
    assert isinstance(result.items, (list, tuple))
    for item in result.items:  # a suggestion, if any, is placed at the cursor of the huge document
        assert item.range.start == types.Position(450_000, 0) and item.insert_text
    junk = "\x00\x01\ufffd\x7f" * 1000
    open_doc(client, "file:///e2e/junk.bin", junk, language="plaintext")
    encoding = encoding_of(client.init_result)
    column = sum(width(ch, encoding) for ch in junk[:10])  # after ten characters, in the client's units
    result = await inline(client, "file:///e2e/junk.bin", 0, column)
    assert isinstance(result.items, (list, tuple))
    for item in result.items:
        assert item.range.start == types.Position(0, column) and item.insert_text
        apply(junk, item.range, item.insert_text, encoding)  # the range lies inside the document
    result = await inline(client, "file:///e2e/a.py", 5, 4)
    assert result.items, "the server answers nothing after the huge and binary documents"
    apply(PY, result.items[0].range, result.items[0].insert_text)
    assert_stays_in_block(result.items[0].insert_text, 4)


async def test_settings_change_applies_live(client: LanguageClient):
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"codestral": {"completion": {"maxTokens": 1, "debounceMs": 0}}}))
    open_doc(client, "file:///e2e/s.py", "import os\n\nprint(os.")
    result = await inline(client, "file:///e2e/s.py", 2, 9)
    assert result.items, "no suggestion with maxTokens 1"
    for item in result.items:
        assert item.insert_text and len(item.insert_text) <= 17  # one token (16 characters at most, plus a space)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"codestral": {"completion": {"maxTokens": 16, "debounceMs": 0}}}))


async def test_code_action_completes_a_stub_on_resolve(client: LanguageClient):
    uri = "file:///e2e/stub.py"
    open_doc(client, uri, "def square(x):\n    pass\n")
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri), range=types.Range(types.Position(0, 0), types.Position(1, 8)),
        context=types.CodeActionContext(diagnostics=[])))
    titles = [a.title for a in actions]
    assert "Codestral: complete body of square" in titles
    assert "Codestral: write docstring for square" in titles
    assert not any("selection" in t for t in titles)  # instruct-only actions: hidden for a FIM-only model
    body = next(a for a in actions if "body" in a.title)
    assert body.edit is None  # computed on resolve only
    resolved = await client.code_action_resolve_async(body)
    assert resolved.edit is not None, "the action resolved to no edit"
    (edit,) = resolved.edit.changes[uri]
    assert edit.range.start == types.Position(1, 0)
    assert edit.range.end == types.Position(1, 8)
    assert edit.new_text.startswith("    ") and edit.new_text.strip()
    for line in edit.new_text.splitlines():  # the body stays indented under the signature
        assert not line.strip() or line.startswith("    "), edit.new_text
    assert apply("def square(x):\n    pass\n", edit.range, edit.new_text).startswith("def square(x):\n    ")
