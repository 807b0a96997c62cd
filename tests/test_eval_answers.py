"""Completions without an answer: how each completion ended (records' `endings`), the counts in the summary, the
table and the demo, the warning when most completions of a mode gave none; and the question and gold answer
in every record."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import datasets
import pytest
import torch

from hf_softthink import SoftThinkingConfig
from hf_softthink.cli import main
from hf_softthink.data import load_prompts, reasoning_gym_dataset
from hf_softthink.demo import DEMO_QUESTIONS, run_demo
from hf_softthink.evaluation import RECORDS_FILE, DecodingMode, evaluate_modes
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.processors import HardThinkingBudgetProcessor

datasets.disable_progress_bars()
MAX_NEW_TOKENS = 24


class ScriptedModel:
    """Stands in for a causal LM: completes each prompt with the text its script gives for the prompt, cut at
    max_new_tokens; a shorter completion ends with end-of-sequence, a cut one does not."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script = tokenizer, script
        self.config = SimpleNamespace(_name_or_path="scripted")
        self.generation_config = SimpleNamespace(eos_token_id=tokenizer.eos_token_id)
        self.device = torch.device("cpu")

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **kwargs):
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            text = self.script(self.tokenizer.decode(ids[mask.bool()]))
            tokens = self.tokenizer.encode(text, add_special_tokens=False)
            rows.append(tokens[:max_new_tokens] if len(tokens) >= max_new_tokens
                        else tokens + [self.tokenizer.eos_token_id])
        width = max(len(r) for r in rows)
        new = [r + [self.tokenizer.eos_token_id] * (width - len(r)) for r in rows]
        return SimpleNamespace(sequences=torch.cat([input_ids, torch.tensor(new)], dim=1))


SCRIPT = {
    "Q1": "I add</think> 7",  # an answer
    "Q2": "I add</think>",  # the marker, then nothing
    "Q3": "I add and stop",  # end-of-sequence while thinking
    "Q4": "I keep adding " * 10,  # out of tokens while thinking
}


def script(prompt: str) -> str:
    return next(text for key, text in SCRIPT.items() if key in prompt)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def rows(*keys):
    return load_prompts([{"question": f"{key}: what?", "answer": "7"} for key in keys], thinking_instruction="Think.")


def test_endings_tell_answers_from_empty_answers_and_unfinished_thinking(tok, tmp_path):
    with pytest.warns(UserWarning, match="Most completions gave no answer"):
        result = evaluate_modes(ScriptedModel(tok, script), tok, rows("Q1", "Q2", "Q3", "Q4"), "hard-greedy",
                                samples=2, max_new_tokens=MAX_NEW_TOKENS, max_thinking_tokens=16, output_dir=tmp_path, progress=False)
    records = result.records["hard-greedy"]
    assert [r["endings"] for r in records] == [
        ["answer"] * 2, ["empty_answer"] * 2, ["stop_in_thinking"] * 2, ["length_in_thinking"] * 2,
    ]
    summary = result.summary["hard-greedy"]
    assert (summary["no_answer_phase"], summary["empty_answers"], summary["generated_sequences"]) == (2, 1, 4)
    assert summary["endings"] == {"answer": 1, "empty_answer": 1, "stop_in_thinking": 1, "length_in_thinking": 1}
    table = result.to_markdown()
    assert "| no answer | seconds |" in table and " | 75% | " in table
    assert ("hard-greedy: 3 of 4 decoded completions gave no answer (1 wrote end-of-sequence while thinking, 1 ran "
            "out of tokens while thinking, 1 wrote nothing after the think-end marker).") in table
    saved = json.loads((tmp_path / "results.json").read_text())["modes"]["hard-greedy"]
    assert saved["no_answer_phase"] == 2 and saved["empty_answers"] == 1


def test_the_warning_names_the_mode_and_only_the_causes_it_saw(tok):
    with pytest.warns(UserWarning) as caught:
        evaluate_modes(ScriptedModel(tok, script), tok, rows("Q3", "Q3", "Q1"), "hard-greedy",
                       max_new_tokens=MAX_NEW_TOKENS, max_thinking_tokens=16, progress=False)
    (message,) = [str(w.message) for w in caught if "gave no answer" in str(w.message)]
    assert "hard-greedy: 2 of 3 decoded completions gave no answer (2 wrote end-of-sequence while thinking" in message
    assert "End-of-sequence while thinking: the model did not follow the prompt's request to write '</think>'" in message
    assert "out of tokens while thinking:" not in message and "nothing after the marker:" not in message
    assert caught[0].filename == __file__, "the warning points at the caller"


def test_the_warning_gives_each_cut_modes_own_budget(tok):
    modes = ["hard-greedy", DecodingMode("soft20", SoftThinkingConfig(max_thinking_tokens=20))]
    model = tiny_model("llama")  # soft20 runs out of tokens before its own budget forces the marker
    with pytest.warns(UserWarning) as caught:
        evaluate_modes(model, tok, rows("Q4"), modes, max_new_tokens=12, max_thinking_tokens=4, progress=False)
    (message,) = [str(w.message) for w in caught if "gave no answer" in str(w.message)]
    assert "Out of tokens while thinking: max_new_tokens (now 12; thinking budget soft20: 20)" in message


def test_no_warning_when_most_completions_answer(tok):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_modes(ScriptedModel(tok, script), tok, rows("Q1", "Q1", "Q3"), "hard-greedy",
                                max_new_tokens=MAX_NEW_TOKENS, max_thinking_tokens=16, progress=False)
    assert result.summary["hard-greedy"]["no_answer_phase"] == 1


def test_without_a_thinking_prompt_the_whole_completion_is_the_answer(tok):
    ds = load_prompts([{"question": "Q3: what?", "answer": "7"}, {"question": "Q4: what?", "answer": "7"}],
                      thinking_instruction=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no thinking asked: nothing to warn about
        result = evaluate_modes(ScriptedModel(tok, script), tok, ds, "hard-greedy", max_new_tokens=MAX_NEW_TOKENS,
                                max_thinking_tokens=None, thinking_instruction=None, progress=False)
    assert [r["endings"] for r in result.records["hard-greedy"]] == [["answer"], ["answer"]]
    for record in result.records["hard-greedy"]:  # no thinking asked: every token is answer, none thinking
        assert record["thinking_tokens"] == [0] and record["answer_tokens"][0] > 0
    assert result.summary["hard-greedy"]["mean_thinking_tokens"] == 0.0


def test_records_hold_the_question_and_the_gold_answer(tok, tmp_path):
    chain_sum = reasoning_gym_dataset("chain_sum", size=2, seed=5, config={"min_terms": 2, "max_terms": 2,
                                                                          "max_digits": 1})
    for name, dataset in (("file", rows("Q1", "Q2")), ("reasoning-gym", chain_sum)):
        out = tmp_path / name
        evaluate_modes(ScriptedModel(tok, lambda prompt: "x</think> 7"), tok, dataset, "hard-greedy",
                       max_new_tokens=MAX_NEW_TOKENS, max_thinking_tokens=16, output_dir=out, progress=False)
        saved = [json.loads(line) for line in (out / RECORDS_FILE).read_text().splitlines()]
        assert [(r["question"], r["gold_answer"]) for r in saved] == list(
            zip(dataset["question"], dataset["answer"], strict=True))


def test_records_of_a_prompt_only_dataset_take_the_question_from_the_prompt(tok):
    ds = [{"prompt": [{"role": "user", "content": "Q1: what?"}], "answer": "7"}]
    result = evaluate_modes(ScriptedModel(tok, script), tok, ds, "hard-greedy", max_new_tokens=MAX_NEW_TOKENS,
                            max_thinking_tokens=16, progress=False)
    assert result.records["hard-greedy"][0]["question"] == "Q1: what?"


def test_eval_command_warns_when_completions_never_answer(tok, tmp_path, monkeypatch, capsys):
    """The smallest `hf-softthink eval` scored 0 with 0.0 answer tokens in every mode without a word."""
    monkeypatch.setattr("hf_softthink.models.load_model", lambda name: (ScriptedModel(tok, script), tok))
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"{k}: what?", "answer": "7"}) + "\n" for k in ("Q3", "Q4")))
    argv = ["eval", "--task", str(data), "--modes", "hard-greedy", "--samples", "1", "--max-new-tokens",
            str(MAX_NEW_TOKENS), "--max-thinking-tokens", "16", "--out", str(tmp_path / "out"), "--no-progress"]
    with pytest.warns(UserWarning, match="hard-greedy: 2 of 2 decoded completions gave no answer"):
        assert main(argv) == 0
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    assert cells[" no answer "].strip() == "100%" and cells[" answer tokens "].strip() == "0.0"


def test_demo_reports_questions_without_an_answer():
    """Every mode ends at once (end-of-sequence is made the top token): no question gets an answer."""
    model, tokenizer = tiny_model("llama"), tiny_tokenizer()

    def end_at_once(module, args, output):
        output.logits[:, -1, tokenizer.eos_token_id] += 1e4
        return output

    model.register_forward_hook(end_at_once)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the demo reports it in its table: no warning on top
        report = run_demo(model, tokenizer, config=SoftThinkingConfig(max_thinking_tokens=4),
                          questions=DEMO_QUESTIONS[:3], max_new_tokens=12, progress=False, model_name="tiny")
    text = report.to_text()
    for label in ("standard", "hard thinking", "soft thinking"):
        assert report.no_answer(label) == 3 and f"| {label} | 0/3 | 3/3 |" in text
    assert "| What is 8 + 7? | 15 | ✗ - † | ✗ - † | ✗ - † |" in text
    assert "no answer: questions whose completion ended while thinking" in text


# ------------------------------------------------------------------ an answer prefix after a forced marker (hard)

PREFIX = "</think>\nThe answer is \\boxed{"


def test_the_hard_budget_can_force_an_answer_prefix_after_the_marker(tok):
    proc = HardThinkingBudgetProcessor(tok, "</think>", max_thinking_tokens=2, prompt_length=1, forced_text=PREFIX)
    forced = tok.encode(PREFIX, add_special_tokens=False)
    ids = torch.tensor([tok.encode("?ab", add_special_tokens=False)])
    for expected in forced:  # the marker, then every token of the prefix, one per step
        out = proc(ids, torch.zeros(1, len(tok)))
        assert out[0].argmax() == expected and torch.isinf(out[0]).sum() == len(tok) - 1
        ids = torch.cat([ids, torch.tensor([[expected]])], dim=1)
    assert torch.equal(proc(ids, torch.zeros(1, len(tok))), torch.zeros(1, len(tok))), "then the answer is free"
    natural = torch.tensor([tok.encode("?a</think>b", add_special_tokens=False)])
    fresh = HardThinkingBudgetProcessor(tok, "</think>", max_thinking_tokens=2, prompt_length=1, forced_text=PREFIX)
    assert torch.equal(fresh(natural, torch.zeros(1, len(tok))), torch.zeros(1, len(tok))), "no prefix after its own"
    with pytest.raises(ValueError, match="must start with the think-end marker"):
        HardThinkingBudgetProcessor(tok, "</think>", 2, 1, forced_text="The answer is")


def test_a_hard_mode_with_a_forced_end_text_and_its_fingerprint(tok):
    mode = DecodingMode("hard prefixed", forced_end_text=PREFIX)
    assert mode.to_dict()["forced_end_text"] == PREFIX
    assert "forced_end_text" not in DecodingMode("hard").to_dict(), "runs that never set it keep their keys"
    with pytest.raises(ValueError, match="set in its SoftThinkingConfig"):
        DecodingMode("soft", soft_thinking=SoftThinkingConfig(), forced_end_text=PREFIX)
    model = tiny_model("llama")

    def end_at_once(module, args, output):
        output.logits[:, -1, tok.eos_token_id] += 1e4
        return output

    model.register_forward_hook(end_at_once)
    with pytest.warns(UserWarning, match="1 wrote nothing after the think-end marker"):
        result = evaluate_modes(model, tok, rows("Q1"), [mode], max_new_tokens=MAX_NEW_TOKENS, max_thinking_tokens=0,
                                progress=False)
    record = result.records["hard prefixed"][0]
    assert record["completions"] == [PREFIX]  # forced at once, then end-of-sequence
    assert record["endings"] == ["empty_answer"], "the forced prefix alone is no answer"


def test_demo_settings_compares_forced_end_texts_on_its_dev_questions(capsys):
    """benchmarks/demo_settings.py stage 3, at smoke size: one row per candidate, hard and soft (the soft decoder's
    SoftThinkingConfig.forced_end_text), and a choice among the candidates."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_settings.py"
    spec = importlib.util.spec_from_file_location("demo_settings", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    questions = script.tuning_questions(2, seed=0)
    assert not {q["question"] for q in questions} & {q for q, _ in DEMO_QUESTIONS}
    chosen = script.stage_forced_end(tiny_model("llama"), tiny_tokenizer(), questions, prompt="Think.", budget=4,
                                     cold_stop=None)
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ") and "forced end text" not in line]
    assert len(table) == len(script.FORCED_END_TEXTS)
    assert table[0].startswith("| (the marker alone) |") and repr(script.FORCED_END_TEXTS[1]) in table[1]
    assert chosen in script.FORCED_END_TEXTS and "chosen: forced end text" in out
