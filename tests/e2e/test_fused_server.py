"""A real server process on a machine that has built the fused decode step uses it at once (no build
in the background) and says so in its load message; completions work through it."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from engine import fused
from tests.e2e.test_server import MODEL, PY, inline, open_doc, record_status, wait_ready

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def built():
    """Build the extension in this process before the server starts: the server finds it in the same
    per-machine folder and attaches it at load."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTRAL_LSP_FUSED", "auto")
        if fused.load(build=True) is not None:
            return
    if shutil.which("c++") or shutil.which("g++"):
        pytest.fail(f"the fused step did not build: {fused.failure()}")
    pytest.skip("no C++ compiler: the fused step cannot be built here")


SERVER = [sys.executable, "-m", "codestral_lsp", "serve", "--model", MODEL]


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER,
                                              server_env={**os.environ, "CODESTRAL_LSP_FUSED": "auto"}),
                    scope="module", loop_scope="module")
async def client(built, lsp_client: LanguageClient):
    record_status(lsp_client)
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual_studio_code"),
        initialization_options={"completion": {"maxTokens": 16, "debounceMs": 0}}))
    yield
    await lsp_client.shutdown_session()


async def test_the_server_decodes_with_the_fused_step(client: LanguageClient):
    note = await wait_ready(client)
    assert note["state"] == "ready", note
    loaded = [m.message for m in client.log_messages if "loaded in" in m.message]
    assert loaded and "fused decode step: on" in loaded[-1], loaded
    open_doc(client, "file:///e2e/fused.py", PY)
    result = await inline(client, "file:///e2e/fused.py", 5, 4)
    items = result if isinstance(result, list) else result.items
    assert items and all(item.insert_text for item in items)
