"""Resuming `SoftGRPOTrainer` from checkpoints it can trust (issue 17): the newest complete checkpoint after a
failed save, every damaged file named, and with `num_iterations=2` a resumed run equal to an uninterrupted one
(the buffered rollouts are saved with the checkpoint).
"""

from __future__ import annotations

import json
import random

import datasets
import pytest
import torch
from peft import LoraConfig
from transformers import TrainerCallback

from hf_softthink import SoftThinkingConfig
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

TOKENIZER = tiny_tokenizer()


def prompts(n=8):
    rng = random.Random(0)
    rows = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 6))) for _ in range(n)]
    return datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": r}] for r in rows]})


def odd_ids(completion_ids, **kwargs):
    return [sum(i % 2 for i in ids) / max(len(ids), 1) for ids in completion_ids]


def make_args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, soft_rollout="gumbel",
        soft_thinking=SoftThinkingConfig(max_topk=4, max_thinking_tokens=3), per_device_train_batch_size=4,
        num_generations=4, max_completion_length=6, max_steps=3, logging_steps=1, report_to=[],
        save_strategy="steps", save_steps=1, seed=0, learning_rate=1e-2, disable_tqdm=True,
    )  # fmt: skip
    values.update(overrides)
    return SoftGRPOConfig(**values)


def make_trainer(args, callbacks=None):
    return SoftGRPOTrainer(
        model=tiny_model("llama", seed=0), reward_funcs=odd_ids, args=args, train_dataset=prompts(),
        processing_class=TOKENIZER, peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
        callbacks=callbacks,
    )  # fmt: skip


class StopAfterSaving(TrainerCallback):
    """Stops the run (as a crash would) right after the checkpoint of step `step` is saved."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def trained_weights(trainer):
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """An output folder with checkpoint-1 and checkpoint-2 of a 3-step run stopped after saving step 2."""
    tmp_path = tmp_path_factory.mktemp("run")
    with pytest.raises(KeyboardInterrupt):
        make_trainer(make_args(tmp_path), callbacks=[StopAfterSaving(2)]).train()
    out = tmp_path / "out"
    assert (out / "checkpoint-1" / "trainer_state.json").is_file() and (out / "checkpoint-2").is_dir()
    return out


def _copy(source, tmp_path):
    import shutil

    target = tmp_path / "out"
    shutil.copytree(source, target)
    return target


def test_resume_takes_the_newest_complete_checkpoint_after_a_failed_save(two_checkpoints, tmp_path):
    out = _copy(two_checkpoints, tmp_path)
    (out / "checkpoint-2" / "trainer_state.json").unlink()  # the save of step 2 did not finish (a full disk)
    trainer = make_trainer(make_args(tmp_path))
    with pytest.warns(UserWarning, match=r"Resuming from .*checkpoint-1.*skipped: checkpoint-2: .*trainer_state.json "
                                         r"is missing: the save did not finish"):  # fmt: skip
        trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 3
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [1, 2, 3]  # 1: checkpoint-1's log


def _truncate(name):
    def damage(folder):
        file = folder / name
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        return file

    return damage


DAMAGE = {
    "trainer_state.json cut short": (_truncate("trainer_state.json"), "trainer_state.json cannot be read"),
    "optimizer.pt cut short": (_truncate("optimizer.pt"), "optimizer.pt is damaged or was cut short"),
    "scheduler.pt cut short": (_truncate("scheduler.pt"), "scheduler.pt is damaged or was cut short"),
    "rng_state.pth cut short": (_truncate("rng_state.pth"), "rng_state.pth is damaged or was cut short"),
    "the adapter cut short": (_truncate("adapter_model.safetensors"), "adapter_model.safetensors cannot be read"),
    "the adapter config cut short": (_truncate("adapter_config.json"), "adapter_config.json is not valid JSON"),
}


@pytest.mark.parametrize("damage,fragment", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_checkpoint_file_is_named(damage, fragment, two_checkpoints, tmp_path):
    out = _copy(two_checkpoints, tmp_path)
    file = damage(out / "checkpoint-2")
    trainer = make_trainer(make_args(tmp_path))
    with pytest.raises(ValueError) as error:  # an explicit path: refused, naming the file, before anything loads
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    message = str(error.value)
    assert str(file) in message and fragment in message and "resume from an earlier checkpoint" in message, message
    assert trainer.state.global_step == 0
    with pytest.warns(UserWarning, match=f"skipped: checkpoint-2: .*{file.name}"):  # True: the earlier one
        trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 3


def test_damage_the_cheap_check_cannot_see_is_named_when_loading(two_checkpoints, tmp_path):
    out = _copy(two_checkpoints, tmp_path)
    torch.save({"not": "an optimizer"}, out / "checkpoint-2" / "optimizer.pt")  # a whole file, wrong content
    trainer = make_trainer(make_args(tmp_path))
    with pytest.raises(ValueError, match=r"checkpoint-2: loading optimizer.pt / scheduler.pt failed"):
        trainer.train(resume_from_checkpoint=True)


def test_no_complete_checkpoint_is_named(tmp_path):
    (tmp_path / "out" / "checkpoint-4").mkdir(parents=True)
    trainer = make_trainer(make_args(tmp_path))
    with pytest.raises(ValueError, match="No complete checkpoint .* checkpoint-4: .*trainer_state.json is missing"):
        trainer.train(resume_from_checkpoint=True)


# --------------------------------------------------------------------------------- num_iterations > 1

REUSE = dict(num_iterations=2, max_steps=4)  # rollouts generated at steps 0 and 2, reused at steps 1 and 3


def test_a_resumed_multi_iteration_run_equals_the_uninterrupted_one(tmp_path):
    whole = make_trainer(make_args(tmp_path / "whole", **REUSE))
    whole.train()
    with pytest.raises(KeyboardInterrupt):  # stopped after step 1: step 2 reuses the rollouts of step 1
        make_trainer(make_args(tmp_path / "cut", **REUSE), callbacks=[StopAfterSaving(1)]).train()
    checkpoint = tmp_path / "cut" / "out" / "checkpoint-1"
    assert (checkpoint / "grpo_rollouts-0.pt").is_file()
    assert not (tmp_path / "cut" / "out" / "checkpoint-2").exists()
    resumed = make_trainer(make_args(tmp_path / "cut", **REUSE))
    resumed.train(resume_from_checkpoint=True)
    expected, got = trained_weights(whole), trained_weights(resumed)
    assert all(torch.equal(expected[n], got[n]) for n in expected)
    losses = [e["loss"] for e in whole.state.log_history if "loss" in e]
    assert [e["loss"] for e in resumed.state.log_history if "loss" in e] == losses


def test_a_checkpoint_without_its_rollouts_says_the_run_will_differ(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        make_trainer(make_args(tmp_path, **REUSE), callbacks=[StopAfterSaving(1)]).train()
    checkpoint = tmp_path / "out" / "checkpoint-1"
    (checkpoint / "grpo_rollouts-0.pt").unlink()  # as trl.GRPOTrainer saves it
    resumed = make_trainer(make_args(tmp_path, **REUSE))
    with pytest.warns(UserWarning, match=r"holds no buffered rollouts .*weights differ from an uninterrupted run"):
        resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4
    state = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
