"""The cascade end to end (model.cascade, codestral_lsp/cascade.py): a real server process with the embedded
model as the local backend and a recorded OpenAI-compatible remote on loopback. The local answer comes
back at once; an escalated request's remote answer is announced with codestral/inlineCompletionRefresh
and served when the client asks again, unless the user typed on first; the budget caps remote requests."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from codestral_lsp.tools.recorded_remote import RecordedRemote

pytestmark = pytest.mark.asyncio(loop_scope="module")
REMOTE_TEXT = "remote_answer()"
NEVER, ALWAYS = -1e9, 1.0  # thresholds: no local answer is unsure / every one is (log-probabilities are <= 0)
REMOTE = RecordedRemote(REMOTE_TEXT, delay_s=0)  # while `hold` is set, answers once `release` is


def settings(threshold: float, per_minute: int = 100) -> dict:
    return {"model": {"backend": "openai", "endpoint": REMOTE.url, "cascade": "on", "cascadeThreshold": threshold,
                      "cascadeRemotePerMinute": per_minute},
            "completion": {"debounceMs": 0, "timeoutMs": 20000, "maxTokens": 8}}


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "codestral_lsp", "serve"],
                                              server_env={**os.environ, "OMP_NUM_THREADS": "1"}),
                    scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient):
    lsp_client.states, lsp_client.backends, lsp_client.refreshes = [], [], []

    @lsp_client.feature("codestral/status")
    def on_status(params):
        lsp_client.states.append(params.state)
        lsp_client.backends.append(getattr(params, "lastBackend", None))

    @lsp_client.feature("codestral/inlineCompletionRefresh")
    def on_refresh(params):
        lsp_client.refreshes.append((params.uri, params.version))

    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim"), initialization_options=settings(NEVER)))
    for _ in range(6000):
        if "ready" in lsp_client.states:
            break
        await asyncio.sleep(0.02)
    assert lsp_client.states[-1] == "ready", lsp_client.states
    yield
    await lsp_client.shutdown_session()


def configure(client: LanguageClient, threshold: float, per_minute: int = 100) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings(threshold, per_minute)))


COUNT = iter(range(1000))
TEXT = "import os\n\n\ndef main():\n    path = "


def open_doc(client: LanguageClient, text: str = TEXT) -> str:
    uri = f"file:///cascade/doc{next(COUNT)}.py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    return uri


async def inline(client: LanguageClient, uri: str, text: str, invoked: bool) -> list[str]:
    line = text.count("\n")
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=types.Position(line, len(text) - text.rfind("\n") - 1),
        context=types.InlineCompletionContext(trigger_kind=kind)))
    return [item.insert_text for item in result.items]


async def until(predicate, seconds: float = 30.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_sure_typed_request_stays_local(client: LanguageClient):
    configure(client, NEVER)
    before = REMOTE.requests
    uri = open_doc(client)
    local = await inline(client, uri, TEXT, invoked=False)
    await asyncio.sleep(0.5)
    assert REMOTE.requests == before and REMOTE_TEXT not in local
    assert not [r for r in client.refreshes if r[0] == uri]
    assert client.backends[-1] != "openai:recorded"


async def test_an_invoked_request_is_replaced_by_the_remote_answer(client: LanguageClient):
    configure(client, NEVER)
    before = REMOTE.requests
    uri = open_doc(client)
    local = await inline(client, uri, TEXT, invoked=True)  # the local answer, at once
    assert REMOTE_TEXT not in local
    assert await until(lambda: (uri, 1) in client.refreshes)  # then the server says: ask again
    assert REMOTE.requests == before + 1
    assert await inline(client, uri, TEXT, invoked=False) == [REMOTE_TEXT]  # what the client re-asks gets
    await asyncio.sleep(0.2)
    assert client.backends[-1] == "openai:recorded"


async def test_an_unsure_typed_request_escalates(client: LanguageClient):
    configure(client, ALWAYS)
    uri = open_doc(client)
    await inline(client, uri, TEXT, invoked=False)
    assert await until(lambda: (uri, 1) in client.refreshes)
    assert await inline(client, uri, TEXT, invoked=False) == [REMOTE_TEXT]


async def test_typing_on_before_the_remote_answers_keeps_it_off_the_screen(client: LanguageClient):
    configure(client, NEVER)
    uri = open_doc(client)
    REMOTE.hold.set()
    try:
        before = REMOTE.requests
        await inline(client, uri, TEXT, invoked=True)
        assert await until(lambda: REMOTE.requests == before + 1)  # the remote was asked and is thinking
        typed = TEXT + "o"
        line = TEXT.count("\n")
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            [types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(line, 11), types.Position(line, 11)), text="o")]))
        await asyncio.sleep(0.2)
    finally:
        REMOTE.release.set()
        REMOTE.hold.clear()
    await asyncio.sleep(1.0)
    assert not [r for r in client.refreshes if r[0] == uri]
    for text in (TEXT, typed):  # neither the old place nor the new one shows the late answer
        assert REMOTE_TEXT not in await inline(client, uri, text, invoked=False)
    REMOTE.release.clear()


async def test_the_budget_caps_remote_requests(client: LanguageClient):
    await asyncio.sleep(3.0)  # the earlier tests' decisions (made after their answers) are done: none takes from this budget
    configure(client, ALWAYS, per_minute=2)
    before = REMOTE.requests
    texts = [f"# job {i}\n" + TEXT for i in range(4)]  # different texts: no typeahead between them
    uris = [open_doc(client, text) for text in texts]
    for uri, text in zip(uris, texts):
        await inline(client, uri, text, invoked=False)
    assert await until(lambda: sum(r[0] in uris for r in client.refreshes) >= 2, 90)  # the two within the budget
    await asyncio.sleep(1.0)  # and no more
    assert REMOTE.requests == before + 2 and sum(r[0] in uris for r in client.refreshes) == 2
    configure(client, NEVER)

