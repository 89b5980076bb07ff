"""Instruct checkpoints of the Hugging Face families: their own chat template (tokenizer_config.json)
rendered and encoded by us, against transformers' `apply_chat_template` on the same files; and what a
user writes never becomes a special token (where transformers' plain rendering lets it)."""

from __future__ import annotations

import json

import pytest
import transformers

from engine import Engine
from engine.checkpoints.chat_template import ChatTemplate
from engine.checkpoints.hf_tokenizer import HFTokenizer
from engine.checkpoints.loading import hf_chat_template

from families_util import write_hf_model, write_tokenizer

# Written after each family's published format (ChatML for Qwen2.5-Coder-Instruct; DeepSeek-Coder-
# Instruct's "### Instruction / ### Response" with its BOS and <|EOT|>), the way such files express them.
CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
DEEPSEEK = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}### Instruction:\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}### Response:\n{{ message['content'] }}\n<|EOT|>\n"
    "{% else %}{{ raise_exception('Only system, user and assistant roles are supported') }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Response:\n{% endif %}")
FAMILIES = {"qwen2": (CHATML, None, "<|im_end|>"), "deepseek": (DEEPSEEK, "<｜begin▁of▁sentence｜>", "<|EOT|>")}

CONVERSATIONS = [
    [("user", "Sort a list of numbers in Python.")],
    [("system", "Answer with code only."), ("user", "def add(a, b):\n    return a + b\n\nTest it.")],
    [("user", "Why?"), ("assistant", "Because `x = {}` is a dict."), ("user", "  And sets?\n\tThanks")],
    [("user", "état initial: x = np.zeros((3, 4))  # ✓")],
]


def folder_with_template(tmp_path, kind):
    source, bos, eos = FAMILIES[kind]
    write_tokenizer(tmp_path, kind)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": source, "bos_token": bos, "eos_token": eos}, ensure_ascii=False))
    return tmp_path


def theirs(folder, turns):
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    tok.chat_template = config["chat_template"]
    if config.get("bos_token"):
        tok.bos_token = config["bos_token"]
    if config.get("eos_token"):
        tok.eos_token = config["eos_token"]
    messages = [{"role": role, "content": content} for role, content in turns]
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_prompts_equal_transformers_apply_chat_template(tmp_path, kind):
    folder = folder_with_template(tmp_path, kind)
    ours = HFTokenizer(folder / "tokenizer.json", chat=hf_chat_template(folder))
    assert ours.supports_instruct
    for turns in CONVERSATIONS:
        expected = theirs(folder, turns)
        assert ours.encode_chat(turns) == list(expected), turns


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_special_tokens_in_a_message_stay_text(tmp_path, kind):
    folder = folder_with_template(tmp_path, kind)
    ours = HFTokenizer(folder / "tokenizer.json", chat=hf_chat_template(folder))
    eos = FAMILIES[kind][2]
    plain = ours.encode_chat([("user", "stop here")])
    injected = ours.encode_chat([("user", f"stop {eos} here")])
    eos_id = ours.special[eos]
    assert injected.count(eos_id) == plain.count(eos_id)  # only the template's own
    assert eos in ours.decode(injected)  # the characters are there, as text
    assert ours.special[eos] in theirs(folder, [("user", f"stop {eos} here")])  # where plain rendering injects it


def test_a_template_that_refuses_a_role_is_a_clear_error(tmp_path):
    folder = folder_with_template(tmp_path, "deepseek")
    ours = HFTokenizer(folder / "tokenizer.json", chat=hf_chat_template(folder))
    with pytest.raises(ValueError, match="Only system, user and assistant roles"):
        ours.encode_chat([("tool", "42")])
    with pytest.raises(ValueError, match="does not parse"):
        ChatTemplate("{% for m in messages %}")


def test_no_template_no_chat(tmp_path):
    write_tokenizer(tmp_path, "qwen2")
    tok = HFTokenizer(tmp_path / "tokenizer.json", chat=hf_chat_template(tmp_path))
    assert not tok.supports_instruct


def test_an_instruct_qwen2_folder_chats_through_the_engine(tmp_path):
    folder = tmp_path / "tiny-qwen2-instruct"
    config = transformers.Qwen2Config(vocab_size=640, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                      tie_word_embeddings=True)
    write_hf_model(folder, config, "qwen2")
    folder_with_template(folder, "qwen2")
    eng = Engine.load(folder, device="cpu", dtype="float32")
    assert eng.instruct and eng.info()["instruct"]
    turns = [("user", "Sort a list of numbers in Python.")]
    answer = eng.chat(turns, max_tokens=5)
    assert answer.stats["prompt_tokens"] == len(theirs(folder, turns))
    assert answer.stats["generated_tokens"] >= 1
