"""SoftGRPOTrainer's inputs (issue 11): reward outputs, prompts and rollout settings, each named with its fix.

`None` rewards are TRL's "no verdict" and stay legal (a function may leave every completion unscored); any
other reward that is not a real number, and an output that is not a list, names the reward function.
"""

from __future__ import annotations

import math
import warnings

import datasets
import numpy as np
import pytest
import torch

from hf_softthink import SoftThinkingConfig
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer
from hf_softthink.trainer.inputs import check_combined_rewards, check_reward_output

TOKENIZER = tiny_tokenizer()
MISSING_MODEL = "/nonexistent/model"  # loading it would fail: the checks must come first


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def prompts(n: int = 4) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"prompt": [chat(f"{i} + 1") for i in range(n)]})


def make_args(tmp_path, budget: int = 2, **overrides) -> SoftGRPOConfig:
    soft = overrides.pop("soft", SoftThinkingConfig(max_topk=3, max_thinking_tokens=budget))
    values = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        soft_rollout="gumbel",
        soft_thinking=soft,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=budget + 3,
        max_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    values.update(overrides)
    return SoftGRPOConfig(**values)


def length_reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 2) for c in completions]


# ------------------------------------------------------------------------------------------ reward outputs

BAD_OUTPUTS = {
    "a bare None": (None, "returned NoneType None instead of a list"),
    "a bare number": (0.5, "returned float 0.5 instead of a list"),
    "a string": ("good", "returned str 'good' instead of a list"),
    "a dict": ({"reward": 1.0}, "returned dict"),
    "string rewards": (["1.0", "0.0", "1.0", "0.0"], "returned str '1.0' for completion 0 of 4"),
    "one string among numbers": ([1.0, 0.0, "x", 1.0], "returned str 'x' for completion 2 of 4"),
    "nested lists": ([[1.0], [0.0], [1.0], [0.0]], "returned list [1.0] for completion 0"),
    "dicts": ([{"score": 1}] * 4, "returned dict {'score': 1} for completion 0"),
    "bytes": ([b"1"] * 4, "returned bytes b'1' for completion 0"),
    "complex numbers": ([1 + 2j] * 4, "returned complex (1+2j) for completion 0"),
    "a vector per completion": ([torch.ones(2)] * 4, "returned Tensor"),
    "an object": ([object()] * 4, "returned object"),
}


@pytest.mark.parametrize("output,fragment", BAD_OUTPUTS.values(), ids=BAD_OUTPUTS.keys())
def test_reward_outputs_that_are_not_rewards_name_the_function(output, fragment):
    with pytest.raises(TypeError) as error:
        check_reward_output(output, "my_reward")
    message = str(error.value)
    assert message.startswith("The reward function 'my_reward' returned") and fragment in message, message
    assert "None" in message  # the fix names None as the way to leave a completion unscored


GOOD_OUTPUTS = {
    "all None (unscored)": [None] * 4,
    "NaN (unscored, as in GRPOTrainer)": [math.nan] * 4,
    "ints, floats, bools and None": [1, 0.5, True, None],
    "numpy scalars": [np.float32(0.5), np.int64(1), np.float64(2.0), np.bool_(True)],
    "a numpy array": np.array([0.0, 1.0, 0.5, 1.0]),
    "a tensor": torch.tensor([0.0, 1.0, 0.5, 1.0]),
    "0-d tensors": [torch.tensor(1.0)] * 4,
    "a tuple": (1.0, 0.0, 1.0, 0.0),
    "a generator": (float(i) for i in range(4)),
}


@pytest.mark.parametrize("output", GOOD_OUTPUTS.values(), ids=GOOD_OUTPUTS.keys())
def test_real_numbers_and_none_are_rewards(output):
    values = check_reward_output(output, "my_reward")
    assert len(values) == 4 and all(v is None or math.isnan(float(v)) or float(v) == float(v) for v in values)


def text_reward(completions, **kwargs):
    return ["correct"] * len(completions)


def no_list_reward(completions, **kwargs):
    return None


async def async_text_reward(completions, **kwargs):
    return ["1"] * len(completions)


def short_reward(completions, **kwargs):
    return [1.0]


class CallableReward:
    def __call__(self, completions, **kwargs):
        return [{"score": 1.0}] * len(completions)


def inf_reward(completions, **kwargs):
    return [math.inf] + [0.0] * (len(completions) - 1)


def huge_reward(completions, **kwargs):
    return [10**400] * len(completions)


def float64_reward(completions, **kwargs):
    return [1e300] * len(completions)


IN_TRAINING = {
    "strings": (
        text_reward,
        TypeError,
        "The reward function 'text_reward' returned str 'correct' for completion 0",
    ),
    "no list": (no_list_reward, TypeError, "'no_list_reward' returned NoneType None instead of a list"),
    "async strings": (async_text_reward, TypeError, "'async_text_reward' returned str '1' for completion 0"),
    "a callable object": (CallableReward(), TypeError, "'CallableReward' returned dict"),
    "the wrong length": (short_reward, ValueError, "'short_reward' returned 1 rewards, but 4 were expected"),
    "an infinite reward": (inf_reward, ValueError, "'inf_reward' returned float inf for completion 0 of 4"),
    "an int beyond any float": (huge_reward, ValueError, "'huge_reward' returned int 1000"),
    "a float64 beyond float32": (float64_reward, ValueError, "'float64_reward' returned float 1e.300"),
}


@pytest.mark.parametrize("reward,kind,fragment", IN_TRAINING.values(), ids=IN_TRAINING.keys())
def test_bad_rewards_in_training_name_the_function(reward, kind, fragment, tmp_path):
    trainer = SoftGRPOTrainer(
        tiny_model("llama", seed=0),
        reward_funcs=[reward],
        args=make_args(tmp_path),
        train_dataset=prompts(),
        processing_class=TOKENIZER,
    )
    assert trainer.reward_func_names == [fragment.split("'")[1]]  # TRL logs it under its own name
    with pytest.raises(kind, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        trainer.train()


NON_FINITE = {
    "inf": ([math.inf, 0.0, 1.0, 0.0], "float inf for completion 0 of 4: a reward infinite"),
    "-inf": ([0.0, -math.inf, 1.0, 0.0], "float -inf for completion 1 of 4: a reward infinite"),
    "1e300 (inf in float32)": ([0.0, 0.0, 1e300, 0.0], "completion 2 of 4: a reward beyond float32"),
    "10**400 (no float holds it)": ([0.0, 0.0, 0.0, 10**400], "completion 3 of 4: a reward beyond float32"),
    "a numpy inf": (np.array([0.0, np.inf, 0.0, 0.0], dtype=np.float32), "completion 1 of 4: a reward infinite"),
    "a 0-d tensor inf": ([torch.tensor(math.inf)] + [0.0] * 3, "completion 0 of 4: a reward infinite"),
}


@pytest.mark.parametrize("output,fragment", NON_FINITE.values(), ids=NON_FINITE.keys())
def test_infinite_or_float32_overflowing_rewards_name_the_function_and_completion(output, fragment):
    with pytest.raises(ValueError) as error:
        check_reward_output(output, "my_reward")
    message = str(error.value)
    assert message.startswith("The reward function 'my_reward' returned") and fragment in message, message
    assert "nothing trains" in message and "None" in message


@pytest.mark.parametrize("weights", [[math.nan], [math.inf], [1.0, -math.inf], [1e39]])
def test_non_finite_reward_weights_are_refused(weights, tmp_path):
    with pytest.raises(ValueError, match=rf"SoftGRPOConfig.reward_weights\[{len(weights) - 1}\]"):
        make_args(tmp_path, reward_weights=weights)


BAD_CONFIG = {
    "no completion tokens": (dict(max_completion_length=0), "SoftGRPOConfig.max_completion_length=0 is invalid"),
    "negative completion tokens": (dict(max_completion_length=-4), "max_completion_length must be"),
    "temperature 0": (dict(temperature=0.0), "SoftGRPOConfig.temperature=0.0 is invalid"),
    "no iterations": (dict(num_iterations=0), "SoftGRPOConfig.num_iterations=0 is invalid"),
    "top-p 0": (dict(top_p=0.0), "SoftGRPOConfig.top_p=0.0 is invalid"),
    "a seed numpy cannot take": (dict(seed=2**70), f"SoftGRPOConfig.seed={2**70} is invalid"),
    "a negative data seed": (dict(data_seed=-1), "SoftGRPOConfig.data_seed=-1 is invalid"),
    "soft_thinking JSON cut short": (
        dict(soft='{"max_topk": 3'),
        "SoftGRPOConfig.soft_thinking: SoftThinkingConfig.from_json needs a JSON object .* is not valid JSON",
    ),
    "soft_thinking JSON that is not an object": (dict(soft="[3]"), "SoftGRPOConfig.soft_thinking: .*got an array"),
}


@pytest.mark.parametrize("overrides,message", BAD_CONFIG.values(), ids=BAD_CONFIG.keys())
def test_settings_trl_accepts_and_fails_on_later_are_named(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        make_args(tmp_path, **overrides)


def test_a_reward_model_or_a_weighted_sum_beyond_float32_names_the_function_and_row():
    names, weights = ["model_a", "func_b"], torch.tensor([1.0, 2.0])
    check_combined_rewards(torch.tensor([[1.0, math.nan], [0.0, 1.0]]), weights, names, 2)  # NaN: unscored
    with pytest.raises(ValueError, match=r"'model_a' gave inf for row 3 of the batch \(prompt 1, completion 1\)"):
        check_combined_rewards(torch.tensor([[0.0, 0.0]] * 3 + [[math.inf, 0.0]]), weights, names, 2)
    with pytest.raises(ValueError, match=r"weighted sum of the rewards for row 1 .* overflows float32"):
        check_combined_rewards(torch.tensor([[0.0, 0.0], [3e38, 3e38]]), weights, names, 2)


def test_a_reward_leaving_every_completion_unscored_trains(tmp_path):
    def abstain(completions, **kwargs):
        return [None] * len(completions)

    trainer = SoftGRPOTrainer(
        tiny_model("llama", seed=0),
        reward_funcs=[abstain, length_reward],
        args=make_args(tmp_path),
        train_dataset=prompts(),
        processing_class=TOKENIZER,
    )
    trainer.train()
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])


# ------------------------------------------------------------------------------------------ prompts


def _with(prompt, row: int = 2, n: int = 4):
    values = [chat(f"{i} + 1") for i in range(n)]
    values[row] = prompt
    return values


EMPTY_PROMPTS = {
    "no prompt column": (
        dict(train_dataset=datasets.Dataset.from_dict({"question": ["a?"]})),
        "train_dataset has no 'prompt' column (columns: ['question'])",
    ),
    "an empty string": (
        dict(train_dataset=datasets.Dataset.from_dict({"prompt": ["a?", "b?", ""]})),
        "train_dataset row 2 has an empty prompt ('')",
    ),
    "a blank string": (dict(train_dataset=[{"prompt": "a?"}, {"prompt": " \n\t"}]), "train_dataset row 1"),
    "no messages": (
        dict(train_dataset=[{"prompt": chat("a?")}, {"prompt": []}]),
        "train_dataset row 1 has an empty prompt ([])",
    ),
    "an empty user message": (
        dict(train_dataset=datasets.Dataset.from_dict({"prompt": _with(chat(""))})),
        "train_dataset row 2 has an empty prompt",
    ),
    "a system message and a blank user message": (
        dict(
            train_dataset=[
                {"prompt": [{"role": "system", "content": "Think."}, {"role": "user", "content": " "}]}
            ]
        ),
        "train_dataset row 0 has an empty prompt",
    ),
    "a null prompt": (
        dict(train_dataset=datasets.Dataset.from_dict({"prompt": ["a?", None]})),
        "train_dataset row 1 has an empty prompt (None)",
    ),
    "an empty eval prompt": (
        dict(train_dataset=prompts(), eval_dataset=datasets.Dataset.from_dict({"prompt": [chat("")]})),
        "eval_dataset row 0 has an empty prompt",
    ),
    "an empty prompt in a named eval set": (
        dict(
            train_dataset=prompts(),
            eval_dataset={"easy": prompts(), "hard": [{"prompt": "a"}, {"prompt": ""}]},
        ),
        "eval_dataset['hard'] row 1 has an empty prompt",
    ),
}


MALFORMED_PROMPTS = {
    "a number": (dict(train_dataset=[{"prompt": "a?"}, {"prompt": 5}]), "train_dataset row 1 has a malformed "
                 "prompt: int 5: a prompt is a string or a list of chat messages"),
    "numbers in a dataset column": (
        dict(train_dataset=datasets.Dataset.from_dict({"prompt": [1, 2, 3]})),
        "train_dataset row 0 has a malformed prompt: int 1",
    ),
    "a single message dict": (
        dict(train_dataset=[{"prompt": chat("a?")}, {"prompt": {"role": "user", "content": "b?"}}]),
        "train_dataset row 1 has a malformed prompt: a single message {'role': 'user', 'content': 'b?'}, not a "
        "list of messages: wrap it in a list",
    ),
    "a message without a role": (
        dict(train_dataset=[{"prompt": chat("a?")}, {"prompt": [{"content": "b?"}]}]),
        "train_dataset row 1 has a malformed prompt: message 0 has no 'role'",
    ),
    "a role missing in one row of a dataset": (
        dict(train_dataset=datasets.Dataset.from_list(
            [{"prompt": chat("a?")}, {"prompt": [{"content": "b?"}]}])),  # fmt: skip
        "train_dataset row 1 has a malformed prompt: message 0 has no 'role' (got {'role': None, 'content': 'b?'})",
    ),
    "a user turn with content None": (
        dict(train_dataset=[{"prompt": [{"role": "system", "content": "Think."}, {"role": "user", "content": None}]}]),
        "train_dataset row 0 has a malformed prompt: message 1 (user) has no content (None): an empty user turn",
    ),
    "messages that are strings": (
        dict(train_dataset=[{"prompt": ["hello", "there"]}]),
        "train_dataset row 0 has a malformed prompt: message 0 is str 'hello', not a chat message",
    ),
    "an empty train dataset": (
        dict(train_dataset=datasets.Dataset.from_dict({"prompt": []})),
        "train_dataset has 0 rows, so there is nothing to train on",
    ),
    "an empty list of rows": (dict(train_dataset=[]), "train_dataset has 0 rows"),
    "an empty eval dataset": (
        dict(train_dataset=prompts(), eval_dataset=prompts().select([])),
        "eval_dataset has 0 rows, so there is nothing to evaluate",
    ),
}


@pytest.mark.parametrize("datasets_,fragment", MALFORMED_PROMPTS.values(), ids=MALFORMED_PROMPTS.keys())
def test_malformed_prompts_and_empty_datasets_name_the_row_before_the_model_loads(datasets_, fragment, tmp_path):
    with pytest.raises(ValueError) as error:
        SoftGRPOTrainer(MISSING_MODEL, reward_funcs=[length_reward], args=make_args(tmp_path),
                        processing_class=TOKENIZER, **datasets_)  # fmt: skip
    message = str(error.value)
    assert message.startswith("SoftGRPOTrainer:") and fragment in message, message


def test_an_empty_prompt_in_an_iterable_dataset_is_named_when_training_reaches_it(tmp_path):
    rows = [{"prompt": chat(f"{i} + 1")} for i in range(4)] + [{"prompt": chat(" ")}]

    def generate():
        yield from rows

    trainer = SoftGRPOTrainer(tiny_model("llama", seed=0), reward_funcs=[length_reward],
                              args=make_args(tmp_path, max_steps=3), processing_class=TOKENIZER,
                              train_dataset=datasets.IterableDataset.from_generator(generate))  # fmt: skip
    with pytest.raises(ValueError, match=r"train_dataset row 4 has an empty prompt"):
        trainer.train()


@pytest.mark.parametrize("datasets_,fragment", EMPTY_PROMPTS.values(), ids=EMPTY_PROMPTS.keys())
def test_empty_prompts_name_the_row_before_the_model_loads(datasets_, fragment, tmp_path):
    with pytest.raises(ValueError) as error:
        SoftGRPOTrainer(
            MISSING_MODEL,
            reward_funcs=[length_reward],
            args=make_args(tmp_path),
            processing_class=TOKENIZER,
            **datasets_,
        )
    message = str(error.value)
    assert message.startswith("SoftGRPOTrainer:") and fragment in message, message


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_output_dir_that_cannot_be_a_folder_is_named_before_the_model_loads(where, tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("x")
    output_dir = taken if where == "a file" else taken / "out"
    with pytest.raises(NotADirectoryError, match=f"SoftGRPOConfig.output_dir '{output_dir}'"):
        SoftGRPOTrainer(
            MISSING_MODEL,
            reward_funcs=[length_reward],
            args=make_args(tmp_path, output_dir=str(output_dir)),
            train_dataset=prompts(),
            processing_class=TOKENIZER,
        )


def test_prompts_with_text_are_accepted(tmp_path):
    rows = [
        {"prompt": "a?"},
        {
            "prompt": [{"role": "system", "content": "Think about 2 + 2."}]
        },  # no user turn: the system text counts
        {"prompt": [{"role": "user", "content": [{"type": "text", "text": "a?"}]}]},  # structured content
    ]
    with pytest.raises(OSError):  # past the prompt check: the (missing) model is loaded next
        SoftGRPOTrainer(
            MISSING_MODEL,
            reward_funcs=[length_reward],
            args=make_args(tmp_path),
            train_dataset=rows,
            processing_class=TOKENIZER,
        )


# ------------------------------------------------------------------------------------------ rollout settings

ROLLOUT_SETTINGS = {
    "a completion as long as the budget": (
        dict(budget=4, max_completion_length=4),
        "max_completion_length=4 is not larger than the thinking budget soft_thinking.max_thinking_tokens=4",
    ),
    "a completion shorter than the budget": (dict(budget=16, max_completion_length=5), "never answers"),
    "think-end is the end-of-sequence text": (
        dict(soft=SoftThinkingConfig(max_topk=3, max_thinking_tokens=2, think_end="<|im_end|>")),
        "think_end='<|im_end|>' is the end-of-sequence token",
    ),
    "think-end is the end-of-sequence id": (
        dict(soft=SoftThinkingConfig(max_topk=3, max_thinking_tokens=2, think_end=TOKENIZER.eos_token_id)),
        f"think_end={TOKENIZER.eos_token_id} is the end-of-sequence token",
    ),
}


def _our_warnings(caught) -> list[str]:
    return [
        str(w.message)
        for w in caught
        if "never answers" in str(w.message) or "answer phase" in str(w.message)
    ]


@pytest.mark.parametrize("overrides,fragment", ROLLOUT_SETTINGS.values(), ids=ROLLOUT_SETTINGS.keys())
def test_rollout_settings_that_cannot_work_are_warned(overrides, fragment, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SoftGRPOTrainer(
            tiny_model("llama", seed=0),
            reward_funcs=[length_reward],
            args=make_args(tmp_path, **overrides),
            train_dataset=prompts(),
            processing_class=TOKENIZER,
        )
    ours = _our_warnings(caught)
    assert len(ours) == 1 and fragment in ours[0], ours


def test_workable_rollout_settings_warn_nothing(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SoftGRPOTrainer(
            tiny_model("llama", seed=0),
            reward_funcs=[length_reward],
            args=make_args(tmp_path),
            train_dataset=prompts(),
            processing_class=TOKENIZER,
        )
    assert _our_warnings(caught) == []
