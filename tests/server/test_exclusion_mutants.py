"""Tests written for mutmut's survivors in codestral_lsp/context/exclusion.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

import pytest

from codestral_lsp.context.exclusion import Exclusion, uri_path


@pytest.mark.parametrize("uri, path", [
    ("file:///C%3A/My%20Project/.env", "/c:/My Project/.env"),
    ("C:\\a\\b.py", "/c:/a/b.py"),        # a one-letter scheme is a drive
    ("c:/x", "/c:/x"), ("/C:/x", "/c:/x"), ("C:", "/c:"), ("file:///a:", "/a:"),
    ("file:///home/me/x", "/home/me/x"), ("file://host/share/x", "/share/x"),
    ("x", "x"), ("/ab", "/ab"), ("c/x:y", "c/x:y"), ("untitled:Untitled-1", "Untitled-1"),
    ("s3://b/a%20b", "/a b"),             # a two-letter scheme is a scheme
    ("file:///C:", "/c:"), ("X:/a", "/x:/a"),
])
def test_uri_paths(uri, path):
    assert uri_path(uri) == path


def test_nested_roots_use_their_own_file_and_paths_outside_use_the_setting():
    rule = Exclusion.build(["*.pem"], {"file:///w/": "a.txt\n", "file:///w/sub": "b.txt\n"})
    assert rule.excludes("file:///w/a.txt") and not rule.excludes("file:///w/b.txt")
    assert rule.excludes("file:///w/sub/b.txt") and not rule.excludes("file:///w/sub/a.txt")
    assert rule.excludes("file:///w/sub/k.pem") and rule.excludes("file:///other/x.pem")
    assert not rule.excludes("file:///wx/a.txt") and not rule.excludes("file:///other/b.txt")
    assert [root for root, _ in rule.roots] == ["/w/sub", "/w"]


def test_patterns_outside_every_root_are_matched_from_the_file_systems_root():
    rule = Exclusion.build(["/top.txt"])
    assert rule.excludes("file:///top.txt") and not rule.excludes("file:///d/top.txt")
    assert rule.roots == ()
    rule = Exclusion.build(iter(["x"]), {"file:///w": ""})   # any iterable: used for the roots and the rest
    assert rule.excludes("file:///w/x") and rule.excludes("file:///v/x")


def test_roots_and_paths_keep_their_other_characters():
    assert Exclusion.build([], {"file:///srcX": "a.txt\n"}).excludes("file:///srcX/a.txt")
    assert Exclusion.build(["Xa"]).excludes("file:///Xa")
    assert Exclusion.build(["private/"]).excludes("file:///private/")   # a folder's uri matches a folder pattern
