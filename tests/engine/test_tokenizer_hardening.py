"""Text that JSON allows and UTF-8 does not: lone surrogates reach the tokenizer as U+FFFD."""

from __future__ import annotations

import pytest

pytest.importorskip("mistral_common")


@pytest.mark.parametrize("text", ["\ud800", "x = '\udfff'\ny = 1", "a\ud83d", "é\ud800\n\n\udc00z"])
def test_lone_surrogates_encode_as_replacement_characters(tokenizer, text):
    replaced = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    assert tokenizer.encode(text) == tokenizer.encode(replaced)
    assert tokenizer.encode_fim(text, text) == tokenizer.encode_fim(replaced, replaced)
