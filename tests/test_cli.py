"""The hf-softthink command line (the model-free parts; the real run is in test_real_model.py)."""

import pytest

from hf_softthink import SoftThinkingConfig
from hf_softthink.cli import build_parser, config_from_arguments, main, render_trace
from hf_softthink.models import tiny_tokenizer


def test_config_flags_map_onto_the_config():
    args = build_parser().parse_args(
        ["generate", "q", "--max-topk", "4", "--noise", "gumbel", "--gumbel-tau", "0.2", "--think-end", "7",
         "--cold-stop-entropy", "0.05", "--top-k", "0"]
    )
    cfg = config_from_arguments(args)
    assert cfg == SoftThinkingConfig(max_topk=4, noise="gumbel", gumbel_tau=0.2, think_end=7, cold_stop_entropy=0.05,
                                     top_k=None, max_thinking_tokens=96)


def test_switch_flags_map_onto_the_config():
    args = build_parser().parse_args(
        ["generate", "q", "--mode", "switch", "--max-switches", "2", "--switch-beta", "0.7", "--switch-alpha", "0.5",
         "--think-start", "5", "--final-answer", "The answer is", "--final-answer-max-tokens", "8"]
    )
    cfg = config_from_arguments(args)
    assert (cfg.mode, cfg.max_switches, cfg.switch_beta, cfg.switch_alpha, cfg.think_start) == ("switch", 2, 0.7, 0.5, 5)
    assert cfg.final_answer == "The answer is" and cfg.final_answer_max_tokens == 8


def test_bad_flag_value_is_a_clear_error(capsys):
    assert main(["generate", "q", "--top-p", "2"]) == 2
    assert "SoftThinkingConfig.top_p=2.0 is invalid" in capsys.readouterr().err


def test_unknown_model_name_lists_the_known_ones(capsys):
    assert main(["generate", "q", "--model", "no-such-model"]) == 2
    assert "smollm2-135m" in capsys.readouterr().err


def test_trace_marks_uncertain_mixtures():
    import torch

    tok = tiny_tokenizer()
    ids = torch.tensor([tok.encode("ab", add_special_tokens=False), tok.encode("cd", add_special_tokens=False)])
    weights = torch.tensor([[0.9, 0.1], [0.55, 0.45]])
    assert render_trace(tok, ids, weights, torch.tensor([True, True])) == "a⟨c|d 0.45⟩"
    assert render_trace(tok, ids, weights, torch.tensor([True, False])) == "ac"


def test_generate_requires_a_question():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate"])
