"""What the command line tells its user: `--version`, `lm-eval --help` without the extra, and why thinking ended in
`hf-softthink generate`."""

from __future__ import annotations

import sys

import pytest
import torch

import hf_softthink
from hf_softthink import SoftThinkingConfig
from hf_softthink.cli import LM_EVAL_INSTALL, main
from hf_softthink.demo import TraceResult
from hf_softthink.events import StepEvent
from hf_softthink.models import tiny_model, tiny_tokenizer


def test_version_names_the_package_and_its_main_libraries(capsys):
    import transformers

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"hf-softthink {hf_softthink.__version__} (transformers {transformers.__version__}, torch {torch.__version__})"
    )


@pytest.fixture
def without_lm_eval(monkeypatch):
    """As on a machine without the lm-eval extra: importing lm_eval (or any of its modules an earlier test
    imported) fails."""
    for name in [name for name in sys.modules if name == "lm_eval" or name.startswith("lm_eval.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    monkeypatch.delitem(sys.modules, "hf_softthink.lm_eval_harness", raising=False)


@pytest.mark.parametrize("argv", [["lm-eval", "--help"], ["lm-eval", "-h"], ["lm-eval"]])
def test_lm_eval_help_works_without_the_extra_and_says_how_to_install_it(without_lm_eval, argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "usage: hf-softthink lm-eval" in out and LM_EVAL_INSTALL in out and "soft_<field>=VALUE" in out


def test_lm_eval_without_the_extra_is_an_error_with_the_install_command(without_lm_eval, capsys):
    assert main(["lm-eval", "--model", "hf-softthink", "--tasks", "gsm8k"]) == 2
    assert LM_EVAL_INSTALL in capsys.readouterr().err


CONFIG = SoftThinkingConfig(max_thinking_tokens=64, cold_stop_entropy=0.1, cold_stop_patience=4)


@pytest.mark.parametrize("event, marker_tokens, expected", [
    (StepEvent.FORCED_BUDGET, 3,
     '67 tokens (64 soft steps), ended by "</think>" (3 tokens) forced when the thinking budget of 64 tokens was spent'),
    (StepEvent.THINK_END, 1, '67 tokens (64 soft steps), ended by the model writing "</think>"'),
    (StepEvent.FORCED_COLD_STOP, 3,
     '67 tokens (64 soft steps), ended by "</think>" (3 tokens) forced by Cold Stop (entropy below 0.1 nats for 4 '
     'steps)'),
    (None, 0, "67 tokens (64 soft steps); thinking never ended (the model wrote end-of-sequence while thinking, or "
     "the token limit came first), so there is no answer"),
])
def test_the_thinking_line_says_what_ended_thinking(event, marker_tokens, expected):
    result = TraceResult("", "", 67, 0, 0.0, end_event=event, marker_tokens=marker_tokens, soft_steps=64)
    assert result.describe_thinking(CONFIG) == expected
    assert result.describe_thinking(CONFIG, soft=False).startswith("67 tokens, " if event else "67 tokens; ")


def _run_generate(monkeypatch, capsys, argv, hook=None):
    model, tokenizer = tiny_model("llama", seed=0), tiny_tokenizer()
    if hook is not None:
        model.register_forward_hook(hook)
    monkeypatch.setattr("hf_softthink.models.load_model", lambda name: (model, tokenizer))
    assert main(["generate", "What is 8 + 7?", "--max-new-tokens", "14", *argv]) == 0
    return capsys.readouterr().out


def test_generate_says_the_budget_ended_thinking_and_grades_against_a_gold_answer(monkeypatch, capsys):
    out = _run_generate(monkeypatch, capsys, ["--max-thinking-tokens", "6", "--compare", "--gold-answer", "15"])
    assert ('[thinking, 7 tokens (6 soft steps), ended by "</think>" forced when the thinking budget of 6 tokens '
            "was spent;") in out
    assert '[thinking, 7 tokens, ended by "</think>" forced when the thinking budget of 6 tokens was spent]' in out
    assert out.count("graded: wrong (answer ") == 2 and "gold 15)" in out


def test_generate_says_when_the_model_ended_thinking_itself(monkeypatch, capsys):
    marker, calls = tiny_tokenizer().convert_tokens_to_ids("</think>"), []

    def think_end_at_the_third_step(module, args, output):
        calls.append(1)  # the prefill's logits choose generated step 0, the k-th call's step k - 1
        if len(calls) == 3:
            output.logits[:, -1, marker] += 1e4
        return output

    out = _run_generate(monkeypatch, capsys, ["--max-thinking-tokens", "8"], think_end_at_the_third_step)
    assert '[thinking, 3 tokens (2 soft steps), ended by the model writing "</think>";' in out
