"""Checkpoint folders: what loads, and one clear CheckpointError (naming the file or folder) for what does not."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import CheckpointError, Engine
from engine.checkpoints.loading import find_checkpoint, load_model, permute_rows, unpermute_rows
from engine.testing import make_checkpoint, random_model, tiny_args, write_hf_checkpoint

TINY = dict(dim=32, n_layers=1, n_heads=4, n_kv_heads=2, hidden_dim=64)


@pytest.fixture(scope="module")
def mistral_dir(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "mistral", "mistral", **TINY)


@pytest.fixture(scope="module")
def hf_sharded_dir(tmp_path_factory) -> Path:
    model = random_model(tiny_args(**TINY), seed=1)
    return write_hf_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "hf", shards=3)


def copy_of(src: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def load_error(folder: Path) -> str:
    """Load through the public facade; exactly one CheckpointError, whose message is returned."""
    with pytest.raises(CheckpointError) as err:
        Engine.load(folder, device="cpu", dtype="float32")
    assert type(err.value) is CheckpointError
    return str(err.value)


# -- what loads -----------------------------------------------------------------------------------------

def test_both_formats_load_and_agree(mistral_dir, hf_sharded_dir, tmp_path):
    m = find_checkpoint(mistral_dir)
    assert m.format == "mistral" and m.weight_files == [mistral_dir / "consolidated.safetensors"]
    assert m.tokenizer_file.name == "tokenizer.model.v3"
    h = find_checkpoint(hf_sharded_dir)
    assert h.format == "hf" and len(h.weight_files) == 3 and h.tokenizer_file.name == "tokenizer.model"
    assert m.args == h.args == tiny_args(**TINY)
    # The same random weights written both ways load to the same parameters.
    original = random_model(tiny_args(**TINY), seed=1)
    hf_model = load_model(h, torch.float32, "cpu")
    for name, p in original.state_dict().items():
        torch.testing.assert_close(hf_model.state_dict()[name], p, atol=0, rtol=0, msg=name)


def test_dtype_conversion_on_load(mistral_dir):
    model = load_model(find_checkpoint(mistral_dir), torch.bfloat16, "cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.is_meta for p in model.parameters())


def test_tied_embeddings_when_lm_head_is_absent(hf_sharded_dir, tmp_path):
    folder = copy_of(hf_sharded_dir, tmp_path)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"].pop("lm_head.weight")
    tensors = load_file(str(shard))
    del tensors["lm_head.weight"]
    save_file(tensors, str(shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    model = load_model(find_checkpoint(folder), torch.float32, "cpu")
    assert torch.equal(model.output.weight, model.tok_embeddings.weight)


def test_permutation_helpers_are_inverse():
    w = torch.arange(2 * 8 * 3, dtype=torch.float32).view(16, 3)  # 2 heads of head_dim 8
    assert torch.equal(unpermute_rows(permute_rows(w, 2), 2), w)
    # Documented example, per head with D = 4: HF rows [r0, r2, r1, r3] -> Mistral rows [r0, r1, r2, r3].
    hf = torch.tensor([[0.0], [2.0], [1.0], [3.0]])
    assert unpermute_rows(hf, 1).flatten().tolist() == [0.0, 1.0, 2.0, 3.0]


def test_pickle_beside_safetensors_is_ignored(mistral_dir, tmp_path):
    folder = copy_of(mistral_dir, tmp_path)
    (folder / "consolidated.pth").write_bytes(b"not even a pickle")
    assert find_checkpoint(folder).weight_files == [folder / "consolidated.safetensors"]


# -- what does not ----------------------------------------------------------------------------------------

def test_missing_folder(tmp_path):
    folder = tmp_path / "no-such-model"
    message = load_error(folder)
    assert str(folder) in message and "does not exist" in message


def test_folder_without_any_config(tmp_path):
    message = load_error(tmp_path)
    assert str(tmp_path) in message and "params.json" in message and "config.json" in message


@pytest.mark.parametrize("fmt", ["mistral", "hf"])
def test_folder_without_weights(mistral_dir, hf_sharded_dir, tmp_path, fmt):
    folder = copy_of(mistral_dir if fmt == "mistral" else hf_sharded_dir, tmp_path)
    for f in folder.glob("*.safetensors*"):
        f.unlink()
    message = load_error(folder)
    assert str(folder) in message and "no .safetensors weights" in message


@pytest.mark.parametrize("name", ["consolidated.pth", "pytorch_model.bin"])
def test_pickled_only_is_refused(mistral_dir, tmp_path, name):
    folder = copy_of(mistral_dir, tmp_path)
    (folder / "consolidated.safetensors").unlink()
    # A real pickle that would run code if it were ever unpickled: the loader must never open it.
    torch.save({"tok_embeddings.weight": torch.zeros(2, 2)}, folder / name)
    message = load_error(folder)
    assert str(folder) in message and name in message
    assert "pickled" in message and "safetensors" in message


def test_missing_tokenizer(mistral_dir, tmp_path):
    folder = copy_of(mistral_dir, tmp_path)
    (folder / "tokenizer.model.v3").unlink()
    message = load_error(folder)
    assert str(folder) in message and "tokenizer" in message


@pytest.mark.parametrize("key,value", [("hidden_dim", 96), ("dim", 48), ("vocab_size", 32000), ("n_kv_heads", 4)])
def test_params_do_not_match_tensors(mistral_dir, tmp_path, key, value):
    folder = copy_of(mistral_dir, tmp_path)
    params = json.loads((folder / "params.json").read_text())
    params[key] = value
    (folder / "params.json").write_text(json.dumps(params))
    message = load_error(folder)
    assert str(folder) in message and "does not match" in message
    # It names a real tensor of the file and its actual shape.
    found = re.search(r"tensor '([^']+)' has shape \(([\d, ]+)\) but the config implies \(([\d, ]+)\)", message)
    assert found, message
    name, actual, implied = found.groups()
    tensors = load_file(str(folder / "consolidated.safetensors"))
    assert tuple(int(x) for x in actual.split(",")) == tuple(tensors[name].shape)
    assert actual != implied


def test_more_layers_in_params_than_in_weights(mistral_dir, tmp_path):
    folder = copy_of(mistral_dir, tmp_path)
    params = json.loads((folder / "params.json").read_text())
    params["n_layers"] = 2
    (folder / "params.json").write_text(json.dumps(params))
    message = load_error(folder)
    assert str(folder) in message and "missing" in message and "layers.1.attention.wq.weight" in message


def test_unexpected_tensor(mistral_dir, tmp_path):
    folder = copy_of(mistral_dir, tmp_path)
    tensors = load_file(str(folder / "consolidated.safetensors"))
    tensors["layers.7.attention.wq.weight"] = torch.zeros(32, 32)
    save_file(tensors, str(folder / "consolidated.safetensors"))
    message = load_error(folder)
    assert str(folder) in message and "'layers.7.attention.wq.weight'" in message


@pytest.mark.parametrize("keep", [0, 4, 7, 100, "half", "minus1"])
def test_truncated_safetensors(mistral_dir, tmp_path, keep):
    folder = copy_of(mistral_dir, tmp_path)
    path = folder / "consolidated.safetensors"
    data = path.read_bytes()
    n = {"half": len(data) // 2, "minus1": len(data) - 1}.get(keep, keep)
    path.write_bytes(data[:n])
    message = load_error(folder)
    assert str(path) in message and "truncated" in message


def test_truncated_shard(hf_sharded_dir, tmp_path):
    folder = copy_of(hf_sharded_dir, tmp_path)
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-10])
    message = load_error(folder)
    assert str(shard) in message and "truncated" in message


def test_index_lists_a_missing_shard(hf_sharded_dir, tmp_path):
    folder = copy_of(hf_sharded_dir, tmp_path)
    gone = sorted(folder.glob("model-*.safetensors"))[2]
    gone.unlink()
    message = load_error(folder)
    assert str(folder / "model.safetensors.index.json") in message and gone.name in message
    assert "missing" in message


@pytest.mark.parametrize("text", ["{", "[]", '{"metadata": {}}', '{"weight_map": ["a"]}'])
def test_malformed_index(hf_sharded_dir, tmp_path, text):
    folder = copy_of(hf_sharded_dir, tmp_path)
    (folder / "model.safetensors.index.json").write_text(text)
    message = load_error(folder)
    assert str(folder / "model.safetensors.index.json") in message


BASE_PARAMS = {"dim": 32, "n_layers": 1, "n_heads": 4, "n_kv_heads": 2, "head_dim": 8, "hidden_dim": 64,
               "vocab_size": 32768}


@pytest.mark.parametrize("text,words", [
    ("{", "unreadable JSON"),
    ("", "unreadable JSON"),
    ("[]", "JSON object"),
    ("null", "JSON object"),
    (json.dumps({k: v for k, v in BASE_PARAMS.items() if k != "n_layers"}), "n_layers"),
    (json.dumps({**BASE_PARAMS, "n_heads": 0, "head_dim": None}), "head"),
    (json.dumps({k: v for k, v in {**BASE_PARAMS, "n_heads": 0}.items() if k != "head_dim"}), "head"),
    (json.dumps({**BASE_PARAMS, "n_kv_heads": 3}), "n_kv_heads"),
    (json.dumps({**BASE_PARAMS, "hidden_dim": -64}), "hidden_dim"),
    (json.dumps({**BASE_PARAMS, "dim": "32"}), "wrong type"),
    (json.dumps({**BASE_PARAMS, "vocab_size": 32768.5}), "vocab_size"),
    (json.dumps({**BASE_PARAMS, "head_dim": 7}), "head_dim"),
])
def test_malformed_params_json(mistral_dir, tmp_path, text, words):
    folder = copy_of(mistral_dir, tmp_path)
    path = folder / "params.json"
    path.write_text(text)
    message = load_error(folder)
    assert message.count(str(path)) == 1, message  # named once, not "params.json: params.json: ..."
    assert words in message


def test_malformed_config_json(hf_sharded_dir, tmp_path):
    folder = copy_of(hf_sharded_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["num_attention_heads"]
    (folder / "config.json").write_text(json.dumps(config))
    message = load_error(folder)
    assert str(folder / "config.json") in message and "num_attention_heads" in message
