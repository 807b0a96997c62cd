import json

import datasets
import pytest

from hf_softthink.data import (
    DEFAULT_THINKING_INSTRUCTION,
    STANDARD_COLUMNS,
    apply_chat_template,
    build_prompt,
    decode_entry,
    encode_entry,
    grade_sample,
    list_reasoning_gym_tasks,
    load_prompts,
    reasoning_gym_dataset,
    score_sample,
)

datasets.disable_progress_bars()


# ----------------------------------------------------------------------- reasoning-gym data


@pytest.fixture(scope="module")
def chain_sum():
    return reasoning_gym_dataset("chain_sum", size=8, seed=123)


def test_reasoning_gym_dataset_columns_and_prompt(chain_sum):
    assert len(chain_sum) == 8
    assert list(chain_sum.column_names) == list(STANDARD_COLUMNS)
    row = chain_sum[0]
    assert row["task"] == "chain_sum"
    assert row["question"].endswith("=")
    assert row["prompt"] == [
        {"role": "system", "content": DEFAULT_THINKING_INSTRUCTION},
        {"role": "user", "content": row["question"]},
    ]
    assert "</think>" in DEFAULT_THINKING_INSTRUCTION
    entry = decode_entry(row["entry"])
    assert entry["answer"] == row["answer"]
    assert entry["question"] == row["question"]
    assert entry["metadata"]["source_dataset"] == "chain_sum"


def test_reasoning_gym_dataset_is_deterministic(chain_sum):
    again = reasoning_gym_dataset("chain_sum", size=8, seed=123)
    assert again.to_list() == chain_sum.to_list()
    other = reasoning_gym_dataset("chain_sum", size=8, seed=10_000)
    assert other["question"] != chain_sum["question"]


def test_reasoning_gym_dataset_options():
    ds = reasoning_gym_dataset("chain_sum", size=2, seed=0, thinking_instruction=None)
    assert [m["role"] for m in ds[0]["prompt"]] == ["user"]
    ds = reasoning_gym_dataset(
        "chain_sum", size=2, seed=0, thinking_instruction="Think.", instruction_role="user"
    )
    assert ds[0]["prompt"] == [{"role": "user", "content": "Think.\n\n" + ds[0]["question"]}]


def test_score_sample_chain_sum_right_and_wrong(chain_sum):
    for row in chain_sum:
        gold = row["answer"]
        assert score_sample(row, f"Let me add. </think> The answer is \\boxed{{{gold}}}.")
        assert score_sample(row, f"<think>hmm 3 + 4</think><answer>{gold}</answer>")
        assert score_sample(row, f"reasoning with 12 and 99 </think> {gold}")
        assert not score_sample(row, f"</think> \\boxed{{{int(gold) + 1}}}")
        # reasoning-gym gives partial credit (< 1.0) when the oracle is a substring: not correct
        assert not score_sample(row, f"</think> \\boxed{{{gold}5}}")
        # the answer must come after </think>: numbers inside the thinking do not count
        assert not score_sample(row, f"maybe {gold}? </think> no idea")
        assert not score_sample(row, "")
    # grade_sample gives the answer, reasoning-gym's score (partial credit) and the verdict
    row = chain_sum[0]
    gold = row["answer"]
    grade = grade_sample(row, f"</think> \\boxed{{{gold}5}}")
    assert grade.answer == f"{gold}5" and 0.0 < grade.score < 1.0 and not grade.correct
    assert grade_sample(row, f"</think> {gold}") == (gold, 1.0, True)
    assert grade_sample(row, "</think> nothing") == (None, 0.0, False)
    # TRL conversational completions are accepted too
    row = chain_sum[0]
    assert score_sample(row, [{"role": "assistant", "content": f"</think> \\boxed{{{row['answer']}}}"}])


def test_score_sample_thousands_separator_and_trailing_zero():
    cfg = {"min_terms": 2, "max_terms": 2, "min_digits": 4, "max_digits": 4}
    ds = reasoning_gym_dataset("chain_sum", size=6, seed=7, config=cfg)
    assert json.loads(ds[0]["entry"])["task_config"] == cfg
    checked = 0
    for row in ds:
        value = int(row["answer"])
        if abs(value) < 1000:
            continue
        checked += 1
        assert score_sample(row, f"</think> \\boxed{{{value:,}}}")
        assert score_sample(row, f"</think> {value:,}")
        assert score_sample(row, f"</think> {value}.0")
        assert not score_sample(row, f"</think> {value + 1000:,}")
    assert checked > 0


@pytest.mark.parametrize("task", ["basic_arithmetic", "gsm_symbolic"])
def test_score_sample_commas_for_scorers_that_compare_strings(task):
    # basic_arithmetic's scorer compares strings and gsm_symbolic's reads the first number,
    # so "1,234" must be tried in plain form.
    ds = reasoning_gym_dataset(task, size=40, seed=0)
    row = next(r for r in ds if r["answer"].lstrip("-").isdigit() and abs(int(r["answer"])) >= 1000)
    value = int(row["answer"])
    assert score_sample(row, f"</think> \\boxed{{{value:,}}}")
    assert not score_sample(row, f"</think> \\boxed{{{value + 1:,}}}")


def test_score_sample_non_numeric_task_uses_text_fallback():
    ds = reasoning_gym_dataset("countdown", size=2, seed=0)
    row = ds[0]
    expr = row["answer"]  # an arithmetic expression, not a number
    assert score_sample(row, f"</think> {expr}")
    assert score_sample(row, f"</think> <answer>{expr}</answer>")
    assert not score_sample(row, "</think> 1 + 1")


def test_unknown_task_error():
    with pytest.raises(ValueError) as err:
        reasoning_gym_dataset("chainsum", size=2)
    msg = str(err.value)
    assert "chain_sum" in msg and "list_reasoning_gym_tasks" in msg
    assert "basic_arithmetic" in list_reasoning_gym_tasks()


def test_bad_size_and_config():
    with pytest.raises(ValueError, match="size"):
        reasoning_gym_dataset("chain_sum", size=0)
    with pytest.raises(ValueError, match="Could not create"):
        reasoning_gym_dataset("chain_sum", size=2, config={"min_terms": 5, "max_terms": 2})
    with pytest.raises(ValueError, match="Could not create"):
        reasoning_gym_dataset("chain_sum", size=2, config={"no_such_field": 1})


def test_entry_json_roundtrip_keeps_tuples_and_int_keys():
    entry = {
        "answer": "1",
        "metadata": {
            "board": ((1, 2), (3, 4)),
            "colors": {0: "red", 1: "blue"},
            "s": {3, 1},
            "lst": [1, (2,)],
        },
    }
    back = decode_entry(encode_entry(entry))
    assert back == entry
    assert isinstance(back["metadata"]["board"], tuple)
    assert json.loads(encode_entry(entry))  # still valid JSON


# ----------------------------------------------------------------------------- user data


def test_load_prompts_from_jsonl(tmp_path):
    path = tmp_path / "probs.jsonl"
    rows = [
        {"problem": "What is 1/4 + 1/4?", "solution": "\\frac{1}{2}", "id": 1},
        {"problem": "What is 999 + 1?", "solution": 1000, "id": 2},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = load_prompts(path, question_column="problem", answer_column="solution")
    assert len(ds) == 2
    assert list(ds.column_names) == [*STANDARD_COLUMNS, "id"]
    assert ds[0]["question"] == "What is 1/4 + 1/4?"
    assert ds[1]["answer"] == "1000"
    assert ds[0]["task"] is None and ds[0]["entry"] is None
    assert ds[0]["prompt"][-1] == {"role": "user", "content": "What is 1/4 + 1/4?"}
    # math_verify scoring for user data
    assert score_sample(ds[0], "</think> \\boxed{0.5}")
    assert score_sample(ds[0], "</think> The answer is 1/2")
    assert not score_sample(ds[0], "</think> \\boxed{1/4}")
    assert score_sample(ds[1], "</think> 1,000")
    assert not score_sample(ds[1], "</think> 1,001")


def test_load_prompts_from_list_and_dataset():
    rows = [{"question": "2+2?", "answer": "4"}, {"question": "3+3?", "answer": "6"}]
    a = load_prompts(rows, thinking_instruction=None)
    b = load_prompts(datasets.Dataset.from_list(rows), thinking_instruction=None)
    assert a.to_list() == b.to_list()
    assert a[0]["prompt"] == [{"role": "user", "content": "2+2?"}]
    no_answers = load_prompts([{"question": "hi"}], answer_column=None)
    assert no_answers[0]["answer"] is None
    with pytest.raises(ValueError, match="no gold 'answer'"):
        score_sample(no_answers[0], "</think> 4")


def test_load_prompts_keeps_reasoning_gym_rows(tmp_path):
    rg = reasoning_gym_dataset("chain_sum", size=3, seed=5)
    path = tmp_path / "rg.jsonl"
    rg.to_json(str(path))
    back = load_prompts(path)
    assert back["task"] == ["chain_sum"] * 3
    assert back["entry"] == rg["entry"]
    row = back[0]
    assert score_sample(row, f"</think> \\boxed{{{row['answer']}}}")


def test_load_prompts_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        load_prompts([])
    with pytest.raises(ValueError, match="empty"):
        load_prompts(datasets.Dataset.from_dict({"question": [], "answer": []}))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no rows"):
        load_prompts(empty)
    with pytest.raises(ValueError) as err:
        load_prompts([{"question": "q", "gold": "1"}])
    assert "'answer'" in str(err.value) and "['question', 'gold']" in str(err.value)
    assert "answer_column=" in str(err.value)
    with pytest.raises(ValueError, match="question_column="):
        load_prompts([{"text": "q", "answer": "1"}])
    with pytest.raises(ValueError, match="DatasetDict"):
        load_prompts(
            datasets.DatasetDict({"train": datasets.Dataset.from_list([{"question": "q", "answer": "1"}])})
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n{not json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_prompts(bad)
    with pytest.raises(FileNotFoundError):
        load_prompts(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- chat template


class _FakeTokenizer:
    name_or_path = "fake"

    def __init__(self, template):
        self.chat_template = template

    def apply_chat_template(self, messages, tokenize, add_generation_prompt, **kwargs):
        assert tokenize is False
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def test_apply_chat_template_single_and_batch():
    tok = _FakeTokenizer("{{ messages }}")
    msgs = build_prompt("1+1?", "Think.")
    assert apply_chat_template(tok, msgs) == "<system>Think.\n<user>1+1?\n<assistant>"
    assert apply_chat_template(tok, [msgs, msgs]) == ["<system>Think.\n<user>1+1?\n<assistant>"] * 2
    ds = reasoning_gym_dataset("chain_sum", size=2, seed=0, tokenizer=tok)
    assert ds[0]["prompt_text"].endswith("<assistant>")
    assert ds[0]["question"] in ds[0]["prompt_text"]


def test_apply_chat_template_without_template_is_an_error():
    with pytest.raises(ValueError, match="no chat template"):
        apply_chat_template(_FakeTokenizer(None), build_prompt("q"))


def test_apply_chat_template_real_tokenizer():
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    raw = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    text = apply_chat_template(tok, build_prompt("2+2?", "Think first."))
    assert text == "<|system|>Think first.\n<|user|>2+2?\n<|assistant|>"
