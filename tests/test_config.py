"""SoftThinkingConfig: validation, JSON round-trip, generation-config storage."""

import pytest
from transformers import GenerationConfig

from hf_softthink import SoftThinkingConfig


def test_defaults_follow_the_design():
    cfg = SoftThinkingConfig()
    assert (cfg.max_topk, cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p) == (10, 0.6, 30, 0.95, 0.001)
    assert (cfg.noise, cfg.think_end, cfg.cold_stop_entropy, cfg.mode) == ("none", "</think>", None, "soft")


def test_json_round_trip():
    cfg = SoftThinkingConfig(max_topk=5, noise="gumbel", gumbel_tau=0.3, cold_stop_entropy=0.01, think_end=7)
    assert SoftThinkingConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_topk", 0), ("temperature", 0.0), ("temperature", float("nan")), ("top_k", -1), ("top_p", 0.0),
        ("top_p", 1.5), ("min_p", 1.0), ("noise", "uniform"), ("dirichlet_alpha", 0), ("gumbel_tau", -1.0),
        ("gaussian_sigma", -0.1), ("cold_stop_entropy", 0.0), ("cold_stop_patience", 0), ("think_end", ""),
        ("think_end", -3), ("max_thinking_tokens", -1), ("mode", "hard"), ("switch_window", 0),
        ("max_switches", 0), ("max_topk", True), ("think_end", True), ("think_start", ""), ("think_start", 2.0),
        ("first_step_marker", -1), ("first_step_marker", False),
    ],
)
def test_bad_values_name_the_field_and_range(field, value):
    with pytest.raises(ValueError, match=rf"SoftThinkingConfig\.{field}=.*must be"):
        SoftThinkingConfig(**{field: value})


def test_forcing_needs_a_think_end():
    with pytest.raises(ValueError, match="think_end=None"):
        SoftThinkingConfig(think_end=None, cold_stop_entropy=0.1)


def test_unknown_field_in_dict_is_rejected():
    with pytest.raises(ValueError, match="Unknown SoftThinkingConfig field"):
        SoftThinkingConfig.from_dict({"max_top_k": 3})


def test_coerce_true_uses_saved_config_or_defaults():
    saved = SoftThinkingConfig(max_topk=3).to_dict()
    assert SoftThinkingConfig.coerce(True, saved=saved).max_topk == 3
    assert SoftThinkingConfig.coerce(True) == SoftThinkingConfig()
    assert SoftThinkingConfig.coerce(False) is None and SoftThinkingConfig.coerce(None) is None
    with pytest.raises(TypeError, match="soft_thinking must be"):
        SoftThinkingConfig.coerce("yes")


def test_generation_config_round_trip(tmp_path):
    gen = GenerationConfig(max_new_tokens=5)
    SoftThinkingConfig(max_topk=4, noise="dirichlet").save_to_generation_config(gen)
    gen.save_pretrained(tmp_path)
    loaded = GenerationConfig.from_pretrained(tmp_path)
    assert SoftThinkingConfig.from_generation_config(loaded) == SoftThinkingConfig(max_topk=4, noise="dirichlet")
