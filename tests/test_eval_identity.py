"""Evaluation results belong to the model that made them (issue 17): the resume key holds digests of the model's
weights, adapter, tokenizer and generation config and every setting; records are keyed by problem index and
content and checked when read back; a resumed sampled run gives the same completions as an uninterrupted one.
"""

from __future__ import annotations

import json
import warnings

import datasets
import pytest
import torch
from peft import LoraConfig, get_peft_model

from hf_softthink.cli import main
from hf_softthink.data import load_prompts, reasoning_gym_dataset
from hf_softthink.evaluation import RECORDS_FILE, evaluate_modes
from hf_softthink.evaluation.identity import model_identity, tokenizer_digest, weights_digests
from hf_softthink.models import tiny_model, tiny_tokenizer

datasets.disable_progress_bars()

SETTINGS = dict(max_new_tokens=4, max_thinking_tokens=2, progress=False)
ROWS = [{"question": "1 + 1?", "answer": "2"}, {"question": "2 + 2?", "answer": "4"}]


def _other_weights(model, tok):
    return tiny_model("llama", seed=1), tok  # same class, same (empty) name, other weights


def _trained_in_place(model, tok):
    with torch.no_grad():  # as an optimizer step does: same tensors, new values
        next(model.parameters()).add_(0.01)
    return model, tok


def _added_token(model, tok):
    tok = tiny_tokenizer()
    tok.add_tokens(["<mark>"])
    model.resize_token_embeddings(len(tok))
    return model, tok


def _generation_config(model, tok):
    model.generation_config.repetition_penalty = 1.3
    return model, tok


def _adapter_trained(model, tok):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.5)
    return model, tok


def _adapter_alpha(model, tok):
    model.peft_config["default"].lora_alpha = 64  # same tensors, another scaling
    return model, tok


def _lora(model):
    return get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))


CHANGES = {
    "another in-memory model of the same class": (None, _other_weights, "the model's weights"),
    "the same model trained in place": (None, _trained_in_place, "the model's weights"),
    "a token added to the tokenizer (embeddings resized)": (None, _added_token, "the tokenizer"),
    "a generation-config setting": (None, _generation_config, "the model's generation config"),
    "the adapter's weights": (_lora, _adapter_trained, "the adapter"),
    "the adapter's config": (_lora, _adapter_alpha, "the adapter"),
}


@pytest.mark.parametrize("wrap,change,named", CHANGES.values(), ids=CHANGES.keys())
def test_a_changed_model_is_decoded_again_and_what_changed_is_named(wrap, change, named, tmp_path,
                                                                       count_generate):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    if wrap is not None:
        model = wrap(model)
    first = evaluate_modes(model, tok, ROWS, "hard-greedy", output_dir=tmp_path, **SETTINGS)
    assert first.summary["hard-greedy"]["resumed_problems"] == 0
    model, tok = change(model, tok)
    calls = count_generate(model)
    with pytest.warns(UserWarning) as caught:
        again = evaluate_modes(model, tok, ROWS, "hard-greedy", output_dir=tmp_path, **SETTINGS)
    assert sum(calls) == 2 and again.summary["hard-greedy"]["resumed_problems"] == 0  # decoded again
    messages = [str(w.message) for w in caught if "earlier run" in str(w.message)]
    assert len(messages) == 1 and named in messages[0] and "2 result(s) of mode 'hard-greedy'" in messages[0]
    # the new results are saved next to the old ones, and a third run resumes them
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        third = evaluate_modes(model, tok, ROWS, "hard-greedy", output_dir=tmp_path, **SETTINGS)
    assert calls == [] and third.summary["hard-greedy"]["resumed_problems"] == 2


def test_the_identity_is_stable_across_generate_padding_and_enabling(tmp_path):
    """Nothing an evaluation itself does to the model or the tokenizer changes their digests."""
    model, tok = tiny_model("llama"), tiny_tokenizer()
    before = model_identity(model, tok, "m")
    evaluate_modes(model, tok, ROWS, "hard-greedy,soft-sample", samples=2, **SETTINGS)
    tok.padding_side = "right"
    tok(["a", "bbb"], padding=True)
    tok.padding_side = "left"
    assert model_identity(model, tok, "another name") == {**before, "model": None}
    assert before["model"] is None  # a model with weights is known by them, not by its name


def test_tied_weights_and_names_enter_the_weight_digest():
    tied = tiny_model("qwen2")  # tied input / output embeddings
    base, adapter = weights_digests(tied)
    assert adapter is None and base == weights_digests(tiny_model("qwen2"))[0]
    untied = tiny_model("qwen2", tie_word_embeddings=False)
    with torch.no_grad():
        untied.lm_head.weight.copy_(untied.model.embed_tokens.weight)
    assert weights_digests(untied)[0] != base  # same bytes, but the tie is part of the model


def test_the_tokenizer_digest_sees_the_vocabulary_and_the_chat_template():
    tok = tiny_tokenizer()
    digest = tokenizer_digest(tok)
    other = tiny_tokenizer()
    other.chat_template = other.chat_template.replace("assistant", "model")
    assert tokenizer_digest(other) != digest
    more = tiny_tokenizer()
    more.add_tokens(["<x>"])
    assert tokenizer_digest(more) != digest and tokenizer_digest(tiny_tokenizer()) == digest


def test_cli_eval_of_an_overwritten_model_folder_decodes_again(tmp_path, capsys):
    """The issue's reproduction: the same `hf-softthink eval` command after the model folder was overwritten
    with other weights (as after more training) must not report the old completions."""
    model_dir = tmp_path / "model"
    tiny_model("llama").save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "ev"
    argv = ["eval", "--model", str(model_dir), "--task", str(data), "--modes", "hard-greedy", "--samples", "1",
            "--max-new-tokens", "4", "--max-thinking-tokens", "2", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0  # same folder, same weights: resumed
    assert "Problems resumed from an earlier run" in capsys.readouterr().out
    tiny_model("llama", seed=3).save_pretrained(model_dir)  # overwritten with other weights
    with pytest.warns(UserWarning, match="the model's weights"):
        assert main(argv) == 0
    assert "resumed" not in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["modes"]["hard-greedy"]["resumed_problems"] == 0
    assert len((out / RECORDS_FILE).read_text().splitlines()) == 4  # both models' results are kept


def test_results_of_an_older_version_are_not_reused_and_the_warning_says_so(tmp_path):
    old = {"run": "0123456789abcdef", "problem_key": "fedcba9876543210", "mode": "hard-greedy", "problem": 0}
    (tmp_path / RECORDS_FILE).write_text(json.dumps(old) + "\n")
    with pytest.warns(UserWarning, match=r"1 result\(s\) of mode 'hard-greedy' .* how its results were keyed"):
        result = evaluate_modes(tiny_model("llama"), tiny_tokenizer(), ROWS, "hard-greedy", output_dir=tmp_path,
                                **SETTINGS)  # fmt: skip
    assert result.summary["hard-greedy"]["resumed_problems"] == 0


# ------------------------------------------------------------------------------------------ records


def test_the_same_question_twice_is_two_problems(tmp_path, count_generate):
    tok = tiny_tokenizer()
    rows = [{"question": "7 + 1?", "answer": "8"}, {"question": "2 + 2?", "answer": "4"},
            {"question": "7 + 1?", "answer": "8"}]  # fmt: skip
    model = tiny_model("llama")
    result = evaluate_modes(model, tok, rows, "hard-greedy", output_dir=tmp_path, **SETTINGS)
    assert [r["problem"] for r in result.records["hard-greedy"]] == [0, 1, 2]
    assert len((tmp_path / RECORDS_FILE).read_text().splitlines()) == 3
    calls = count_generate(model)
    again = evaluate_modes(model, tok, rows, "hard-greedy", output_dir=tmp_path, **SETTINGS)
    assert calls == [] and [r["problem"] for r in again.records["hard-greedy"]] == [0, 1, 2]


def _edit(field, value):
    def edit(record):
        record[field] = value(record) if callable(value) else value

    return edit


DAMAGED_RECORDS = {
    "correct holds strings": (_edit("correct", ["yes", "no"]), "'correct'"),
    "correct of another length": (_edit("correct", [True]), "'correct' is [true], not a list of 2 values"),
    "a score that is text": (_edit("scores", ["1", 0.0]), "'scores'[0]"),
    "a negative token count": (_edit("thinking_tokens", [-1, 2]), "'thinking_tokens'[0]"),
    "a fractional token count": (_edit("answer_tokens", [1.5, 2]), "'answer_tokens'[0]"),
    "an answer that is a number": (_edit("answers", [2, None]), "'answers'[0]"),
    "a completion that is not text": (_edit("completions", [None, "x"]), "'completions'[0]"),
    "an unknown ending": (_edit("endings", ["answer", "done"]), "'endings'[1]"),
    "another problem index": (_edit("problem", 1), "'problem' is 1, not 0"),
    "another mode": (_edit("mode", "soft-sample"), "'mode' is 'soft-sample'"),
    "generated count": (_edit("generated", 5), "'generated' is 5, not 2"),
    "negative seconds": (_edit("seconds", -1), "'seconds'"),
    "a fingerprint that is not its key": (
        _edit("fingerprint", lambda r: {**r["fingerprint"], "settings": {}}),
        "fingerprint does not match",
    ),
}


@pytest.mark.parametrize("damage,fragment", DAMAGED_RECORDS.values(), ids=DAMAGED_RECORDS.keys())
def test_a_saved_record_that_does_not_fit_is_named_never_trusted(damage, fragment, tmp_path, count_generate):
    tok, model = tiny_tokenizer(), tiny_model("llama")
    settings = dict(SETTINGS, samples=2)
    evaluate_modes(model, tok, ROWS, "hard-sample", output_dir=tmp_path, **settings)
    log = tmp_path / RECORDS_FILE
    lines = log.read_text().splitlines()
    record = json.loads(lines[0])
    damage(record)
    lines[0] = json.dumps(record)
    log.write_text("\n".join(lines) + "\n")
    calls = count_generate(model)
    with pytest.raises(ValueError) as error:
        evaluate_modes(model, tok, ROWS, "hard-sample", output_dir=tmp_path, **settings)
    message = str(error.value)
    assert f"{log}:1:" in message and "cannot be trusted" in message and fragment in message, message
    assert "delete that line" in message and calls == []


# ------------------------------------------------------------------------------------ resume = no interrupt


@pytest.mark.parametrize("mode", ["soft-sample", "hard-sample"])
def test_a_resumed_sampled_run_gives_the_uninterrupted_completions(mode, tmp_path):
    """The issue's reproduction: 5 chain_sum problems, 2 samples, batch size 3, interrupted at the 2nd record."""
    tok = tiny_tokenizer()
    problems = reasoning_gym_dataset(
        "chain_sum", size=5, seed=7, config={"min_terms": 2, "max_terms": 2, "max_digits": 1},
        thinking_instruction="Think, write </think>, answer.",
    )  # fmt: skip
    settings = dict(samples=2, batch_size=3, max_new_tokens=10, max_thinking_tokens=5, seed=3, progress=False)
    whole = evaluate_modes(tiny_model("llama"), tok, problems, mode, output_dir=tmp_path / "whole", **settings)
    saved = []

    def interrupt_at_the_second(record):
        saved.append(record)
        if len(saved) == 2:
            raise KeyboardInterrupt

    model = tiny_model("llama")
    with pytest.raises(KeyboardInterrupt):
        evaluate_modes(model, tok, problems, mode, output_dir=tmp_path / "cut", on_record=interrupt_at_the_second,
                       **settings)  # fmt: skip
    resumed = evaluate_modes(model, tok, problems, mode, output_dir=tmp_path / "cut", **settings)
    assert resumed.summary[mode]["resumed_problems"] == 2
    completions = [r["completions"] for r in whole.records[mode]]
    assert [r["completions"] for r in resumed.records[mode]] == completions
    assert len({c for pair in completions for c in pair}) > 2  # sampled: the completions differ


def test_more_problems_keep_the_saved_ones(tmp_path, count_generate):
    """The batches of the first problems do not depend on how many follow: 2 problems, then 4, resume the 2."""
    tok = tiny_tokenizer()
    rows = load_prompts([{"question": f"{i} + 1?", "answer": str(i + 1)} for i in range(4)],
                        thinking_instruction="Think.")  # fmt: skip
    settings = dict(SETTINGS, samples=2, batch_size=3)
    model = tiny_model("llama")
    first = evaluate_modes(model, tok, rows.select(range(2)), "hard-sample", output_dir=tmp_path, **settings)
    calls = count_generate(model)
    more = evaluate_modes(model, tok, rows, "hard-sample", output_dir=tmp_path, **settings)
    assert more.summary["hard-sample"]["resumed_problems"] == 2
    assert more.records["hard-sample"][:2] == first.records["hard-sample"]
    assert sum(calls) == 3 + 2  # the batch shared with problem 1 (decoded again) and the last one
