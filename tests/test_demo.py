"""`hf-softthink demo`, and completion-style prompts for models without a chat template."""

from __future__ import annotations

import pytest
import torch
from transformers import StoppingCriteriaList

from hf_softthink import SoftThinkingConfig
from hf_softthink.cli import main
from hf_softthink.completion import COMPLETION_THINK_END, AnswerLineStoppingCriteria, completion_prompt
from hf_softthink.demo import DEMO_QUESTIONS, DEMO_THINKING_PROMPT, MODE_LABELS, run_demo
from hf_softthink.evaluation import evaluate_modes
from hf_softthink.models import tiny_model, tiny_tokenizer

QUESTIONS = DEMO_QUESTIONS[:3]


def _spy(model):
    """Record the decoded prompt rows and the keyword arguments of every `generate` call."""
    calls = []
    generate = model.generate
    tokenizer = tiny_tokenizer()

    def spied(*args, **kwargs):
        prompts = [tokenizer.decode(row, skip_special_tokens=False).lstrip("<pad>") for row in kwargs["input_ids"]]
        calls.append((prompts, kwargs))
        return generate(*args, **kwargs)

    model.generate = spied
    return calls


def test_demo_measures_three_decodings_and_prints_them_side_by_side():
    model, tokenizer = tiny_model("llama"), tiny_tokenizer()
    calls = _spy(model)
    report = run_demo(model, tokenizer, config=SoftThinkingConfig(max_thinking_tokens=4), questions=QUESTIONS,
                      max_new_tokens=12, progress=False, model_name="tiny")
    # one batch per mode (all questions at once), then one call for the trace
    assert [len(prompts) for prompts, _ in calls] == [3, 3, 3, 1]
    standard, hard, soft, trace = calls
    assert all(DEMO_THINKING_PROMPT not in p for p in standard[0]), "standard decoding gets the question alone"
    assert all(DEMO_THINKING_PROMPT in p for p in hard[0] + soft[0] + trace[0])
    assert "soft_thinking" not in hard[1] and "logits_processor" in hard[1], "hard thinking: budget processor"
    assert soft[1]["soft_thinking"].max_thinking_tokens == 4
    text = report.to_text()
    for label in MODE_LABELS:
        correct = report.correct(label)
        assert correct == sum(ok for _, ok in report.answers[label])
        assert f"| {label} | {correct}/3 |" in text
    assert report.summary["standard"]["mean_thinking_tokens"] == 0.0
    assert "budget 4 thinking tokens" in text and "Cold Stop off" in text
    assert "Soft-thinking trace of 'What is 8 + 7?'" in text and report.trace.thinking_tokens > 0
    assert "What to expect" in text and "7B-32B" in text


def test_demo_refuses_a_config_without_budget():
    with pytest.raises(ValueError, match="thinking budget"):
        run_demo(tiny_model("llama"), tiny_tokenizer(), config=SoftThinkingConfig(), questions=QUESTIONS)


# -------------------------------------------------------------------------- models without a chat template


def _base_tokenizer():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None  # a base model's tokenizer
    return tokenizer


def test_answer_line_stop_ends_rows_at_the_end_of_their_answer_line():
    tok = tiny_tokenizer()
    texts = ["step 1\nstep 2\nAnswer: 15\n", "step 1\nstep 2\nAnswer: 1", "step 1\nstep 2\n", "\nAnswer:\n", " 15"]
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    width = max(map(len, ids))
    batch = torch.tensor([[0] * (width - len(row)) + row for row in ids])
    stop = AnswerLineStoppingCriteria(tok, prompt_length=0, think_end=COMPLETION_THINK_END)
    # done / answer line still open / still reasoning (its newlines do not count) / empty answer / no marker
    assert stop(batch, None).tolist() == [True, False, False, False, False]
    direct = AnswerLineStoppingCriteria(tok, prompt_length=0, think_end=None)  # prompt ended in "Answer:"
    assert direct(batch, None).tolist() == [True, True, True, True, False]


def test_evaluation_prompts_a_model_without_chat_template_completion_style():
    model, tokenizer = tiny_model("llama"), _base_tokenizer()
    calls = _spy(model)
    rows = [{"question": q, "answer": a} for q, a in QUESTIONS]
    result = evaluate_modes(model, tokenizer, rows, ["hard-greedy", "soft-greedy"], max_new_tokens=12,
                            max_thinking_tokens=4, progress=False)
    assert result.settings["think_end"] == COMPLETION_THINK_END
    for prompts, kwargs in calls:
        assert prompts == [completion_prompt(q) for q, _ in QUESTIONS]
        assert prompts[0] == "Question: What is 8 + 7?\nReasoning:"
        (stop,) = [c for c in kwargs["stopping_criteria"] if isinstance(c, AnswerLineStoppingCriteria)]
        assert stop.think_end == COMPLETION_THINK_END
    assert calls[1][1]["soft_thinking"].think_end == COMPLETION_THINK_END
    calls.clear()
    evaluate_modes(model, tokenizer, rows, ["hard-greedy"], max_new_tokens=12, max_thinking_tokens=None,
                   thinking_instruction=None, progress=False)
    (prompts, kwargs), = calls
    assert prompts[0] == "Question: What is 8 + 7?\nAnswer:"  # no thinking asked: answer at once
    (stop,) = [c for c in kwargs["stopping_criteria"] if isinstance(c, AnswerLineStoppingCriteria)]
    assert stop.think_end is None


def test_generate_command_prompts_a_base_model_completion_style(monkeypatch, capsys):
    """`hf-softthink generate --model gemma3-270m` used to feed the bare question, which a base model
    continues with more questions; now it gets a completion prompt and stops after its answer line."""
    model, tokenizer = tiny_model("llama"), _base_tokenizer()
    calls = _spy(model)
    monkeypatch.setattr("hf_softthink.models.load_model", lambda name: (model, tokenizer))
    argv = ["generate", "What is 8 + 7?", "--compare", "--max-new-tokens", "12", "--max-thinking-tokens", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert len(calls) == 2
    for prompts, kwargs in calls:
        assert prompts == ["Question: What is 8 + 7?\nReasoning:"]
        assert isinstance(kwargs["stopping_criteria"], StoppingCriteriaList)
        assert any(isinstance(c, AnswerLineStoppingCriteria) for c in kwargs["stopping_criteria"])
    assert calls[0][1]["soft_thinking"].think_end == COMPLETION_THINK_END
    assert "=== soft thinking" in out and "=== ordinary tokens" in out


@pytest.mark.real_model
def test_demo_on_smollm2_prints_measured_accuracy(capsys):
    torch.set_num_threads(1)
    questions = [DEMO_QUESTIONS[0], DEMO_QUESTIONS[8]]
    from hf_softthink.models import load_model

    model, tokenizer = load_model("smollm2-135m")
    report = run_demo(model, tokenizer, questions=questions, progress=False, model_name="smollm2-135m",
                      config=SoftThinkingConfig(max_thinking_tokens=8), max_new_tokens=24)
    text = report.to_text()
    for label in MODE_LABELS:
        assert f"| {label} | {report.correct(label)}/2 |" in text
        assert report.summary[label]["wall_seconds"] > 0
    assert report.trace.thinking_tokens == 8 + len(tokenizer.encode("</think>", add_special_tokens=False))
