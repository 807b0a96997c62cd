"""`soft_thinking=` on a model that was not enabled: an error naming `enable_soft_thinking`, never a silent
plain decoding (hf_softthink.enabled_check)."""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig, pipeline
from transformers.generation.utils import GenerationMixin

from hf_softthink import (
    SoftThinkingConfig,
    SoftThinkingNotEnabledError,
    enable_soft_thinking,
    soft_thinking_sample,
)
from hf_softthink.enabled_check import install_generate_check
from hf_softthink.models import tiny_model, tiny_tokenizer

PROMPT = torch.tensor([[5, 6, 7, 8]])
CONFIG = SoftThinkingConfig(max_topk=4, think_end=None)


def generate(model, **kwargs):
    return model.generate(input_ids=PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=4,
                          do_sample=False, pad_token_id=0, **kwargs)


@pytest.mark.parametrize("value", [True, CONFIG, {"max_topk": 4, "think_end": None}], ids=["True", "config", "dict"])
def test_soft_thinking_on_a_plain_model_names_enable_soft_thinking(value):
    model = tiny_model("llama")
    with pytest.raises(SoftThinkingNotEnabledError, match=r"enable_soft_thinking\(model, tokenizer=tokenizer\)"):
        generate(model, soft_thinking=value)
    assert issubclass(SoftThinkingNotEnabledError, ValueError)  # what transformers raised before


def test_a_soft_config_in_the_generation_config_is_refused_too():
    model = tiny_model("llama")
    generation_config = GenerationConfig(max_new_tokens=4, do_sample=False, pad_token_id=0)
    generation_config.soft_thinking = CONFIG
    with pytest.raises(SoftThinkingNotEnabledError):
        model.generate(PROMPT, generation_config)  # positional, as generate(inputs, generation_config) allows
    generation_config.soft_thinking = CONFIG.to_dict()  # the saved form alone asks for nothing
    assert model.generate(PROMPT, generation_config).shape == (1, 8)


def test_no_soft_thinking_is_plain_generate_on_any_model():
    model = tiny_model("llama")
    plain = generate(model)
    assert torch.equal(generate(model, soft_thinking=False), plain)
    assert torch.equal(generate(model, soft_thinking=None), plain)


def test_a_reloaded_model_with_a_saved_config_no_longer_decodes_plain_silently(tmp_path):
    """Saved after enable_soft_thinking, reloaded with AutoModelForCausalLM: its generation config holds the
    soft config, so transformers accepted soft_thinking=True and decoded without it."""
    enable_soft_thinking(tiny_model("llama"), config=CONFIG).save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(reloaded.generation_config.soft_thinking, dict)
    with pytest.raises(SoftThinkingNotEnabledError, match="holds a saved soft-thinking config"):
        generate(reloaded, soft_thinking=True)
    out = generate(enable_soft_thinking(reloaded), soft_thinking=True, return_dict_in_generate=True)
    assert out.thinking_mask.all(), "enabled, the saved config (think_end=None: every step soft) is used"


def test_custom_generate_still_works_without_enabling():
    model = tiny_model("llama")
    via_custom = generate(model, custom_generate=soft_thinking_sample, soft_thinking=CONFIG)
    assert torch.equal(via_custom, generate(enable_soft_thinking(tiny_model("llama")), soft_thinking=CONFIG))


def test_a_peft_model_is_checked_on_its_base_model():
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(SoftThinkingNotEnabledError):
        generate(peft_model, soft_thinking=CONFIG)
    assert generate(enable_soft_thinking(peft_model), soft_thinking=CONFIG).shape == (1, 8)


def test_a_pipeline_around_a_plain_model_gets_the_error():
    generator = pipeline("text-generation", model=tiny_model("llama"), tokenizer=tiny_tokenizer())
    with pytest.raises(SoftThinkingNotEnabledError):
        generator("What is 2 + 2?", soft_thinking=CONFIG, max_new_tokens=2)


def test_the_check_is_installed_once_and_keeps_generates_signature():
    install_generate_check()
    install_generate_check()
    wrapper = GenerationMixin.generate
    inner = wrapper.__wrapped__
    assert wrapper.__hf_softthink_enabled_check__ and not hasattr(inner, "__hf_softthink_enabled_check__")
    assert inspect.signature(wrapper) == inspect.signature(inner) and wrapper.__doc__ == inner.__doc__
