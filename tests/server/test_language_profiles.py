"""Language profiles: consistent among themselves, with their grammars, and with the editor clients' language lists."""

import json
import re
from pathlib import Path

import pytest

from codestral_lsp.context.languages import BY_EXTENSION, PROFILES, UNKNOWN, get_language, profile

ROOT = Path(__file__).resolve().parents[2]
WITH_GRAMMAR = sorted(p.id for p in PROFILES if p.grammar)


def test_ids_and_extensions_are_unique():
    ids = [p.id for p in PROFILES]
    extensions = [e for p in PROFILES for e in p.extensions]
    assert len(ids) == len(set(ids)) and len(extensions) == len(set(extensions)) == len(BY_EXTENSION)
    assert all(e == e.lower() and e.startswith(".") for e in extensions)


def test_unknown_languages_get_the_defaults():
    assert profile("cobol") is UNKNOWN and UNKNOWN.grammar is None and UNKNOWN.line_comment == "#"


@pytest.mark.parametrize("language", WITH_GRAMMAR)
def test_containers_are_node_types_of_the_grammar(language):
    grammar = get_language(language)
    missing = [t for t in profile(language).containers if grammar.id_for_node_kind(t, True) is None and t != "ERROR"]
    assert not missing, f"{language}: {missing} are not named node types of its grammar"


@pytest.mark.parametrize("p", PROFILES, ids=lambda p: p.id)
def test_brackets_pair_up(p):
    assert len(p.brackets) % 2 == 0 and len(p.openers) == len(p.closers) > 0
    assert not set(p.openers) & set(p.closers) and not set(p.brackets) & set(p.quotes)


def test_every_grammar_is_a_dependency():
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = {p.grammar[0].replace("_", "-") for p in PROFILES if p.grammar}
    assert [x for x in sorted(packages) if f'"{x}>=' not in pyproject] == []


def test_definitions_come_with_their_stub_bodies():
    assert all((p.definition is None) == (p.stub_body is None) for p in PROFILES)


def neovim_filetypes() -> list[str]:
    config = (ROOT / "editors/neovim/lua/codestral/config.lua").read_text()
    block = re.search(r"\n  filetypes = \{(.*?)\n  \},", config, re.S)
    assert block, "the default filetypes list was not found in config.lua"
    return re.findall(r'"([^"]+)"', block.group(1))


def neovim_documented_filetypes() -> list[str]:
    doc = (ROOT / "editors/neovim/doc/codestral.txt").read_text()
    listed = re.search(r"filetypes ~\s*\(`string\[\]`, default: ([^)]*)\)", doc)
    assert listed, "the filetypes default was not found in the help file"
    return [x.strip() for x in listed.group(1).split(",")]


def test_neovim_attaches_to_every_language_with_a_grammar():
    assert sorted(neovim_filetypes()) == WITH_GRAMMAR
    assert sorted(neovim_documented_filetypes()) == WITH_GRAMMAR


def test_vscode_selects_documents_by_scheme_or_known_languages():
    """The VS Code client attaches to every file (the server falls back for languages without a
    profile); any language it names, to activate on or to select documents by, must have one."""
    manifest = json.loads((ROOT / "editors/vscode/package.json").read_text())
    named = [e.split(":", 1)[1] for e in manifest.get("activationEvents", []) if e.startswith("onLanguage:")]
    client = (ROOT / "editors/vscode/src/client.ts").read_text()
    selector = re.search(r"documentSelector:\s*\[(.*?)\]", client, re.S)
    assert selector, "documentSelector was not found in client.ts"
    named += re.findall(r"language:\s*'([^']+)'", selector.group(1))
    assert [x for x in named if profile(x) is UNKNOWN] == []
