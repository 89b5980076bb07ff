"""Model families (engine/checkpoints/families.py): the registry, and tiny random checkpoints of other
families written by transformers, loaded by the engine, checked against transformers' own forward pass
and across our decode paths."""

from __future__ import annotations

import json

import pytest

from engine import CheckpointError
from engine.checkpoints.families import MISTRAL, family_of
from engine.checkpoints.loading import find_checkpoint
from engine.testing import make_checkpoint


def test_mistral_is_an_entry_and_a_config_naming_nothing_stays_mistral():
    assert family_of({"architectures": ["MistralForCausalLM"]}) is MISTRAL
    assert family_of({"model_type": "mistral"}) is MISTRAL
    assert family_of({}) is MISTRAL


def test_unknown_architecture_is_one_clear_error(tmp_path):
    make_checkpoint(tmp_path, "hf")
    data = json.loads((tmp_path / "config.json").read_text())
    data.update(architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox")
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="architecture 'GPTNeoXForCausalLM' is not supported") as err:
        find_checkpoint(tmp_path)
    assert "\n" not in str(err.value)
