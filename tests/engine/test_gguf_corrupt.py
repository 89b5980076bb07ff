"""Truncated, corrupt and lying GGUF files: one CheckpointError naming the file and what is wrong, never
a crash. Each file is a good one edited in place through `gguf.GGUFReader` in "r+" mode (its fields
are views on the file) or cut short."""

from __future__ import annotations

import shutil

import pytest

from engine import CheckpointError, Engine
from engine.checkpoints.families import gguf_family
from engine.checkpoints.gguf import convert
from engine.testing import make_checkpoint

from gguf_util import quantize

gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf-corrupt")
    return convert(make_checkpoint(folder / "ckpt", dim=256, hidden_dim=256, n_layers=1), folder / "good.gguf")


def edited(good, tmp_path, edit):
    path = tmp_path / "edited.gguf"
    shutil.copy(good, path)
    reader = gguf.GGUFReader(str(path), "r+")
    edit(reader)
    reader.data.flush()
    del reader
    return path


def set_field(key, value):
    def edit(reader):
        reader.fields[key].parts[-1][0] = value
    return edit


def load_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        Engine.load(path, device="cpu")
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_the_good_file_loads(good):
    Engine.load(good, device="cpu")


@pytest.mark.parametrize("keep", [0.5, 0.999, 100 / 30_000_000])
def test_truncated_file(good, tmp_path, keep):
    path = tmp_path / "short.gguf"
    data = good.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert any(s in load_error(path) for s in ("truncated", "past the end"))


def test_tensor_offset_past_the_end(good, tmp_path):
    def edit(reader):
        reader.tensors[-1].field.parts[-1][0] = 1 << 40
    assert any(s in load_error(edited(good, tmp_path, edit)) for s in ("truncated", "past the end"))


def test_shape_disagrees_with_the_hyper_parameters(good, tmp_path):
    message = load_error(edited(good, tmp_path, set_field("llama.feed_forward_length", 512)))
    assert "blk.0.ffn_" in message and "hyper-parameters" in message


def test_heads_that_do_not_divide(good, tmp_path):
    assert "n_kv_heads" in load_error(edited(good, tmp_path, set_field("llama.attention.head_count_kv", 3)))


def test_vocabulary_smaller_than_the_ids_it_uses(good, tmp_path):
    message = load_error(edited(good, tmp_path, set_field("tokenizer.ggml.eos_token_id", 40_000)))
    assert "eos_token_id = 40000" in message and "32768 tokens" in message


def test_type_we_do_not_decode(good, tmp_path):
    message = load_error(quantize(good, tmp_path / "q2_k.gguf", "q2_k"))
    assert "has type Q2_K" in message or "has type Q3_K" in message
    assert "supported: Q8_0, Q4_0, Q4_K, Q5_K, Q6_K" in message


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "text.gguf"
    path.write_text("hello")
    assert "not a readable GGUF file" in load_error(path)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="'bert' is not supported"):
        gguf_family("bert")
