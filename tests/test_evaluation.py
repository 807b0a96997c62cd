"""Evaluation of decoding modes: presets, the hard thinking budget, scoring, resume, errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from transformers import LogitsProcessorList

from hf_softthink import SoftThinkingConfig
from hf_softthink import evaluation_metrics as em
from hf_softthink.cli import main
from hf_softthink.data import load_prompts, reasoning_gym_dataset
from hf_softthink.evaluation import (
    FUZZY_TEMPERATURE,
    PRESETS,
    RECORDS_FILE,
    DecodingMode,
    HardThinkingBudgetProcessor,
    _think_end_span,
    evaluate_modes,
    parse_ks,
    pass_at_k,
    preset_mode,
    resolve_modes,
)
from hf_softthink.models import tiny_model, tiny_tokenizer

datasets.disable_progress_bars()

SHORT_INSTRUCTION = "Think, write </think>, answer."
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def chain_sum():
    cfg = {"min_terms": 2, "max_terms": 2, "max_digits": 1}
    return reasoning_gym_dataset(
        "chain_sum", size=3, seed=5, config=cfg, thinking_instruction=SHORT_INSTRUCTION
    )


def test_pass_at_k_is_importable_from_evaluation():
    assert pass_at_k is em.pass_at_k
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------ modes


@pytest.mark.parametrize("name", PRESETS)
def test_presets_give_the_intended_decoder_settings(name):
    mode = preset_mode(name, max_thinking_tokens=48, think_end="</think>")
    thinking, answer = name.split("-")
    assert mode.name == name
    kwargs = mode.generate_kwargs()
    if answer == "greedy":
        soft = {} if thinking == "hard" else {"soft_thinking": mode.soft_thinking}
        assert kwargs == {"do_sample": False, **soft}
    else:
        assert kwargs["do_sample"] is True
        assert (kwargs["temperature"], kwargs["top_k"], kwargs["top_p"]) == (0.6, 30, 0.95)
    cfg = mode.soft_thinking
    if thinking == "hard":
        assert cfg is None and mode.kind == "hard" and "soft_thinking" not in kwargs
        assert mode.deterministic is (answer == "greedy")
        return
    assert mode.kind == "soft" and kwargs["soft_thinking"] is cfg
    assert cfg.max_thinking_tokens == 48 and cfg.think_end == "</think>"
    default = SoftThinkingConfig()
    assert (cfg.max_topk, cfg.top_k, cfg.top_p, cfg.min_p) == (
        default.max_topk,
        default.top_k,
        default.top_p,
        default.min_p,
    )
    assert cfg.gaussian_sigma == default.gaussian_sigma
    if thinking == "soft":
        assert cfg.temperature == default.temperature
        # soft-greedy: plain concept tokens; soft-sample: the paper's Gaussian-noised soft tokens
        assert cfg.noise == ("none" if answer == "greedy" else "gaussian")
        assert mode.deterministic is (answer == "greedy")
    else:  # fuzzy tokens: near-zero thinking temperature plus Gaussian noise, greedy or not
        assert cfg.temperature == FUZZY_TEMPERATURE == 1e-4
        assert cfg.noise == "gaussian"
        assert not mode.deterministic


def test_resolve_modes_accepts_names_configs_and_modes():
    custom = DecodingMode("mine", SoftThinkingConfig(noise="gumbel"), do_sample=True, temperature=1.0)
    own_budget = SoftThinkingConfig(max_topk=3, max_thinking_tokens=5)
    modes = resolve_modes(
        [" Hard-Greedy, soft-sample", custom, own_budget, SoftThinkingConfig()], max_thinking_tokens=9
    )
    assert [m.name for m in modes] == ["hard-greedy", "soft-sample", "mine", "soft[max_topk=3]", "soft"]
    assert modes[1].soft_thinking.max_thinking_tokens == 9
    assert modes[2].soft_thinking.max_thinking_tokens == 9
    assert modes[2].generate_kwargs()["temperature"] == 1.0
    assert modes[3].soft_thinking.max_thinking_tokens == 5  # a config's own budget wins
    assert modes[4].soft_thinking.max_thinking_tokens == 9
    assert resolve_modes("fuzzy-greedy")[0].soft_thinking.max_thinking_tokens is None


def test_mode_errors():
    with pytest.raises(ValueError) as err:
        resolve_modes("soft-greedy,fuzy-sample")
    msg = str(err.value)
    assert "'fuzy-sample'" in msg and "fuzzy-sample" in msg and "hard-greedy" in msg
    with pytest.raises(ValueError, match="more than once"):
        resolve_modes(["soft-greedy", "soft-greedy"])
    with pytest.raises(ValueError, match="No decoding modes"):
        resolve_modes(" , ")
    with pytest.raises(ValueError, match="do_sample=True"):
        DecodingMode("x", temperature=0.7)
    with pytest.raises(ValueError, match="top_p"):
        DecodingMode("x", do_sample=True, top_p=1.5)


def test_parse_ks():
    assert parse_ks("32,1,8", 32) == [1, 8, 32]
    assert parse_ks(4, 4) == [4]
    with pytest.raises(ValueError) as err:
        parse_ks([1, 8], 4)
    assert "k=8" in str(err.value) and "--samples" in str(err.value) and "lower k" in str(err.value)
    with pytest.raises(ValueError, match="integers separated by commas"):
        parse_ks("1,x", 4)
    with pytest.raises(ValueError, match=">= 1"):
        parse_ks([0], 4)


# ------------------------------------------------------------------------- thinking budget, spans


def test_think_end_span_single_and_multi_token(tok):
    ids = tok.encode("ab</think>cd", add_special_tokens=False)
    assert len(ids) == 5 and _think_end_span(tok, ids, "</think>") == (2, 3)
    ids = tok.encode("xyEND!", add_special_tokens=False)
    assert _think_end_span(tok, ids, "END") == (2, 5)
    assert _think_end_span(tok, ids, "nope") is None
    assert _think_end_span(tok, [], "END") is None


def test_hard_budget_processor_forces_the_marker_once(tok):
    proc = HardThinkingBudgetProcessor(tok, "END", max_thinking_tokens=2, prompt_length=1)
    marker = tok.encode("END", add_special_tokens=False)
    prompt = tok.encode("p", add_special_tokens=False)
    scores = torch.zeros(2, len(tok))
    before = torch.tensor([prompt + tok.encode("a", add_special_tokens=False)] * 2)
    assert torch.equal(proc(before, scores), scores)  # within the budget: untouched
    ids = torch.tensor([prompt + tok.encode("ab", add_special_tokens=False), prompt + marker[:2]])
    ids[1, 1:] = torch.tensor(tok.encode("EN", add_special_tokens=False))  # row 1 spelled "EN" itself
    out = proc(ids, scores)
    assert out[0].argmax() == marker[0] and torch.isinf(out[0]).sum() == len(tok) - 1
    assert out[1].argmax() == marker[0]  # "EN" is not the marker yet: the row is forced too
    for step in (1, 2):
        ids = torch.cat([ids, torch.tensor([[marker[step - 1]], [marker[step - 1]]])], dim=1)
        out = proc(ids, scores)
        assert out[0].argmax() == marker[step]
    ids = torch.cat([ids, torch.tensor([[marker[2]], [marker[2]]])], dim=1)
    assert torch.equal(proc(ids, scores), scores)  # both wrote the marker: the answer phase is free
    done = HardThinkingBudgetProcessor(tok, "END", max_thinking_tokens=2, prompt_length=0)
    natural = torch.tensor([tok.encode("ENDxy", add_special_tokens=False)])
    assert torch.equal(done(natural, scores[:1]), scores[:1])  # wrote it before the budget: left alone


def test_hard_budget_matches_the_soft_budget_at_max_topk_1(tok, chain_sum):
    # DESIGN invariant (max_topk=1, no noise, greedy == generate(do_sample=False)) extended to the
    # budget: the hard processor must force </think> at the same step as the soft loop does.
    model = tiny_model("llama")
    one_hot = SoftThinkingConfig(max_topk=1)
    result = evaluate_modes(
        model, tok, chain_sum, ["hard-greedy", one_hot], max_new_tokens=12, max_thinking_tokens=5,
        progress=False,
    )  # fmt: skip
    hard, soft = result.records["hard-greedy"], result.records["soft[max_topk=1]"]
    assert [r["completions"] for r in hard] == [r["completions"] for r in soft]
    assert [r["thinking_tokens"] for r in hard] == [r["thinking_tokens"] for r in soft]
    for record in hard:
        assert record["thinking_tokens"][0] <= 5
        assert "</think>" in record["completions"][0]
    assert all(r["soft_steps"][0] > 0 for r in soft) and all(r["soft_steps"][0] == 0 for r in hard)


# ----------------------------------------------------------------------- scoring with a stand-in


class ScriptedModel:
    """Stands in for a causal LM: completes each prompt with a scripted text (no weights, no noise).

    ``script(prompt, index)`` gets the index of the row among the rows of the same ``generate`` call that
    share its prompt (the samples of a problem)."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script = tokenizer, script
        self.config = SimpleNamespace(_name_or_path="scripted")
        self.generation_config = SimpleNamespace(eos_token_id=tokenizer.eos_token_id)
        self.device = torch.device("cpu")
        self.sequences = 0

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **kwargs):
        assert isinstance(kwargs.get("logits_processor"), LogitsProcessorList)  # the hard budget
        rows, seen = [], {}
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            prompt = self.tokenizer.decode(ids[mask.bool()])
            index = seen[prompt] = seen.get(prompt, -1) + 1
            text = self.script(prompt, index)
            rows.append(self.tokenizer.encode(text, add_special_tokens=False)[:max_new_tokens])
        self.sequences += len(rows)
        width = max(len(r) for r in rows) + 1
        new = [r + [self.tokenizer.eos_token_id] * (width - len(r)) for r in rows]
        return SimpleNamespace(sequences=torch.cat([input_ids, torch.tensor(new)], dim=1))


def _script(prompt: str, index: int) -> str:
    if "QA" in prompt:  # gold "1,000": the even samples answer 1000, the odd ones 999
        return "I add</think> \\boxed{1000}" if index % 2 == 0 else "I add</think> \\boxed{999}"
    return "hmm</think> 7" if index == 0 else "hmm</think> 8"  # gold 7: only the first sample is right


def test_scores_pass_at_k_maj_at_k_and_token_counts(tok, tmp_path):
    ds = load_prompts(
        [{"question": "QA big?", "answer": "1,000"}, {"question": "QB small?", "answer": "7"}],
        thinking_instruction="Think.",
    )
    model = ScriptedModel(tok, _script)
    result = evaluate_modes(
        model, tok, ds, "hard-greedy,hard-sample", samples=4, ks="1,2,4", output_dir=tmp_path, progress=False
    )
    greedy, sample = result.summary["hard-greedy"], result.summary["hard-sample"]
    # greedy: decoded once per problem (QA right: "1000" vs gold "1,000"; QB right), counted 4 times
    assert greedy["generated_sequences"] == 2 and greedy["num_samples"] == 8
    assert greedy["pass@1"] == greedy["pass@4"] == 1.0
    # sample: QA 2 of 4 right, QB 1 of 4
    assert sample["generated_sequences"] == 8
    assert sample["pass@1"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert sample["pass@2"] == pytest.approx((pass_at_k(4, 2, 2) + pass_at_k(4, 1, 2)) / 2)
    assert sample["pass@4"] == 1.0
    # maj@4: QA ties 2:2 and "1000" came first (right); QB "8" wins 3:1 (wrong)
    assert sample["maj@4"] == pytest.approx(0.5)
    qa = result.records["hard-sample"][0]
    assert qa["answers"] == ["1000", "999", "1000", "999"]
    assert qa["correct"] == [True, False, True, False]
    # "I add" = 5 byte tokens, then </think> (1 token), then " \boxed{1000}" = 13 tokens; eos not counted
    assert qa["thinking_tokens"] == [5] * 4 and qa["answer_tokens"] == [13, 12, 13, 12]
    assert sample["mean_thinking_tokens"] == pytest.approx((5 * 4 + 3 * 4) / 8)
    table = result.to_markdown()
    assert "| hard-sample | 0.375 |" in table and "maj@4" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["modes"]["hard-sample"]["pass@1"] == pytest.approx(0.375)
    assert saved["ks"] == [1, 2, 4] and saved["settings"]["samples"] == 4


def test_unclosed_thinking_counts_as_thinking(tok):
    ds = load_prompts([{"question": "QC", "answer": "3"}], thinking_instruction=None)
    model = ScriptedModel(tok, lambda prompt, index: "it is 3")
    result = evaluate_modes(model, tok, ds, "hard-greedy", progress=False)
    record = result.records["hard-greedy"][0]
    assert record["thinking_tokens"] == [7] and record["answer_tokens"] == [0]
    assert record["correct"] == [True]  # no </think>: the answer is read from the whole text


# ------------------------------------------------------------------------------ end to end, resume


def test_end_to_end_on_a_tiny_model(tok, chain_sum, tmp_path, count_generate):
    model = tiny_model("llama")
    calls = count_generate(model)
    result = evaluate_modes(
        model,
        tok,
        chain_sum,
        ["hard-greedy", "soft-sample", "fuzzy-greedy"],
        samples=3,
        ks=[1, 3],
        batch_size=4,
        max_new_tokens=10,
        max_thinking_tokens=4,
        output_dir=tmp_path,
        task_name="chain_sum",
        progress=False,
    )
    # hard-greedy decodes each problem once; the stochastic modes decode 3 samples per problem
    assert sum(calls) == 3 + 9 + 9
    assert list(result.summary) == ["hard-greedy", "soft-sample", "fuzzy-greedy"]
    for name, summary in result.summary.items():
        assert summary["num_problems"] == 3 and summary["num_samples"] == 9
        assert 0.0 <= summary["pass@1"] <= summary["pass@3"] <= 1.0
        assert summary["mean_thinking_tokens"] <= 4 + 1e-9
        assert summary["wall_seconds"] > 0
        assert summary["mode"]["name"] == name
    assert result.summary["soft-sample"]["mean_soft_steps"] > 0
    assert result.summary["soft-sample"]["mode"]["soft_thinking"]["noise"] == "gaussian"
    for name in ("results.json", "results.md", "pass_at_k.png", RECORDS_FILE):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "pass_at_k.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "results.md").read_text().startswith("| mode | pass@1 | pass@3 | maj@3 |")
    assert len((tmp_path / RECORDS_FILE).read_text().splitlines()) == 9
    assert tok.padding_side == "left"  # the tokenizer's own settings are restored


def test_resume_after_an_interrupted_run(tok, chain_sum, tmp_path, count_generate):
    model = tiny_model("llama")
    settings = dict(
        samples=2, ks=[1, 2], batch_size=2, max_new_tokens=8, max_thinking_tokens=3, progress=False
    )
    modes = ["hard-greedy", "soft-sample"]
    saved_records = []

    def interrupt_after_four(record):
        saved_records.append(record)
        if len(saved_records) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate_modes(
            model, tok, chain_sum, modes, output_dir=tmp_path, on_record=interrupt_after_four, **settings
        )
    log = tmp_path / RECORDS_FILE
    assert len(log.read_text().splitlines()) == 4  # hard-greedy's 3 problems and soft-sample's first
    assert not (tmp_path / "results.json").exists()
    with open(log, "a") as fh:  # a line cut short by a crash is ignored
        fh.write('{"run": "x", "problem_k')

    calls = count_generate(model)
    result = evaluate_modes(model, tok, chain_sum, modes, output_dir=tmp_path, **settings)
    assert calls == [2, 2]  # only soft-sample's problems 1 and 2 were generated (2 samples each)
    assert result.records["soft-sample"][0]["completions"] == saved_records[3]["completions"]
    assert [r["completions"] for r in result.records["hard-greedy"]] == [
        r["completions"] for r in saved_records[:3]
    ]
    assert result.summary["soft-sample"]["num_samples"] == 6

    calls.clear()
    again = evaluate_modes(model, tok, chain_sum, modes, output_dir=tmp_path, **settings)
    def measured(summary):  # everything but the count of resumed problems, which now covers all of them
        return {m: {k: v for k, v in s.items() if k != "resumed_problems"} for m, s in summary.items()}

    assert calls == [] and measured(again.summary) == measured(result.summary)
    assert result.summary["soft-sample"]["resumed_problems"] == 1 and again.summary["soft-sample"]["resumed_problems"] == 3

    changed = dict(settings, max_new_tokens=9)  # other settings: nothing saved applies, and the warning says why
    with pytest.warns(UserWarning, match=r"3 result\(s\) of mode 'hard-greedy'.*max_new_tokens \(8 -> 9\)"):
        evaluate_modes(model, tok, chain_sum, ["hard-greedy"], output_dir=tmp_path, **changed)
    assert calls == [2, 1]


# ------------------------------------------------------------------------------------------ errors


def test_evaluate_errors(tok, chain_sum):
    model = ScriptedModel(tok, _script)
    with pytest.raises(ValueError, match="Unknown decoding mode 'soft'"):
        evaluate_modes(model, tok, chain_sum, "soft", progress=False)
    with pytest.raises(ValueError, match="k=8 is larger than the number of samples"):
        evaluate_modes(model, tok, chain_sum, "hard-sample", samples=4, ks=[1, 8], progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate_modes(model, tok, [], "hard-greedy", progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate_modes(model, tok, chain_sum.select([]), "hard-greedy", progress=False)
    with pytest.raises(ValueError, match="answer_column=<name>"):
        evaluate_modes(model, tok, [{"question": "q"}], "hard-greedy", progress=False)
    with pytest.raises(ValueError, match="samples must be"):
        evaluate_modes(model, tok, chain_sum, "hard-greedy", samples=0, progress=False)
    assert model.sequences == 0  # every error came before any generation


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--task", "chainsum"], "Unknown reasoning-gym task 'chainsum'"),
        (["--modes", "hard-greedy,warm-sample"], "Unknown decoding mode 'warm-sample'"),
        (["--samples", "4", "--k", "1,8"], "--samples"),
        (["--num-problems", "0"], "--num-problems must be at least 1"),
        (["--task", "missing.jsonl"], "neither a reasoning-gym task nor an existing file"),
        (["--task-config", "{bad"], "--task-config must be a JSON object"),
    ],
)
def test_cli_errors_exit_2_before_loading_the_model(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hf_softthink.models.load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert main(["eval", "--out", str(tmp_path / "out"), *argv]) == 2
    assert expected in capsys.readouterr().err


def test_cli_file_task_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hf_softthink.models.load_model", lambda *a, **k: pytest.fail("model loaded"))
    no_answers = tmp_path / "q.jsonl"
    no_answers.write_text('{"question": "1+1?", "gold": "2"}\n')
    assert main(["eval", "--task", str(no_answers), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "answer column 'answer' not found" in err and "--answer-column" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["eval", "--task", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "contains no rows" in capsys.readouterr().err


def test_cli_eval_on_a_file_with_a_stand_in_model(tok, tmp_path, capsys, monkeypatch):
    path = tmp_path / "probs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [{"q": "QA", "gold": 1000}, {"q": "QB", "gold": 7}]))
    model = ScriptedModel(tok, _script)
    monkeypatch.setattr("hf_softthink.models.load_model", lambda name: (model, tok))
    out = tmp_path / "out"
    argv = ["eval", "--task", str(path), "--question-column", "q", "--answer-column", "gold", "--modes",
            "hard-greedy,hard-sample", "--samples", "2", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| hard-greedy | 1.000 | 1.000 |" in table and "| hard-sample | 0.500 | 1.000 |" in table
    assert json.loads((out / "results.json").read_text())["settings"]["task"] == str(path)
    assert main(argv) == 0 and model.sequences == 2 + 4  # the rerun generated nothing


# ------------------------------------------------------------------------------------- real model


@pytest.fixture
def one_torch_thread():
    # On a 2-core machine that is busy with anything else, two intra-op threads slow this run down
    # five- to tenfold (measured: 9 s on one thread, 30-75 s on two); one thread keeps it in CI time.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.real_model
def test_cli_eval_on_embedded_smollm2(tmp_path, capsys, one_torch_thread):
    from hf_softthink.models import PACKAGED_MODELS, ModelPackageNotInstalledError, default_cache_dir

    if not (default_cache_dir() / "smollm2-135m").is_dir():
        try:
            PACKAGED_MODELS["smollm2-135m"].check_installed()
        except ModelPackageNotInstalledError as error:
            pytest.skip(str(error))
    out = tmp_path / "eval"
    task_config = '{"min_terms": 2, "max_terms": 2, "max_digits": 1}'
    argv = ["eval", "--task", "chain_sum", "--task-config", task_config,
            "--num-problems", "2", "--samples", "2", "--k", "1,2", "--modes", "hard-greedy,soft-sample",
            "--max-new-tokens", "16", "--max-thinking-tokens", "8", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert table.startswith("| mode | pass@1 | pass@2 | maj@2 |")
    assert "| hard-greedy |" in table and "| soft-sample |" in table
    results = json.loads((out / "results.json").read_text())
    assert set(results["modes"]) == {"hard-greedy", "soft-sample"}
    assert results["settings"]["model"] == "smollm2-135m"
    for summary in results["modes"].values():
        assert summary["num_problems"] == 2 and summary["num_samples"] == 4
        assert summary["mean_thinking_tokens"] <= 8
    assert (out / "pass_at_k.png").read_bytes()[:8] == PNG_MAGIC
    assert Path(out / "results.md").read_text().strip() == table.strip()


# ------------------------------------------------------------------------------------------ timing


class _Clock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_wall_time_is_attributed_to_the_mode_that_spent_it(tok, tmp_path, monkeypatch):
    """A fake clock advanced by each generate call (by a cost per mode and per decoding step) and by grading:
    each mode's seconds are exactly its own calls; grading counts for none; a deterministic mode is decoded
    once per problem; a resumed problem keeps the time of the run that decoded it, and the table says so."""
    import hf_softthink.evaluation.decoding as decoding
    import hf_softthink.evaluation.records as records

    clock = _Clock()
    monkeypatch.setattr(decoding, "time", clock)
    grade = records.grade_sample

    def slow_grading(*args, **kwargs):
        clock.now += 100.0
        return grade(*args, **kwargs)

    monkeypatch.setattr(records, "grade_sample", slow_grading)
    ds = load_prompts([{"question": f"Q{i}", "answer": "7"} for i in range(3)], thinking_instruction="Think.")

    class TimedModel(ScriptedModel):
        def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **kwargs):
            out = super().generate(input_ids, attention_mask, max_new_tokens, pad_token_id, **kwargs)
            steps = out.sequences.shape[1] - input_ids.shape[1]
            clock.now += (1.0 if kwargs["do_sample"] else 10.0) * steps  # the batch runs its longest row
            return out

    texts = {0: "a</think> 7", 1: "abcdef</think> 7"}  # 4 and 9 tokens + eos: batches of 5 or 10 steps
    model = TimedModel(tok, lambda prompt, index: texts[index % 2])
    settings = dict(samples=2, batch_size=2, output_dir=tmp_path, progress=False)
    result = evaluate_modes(model, tok, ds, ["hard-greedy", "hard-sample"], **settings)
    greedy, sample = result.summary["hard-greedy"], result.summary["hard-sample"]
    # hard-greedy: 3 problems decoded once, in batches of 2 + 1 rows; each row is text 0 (5 steps)
    assert greedy["wall_seconds"] == pytest.approx(10.0 * 5 * 2)
    # hard-sample: one batch of 2 samples per problem, the longer one (10 steps) sets the batch time
    assert sample["wall_seconds"] == pytest.approx(1.0 * 10 * 3)
    assert [r["seconds"] for r in result.records["hard-sample"]] == pytest.approx([10.0, 10.0, 10.0])
    assert greedy["resumed_problems"] == sample["resumed_problems"] == 0

    # a rerun that resumes everything: the times are those measured above, and the table says where from
    clock.now = 0.0
    again = evaluate_modes(model, tok, ds, ["hard-greedy", "hard-sample"], **settings)
    assert again.summary["hard-sample"]["wall_seconds"] == pytest.approx(30.0)
    assert again.summary["hard-sample"]["resumed_problems"] == 3
    assert "resumed from an earlier run" in again.to_markdown() and "hard-sample 3 of 3" in again.to_markdown()
