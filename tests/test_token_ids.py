"""Every token id is checked before the first step (issue 17): markers from strings or ids, stop and pad ids and
the prompt, against the model's input embedding and output layer, in `generate`, `evaluate_modes`, the command
line and the trainer; a tokenizer whose ids exceed the model's embedding is refused by name.

The reproduction: `tok.add_tokens(["<mark>"])` gives id 263 on a tiny model with 263 rows. Before, thinking
never ended (silently) without a budget, and every forcer, blend or forced text raised `RuntimeError: index 263
is out of bounds` in a step.
"""

from __future__ import annotations

import dataclasses

import datasets
import pytest
import torch

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.cli import main
from hf_softthink.evaluation import evaluate_modes
from hf_softthink.generation import SoftThinkingPlan, check_plan_token_ids, check_soft_thinking
from hf_softthink.models import TINY_VOCAB_SIZE, tiny_model, tiny_tokenizer
from hf_softthink.token_ids import check_tokenizer_fits, embedding_sizes
from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

datasets.disable_progress_bars()
MARK = TINY_VOCAB_SIZE  # the id `add_tokens` gives the first added token


def marked_tokenizer():
    tok = tiny_tokenizer()
    tok.add_tokens(["<mark>"])
    assert tok.convert_tokens_to_ids("<mark>") == MARK
    return tok


def never_stepped(model):
    """The model, with its forward made to fail: a check must stop the run before the first step."""

    def forward(*args, **kwargs):
        raise AssertionError("the model ran a step")

    model.forward = forward
    return model


SWITCH = dict(mode="switch", max_switches=2, switch_window=1)
MARKERS = {
    "think-end, no budget (never ended, silently)": (dict(think_end="<mark>"), "think_end='<mark>'"),
    "think-end with a budget": (dict(think_end="<mark>", max_thinking_tokens=2), "think_end='<mark>'"),
    "think-end with Cold Stop": (dict(think_end="<mark>", cold_stop_entropy=1.0), "think_end='<mark>'"),
    "think-end blended at a switch": (dict(think_end="<mark>", switch_beta=0.7, **SWITCH), "think_end='<mark>'"),
    "think-end as an id": (dict(think_end=MARK, max_thinking_tokens=2), f"think_end={MARK}"),
    "think-start blended at a switch": (dict(think_start="<mark>", switch_alpha=0.5, **SWITCH), "think_start='<mark>'"),
    "a final answer spelling the mark": (
        dict(final_answer="so <mark>", **SWITCH), "final_answer='so <mark>'"
    ),
}


@pytest.mark.parametrize("values,setting", MARKERS.values(), ids=MARKERS.keys())
def test_a_marker_the_model_cannot_hold_is_refused_before_the_first_step(values, setting):
    tok = marked_tokenizer()
    model = never_stepped(enable_soft_thinking(tiny_model("llama"), tokenizer=tok))
    inputs = tok(["1 + 1 ="], return_tensors="pt")
    with pytest.raises(ValueError) as error:
        model.generate(**inputs, max_new_tokens=4, soft_thinking=SoftThinkingConfig(**values))
    message = str(error.value)
    assert setting in message and f"{MARK}" in message and "263 rows" in message, message
    assert "resize_token_embeddings" in message


GENERATION_IDS = {
    "an end-of-sequence id": ("eos_token_id", [2, 400], "generation_config.eos_token_id=[2, 400]"),
    "a padding id": ("pad_token_id", 300, "generation_config.pad_token_id=300"),
}


@pytest.mark.parametrize("name,value,setting", GENERATION_IDS.values(), ids=GENERATION_IDS.keys())
def test_stop_and_pad_ids_beyond_the_model_are_refused(name, value, setting):
    tok = tiny_tokenizer()
    model = never_stepped(enable_soft_thinking(tiny_model("llama"), tokenizer=tok))
    setattr(model.generation_config, name, value)
    with pytest.raises(ValueError, match=setting.replace("[", r"\[").replace("]", r"\]")):
        model.generate(**tok(["hi"], return_tensors="pt"), max_new_tokens=3, soft_thinking=True)


def test_a_prompt_from_another_models_tokenizer_is_refused():
    tok = marked_tokenizer()
    model = never_stepped(enable_soft_thinking(tiny_model("llama"), tokenizer=tok))
    with pytest.raises(ValueError, match=r"the prompt \(input_ids\) is token ids \[\d+, 263\], of which \[263\]"):
        model.generate(**tok(["a <mark>"], return_tensors="pt"), max_new_tokens=3, soft_thinking=True)


def test_the_hard_thinking_budget_names_a_marker_beyond_the_scores():
    from transformers import LogitsProcessorList

    from hf_softthink.processors import HardThinkingBudgetProcessor

    tok = marked_tokenizer()
    budget = HardThinkingBudgetProcessor(tok, "<mark>", max_thinking_tokens=1, prompt_length=3)
    with pytest.raises(ValueError, match="think_end='<mark>' is token id 263, which this model cannot produce"):
        tiny_model("llama").generate(**tok(["1 +"], return_tensors="pt"), max_new_tokens=4, do_sample=False,
                                     logits_processor=LogitsProcessorList([budget]))  # fmt: skip


def test_the_hard_thinking_budget_names_a_forced_text_beyond_the_scores():
    from transformers import LogitsProcessorList

    from hf_softthink.processors import HardThinkingBudgetProcessor

    tok = marked_tokenizer()
    budget = HardThinkingBudgetProcessor(tok, "</think>", max_thinking_tokens=1, prompt_length=3,
                                         forced_text="</think><mark>")
    with pytest.raises(ValueError, match=r"forced_text='</think><mark>' is token ids \[262, 263\], of which \[263\]"):
        tiny_model("llama").generate(**tok(["1 +"], return_tensors="pt"), max_new_tokens=4, do_sample=False,
                                     logits_processor=LogitsProcessorList([budget]))  # fmt: skip


def test_a_marker_beyond_a_shrunk_embedding_is_refused():
    tok = tiny_tokenizer()
    model = enable_soft_thinking(tiny_model("llama"), tokenizer=tok)
    model.resize_token_embeddings(200)  # "</think>" is id 262
    with pytest.raises(ValueError, match="think_end='</think>' is token id 262.*200 rows"):
        check_soft_thinking(model, SoftThinkingConfig(max_thinking_tokens=2), tok)


def _plan(model, tok):
    config = SoftThinkingConfig(max_topk=3, stop_decision="sample", **{**SWITCH, "mode": "soft", "max_switches": None})
    return check_soft_thinking(model, config, tok)


def _switch_plan(model, tok):
    config = SoftThinkingConfig(switch_beta=0.7, switch_alpha=0.5, final_answer="\nThe answer is",
                                first_step_blend=0.9, first_step_marker="\n", explicit_math_tokens=True, **SWITCH)
    return check_soft_thinking(model, config, tok)


def _id_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(SoftThinkingPlan) if f.name.endswith(("_id", "_ids"))]


@pytest.mark.parametrize("field", _id_fields())
def test_every_token_id_field_of_the_plan_is_checked(field):
    """By construction: any plan field named `*_id` / `*_ids` (a field another part adds too) is checked."""
    tok = tiny_tokenizer()
    model = enable_soft_thinking(tiny_model("llama"), tokenizer=tok)
    plan = _plan(model, tok) if field == "stop_ids" else _switch_plan(model, tok)
    value = getattr(plan, field)
    assert value is not None and (not isinstance(value, tuple) or value), f"{field} is not set by this plan"
    if isinstance(value, torch.Tensor):
        setattr(plan, field, torch.cat([value, torch.tensor([999])]))
    elif isinstance(value, tuple):
        setattr(plan, field, (*value, 999))
    else:
        setattr(plan, field, 999)
    with pytest.raises(ValueError, match="999"):
        check_plan_token_ids(model, plan, tok)


def test_embedding_sizes_read_the_modules():
    model = tiny_model("llama")
    sizes = embedding_sizes(model)
    assert (sizes.input_rows, sizes.output_rows, sizes.usable) == (263, 263, 263)
    model.resize_token_embeddings(300)
    assert embedding_sizes(model).usable == 300
    assert embedding_sizes(object()) is None  # a stand-in: nothing to check against


# ----------------------------------------------------------------------------------------- evaluate_modes


def test_evaluate_modes_refuses_a_tokenizer_the_model_cannot_embed_before_decoding():
    model = never_stepped(tiny_model("llama"))
    with pytest.raises(ValueError, match=r"tokenizer .* has 264 tokens, ids up to 263 \('<mark>' = 263\)"):
        evaluate_modes(model, marked_tokenizer(), [{"question": "q", "answer": "1"}], "hard-greedy", progress=False)


EVAL_MARKERS = {
    "a soft mode's own marker": (dict(modes=[SoftThinkingConfig(think_end=MARK, max_thinking_tokens=2)]),
                                 f"Decoding mode 'soft[think_end={MARK}]': SoftThinkingConfig.think_end={MARK}"),
    "an eos id in the model's generation config": (dict(modes="hard-greedy,soft-greedy", eos=300),
                                                    "generation_config.eos_token_id=[300]"),
}


@pytest.mark.parametrize("settings,fragment", EVAL_MARKERS.values(), ids=EVAL_MARKERS.keys())
def test_evaluate_modes_checks_every_modes_ids_before_the_first_batch(settings, fragment):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    if "eos" in settings:
        model.generation_config.eos_token_id = settings["eos"]
    model.generate = lambda *a, **k: pytest.fail("decoded")
    with pytest.raises(ValueError) as error:
        evaluate_modes(model, tok, [{"question": "q", "answer": "1"}], settings["modes"], max_new_tokens=4,
                       max_thinking_tokens=2, progress=False)  # fmt: skip
    assert fragment in str(error.value), str(error.value)


# ----------------------------------------------------------------------------------------- command line


@pytest.fixture
def mismatched_folder(tmp_path):
    """A model folder whose tokenizer has a token the model's embedding lacks (added, not resized)."""
    folder = tmp_path / "model"
    tiny_model("llama").save_pretrained(folder)
    marked_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("command", [["generate", "1 + 1?"], ["eval", "--task", "chain_sum", "--num-problems", "1"]])
def test_the_command_line_refuses_a_tokenizer_the_model_cannot_embed(command, mismatched_folder, tmp_path, capsys):
    argv = [*command, "--model", str(mismatched_folder), "--max-new-tokens", "4", "--max-thinking-tokens", "2"]
    if command[0] == "eval":
        argv += ["--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "has 264 tokens" in err and "'<mark>' = 263" in err and "Traceback" not in err, err


def test_the_command_line_refuses_a_marker_id_beyond_the_model(tmp_path, capsys):
    folder = tmp_path / "model"
    tiny_model("llama").save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    assert main(["generate", "1 + 1?", "--model", str(folder), "--think-end", "400", "--max-new-tokens", "4"]) == 2
    err = capsys.readouterr().err
    assert "think_end=400" in err and "Traceback" not in err, err


# ----------------------------------------------------------------------------------------- trainer


def _trainer(tmp_path, tok, soft):
    args = SoftGRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, soft_rollout="gumbel", soft_thinking=soft,
        per_device_train_batch_size=4, num_generations=4, max_completion_length=5, max_steps=1, report_to=[],
        save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    data = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": f"{i} + 1"}] for i in range(4)]})
    return SoftGRPOTrainer(tiny_model("llama"), reward_funcs=[lambda completions, **k: [0.0] * len(completions)],
                           args=args, train_dataset=data, processing_class=tok)  # fmt: skip


def test_the_trainer_refuses_a_tokenizer_the_model_cannot_embed_at_construction(tmp_path):
    with pytest.raises(ValueError, match="has 264 tokens"):
        _trainer(tmp_path, marked_tokenizer(), SoftThinkingConfig(max_topk=3, max_thinking_tokens=2))


def test_the_trainer_refuses_a_marker_id_the_model_cannot_hold_at_construction(tmp_path):
    soft = SoftThinkingConfig(max_topk=3, max_thinking_tokens=2, think_start=MARK + 5, switch_alpha=0.5, **SWITCH)
    with pytest.raises(ValueError, match=f"SoftGRPOTrainer: .*think_start={MARK + 5}"):
        _trainer(tmp_path, tiny_tokenizer(), soft)


def test_check_tokenizer_fits_accepts_a_padded_vocabulary():
    model = tiny_model("llama")
    model.resize_token_embeddings(320)  # more rows than tokens, as many checkpoints have
    check_tokenizer_fits(model, tiny_tokenizer())


def test_only_special_tokens_beyond_the_model_are_warned_not_refused():
    """As a multimodal tokenizer's image placeholder: text never tokenizes to it unless it spells it."""
    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    with pytest.warns(UserWarning, match="'<image>' = 263.*Only special tokens are beyond it"):
        check_tokenizer_fits(tiny_model("llama"), tok)
    model = never_stepped(enable_soft_thinking(tiny_model("llama"), tokenizer=tok))
    with pytest.raises(ValueError, match=r"the prompt \(input_ids\) .* of which \[263\]"):  # its use is refused
        model.generate(**tok(["a <image>"], return_tensors="pt"), max_new_tokens=2, soft_thinking=True)
