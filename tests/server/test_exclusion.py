"""Content exclusion (codestral_lsp/context/exclusion.py and the pipeline's use of it): which documents the
default patterns, the setting and a workspace's .codestralignore exclude, and that an excluded document
gets no remote completion and lends nothing to another document's prompt."""

from __future__ import annotations

import doctest

import pytest

from codestral_lsp.backends import Backend
from codestral_lsp.context import exclusion
from codestral_lsp.context.exclusion import Exclusion, uri_path
from codestral_lsp.lsp.features.lifecycle import ignore_files, workspace_roots
from codestral_lsp.pipeline import Completer, Document
from codestral_lsp.settings import Settings, parse_settings

DEFAULTS = Settings().context.exclude
ROOT = "file:///home/me/app"


def default_rule(ignore: dict[str, str] | None = None) -> Exclusion:
    return Exclusion.build(DEFAULTS, ignore if ignore is not None else {ROOT: ""})


@pytest.mark.parametrize("name", [
    ".env", ".env.local", ".env.production", "server.pem", "tls/server.key", "id_rsa", "id_ed25519.pub",
    "cert.p12", "secrets.yaml", "secrets.json", ".npmrc", ".pypirc", "credentials", "credentials.json",
    "deep/nested/dir/.env", "a/b/c/id_ecdsa"])
def test_the_defaults_exclude_secret_files_at_any_depth(name):
    assert default_rule().excludes(f"{ROOT}/{name}")
    assert default_rule().excludes(f"file:///elsewhere/{name}")  # outside every workspace root too


@pytest.mark.parametrize("name", [
    "main.py", "src/env.py", "environment.ts", "keys.py", "monkey.rs", "my_secrets.py", "README.md",
    "docs/guide_to_credentials.md", "idx_test.go", "npmrc.md"])
def test_the_defaults_leave_ordinary_files_alone(name):
    assert not default_rule().excludes(f"{ROOT}/{name}")


def test_codestralignore_adds_patterns_relative_to_its_root():
    rule = default_rule({ROOT: "# comment\n/config/*.yaml\nprivate/\n*.sql\n!.env.example\n"})
    assert rule.excludes(f"{ROOT}/config/prod.yaml")
    assert not rule.excludes(f"{ROOT}/src/config/prod.yaml")  # anchored at the root
    assert rule.excludes(f"{ROOT}/private/notes.md") and rule.excludes(f"{ROOT}/src/private/deep/x.py")
    assert rule.excludes(f"{ROOT}/db/dump.sql")
    assert not rule.excludes(f"{ROOT}/.env.example")  # a negation in the file wins over the default
    assert rule.excludes(f"{ROOT}/.env")
    assert not rule.excludes("file:///home/me/other/db/dump.sql")  # the file applies under its root only


def test_each_root_reads_its_own_file_and_the_deepest_root_wins():
    rule = default_rule({ROOT: "*.csv\n", f"{ROOT}/vendor/lib": "*.txt\n", "file:///srv/data": ""})
    assert rule.excludes(f"{ROOT}/data.csv")
    assert rule.excludes(f"{ROOT}/vendor/lib/a.txt") and not rule.excludes(f"{ROOT}/vendor/lib/a.csv")
    assert not rule.excludes(f"{ROOT}/a.txt")
    assert rule.excludes("file:///srv/data/.env") and not rule.excludes("file:///srv/data/x.csv")


def test_percent_encoded_and_windows_uris():
    rule = default_rule({"file:///home/me/My%20App": "/build%20output/\n", "file:///c%3A/Work": "*.sql\n"})
    assert rule.excludes("file:///home/me/My%20App/config/.env")
    assert rule.excludes("file:///home/me/My%20App/build%2520output/x.py")  # the file's text is taken literally
    assert not rule.excludes("file:///home/me/My%20App/build%20output/x.py")
    assert uri_path("file:///home/me/My%20App/priv%C3%A9/x.py") == "/home/me/My App/privé/x.py"
    assert rule.excludes("file:///C:/Work/db/dump.sql") and rule.excludes("file:///c%3A/Work/db/dump.sql")
    assert rule.excludes("file:///c%3A/Users/me/.ssh/id_rsa")
    assert rule.excludes("file:///home/me/%2Eenv")  # an encoded dot is still .env


def test_the_codestralignore_text_may_name_non_ascii_folders():
    rule = Exclusion.build([], {"file:///w": "privé/\n"})
    assert rule.excludes("file:///w/priv%C3%A9/x.py") and not rule.excludes("file:///w/prive/x.py")


def test_the_setting_replaces_the_defaults():
    settings, problems = parse_settings({"context": {"exclude": ["*.secret"]}})
    assert problems == []
    rule = Exclusion.build(settings.context.exclude, {})
    assert rule.excludes("file:///x/a.secret") and not rule.excludes("file:///x/.env")
    assert not Exclusion.build([], {}).excludes("file:///x/.env")


def test_workspace_roots_and_their_ignore_files(tmp_path):
    from lsprotocol import types

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".codestralignore").write_text("*.sql\n")
    (tmp_path / "b").mkdir()
    folders = [types.WorkspaceFolder((tmp_path / name).as_uri(), name) for name in ("a", "b")]
    params = types.InitializeParams(capabilities=types.ClientCapabilities(), workspace_folders=folders,
                                    root_uri="file:///ignored")
    assert workspace_roots(params) == [f.uri for f in folders]
    assert workspace_roots(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                  root_uri="file:///r")) == ["file:///r"]
    assert workspace_roots(types.InitializeParams(capabilities=types.ClientCapabilities())) == []
    found = ignore_files([f.uri for f in folders] + ["untitled:x", str(tmp_path / "a")])
    assert found == {folders[0].uri: "*.sql\n", folders[1].uri: "", str(tmp_path / "a"): "*.sql\n"}


def test_docstring_examples():
    result = doctest.testmod(exclusion)
    assert result.failed == 0 and result.attempted > 0


# -- the pipeline ---------------------------------------------------------------------------------------


class Words:
    def encode(self, text: str) -> list[int]:
        return list(range(len(text.split())))


class Recording(Backend):
    """A backend that records every prompt and answers "x"."""

    tokenizer = Words()
    label = model_name = "recording"

    def __init__(self, remote: bool):
        self.remote = remote
        self.prompts: list[tuple[str, str]] = []

    @classmethod
    def reload_key(cls, settings, model_path):
        return ()

    @classmethod
    def opening_message(cls, settings):
        return ""

    @classmethod
    def planned_label(cls, settings, model_path):
        return "recording"

    @classmethod
    def open(cls, settings, model_path=None, report=None, log=None):
        return cls(True)

    def describe(self) -> str:
        return "recording"

    def stream(self, prefix, suffix="", **options):
        self.prompts.append((prefix, suffix))
        return Answered("x")


class Answered:
    def __init__(self, text: str):
        self.text, self.tokens, self.stats = text, [], {"stop_reason": "eos"}

    def __iter__(self):
        yield self.text


CODE = "def area(width, height):\n    return width * height\n\n\nprint(area(3, \n"
SNIPPET = "def area_of_square(width):\n    return area(width, width)  # AREA_SNIPPET\n"


def completer(remote: bool, **context) -> tuple[Completer, Recording]:
    backend = Recording(remote)
    settings, problems = parse_settings({"context": context, "completion": {"debounceMs": 0}})
    assert problems == []
    return Completer(backend, settings, {ROOT: "private/\n"}), backend


@pytest.mark.parametrize("uri", [f"{ROOT}/.env", f"{ROOT}/private/notes.py", f"{ROOT}/src/secrets.py"])
def test_an_excluded_document_gets_no_remote_completion(uri):
    c, backend = completer(remote=True)
    result = c.complete(Document(uri, "python", CODE, 1), len(CODE) - 1)
    assert result.suggestion is None and result.source == "excluded" and backend.prompts == []
    assert c.fill("def f():\n", "\n", session=uri).text == "" and backend.prompts == []


def test_local_completion_in_an_excluded_document_is_a_setting():
    uri = f"{ROOT}/.env.py"
    c, backend = completer(remote=False)
    assert c.complete(Document(uri, "python", CODE, 1), len(CODE) - 1).source == "model"
    assert len(backend.prompts) == 1
    c, backend = completer(remote=False, localInExcluded=False)
    assert c.complete(Document(uri, "python", CODE, 1), len(CODE) - 1).source == "excluded"
    assert backend.prompts == []


@pytest.mark.parametrize("remote", [True, False])
def test_an_excluded_document_lends_no_snippets(remote):
    c, backend = completer(remote=remote)
    doc = Document(f"{ROOT}/main.py", "python", CODE, 1)
    lender = Document(f"{ROOT}/shapes.py", "python", SNIPPET, 1)
    c.complete(doc, len(CODE) - 1, [lender], use_recent=False)
    assert "AREA_SNIPPET" in backend.prompts[-1][0]  # a document that is not excluded lends
    for uri in (f"{ROOT}/.env", f"{ROOT}/private/shapes.py", "file:///elsewhere/credentials.py"):
        c.complete(doc, len(CODE) - 1, [Document(uri, "python", SNIPPET, 1)], use_recent=False)
        assert "AREA_SNIPPET" not in backend.prompts[-1][0], uri


def test_new_settings_and_workspace_rebuild_the_rule():
    c, backend = completer(remote=True)
    doc = Document(f"{ROOT}/main.py", "python", CODE, 1)
    assert c.complete(doc, len(CODE) - 1).source == "model"
    c.use_settings(parse_settings({"context": {"exclude": ["main.py"]}})[0])
    assert c.complete(doc, len(CODE) - 1).source == "excluded"
    c.use_settings(Settings())
    c.use_workspace({ROOT: "/main.py\n"})
    assert c.complete(doc, len(CODE) - 1).source == "excluded"
