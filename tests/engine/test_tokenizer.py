"""The tokenizer against mistral-common (the FIM prompt contract) and its decoding invariants."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.checkpoints.tokenizer import StreamDecoder, Tokenizer, TokenizerError

pytest.importorskip("mistral_common")
from mistral_common.protocol.fim.request import FIMRequest  # noqa: E402

ENGINE = settings.get_profile("engine")  # registered in conftest.py

REPLACEMENT = "\ufffd"

# Fixed cases: empty sides, whitespace only, tabs, CRLF, non-ASCII, emoji, text ending mid-word.
FIXED_PAIRS = [
    ("", ""), ("", "x"), ("x", ""), (" ", " "), ("  ", "   "), ("\t", "\t\t"), ("\n", "\n"),
    ("\r\n", "\r\n"), ("def f(a, b):\r\n    return a", " + b\r\n"), ("def add(a, b):\n    return ", "\n"),
    ("class Foo:\n\tdef bar(self):\n\t\tpass", "\n\n"), ("print('héllo wörld')", "  # ça"),
    ("# 日本語のコメント\nx = ", "\ny = 2"), ("emoji = '😀", "🦀'\n"), ("s = '👩‍💻'", ""),
    ("    impo", "rt os\n"), ("retu", "rn x"), ("for i in ran", "ge(10):"), ("x" * 200, "y" * 200),
    ("\u00a0nbsp", "\u200bzero width"), ("ﬁ ligature", "Ａｂｃ fullwidth"), ("tab\tin\tthe\tmiddle", "\t"),
    ("end with space ", " start with space"), ("\n\n\n", ""), ("", "\n    "), ("Ω≈ç√∫", "∑∂ƒ©˙∆"),
    ("a\x00b", "c\x01d"), ("Ελληνικά", "Русский"), ("\U0001f600\U0001f601", "\U00010348 gothic"),
]

TEXT = st.text(alphabet=st.sampled_from(list("abcxyz_ (){}[]:.,'\"=+-#\t\n\r0123456789"))
               | st.characters(codec="utf-8"), max_size=40)


def oracle(mt, prefix: str, suffix: str) -> list[int]:
    return mt.encode_fim(FIMRequest(prompt=prefix, suffix=suffix)).tokens


def test_fim_special_ids(tokenizer):
    assert (tokenizer.bos_id, tokenizer.eos_id) == (1, 2)
    assert (tokenizer.prefix_id, tokenizer.middle_id, tokenizer.suffix_id) == (11, 12, 13)
    assert tokenizer.vocab_size == 32768 and tokenizer.supports_fim


@pytest.mark.parametrize("prefix,suffix", FIXED_PAIRS)
def test_encode_fim_matches_mistral_common_fixed(tokenizer, mistral_common_tokenizer, prefix, suffix):
    ours = tokenizer.encode_fim(prefix, suffix)
    assert ours == oracle(mistral_common_tokenizer, prefix, suffix)
    assert ours[:2] == [1, 13] and 12 not in ours  # [BOS, [SUFFIX], ...], never [MIDDLE]
    assert ours.count(11) == 1


@settings(ENGINE, max_examples=60)
@given(prefix=TEXT, suffix=TEXT)
def test_encode_fim_matches_mistral_common_generated(tokenizer, mistral_common_tokenizer, prefix, suffix):
    assert tokenizer.encode_fim(prefix, suffix) == oracle(mistral_common_tokenizer, prefix, suffix)


def test_fim_layout_is_suffix_first(tokenizer):
    """Typing at the cursor only changes the end of the token sequence."""
    a = tokenizer.encode_fim("def f(x):\n    return x", "\n\nprint(f(1))\n")
    b = tokenizer.encode_fim("def f(x):\n    return x +", "\n\nprint(f(1))\n")
    suffix = tokenizer.encode_infill("\n\nprint(f(1))\n")
    assert a[: len(suffix) + 3] == b[: len(suffix) + 3] == [1, 13, *suffix, 11]


# -- decoding -----------------------------------------------------------------------------------------

DECODE_CASES = ["", " ", "  leading spaces", "\tindented\n", "a\r\nb", "héllo wörld", "😀🦀 emoji", "日本語のテキスト",
                "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 (byte fallback)", "\x00\x01 control bytes", "mixed 中文 and 😀\n\tcode()", "ÿ",
                "def f():\n    return 'ok'\n"]


def stream(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    dec = tokenizer.stream_decoder()
    assert isinstance(dec, StreamDecoder)
    return [dec.push(i) for i in ids] + [dec.flush()]


@pytest.mark.parametrize("text", DECODE_CASES)
def test_decode_round_trip_and_stream(tokenizer, text):
    ids = tokenizer.encode_infill(text)
    assert tokenizer.decode(ids) == text
    pieces = stream(tokenizer, ids)
    assert "".join(pieces) == text
    assert all(REPLACEMENT not in p for p in pieces)


def test_decode_cases_exercise_byte_fallback(tokenizer):
    ids = [i for t in DECODE_CASES for i in tokenizer.encode_infill(t)]
    assert sum(tokenizer.sp.is_byte(i) for i in ids) >= 10


@settings(ENGINE, max_examples=60)
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\u2581"),
                   max_size=30))
@example(text="é😀中")
def test_decode_round_trip_generated(tokenizer, text):
    # Not U+2581 itself: SentencePiece writes spaces as that character, so a literal one reads back as
    # a space (in mistral-common too); test_literal_meta_space_reads_back_as_a_space pins that down.
    ids = tokenizer.encode_infill(text)
    assert tokenizer.decode(ids) == text
    pieces = stream(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids)
    assert all(REPLACEMENT not in p for p in pieces) or REPLACEMENT in text


def test_literal_meta_space_reads_back_as_a_space(tokenizer):
    assert tokenizer.decode(tokenizer.encode_infill("a\u2581b")) == "a b"


def test_decode_keeps_leading_space(tokenizer):
    """SentencePiece drops the first piece's space; a completion must not lose its indentation."""
    ids = tokenizer.encode_infill("    return x")
    assert tokenizer.sp.decode(ids) == "   return x"  # what plain SentencePiece decoding would give
    assert tokenizer.decode(ids) == "    return x"


def test_stream_decoder_holds_partial_characters(tokenizer):
    """A 4-byte character split over byte tokens appears only once, whole, when its last byte arrives."""
    ids = tokenizer.encode_infill("𝔘")  # not in the vocabulary: four byte-fallback tokens
    assert len(ids) == 4 and all(tokenizer.sp.is_byte(i) for i in ids)
    assert stream(tokenizer, ids) == ["", "", "", "𝔘", ""]
    dec = tokenizer.stream_decoder()
    dec.push(ids[0])
    assert dec.flush() == REPLACEMENT  # an unfinished character at the very end is replaced, once


@settings(ENGINE, max_examples=40)
@given(ids=st.lists(st.integers(0, 32767), max_size=20))
def test_stream_concatenation_equals_decode_for_any_ids(tokenizer, ids):
    assert "".join(stream(tokenizer, ids)) == tokenizer.decode(ids)


def test_special_tokens_decode_to_nothing(tokenizer):
    assert tokenizer.decode([1, 2, 11, 12, 13]) == ""


# -- other tokenizers -----------------------------------------------------------------------------------

def test_v1_tokenizer_has_no_fim(v3_path):
    v1 = Path(v3_path).parent / "tokenizer.model.v1"
    tok = Tokenizer(v1)
    assert tok.vocab_size == 32000
    assert not tok.supports_fim and tok.prefix_id is None and tok.suffix_id is None
    with pytest.raises(TokenizerError) as err:
        tok.encode_fim("def f(", ")")
    message = str(err.value)
    assert "tokenizer.model.v1" in message and "[PREFIX]" in message and "v3" in message
    assert tok.decode(tok.encode_infill("still decodes")) == "still decodes"


def test_not_a_tokenizer_file(tmp_path):
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"this is not a sentencepiece model")
    with pytest.raises(TokenizerError, match="tokenizer.model"):
        Tokenizer(bad)
    with pytest.raises(TokenizerError):
        Tokenizer(tmp_path / "missing.model")


def test_copied_tokenizer_is_equivalent(tmp_path, v3_path, tokenizer):
    copy = tmp_path / "tokenizer.model.v3"
    shutil.copy(v3_path, copy)
    assert Tokenizer(copy).encode_fim("a", "b") == tokenizer.encode_fim("a", "b")



CODE_LINES = st.lists(st.text(alphabet=st.sampled_from(list("abcxyz_ (){}:.,'\"=+-#\t\r0123456789é😀")), max_size=24),
                      max_size=8).map("\n".join)


def whole(tokenizer, text: str, infill: bool) -> list[int]:
    """SentencePiece on the whole text at once: the oracle for line-by-line encoding."""
    return tokenizer.sp.encode("\u263a" + text)[2:] if infill else tokenizer.sp.encode(text)


@settings(ENGINE, max_examples=80)
@given(texts=st.lists(CODE_LINES, min_size=1, max_size=4))
@example(texts=["\nx = 1\n\n    y\n", "x = 1\n\n    y\n", "", "\n", "  \n\n", "\r\n x\r\n"])
def test_line_by_line_encoding_equals_whole_text(tokenizer, texts):
    assert tokenizer.splits_lines  # no v3 piece spans a line break
    for text in texts + texts:  # the second round reads remembered lines
        assert tokenizer.encode(text) == whole(tokenizer, text, False), repr(text)
        assert tokenizer.encode_infill(text) == whole(tokenizer, text, True), repr(text)


def test_line_by_line_encoding_of_a_source_file(tokenizer):
    text = Path(__file__).read_text(encoding="utf-8")
    for end in range(0, len(text), 997):
        assert tokenizer.encode(text[:end]) == whole(tokenizer, text[:end], False)
        assert tokenizer.encode_infill(text[end:]) == whole(tokenizer, text[end:], True)
