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


def parses_or_says_why(resolved: types.CodeAction, uri: str, text: str, language: str) -> None:
    """A quick fix or rewrite resolves to an edit that parses, or to no edit with the reason in its title."""
    if resolved.edit is None:
        assert "(no edit: " in resolved.title, resolved.title
        return
    (edit,) = resolved.edit.changes[uri]
    assert edit.new_text.strip()
    assert_tree_parses(apply(text, edit.range, edit.new_text), language)


async def test_quick_fix_from_a_diagnostic_in_go(client: LanguageClient):
    uri = "file:///e2e/fix.go"
    text = "package shapes\n\nfunc Twice(x int) int {\n\ty := x +* 2\n\treturn y\n}\n"
    open_doc(client, uri, text, "go")
    diagnostic = types.Diagnostic(range=types.Range(types.Position(3, 8), types.Position(3, 9)),
                                  message="expected operand", source="gopls")
    actions = await actions_for(client, uri, 3, diagnostics=[diagnostic])
    fixes = [a for a in actions if a.kind == types.CodeActionKind.QuickFix]
    assert [a.title for a in fixes] == ["Codestral: fix line 4"], [a.title for a in actions]
    assert list(fixes[0].diagnostics) == [diagnostic] and fixes[0].edit is None
    resolved = await asyncio.wait_for(client.code_action_resolve_async(fixes[0]), 120)
    parses_or_says_why(resolved, uri, text, "go")


async def test_write_a_test_in_rust_goes_into_mod_tests(client: LanguageClient):
    uri = "file:///e2e/area.rs"
    text = "fn area(w: i64) -> i64 {\n    w * w\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"
    open_doc(client, uri, text, "rust")
    actions = await actions_for(client, uri, 1)
    test = next(a for a in actions if a.title == "Codestral: write a test for area")
    after = await resolve_and_apply(client, test, uri, text)
    assert after.startswith(text[: text.index("}\n", text.index("mod tests"))])  # inserted in the module
    assert_tree_parses(after, "rust")


async def test_base_model_rewrites_and_explains_a_selection_in_go(client: LanguageClient):
    uri = "file:///e2e/rewrite.go"
    text = "package shapes\n\nfunc Sum(xs []int) int {\n\ts := 0\n\tfor _, x := range xs {\n\t\ts += x\n\t}\n\treturn s\n}\n"
    open_doc(client, uri, text, "go")
    actions = await actions_for(client, uri, 3, 7)
    titles = {a.title: a for a in actions}
    assert {"Codestral: rewrite lines 4-7", "Codestral: explain lines 4-7", "Codestral: write a test for Sum"} \
        <= set(titles), list(titles)
    assert not any("selection" in t for t in titles)  # the instruct versions: hidden for a FIM-only model
    explained = await resolve_and_apply(client, titles["Codestral: explain lines 4-7"], uri, text)
    assert explained.count("\n") > text.count("\n") and "\t// " in explained
    assert_tree_parses(explained, "go")
    resolved = await asyncio.wait_for(client.code_action_resolve_async(titles["Codestral: rewrite lines 4-7"]), 120)
    parses_or_says_why(resolved, uri, text, "go")


async def test_actions_on_a_line_of_a_2mb_go_file(client: LanguageClient):
    from tests.server.test_code_action_stubs import big_go  # the same generated file as the listing test

    uri, text = "file:///e2e/big.go", big_go()
    open_doc(client, uri, text, "go")
    row = text[: text.index("func F7007(")].count("\n")
    actions, inline = await asyncio.gather(actions_for(client, uri, row + 1),
                                           client.text_document_code_action_async(types.CodeActionParams(
                                               text_document=types.TextDocumentIdentifier("file:///e2e/shapes.go"),
                                               range=types.Range(types.Position(4, 0), types.Position(4, 0)),
                                               context=types.CodeActionContext(diagnostics=[]))))
    titles = [a.title for a in actions]
    assert "Codestral: complete body of F7007" in titles and "Codestral: write a test for F7007" in titles, titles
    assert len([t for t in titles if "complete body" in t]) == 1  # only the requested rows were looked at
    assert any("Area" in a.title for a in inline)  # another document's request answered meanwhile
