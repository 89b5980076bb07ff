"""Tests written for mutmut's survivors in codestral_lsp/context/languages.py (docs/DEVELOPMENT.md,
"Mutation testing"). The profiles are built at import, before mutmut picks a mutant, so the helpers
that build them are called here directly."""

from __future__ import annotations

import pytest

from codestral_lsp.context.languages import (Profile, _comments_only, _containers, _imports, _stub,
                                             language_from_uri, language_id_for_path)


def test_a_profile_splits_its_brackets_into_openers_and_closers():
    angle = Profile("x", brackets="()<>{}")
    assert (angle.openers, angle.closers) == ("(<{", ")>}")
    assert (Profile("y").openers, Profile("y").closers) == ("([{", ")]}")


def test_containers_always_take_error_nodes():
    assert _containers("module  block") == frozenset({"module", "block", "ERROR"})
    assert _containers("") == frozenset({"ERROR"})


def test_imports_start_a_line():
    pattern = _imports(r"import\s")
    assert pattern.search("x = 1\nimport os\n").start() == 6
    assert pattern.search("x = 1  # import os\n") is None


def test_stubs_are_the_statement_or_a_todo_over_several_lines():
    stub = _stub(r"pass")
    assert stub.fullmatch("pass") and stub.fullmatch("# TODO: write\n  it") and stub.fullmatch("-- TODO")
    assert stub.fullmatch("/* TODO */") and stub.fullmatch("// TODO")
    assert not stub.fullmatch("return 1") and not stub.fullmatch("# TODOS")


def test_comment_only_profiles_keep_their_ids():
    profiles = _comments_only("--", "sql", "haskell")
    assert [(p.id, p.line_comment, p.grammar) for p in profiles] == [("sql", "--", None), ("haskell", "--", None)]


@pytest.mark.parametrize("path, language", [
    ("file:///src/a.p%79", "python"),         # a URI: its path is unquoted
    ("dir/a.p%79", None),                     # a plain path: taken as it is
    ("C:\\src\\a.p%79", None),                # a Windows drive is no URI scheme
    ("ab://host/a.p%79", "python"),           # a two-letter scheme is one
    ("C:\\a\\.py", None),                     # backslashes separate: ".py" is a file name here
    ("C:\\src\\Main.JAVA", "java"),
    ("README", None),
])
def test_language_ids_from_paths_and_uris(path, language):
    assert language_id_for_path(path) == language


def test_a_document_without_a_language_is_plaintext():
    assert language_from_uri("file:///notes.unknown") == "plaintext"
    assert language_from_uri("file:///a.rs") == "rust"
