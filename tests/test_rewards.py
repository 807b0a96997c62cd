"""Verifiable rewards: answer extraction, math-verify, reasoning-gym scorers, format."""

import json

import pytest
import reasoning_gym

from hf_softthink.rewards import (
    completion_text,
    configure_reward,
    extract_answer,
    format_reward,
    math_answer_reward,
    reasoning_gym_reward,
)


def chat(text):
    return [{"role": "assistant", "content": text}]


# ------------------------------------------------------------------------------------------
# extract_answer
# ------------------------------------------------------------------------------------------


def test_extract_answer_is_the_shared_implementation():
    # the cases live in test_eval_metrics.py; rewards re-exports the one implementation
    from hf_softthink import evaluation_metrics

    assert extract_answer is evaluation_metrics.extract_answer
    assert completion_text is evaluation_metrics.completion_text


def test_extract_answer_custom_think_end_and_type_error():
    assert extract_answer("x 5 <|end|> 6", think_end="<|end|>") == "6"
    assert extract_answer("5 </think> 6", think_end=None) == "6"
    with pytest.raises(TypeError):
        extract_answer(15)


def test_completion_text_variants():
    assert completion_text("abc") == "abc"
    assert completion_text(chat("hi")) == "hi"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_text(parts) == "ab"
    msg = [{"role": "assistant", "content": "15", "reasoning_content": "8+7"}]
    assert completion_text(msg) == "8+7</think>15"
    with pytest.raises(TypeError, match="completion"):
        completion_text(3)


# ------------------------------------------------------------------------------------------
# math_answer_reward
# ------------------------------------------------------------------------------------------


def test_math_reward_right_and_wrong():
    completions = [
        "<think>8+7</think>\\boxed{15}",
        "<think>8+7</think>The answer is 15.",
        "<think>8+7 is 15</think>The answer is 16.",
        "<think>hmm</think>",
        "<answer>15</answer>",
        "15.0",
    ]
    assert math_answer_reward(["p"] * 6, completions, answer=["15"] * 6) == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("1,000", "1000"),
        ("1000", "1,000"),
        ("\\boxed{1,000}", "1000"),
        ("The total is $1,000$.", "1000"),
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("so -4", "-4"),
    ],
)
def test_math_reward_formatting_variants(pred, gold):
    assert math_answer_reward(None, [pred], answer=[gold]) == [1.0]


def test_math_reward_numeric_gold_gsm8k_gold_and_none():
    assert math_answer_reward(None, ["\\boxed{72}", "72", "x"], answer=[72, "so 48+24 #### 72", None]) == [
        1.0,
        1.0,
        None,
    ]


def test_math_reward_chat_completions():
    comps = [chat("<think>7+8</think>\\boxed{15}"), chat("</think>14")]
    assert math_answer_reward([[{"role": "user", "content": "q"}]] * 2, comps, answer=["15", "15"]) == [
        1.0,
        0.0,
    ]


def test_math_reward_ignores_numbers_in_thinking():
    assert math_answer_reward(None, ["<think>15</think>I give up"], answer=["15"]) == [0.0]


def test_math_reward_errors():
    with pytest.raises(ValueError, match="`answer`"):
        math_answer_reward(["p"], ["15"])
    with pytest.raises(ValueError, match="2 values but there are 1"):
        math_answer_reward(["p"], ["15"], answer=["15", "16"])
    with pytest.raises(ValueError, match="prompts"):
        math_answer_reward(["p", "q"], ["15"], answer=["15"])
    with pytest.raises(TypeError, match="completions"):
        math_answer_reward(None, "15", answer=["15"])


def test_math_reward_accepts_trl_kwargs():
    out = math_answer_reward(
        ["p"], ["15"], answer=["15"], completion_ids=[[1, 2]], trainer_state=None, log_extra=None, other=[1]
    )
    assert out == [1.0]


# ------------------------------------------------------------------------------------------
# reasoning_gym_reward
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain_sum_entry():
    entry = reasoning_gym.create_dataset("chain_sum", seed=1, size=1)[0]
    return entry


def test_reasoning_gym_chain_sum_right_and_wrong(chain_sum_entry):
    e = chain_sum_entry
    gold = e["answer"]
    wrong = str(int(gold) + 1)
    comps = [
        f"<think>compute</think><answer>{gold}</answer>",
        f"<think>compute</think>\\boxed{{{gold}}}",
        f"<think>compute</think>The answer is {gold}.",
        f"<think>{gold}</think><answer>{wrong}</answer>",
        "<think>compute</think>no idea",
    ]
    n = len(comps)
    by_dict = reasoning_gym_reward(["p"] * n, comps, entry=[e] * n)
    assert by_dict == [1.0, 1.0, 1.0, 0.0, 0.0]
    # JSON-string entries (robust through Arrow) and chat-format completions give the same.
    by_json = reasoning_gym_reward(None, [chat(c) for c in comps], entry=[json.dumps(e)] * n)
    assert by_json == by_dict


def test_reasoning_gym_metadata_and_answer_columns(chain_sum_entry):
    e = chain_sum_entry
    out = reasoning_gym_reward(
        None, [f"</think>{e['answer']}", "</think>0"], metadata=[e["metadata"]] * 2, answer=[e["answer"]] * 2
    )
    assert out == [1.0, 0.0]
    meta = {k: v for k, v in e["metadata"].items() if k != "source_dataset"}
    out = reasoning_gym_reward(
        None,
        [f"</think>{e['answer']}"],
        metadata=[json.dumps(meta)],
        answer=[e["answer"]],
        task=["chain_sum"],
    )
    assert out == [1.0]


def test_reasoning_gym_plain_number_variant():
    # basic_arithmetic compares strings: "-4.0" alone would score 0; its plain form "-4" is tried too.
    e = reasoning_gym.create_dataset("basic_arithmetic", seed=1, size=1)[0]
    assert e["answer"] == "-4"
    assert reasoning_gym_reward(None, ["</think>\\boxed{-4.0}", "</think>\\boxed{-5}"], entry=[e, e]) == [
        1.0,
        0.0,
    ]


def test_reasoning_gym_with_hf_softthink_dataset_columns():
    # The columns hf_softthink.data.reasoning_gym_dataset produces, passed the way TRL does.
    from hf_softthink.data import reasoning_gym_dataset

    ds = reasoning_gym_dataset("chain_sum", size=2, seed=3, config={"min_terms": 2, "max_terms": 2})
    rows = [ds[0], ds[1]]
    kwargs = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    comps = [chat(f"<think>x</think>\\boxed{{{rows[0]['answer']}}}"), chat("<think>x</think>\\boxed{999999}")]
    out = reasoning_gym_reward([r["prompt"] for r in rows], comps, trainer_state=None, **kwargs)
    assert out == [1.0, 0.0]
    # Rows without an entry (user data mixed in) get no verdict.
    kwargs["entry"][1] = None
    kwargs["task"][1] = None
    assert reasoning_gym_reward(None, comps, **kwargs) == [1.0, None]


def test_reasoning_gym_non_numeric_task():
    e = reasoning_gym.create_dataset("countdown", seed=1, size=1)[0]
    assert reasoning_gym_reward(None, [f"</think>{e['answer']}"], entry=[e]) == [1.0]


def test_reasoning_gym_errors(chain_sum_entry):
    e = chain_sum_entry
    with pytest.raises(ValueError, match="`entry`"):
        reasoning_gym_reward(["p"], ["1"])
    with pytest.raises(ValueError, match="`answer`"):
        reasoning_gym_reward(["p"], ["1"], metadata=[e["metadata"]])
    with pytest.raises(ValueError, match="source_dataset"):
        reasoning_gym_reward(["p"], ["1"], metadata=[{"x": 1}], answer=["1"])
    with pytest.raises(ValueError, match="(?i)unknown reasoning-gym task"):
        reasoning_gym_reward(["p"], ["1"], entry=[e], task=["no_such_task"])
    with pytest.raises(ValueError, match="3 values but there are 1"):
        reasoning_gym_reward(["p"], ["1"], entry=[e] * 3)
    with pytest.raises(ValueError, match="JSON"):
        reasoning_gym_reward(["p"], ["1"], entry=["{not json"])


# ------------------------------------------------------------------------------------------
# format_reward
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, want",
    [
        ("<think>8 + 7 = 15</think>The answer is 15.", 1.0),
        ("8 + 7 = 15</think>\n15", 1.0),  # <think> was in the prompt
        ("The answer is 15.", 0.0),  # no thinking part
        ("<think>8 + 7</think>   ", 0.0),  # empty answer
        ("</think>15", 0.0),  # empty thinking
        ("<think></think>15", 0.0),
        ("a</think>b</think>c", 0.0),  # think_end twice
        (chat("<think>x</think>15"), 1.0),
        ([{"role": "assistant", "content": "15", "reasoning_content": "8+7"}], 1.0),
    ],
)
def test_format_reward(completion, want):
    assert format_reward(["p"], [completion]) == [want]


def test_format_reward_custom_marker_and_errors():
    assert format_reward(None, ["x<|end|>y"], think_end="<|end|>") == [1.0]
    with pytest.raises(ValueError, match="think_end"):
        format_reward(None, ["x"], think_end="")
    with pytest.raises(ValueError, match="prompts"):
        format_reward(["a", "b"], ["x"])


def test_reward_names_and_configure_reward():
    for f, name in [
        (math_answer_reward, "math_answer_reward"),
        (reasoning_gym_reward, "reasoning_gym_reward"),
        (format_reward, "format_reward"),
    ]:
        assert f.__name__ == name
    r = configure_reward(format_reward, name="format_end", think_end="<|end|>")
    assert r.__name__ == "format_end"
    assert r(prompts=["p"], completions=["x<|end|>y"], answer=["unused"]) == [1.0]
    m = configure_reward(math_answer_reward, think_end="<|end|>")
    assert m.__name__ == "math_answer_reward"
    assert m(prompts=None, completions=["15 <|end|> 16"], answer=["16"]) == [1.0]
