"""Tests written for mutmut's survivors in codestral_lsp/context/secrets.py (docs/DEVELOPMENT.md, "Mutation testing")."""

from __future__ import annotations

import pytest

from codestral_lsp.context.secrets import (ENTROPY, _disordered, _encoded_text, _keyword_values, _literals, _merge,
                                           _mixed, _names_itself, _occurrences, _random, _widen, find_secrets, redact)

B64, HEX = ENTROPY
KEY = "q7Xv2LmN9pR4sT1wY6zB3cD8fG5hJ0kAq7"  # random-looking, mixed, with a character twice


@pytest.mark.parametrize("value, kinds, every, mixed", [
    ("aaaaAAAAaaaAAAaaaAAA", 2, 4, True),     # 20 characters, 5 changes: 5 * 4 == 20, both limits met exactly
    ("aaaaAAAAaaaAAAaaaAA", 2, 4, False),     # 19 characters: too short
    ("aaaaAAAAaaaaAAAAaaaa", 2, 4, False),    # 4 changes in 20: 16 < 20
    ("aaaa-AAAA-aaa-AAA-aaa-AAA", 2, 4, True),  # punctuation counts for the length, not for the changes
    ("aA" * 10, 2, 4, True),                  # changing kind at every character
    ("aA" * 10, 3, 4, False),                 # only two kinds
    ("aaaaaaaaaaaaaaaaaaaa", 1, 4, False),    # one kind, no change
])
def test_mixed(value, kinds, every, mixed):
    assert _mixed(value, kinds, every) is mixed


@pytest.mark.parametrize("plugin, value, disordered", [
    (HEX, "abcdef01", False),                 # entropy exactly 3.0, the hex limit: not over it
    (HEX, "abcdef0123", True),                # 3.32
    (B64, "abcdefgh" * 2 + "ijklmnopqrstuvwx", False),  # entropy exactly 4.5, the base64 limit
    (B64, "aB1cD2eF3gH4iJ5kL6mN", True),      # 4.32, under the limit, but mixed: three kinds, changing everywhere
    (B64, "aaaaBBBB1111ccccDDDD", False),     # three kinds, but 4 changes in 20 characters
])
def test_disordered(plugin, value, disordered):
    assert _disordered(value, plugin) is disordered


@pytest.mark.parametrize("value, text", [
    ("aGVsbG8", True),            # "hello": 7 characters, one "=" of padding put back
    ("YWJjZA", True),             # "abcd": two "=" put back; 4 characters of text is enough
    ("aGVsbG8gd29y", True),       # "hello wor": no padding needed
    ("YWJj", False),              # "abc": too short
    ("YWIKY2Q", False),           # "ab\ncd": not printable
    ("dXNlcjpwYXNz", False),      # "user:pass": a credential, not a test vector
    ("aGVsbG8g....d29y", False),  # not base64 at all (its non-alphabet characters are not skipped)
    ("/T/rPJJQt5dKm1KLaWNjIaRhtV71W3vq/YCamp6SW3mg", False),  # random bytes
])
def test_encoded_text(value, text):
    assert _encoded_text(value) is text


@pytest.mark.parametrize("line, values", [
    ('password = "abc"', []),                       # shorter than 4
    ('password = "abcd"', ["abcd"] * 3),            # 4 is enough (found by three forms)
    ('password = "a b c d"', ["a b c d"] * 3),      # 4 words: still a password
    ('password = "a b c d e"', []),                 # 5 words: a message
    ('password = "a  b c d"', []),                  # counted by spaces
    ('x = {"api_key": "s3cr3t value"}', ["s3cr3t value"]),  # found by detect-secrets' quoted form only
    ('password = "ab"; secret = "xk29fj3k"', ["xk29fj3k"]),  # a skipped value does not end the search
])
def test_keyword_values(line, values):
    assert list(_keyword_values(line)) == values


@pytest.mark.parametrize("plugin, line, values", [
    (B64, "TOKEN=" + KEY, [KEY]),                   # the bare value of a NAME=value line
    (B64, "TOKEN=" + KEY + " # note", [KEY]),
    (HEX, "TOKEN=" + KEY, []),                      # not made of hex digits
    (HEX, "TOKEN=0123456789abcdef0123", ["0123456789abcdef0123"]),
    (B64, 'k = "' + KEY + '"', [KEY]),              # a quoted literal, from the plugin
    (B64, "x = f(" + KEY + ")", []),
])
def test_literals(plugin, line, values):
    assert list(_literals(plugin, line)) == values


@pytest.mark.parametrize("value, line, random", [
    (KEY, 'k = "' + KEY + '"', True),
    ("aB1cD2eF3gH4iJ5kL6mN", 'k = "aB1cD2eF3gH4iJ5kL6mN"', False),  # no character twice: an alphabet
    (KEY, 'uuid = "' + KEY + '"', True),            # the line says uuid, but the value is not shaped like one
    (KEY, "rev" + KEY, False),                      # a digest word right against the value
    (KEY, KEY + "sha", False),
    (KEY, "my_id = " + KEY, False),                 # an id
])
def test_random(value, line, random):
    assert _random(value, line, B64) is random


@pytest.mark.parametrize("value, line, names", [
    ("a b", "AB: a b", True),          # only letters and digits compared
    ("xx", 'k = "xx"', False),         # the value itself is taken out of the line
    ("Secret", "secret = 'Secret'", True),
    ("Secret", "key = 'Secret'", False),
])
def test_names_itself(value, line, names):
    assert _names_itself(value, line) is names


@pytest.mark.parametrize("line, value, found", [
    ("ab", "a", [0]),               # at index 0
    ("a a a", "a", [0, 2, 4]),      # every one, in order
    ("aaa", "aa", [0]),             # not overlapping
    ("xa", "a", [1]),
    ("x", "a", []),
])
def test_occurrences(line, value, found):
    assert list(_occurrences(line, value)) == found


@pytest.mark.parametrize("line, start, end, span", [
    ("ab", 1, 2, (0, 2)),           # grown back to index 0
    ("ab cd", 0, 1, (0, 2)),        # stops at the space
    ("ab cd", 4, 5, (3, 5)),
    ("KEY=value", 4, 6, (4, 9)),    # "=" ends a token on its left, not on its right
    ("a=b", 2, 3, (2, 3)),
])
def test_widen(line, start, end, span):
    assert _widen(line, start, end) == span


@pytest.mark.parametrize("spans, merged", [
    ([(0, 2), (2, 4)], [(0, 4)]),   # touching spans become one
    ([(3, 4), (0, 2)], [(0, 2), (3, 4)]),
    ([(0, 5), (1, 2)], [(0, 5)]),
])
def test_merge(spans, merged):
    assert _merge(spans) == merged


def test_spans_on_later_lines_are_offset_by_the_earlier_lines_and_their_newlines():
    text = 'x\naws_id = "AKIAIOSFODNN7EXAMPLE"\n'
    assert find_secrets(text) == [(12, 32)]
    assert find_secrets("a\n\n" + text) == [(15, 35)]
    assert redact(text) == ('x\naws_id = "<redacted>"\n', 1)
