"""The backend interface: every kind implements it, the server and the features never name a kind, and
the local backend is the engine itself (the same completions, no copy of its state)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import codestral_lsp
from codestral_lsp.backends import KINDS, Backend, as_backend, backend_class, open_backend
from codestral_lsp.backends.local import LocalBackend
from codestral_lsp.pipeline import Completer, Document
from codestral_lsp.settings import ModelSettings, Settings, parse_settings
from engine import Engine
from engine.stopping import StopRule
from engine.testing import make_checkpoint

PACKAGE = Path(codestral_lsp.__file__).parent
KIND_BLIND = [PACKAGE / "lsp" / "server.py", PACKAGE / "pipeline.py", *sorted((PACKAGE / "lsp" / "features").glob("*.py"))]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("tiny"))


def settings_for(backend: str, **model) -> Settings:
    settings, problems = parse_settings({"model": {"backend": backend, **model}})
    assert problems == []
    return settings


def test_every_kind_of_the_settings_has_a_class_that_implements_the_whole_interface():
    choices = ModelSettings.__dataclass_fields__["backend"].metadata["choices"]
    assert set(choices) == set(KINDS)
    for kind in KINDS:
        cls = backend_class(settings_for(kind))
        assert issubclass(cls, Backend) and not inspect.isabstract(cls), (kind, cls.__abstractmethods__)


@pytest.mark.parametrize("path", KIND_BLIND, ids=lambda p: p.name)
def test_the_server_pipeline_and_features_never_name_a_kind(path):
    """No `if backend == "openai"`: the per-kind facts live in the backend classes."""
    tree = ast.parse(path.read_text())
    named = [(node.lineno, node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in KINDS]
    assert named == []
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not any(m and m.endswith(("backends.local", "backends.remote")) for m in imported)


def test_reload_keys_and_labels_are_the_kinds_own(checkpoint):
    local, other = settings_for("local", path=str(checkpoint)), settings_for("local")
    assert LocalBackend.reload_key(local, None) != LocalBackend.reload_key(other, None)
    assert LocalBackend.reload_key(other, str(checkpoint)) == LocalBackend.reload_key(local, None)
    assert LocalBackend.planned_label(other, None) == "embedded"
    remote = backend_class(settings_for("openai", remoteModel="tiny"))
    assert remote.planned_label(settings_for("openai", remoteModel="tiny"), None) == "openai:tiny"
    assert remote.reload_key(settings_for("openai"), None) != remote.reload_key(settings_for("mistral"), None)


def test_the_local_backend_streams_the_engines_completion(checkpoint):
    backend = open_backend(settings_for("local", path=str(checkpoint), device="cpu"))
    assert isinstance(backend, LocalBackend) and backend.check_health() is None
    engine = backend.engine
    expected = Engine.load(checkpoint, device="cpu").complete("def f(x):\n    return ", "\n", max_tokens=8)
    got = backend.complete("def f(x):\n    return ", "\n", max_tokens=8, session="file:///a.py")
    assert (got.text, got.tokens) == (expected.text, expected.tokens)
    assert "file:///a.py" in engine.sessions.caches
    backend.forget("file:///a.py")
    assert "file:///a.py" not in engine.sessions.caches
    assert backend.label == str(checkpoint) and backend.describe().startswith(checkpoint.name)
    with pytest.raises(ValueError, match="not instruction-tuned"):
        backend.chat([("user", "hi")])
    backend.configure(parse_settings({"speculative": {"k": 6}})[0])
    assert engine.spec_k == 6


def test_a_completer_takes_an_engine_as_the_local_backend(checkpoint):
    engine = Engine.load(checkpoint, device="cpu")
    completer = Completer(engine)
    assert isinstance(completer.backend, LocalBackend) and completer.backend.engine is engine
    assert as_backend(completer.backend) is completer.backend
    doc = Document("file:///a.py", "python", "def f(x):\n    return \n", 1)
    completer.complete(doc, len("def f(x):\n    return "))
    assert doc.uri in engine.sessions.caches
    completer.forget(doc.uri)
    assert doc.uri not in engine.sessions.caches


def test_a_remote_backend_reports_a_missing_key_as_its_health():
    backend = open_backend(settings_for("mistral", apiKeyEnv="CODESTRAL_TEST_UNSET_KEY"))
    try:
        error = backend.check_health()
        assert error is not None and "CODESTRAL_TEST_UNSET_KEY" in error
        assert backend.label == "mistral:codestral-latest" and not backend.instruct
        with pytest.raises(ValueError):
            backend.chat([("user", "hi")])
        backend.forget("file:///a.py")  # a server keeps its own state: nothing to drop
    finally:
        backend.close()


def test_the_stop_rule_cuts_at_the_earliest_stop_and_holds_back_what_could_become_one():
    rule = StopRule(("\n\n", "", "END"))
    assert rule.stops == ("\n\n", "END")
    assert rule.cut("a = 1\n\nb END") == 5
    assert rule.cut("a = 1\n") is None and rule.final("a = 1\n", 0) == 5
    assert rule.final("a = 1\nEN", 3) == 6
    assert rule.final("x", 4) == 4  # never less than what was shown already
    with_fn = StopRule((), lambda text: 2 if len(text) > 3 else None)
    assert with_fn.final("abcdef", 0) == 0 and with_fn.cut("abcd") == 2  # a callback holds everything back
