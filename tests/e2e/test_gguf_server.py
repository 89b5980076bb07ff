"""The server given a broken GGUF file (`model.path`) keeps running and says so (status "error" naming the file and
the problem, a message to the user); pointed at a good GGUF file through the settings, it loads it
and completes."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

pytest.importorskip("gguf")

from engine.checkpoints.gguf import convert  # noqa: E402
from engine.testing import make_checkpoint  # noqa: E402

from test_server import inline, open_doc, record_status, wait_ready  # noqa: E402

FOLDER = Path(tempfile.mkdtemp(prefix="codestral-gguf-e2e-"))
GOOD = convert(make_checkpoint(FOLDER / "ckpt", dim=64, n_layers=1), FOLDER / "good.gguf")
BROKEN = FOLDER / "broken.gguf"
BROKEN.write_bytes(GOOD.read_bytes()[: GOOD.stat().st_size // 2])
SERVER = [sys.executable, "-m", "codestral_lsp", "serve"]  # the model comes from the settings (`--model` would win)
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), scope="module", loop_scope="module")
async def client(lsp_client: LanguageClient):
    record_status(lsp_client)
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim"),
        initialization_options={"model": {"path": str(BROKEN)}, "completion": {"maxTokens": 4, "debounceMs": 0}}))
    yield
    await lsp_client.shutdown_session()


async def test_broken_gguf_is_reported_and_the_server_stays_up(client: LanguageClient):
    note = await wait_ready(client)
    assert note["state"] == "error", note
    assert str(BROKEN) in note["message"] and "truncated" in note["message"]
    assert any("could not load the model" in m.message for m in client.messages)
    open_doc(client, "file:///gguf/a.py", "def add(a, b):\n    return ")
    result = await inline(client, "file:///gguf/a.py", 1, 11)  # answered (nothing to offer), not a crash
    assert not result or not result.items


async def test_a_good_gguf_file_through_the_settings(client: LanguageClient):
    seen = len(client.status_log)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"codestral": {"model": {"path": str(GOOD)}, "completion": {"maxTokens": 4, "debounceMs": 0}}}))
    note = await wait_ready(client, start=seen)
    assert note["state"] == "ready", note
    open_doc(client, "file:///gguf/b.py", "import os\n\nprint(os.")
    await inline(client, "file:///gguf/b.py", 2, 9)  # a random model: any answer, but an answer
