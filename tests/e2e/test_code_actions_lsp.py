"""Code actions through the real server for languages other than Python: listed cheaply, resolved to
an edit that applies and keeps the document parsing (tree-sitter), with the embedded model (or a tiny
random one when this copy does not ship it)."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsp_edits import (  # tests/e2e is on sys.path (rootdir import mode)
    apply,
    assert_tree_parses,
)
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from test_server import SERVER, open_doc, record_status, wait_ready

pytestmark = pytest.mark.asyncio(loop_scope="module")

GO = 'package shapes\n\n// Area returns the area of a w by h rectangle.\nfunc Area(w, h int) int {\n\tpanic("TODO")\n}\n'
RUST = "/// The square of x.\nfn square(x: i64) -> i64 {\n    todo!()\n}\n\nfn main() {\n    println!(\"{}\", square(3));\n}\n"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient):
    record_status(lsp_client)
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim"),
        initialization_options={"completion": {"maxTokens": 48, "debounceMs": 0}}))
    assert (await wait_ready(lsp_client))["state"] == "ready"
    yield
    await lsp_client.shutdown_session()


async def actions_for(client: LanguageClient, uri: str, line: int, end_line: int | None = None,
                      diagnostics: list[types.Diagnostic] = ()) -> list[types.CodeAction]:
    end = types.Position(line if end_line is None else end_line, 0)
    return await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri), range=types.Range(types.Position(line, 0), end),
        context=types.CodeActionContext(diagnostics=list(diagnostics))))


async def resolve_and_apply(client: LanguageClient, action: types.CodeAction, uri: str, text: str) -> str:
    assert action.edit is None, "the edit is made on resolve only"
    resolved = await asyncio.wait_for(client.code_action_resolve_async(action), 120)
    assert resolved.edit is not None and resolved.edit.changes, f"{action.title} resolved to no edit"
    (edit,) = resolved.edit.changes[uri]
    assert edit.new_text.strip(), f"{action.title}: an empty edit"
    return apply(text, edit.range, edit.new_text)


@pytest.mark.parametrize("uri, language, text, line, name", [
    ("file:///e2e/shapes.go", "go", GO, 4, "Area"), ("file:///e2e/square.rs", "rust", RUST, 2, "square")])
async def test_stub_bodies_complete_in_go_and_rust(client: LanguageClient, uri, language, text, line, name):
    open_doc(client, uri, text, language)
    actions = await actions_for(client, uri, line)
    titles = [a.title for a in actions]
    assert f"Codestral: complete body of {name}" in titles, titles
    body = next(a for a in actions if a.title == f"Codestral: complete body of {name}")
    after = await resolve_and_apply(client, body, uri, text)
    assert after != text
    assert_tree_parses(after, language)


async def test_bad_resolve_data_is_invalid_params(client: LanguageClient):
    from pygls.exceptions import JsonRpcInvalidParams

    for data in [None, {"kind": "body"}, {"uri": "file:///x.go", "version": "1", "kind": "body", "start": 0,
                                          "end": 1, "name": "f", "indent": "", "lead": "", "trail": ""},
                 {"uri": "file:///x.go", "version": 1, "kind": "launch", "start": 0, "end": 1}]:
        with pytest.raises(JsonRpcInvalidParams):
            await client.code_action_resolve_async(types.CodeAction(title="Codestral: x", data=data))
