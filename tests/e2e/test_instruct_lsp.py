"""Instruct code actions through the real server: listed on a selection only when the checkpoint is
instruct-tuned, and resolved into an edit. A tiny random checkpoint whose folder name says "instruct"
stands in for Mistral's instruct models (its answers are arbitrary text; the edits' shapes are
checked in tests/server/test_instruct_actions.py with fixed answers)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from engine.testing import make_checkpoint

from lsp_edits import apply, assert_parses
from test_server import open_doc, record_status, wait_ready  # tests/e2e is on sys.path (rootdir import mode)

MODEL = str(make_checkpoint(Path(tempfile.mkdtemp(prefix="codestral-e2e-")) / "tiny-instruct"))
SERVER = [sys.executable, "-m", "codestral_lsp", "serve", "--model", MODEL]
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient):
    record_status(lsp_client)
    await lsp_client.initialize_session(types.InitializeParams(capabilities=client_capabilities("neovim")))
    note = await wait_ready(lsp_client)
    assert note["state"] == "ready", note
    yield
    await lsp_client.shutdown_session()


async def actions_for(client: LanguageClient, uri: str, start: types.Position, end: types.Position):
    return await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri), range=types.Range(start, end),
        context=types.CodeActionContext(diagnostics=[])))


TEXT = "import math\n\n\ndef area(r):\n    return math.pi * r * r\n"


async def test_selection_actions_listed_and_resolved(client: LanguageClient):
    uri = "file:///e2e/shapes.py"
    open_doc(client, uri, TEXT)
    assert not any("selection" in a.title for a in await actions_for(client, uri, types.Position(3, 0),
                                                                     types.Position(3, 0)))  # empty selection
    actions = await actions_for(client, uri, types.Position(3, 0), types.Position(5, 0))
    by_title = {a.title: a for a in actions}
    assert {"Codestral: explain the selection", "Codestral: refactor the selection",
            "Codestral: write tests for the selection"} <= set(by_title)
    resolved = await client.code_action_resolve_async(by_title["Codestral: explain the selection"])
    assert resolved.edit is not None, "explain resolved to no edit"  # the seeded tiny model answers with text
    (edit,) = resolved.edit.changes[uri]
    assert edit.range.start == edit.range.end == types.Position(3, 0)
    assert edit.new_text.strip() and edit.new_text.endswith("\n")
    assert all(line.startswith("# ") for line in edit.new_text.splitlines())
    explained = apply(TEXT, edit.range, edit.new_text)
    assert_parses(explained)  # comments above the function: the module still parses
    assert explained.endswith("def area(r):\n    return math.pi * r * r\n")
    resolved = await client.code_action_resolve_async(by_title["Codestral: refactor the selection"])
    assert resolved.edit is not None, "refactor resolved to no edit"
    (edit,) = resolved.edit.changes[uri]
    assert (edit.range.start, edit.range.end) == (types.Position(3, 0), types.Position(5, 0))
    assert edit.new_text.strip()
    assert apply(TEXT, edit.range, edit.new_text).startswith("import math\n\n\n")  # only the selection changes
