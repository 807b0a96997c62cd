"""A `soft_thinking` entry of `generation_config.json` is honoured however the file was written, or refused with
an error that names the file and the field (issue 17).

transformers drops custom entries from a generation config file marked `"_from_model_config": true`, which is
how `save_pretrained` writes it: before, `generate(soft_thinking=True)` then silently used the defaults, and a
broken entry was never reported (or reported as "got str" about the `True` the user passed).
"""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.hub import load_soft_adapter
from hf_softthink.models import tiny_model, tiny_tokenizer


@pytest.fixture
def folder(tmp_path):
    """A model folder as `save_pretrained` writes it (its generation config marked `_from_model_config`)."""
    path = tmp_path / "model"
    tiny_model("llama").save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    assert json.loads((path / "generation_config.json").read_text())["_from_model_config"] is True
    return path


def _write_entry(folder, entry, from_model_config: bool = True):
    file = folder / "generation_config.json"
    values = json.loads(file.read_text())
    values["soft_thinking"] = entry
    values["_from_model_config"] = from_model_config
    file.write_text(json.dumps(values, indent=2))
    return file


def _mixture_size(model, tok):
    out = model.generate(**tok(["2 + 2 ="], return_tensors="pt"), max_new_tokens=3, soft_thinking=True,
                         return_dict_in_generate=True)  # fmt: skip
    return out.soft_topk_ids.shape[-1]


HONOURED = {
    "an object in a file saved by save_pretrained": ({"max_topk": 3}, True),
    "an object in a file not marked _from_model_config": ({"max_topk": 3}, False),
    "a JSON object string": ('{"max_topk": 3}', True),
}


@pytest.mark.parametrize("entry,marked", HONOURED.values(), ids=HONOURED.keys())
def test_a_saved_entry_is_honoured_however_the_file_was_written(entry, marked, folder):
    _write_entry(folder, entry, marked)
    tok = tiny_tokenizer()
    model = enable_soft_thinking(AutoModelForCausalLM.from_pretrained(folder), tokenizer=tok)
    assert SoftThinkingConfig.from_generation_config(model.generation_config).max_topk == 3
    assert _mixture_size(model, tok) == 3  # not the default 10
    # and it stays with the model: save_pretrained writes it where a reload reads it
    model.save_pretrained(folder / "again")
    again = enable_soft_thinking(AutoModelForCausalLM.from_pretrained(folder / "again"))
    assert SoftThinkingConfig.from_generation_config(again.generation_config).max_topk == 3


BROKEN = {
    "a field out of range": ({"max_topk": -3}, ["max_topk=-3", "max_topk must be"]),
    "a string": ("abc", ["the soft_thinking entry is the string 'abc'"]),
    "a JSON object string with a field out of range": ('{"max_topk": -3}', ["max_topk=-3", "max_topk must be"]),
    "an unknown field": ({"max_topk": 3, "nope": 1}, ["Unknown SoftThinkingConfig field(s) ['nope']"]),
    "an array": ([1], ["the soft_thinking entry is an array"]),
    "a number": (3, ["the soft_thinking entry is a number"]),
    "a think-end id beyond the vocabulary": ({"think_end": 999}, ["think_end=999", "263 rows"]),
    "a think-end string the model cannot hold": ({"think_end": "<mark>"}, ["think_end='<mark>'", "263"]),
}


@pytest.mark.parametrize("entry,fragments", BROKEN.values(), ids=BROKEN.keys())
@pytest.mark.parametrize("marked", [True, False], ids=["marked _from_model_config", "not marked"])
def test_a_broken_saved_entry_names_the_file_and_the_field(entry, fragments, marked, folder):
    file = _write_entry(folder, entry, marked)
    tok = tiny_tokenizer()
    tok.add_tokens(["<mark>"])  # id 263: beyond the model's 263 rows
    model = AutoModelForCausalLM.from_pretrained(folder)
    with pytest.raises(ValueError) as error:
        enable_soft_thinking(model, tokenizer=tok)
    message = str(error.value)
    assert str(file) in message, message
    for fragment in fragments:
        assert fragment in message, message
    if not isinstance(entry, dict) or "think_end" not in entry:  # a full model folder, loaded our way
        with pytest.raises(ValueError, match=str(file)):
            load_soft_adapter(folder)


def test_a_broken_entry_set_in_memory_is_named_not_blamed_on_true():
    tok = tiny_tokenizer()
    model = enable_soft_thinking(tiny_model("llama"), tokenizer=tok)
    model.generation_config.soft_thinking = "abc"
    with pytest.raises(ValueError) as error:
        model.generate(**tok(["hi"], return_tensors="pt"), max_new_tokens=2, soft_thinking=True)
    message = str(error.value)
    assert message.startswith("model.generation_config.soft_thinking: the soft_thinking entry is the string 'abc'")
    assert "got str" not in message
