"""What leaves the machine, end to end: the language server (a real process, driven by pytest-lsp with
Neovim's client capabilities) with the openai backend pointed at a scripted server on loopback that
records every prompt it receives. The workspace root, given as rootUri, holds a .codestralignore."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from codestral_lsp.tools.recorded_remote import RecordedRemote

ROOT = Path(tempfile.mkdtemp(prefix="codestral-guardrails-"))
(ROOT / ".codestralignore").write_text("# this project's own\nprivate/\n")
pytestmark = pytest.mark.asyncio(loop_scope="module")
RECORDER = RecordedRemote("x", delay_s=0)  # streams `answer`, records each request's body
SETTINGS = {"model": {"backend": "openai", "endpoint": RECORDER.url},
            "completion": {"debounceMs": 0, "timeoutMs": 20000, "maxTokens": 16},
            "context": {"neighbourFiles": 3}}


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "codestral_lsp", "serve"],
                                              server_env={**os.environ, "OMP_NUM_THREADS": "1"}),
                    scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient):
    lsp_client.states, lsp_client.backends = [], []

    @lsp_client.feature("codestral/status")
    def on_status(params):
        lsp_client.states.append(params.state)
        lsp_client.backends.append(getattr(params, "lastBackend", None))

    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim"), root_uri=ROOT.as_uri(), initialization_options=SETTINGS))
    for _ in range(3000):
        if "ready" in lsp_client.states:
            break
        await asyncio.sleep(0.02)
    assert lsp_client.states[-1] == "ready", lsp_client.states
    yield
    await lsp_client.shutdown_session()


def open_doc(client: LanguageClient, path: str, text: str, language: str = "python") -> str:
    uri = (ROOT / path).as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))
    return uri


async def inline(client: LanguageClient, uri: str, text: str) -> list[str]:
    """The suggestions at the end of text (ASCII)."""
    line = text.count("\n")
    position = types.Position(line, len(text) - (text.rfind("\n") + 1))
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=position,
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)))
    return [item.insert_text for item in (result.items if hasattr(result, "items") else result)]


async def test_an_excluded_document_never_reaches_the_remote(client: LanguageClient):
    before = len(RECORDER.bodies)
    for path in (".env", "deploy/server.pem", "private/notes.py", "config/secrets.py"):
        text = "DATABASE_PASSWORD_MARKER = 1\nx = "
        uri = open_doc(client, path, text)
        assert await inline(client, uri, text) == [], path
    assert len(RECORDER.bodies) == before
    assert "DATABASE_PASSWORD_MARKER" not in RECORDER.sent()
    text = "y = 1\nz = "  # and an ordinary document does reach it
    assert await inline(client, open_doc(client, "src/ok.py", text), text) == ["x"]
    assert len(RECORDER.bodies) == before + 1


async def test_a_neighbour_env_never_appears_in_a_prompt(client: LanguageClient):
    lines = "".join(f"export SERVICE_{i}_URL=https://svc{i}.example\n" for i in range(6))
    open_doc(client, "vars.sh", lines + "# VARS_MARKER\n", "sh")  # an ordinary neighbour lends its lines
    open_doc(client, ".env", lines + "# ENV_MARKER\n", "sh")
    open_doc(client, "private/more.sh", lines + "# PRIVATE_MARKER\n", "sh")
    text = "export SERVICE_0_URL=https://svc0.example\nexport SERVICE_1_URL="
    assert await inline(client, open_doc(client, "run.sh", text, "sh"), text) == ["x"]
    prompt = RECORDER.bodies[-1]["prompt"]
    assert "VARS_MARKER" in prompt  # the test is not vacuous: neighbours do lend
    assert "ENV_MARKER" not in RECORDER.sent() and "PRIVATE_MARKER" not in RECORDER.sent()


async def test_a_prompt_with_an_aws_key_arrives_redacted(client: LanguageClient):
    key, secret = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    text = (f'import boto3\n\ns3 = boto3.client("s3", aws_access_key_id="{key}",\n'
            f'                  aws_secret_access_key="{secret}")\ns3.')
    assert await inline(client, open_doc(client, "src/upload.py", text), text) == ["x"]
    prompt = RECORDER.bodies[-1]["prompt"]
    assert 'aws_access_key_id="<redacted>"' in prompt and 'aws_secret_access_key="<redacted>"' in prompt
    assert key not in RECORDER.sent() and secret not in RECORDER.sent()


async def test_a_suggestion_containing_a_token_is_not_shown(client: LanguageClient):
    text = "import requests\n\nheaders = {'Authorization': 'token "
    uri = open_doc(client, "src/api.py", text)
    RECORDER.answer = "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8'}"
    try:
        assert await inline(client, uri, text) == []
    finally:
        RECORDER.answer = "x"
    text2 = text + "' + load_token()}\nr = requests."  # and the next, ordinary suggestion is shown
    assert await inline(client, open_doc(client, "src/api2.py", text2), text2) == ["x"]


async def test_the_status_names_the_backend_that_answered(client: LanguageClient):
    text = "total = 0\nfor i in range(3):\n    total += "
    assert await inline(client, open_doc(client, "src/sum.py", text), text) == ["x"]
    await asyncio.sleep(0.2)  # the status goes out before the answer; let the client read it
    assert client.backends[-1] == "openai:recorded", client.backends


async def test_added_folders_and_saved_ignore_files_are_read(client: LanguageClient):
    other = Path(tempfile.mkdtemp(prefix="codestral-guardrails-other-"))
    (other / ".codestralignore").write_text("*.sql\n")
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        types.WorkspaceFoldersChangeEvent(added=[types.WorkspaceFolder(other.as_uri(), "other")], removed=[])))
    before = len(RECORDER.bodies)
    text = "SELECT_MARKER = 1\nx = "
    uri = (other / "q.sql").as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    assert await inline(client, uri, text) == [] and len(RECORDER.bodies) == before

    (ROOT / ".codestralignore").write_text("private/\ngenerated/\n")  # edited, then saved in the editor
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        types.TextDocumentIdentifier((ROOT / ".codestralignore").as_uri())))
    assert await inline(client, open_doc(client, "generated/out.py", text), text) == []
    assert len(RECORDER.bodies) == before and "SELECT_MARKER" not in RECORDER.sent()
    assert await inline(client, open_doc(client, "src/fine.py", text), text) == ["x"]  # others still reach it
