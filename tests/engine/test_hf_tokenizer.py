"""tokenizer.json tokenizers (engine/checkpoints/hf_tokenizer.py) against transformers' PreTrainedTokenizerFast,
and the FIM templates of engine/checkpoints/families.py built by hand."""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")

from families_util import SPECIALS, write_tokenizer  # noqa: E402

from engine.checkpoints.hf_tokenizer import HFTokenizer  # noqa: E402
from engine.checkpoints.tokenizer import TokenizerError  # noqa: E402

LINES = [
    "def fibonacci(n: int) -> int:",
    "    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "\tif (ptr == NULL) { return -ENOMEM; }",
    "const re = /<\\|fim_prefix\\|>/g;  // état, 日本語, emoji 🎉",
    "s = '<|fim_prefix|>' + '<|endoftext|>' + '<｜fim▁begin｜>'",
    "print(\"▁<PRE> x ▁<SUF> y ▁<MID>\")",
    "    \n\n  trailing spaces   ",
]


@pytest.fixture(scope="module", params=sorted(SPECIALS))
def pair(request, tmp_path_factory):
    path = write_tokenizer(tmp_path_factory.mktemp(request.param), request.param)
    reference = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path), split_special_tokens=True)
    return request.param, HFTokenizer(path), reference


@pytest.mark.parametrize("line", LINES)
def test_encode_equals_transformers(pair, line):
    _, tok, reference = pair
    assert tok.encode(line) == reference.encode(line, add_special_tokens=False)
    assert tok.encode(line, bos=True) == reference.encode(line)


def test_special_tokens_are_never_made_from_text(pair):
    kind, tok, _ = pair
    for special in SPECIALS[kind]:
        ids = tok.encode(f"x = '{special}'")
        assert tok.special.get(special) not in ids, special
        text = f"x = '{special}'"  # SentencePiece-style: "▁" in the text reads as the space it stands for
        assert tok.decode(ids) == (" " + text.replace("▁", " ") if tok.dummy_space else text)


def test_decode_gives_back_the_text(pair):
    _, tok, _ = pair
    text = "\n".join(LINES)
    if tok.dummy_space:  # SentencePiece-style: "▁" in the text reads as the space it stands for
        text = text.replace("▁", " ")
    assert tok.decode(tok.encode_infill(text)) == text
    decoder, pieces = tok.stream_decoder(), ""
    for i in tok.encode_infill(text):
        pieces += decoder.push(i)
    assert pieces + decoder.flush() == text


def test_fim_prompt_is_the_published_template(pair):
    """Qwen2.5-Coder: <|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>; StarCoder2: <fim_prefix>P<fim_suffix>S
    <fim_middle>; DeepSeek-Coder: BOS <｜fim▁begin｜>P
    <｜fim▁hole｜>S<｜fim▁end｜>; CodeLlama: BOS ▁<PRE> P (with SentencePiece's dummy space) ▁<SUF>S ▁<MID>."""
    kind, tok, reference = pair
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    v = reference.get_vocab()
    plain = lambda text: reference.encode(text, add_special_tokens=False)
    if kind == "qwen2":
        expected = [v["<|fim_prefix|>"], *plain(prefix), v["<|fim_suffix|>"], *plain(suffix), v["<|fim_middle|>"]]
    elif kind == "starcoder":
        expected = [v["<fim_prefix>"], *plain(prefix), v["<fim_suffix>"], *plain(suffix), v["<fim_middle>"]]
    elif kind == "deepseek":
        expected = [v["<｜begin▁of▁sentence｜>"], v["<｜fim▁begin｜>"], *plain(prefix), v["<｜fim▁hole｜>"],
                    *plain(suffix), v["<｜fim▁end｜>"]]
    else:  # the suffix without the dummy space: "▁" before "\n" would be a space the user never typed
        assert plain(suffix)[0] == v["▁"] and tok.decode(tok.encode_infill(suffix)) == suffix
        expected = [v["<s>"], v["▁<PRE>"], *plain(prefix), v["▁<SUF>"], *plain(suffix)[1:], v["▁<MID>"]]
    assert tok.encode_fim(prefix, suffix) == expected
    assert tok.fim_ids(tok.encode(prefix), tok.encode_infill(suffix)) == expected


def test_end_of_middle_tokens_stop(pair):
    kind, tok, reference = pair
    v = reference.get_vocab()
    stops = {"qwen2": ["<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>"],
             "deepseek": ["<｜end▁of▁sentence｜>", "<|EOT|>"], "starcoder": ["<|endoftext|>", "<file_sep>"], "codellama": ["▁<EOT>", "</s>"]}[kind]
    assert {v[s] for s in stops} <= tok.stop_ids
    assert not tok.stop_ids & set(tok.encode("\n".join(LINES)))


def test_a_config_eos_id_stops_too(tmp_path):
    tok = HFTokenizer(write_tokenizer(tmp_path, "qwen2"), eos_ids=[7])
    assert 7 in tok.stop_ids


def test_template_by_name_or_none(tmp_path):
    path = write_tokenizer(tmp_path, "qwen2")
    assert HFTokenizer(path, fim="qwen2.5-coder").template.name == "qwen2.5-coder"
    with pytest.raises(TokenizerError, match="the FIM template deepseek-coder needs"):
        HFTokenizer(path, fim="deepseek-coder")
    from engine.checkpoints.families import fim_template

    assert fim_template({"<|endoftext|>"}) is None
