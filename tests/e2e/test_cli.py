"""The `codestral-lsp` command line as a user runs it, each in its own process: `complete`, `info`,
`serve --tcp` with a real LSP client over TCP, `train` on a tiny corpus (the loss goes down; a run
stopped and resumed ends with the same weights as one that was not), and int8 quantization switched
on through the server's settings."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lsprotocol import types
from pygls.lsp.client import LanguageClient
from safetensors.torch import load_file

from lsp_edits import apply, assert_stays_in_block  # tests/e2e is on sys.path (rootdir import mode)
from test_server import MODEL

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
PY = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \n"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "codestral_lsp", *args], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"codestral-lsp {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
    return result


# -- complete and info ---------------------------------------------------------------------------------------

def test_complete_prints_the_completion_at_a_one_based_location(tmp_path):
    source = tmp_path / "mul.py"
    source.write_text(PY)
    as_json = json.loads(cli("complete", f"{source}:6:5", "--model", MODEL, "--max-tokens", "16", "--json").stdout)
    completion = as_json["completion"]
    assert completion.strip(), as_json
    assert_stays_in_block(completion, 4)
    assert as_json["stop_reason"] and as_json["latency_ms"] >= 0 and 1 <= as_json["generated_tokens"] <= 16
    plain = cli("complete", f"{source}:6:5", "--model", MODEL, "--max-tokens", "16")
    assert plain.stdout == completion + "\n"  # greedy: the same text, printed as is
    assert "stop:" in plain.stderr


def test_complete_refuses_a_location_outside_the_file(tmp_path):
    source = tmp_path / "short.py"
    source.write_text("x = 1\n")
    for location, why in ((f"{source}:9:1", "line 9 is out of range"), (f"{source}:1:8", "column 8 is out of range")):
        result = subprocess.run([sys.executable, "-m", "codestral_lsp", "complete", location, "--model", MODEL],
                                cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0 and why in result.stderr, result.stderr


def test_info_describes_the_model_and_int8_shrinks_it():
    info = json.loads(cli("info", "--model", MODEL, "--json").stdout)
    assert info["model"] == MODEL and info["fim"] is True and info["device"] == "cpu"
    assert info["vocab_size"] == 32768 and info["parameters"] > 0 and info["weights_mb"] > 0
    assert {"dim", "n_layers", "max_context", "dtype", "tokenizer"} <= set(info)
    quantized = json.loads(cli("info", "--model", MODEL, "--json", "--quantize", "int8").stdout)
    assert quantized["weights_mb"] < info["weights_mb"] * 0.7
    text = cli("info", "--model", MODEL).stdout
    assert any(line.split() == ["vocab_size", "32768"] for line in text.splitlines()), text


# -- serve --tcp ---------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_over_tcp_answers_a_real_client(tmp_path):
    port = free_port()
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "codestral_lsp", "serve", "--tcp", f"127.0.0.1:{port}",
                             "--model", MODEL], cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    client = LanguageClient("cli-test", "1")
    statuses: list[str] = []
    client.feature("codestral/status")(lambda params: statuses.append(params.state))
    try:
        deadline = time.monotonic() + 60
        while True:  # the client's own connection is the probe: the server serves the first one that closes
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve --tcp did not listen"
                await asyncio.sleep(0.1)
        init = await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            initialization_options={"completion": {"maxTokens": 16, "debounceMs": 0}})), 60)
        assert init.capabilities.inline_completion_provider is not None
        client.initialized(types.InitializedParams())
        while "ready" not in statuses:
            assert "error" not in statuses and time.monotonic() < deadline + 60, statuses
            await asyncio.sleep(0.05)
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri="file:///tcp/mul.py", language_id="python", version=1, text=PY)))
        result = await asyncio.wait_for(client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier("file:///tcp/mul.py"), position=types.Position(5, 4),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))), 60)
        assert result.items, "no suggestion over TCP"
        (item,) = result.items
        assert item.range.start == types.Position(5, 4)
        apply(PY, item.range, item.insert_text)
        assert_stays_in_block(item.insert_text, 4)
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
        assert await asyncio.to_thread(proc.wait, 30) == 0  # exit after shutdown: a clean stop
    finally:
        await client.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        print(log.read()[-3000:])


# -- train -------------------------------------------------------------------------------------------------

TRAIN = ["--preset", "embedded-draft", "--seq-len", "64", "--batch", "2", "--lr", "0.5", "--threads", "1",
         "--seed", "7"]
ROW = 2 * 64  # tokens per step


def train(out: Path, corpus: Path, steps: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "codestral_lsp", "train", "--out", str(out), "--corpus",
                             str(corpus), "--tokens", str(steps * ROW), *TRAIN, *extra],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return err


def test_train_lowers_the_loss_and_resume_continues_exactly(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(2):  # fixed, repetitive code: the loss must fall whatever the repository holds
        (corpus / f"m{n}.py").write_text("".join(f"def add_{i}(a, b):\n    return a + b + {i}\n\n\n"
                                                 for i in range(n * 300, n * 300 + 300)))
    whole, first = train(tmp_path / "whole", corpus, 20), train(tmp_path / "parts", corpus, 10)
    log_whole, log_first = finish(whole), finish(first)
    assert "step 20/20" in log_whole and "step 10/10" in log_first
    losses = [e["loss"] for e in map(json.loads, (tmp_path / "whole" / "log.jsonl").read_text().splitlines())
              if "loss" in e]
    assert len(losses) == 2 and losses[1] < losses[0] - 0.2, losses  # steps 10 and 20

    log_rest = finish(train(tmp_path / "parts", corpus, 20, "--resume"))
    assert "resumed at step 10" in log_rest and "step 20/20" in log_rest
    assert json.loads((tmp_path / "parts" / "state.json").read_text())["step"] == 20
    a = load_file(str(tmp_path / "whole" / "model" / "consolidated.safetensors"))
    b = load_file(str(tmp_path / "parts" / "model" / "consolidated.safetensors"))
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"the resumed run's weights differ: {different[:5]}"
    c = load_file(str(tmp_path / "parts" / "state.safetensors"))  # so do the optimizer's moments
    d = load_file(str(tmp_path / "whole" / "state.safetensors"))
    assert all(torch.equal(c[k], d[k]) for k in d)


# -- model.quantize through the server ---------------------------------------------------------------------

def test_int8_quantization_switched_on_through_the_servers_settings():
    """model.quantize "int8" sent with didChangeConfiguration reloads the model quantized: the load's log
    line counts the quantized engine's parameters, and the suggestion is the one the int8 engine gives
    in this process through the same pipeline (greedy, no deadline)."""
    from codestral_lsp.pipeline import Completer, Document
    from codestral_lsp.settings import parse_settings
    from codestral_lsp.tools.lsp_client import LspProcess
    from engine import Engine

    # No snippets from the other open documents: the oracle sees one document at a time.
    base = {"completion": {"maxTokens": 16, "debounceMs": 0, "timeoutMs": 120_000}, "context": {"neighbourFiles": 0}}
    int8 = {**base, "model": {"quantize": "int8"}}
    float_engine, int8_engine = Engine.load(MODEL), Engine.load(MODEL, quantize="int8")
    assert int8_engine.info()["parameters"] != float_engine.info()["parameters"]  # tells the two loads apart

    def expected(engine, settings, uri: str) -> str:
        result = Completer(engine, parse_settings(settings)[0]).complete(
            Document(uri, "python", PY), len(PY) - 1, use_recent=False)
        assert result.suggestion is not None
        return result.suggestion.text

    def loaded_lines() -> list[str]:
        return [n["params"]["message"] for n in client.notifications
                if n["method"] == "window/logMessage" and " loaded in " in n["params"]["message"]]

    def complete(uri: str) -> str:
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                "text": PY}})
        answer = client.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": 5, "character": 4}, "context": {"triggerKind": 1}})
        (item,) = answer["result"]["items"]
        return item["insertText"]

    client = LspProcess([sys.executable, "-m", "codestral_lsp", "serve", "--model", MODEL])
    try:
        client.initialize(base)
        assert client.wait_status()["state"] == "ready"
        assert f"({float_engine.info()['parameters']:,} parameters" in loaded_lines()[-1]
        assert complete("file:///q/float.py") == expected(float_engine, base, "file:///q/float.py")

        client.notifications.clear()
        client.notify("workspace/didChangeConfiguration", {"settings": {"codestral": int8}})
        assert client.wait_status()["state"] == "ready"
        (line,) = loaded_lines()
        assert f"({int8_engine.info()['parameters']:,} parameters" in line, line
        assert complete("file:///q/int8.py") == expected(int8_engine, int8, "file:///q/int8.py")
    finally:
        client.close()


def test_eval_count_stubs_prints_counts_per_language():
    import json

    result = cli("eval", "--count-stubs", "python,go", "--limit", "5", "--json")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(counts) == {"python", "go"} and counts["python"]["files"] == 5
    assert counts["python"]["functions"] >= counts["python"]["stubs"] >= 0
