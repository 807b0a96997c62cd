"""Saved SoftGRPO folders: soft-thinking config in generation_config.json, model card, reloading."""

import json
import os

import datasets
import pytest
import torch
from huggingface_hub import ModelCard
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, GenerationConfig

from hf_softthink import SoftThinkingConfig
from hf_softthink.hub import (
    load_soft_adapter,
    load_soft_thinking_config,
    save_soft_thinking_config,
    soft_model_card,
)
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

TOKENIZER = tiny_tokenizer()
SOFT = SoftThinkingConfig(max_topk=3, max_thinking_tokens=2, gaussian_sigma=0.5)


def reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 2) for c in completions]


def train(tmp_path, lora=True, mode="gaussian"):
    base = tmp_path / "base"
    tiny_model("llama", seed=0).save_pretrained(base)
    dataset = datasets.Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": f"{i} + 1"}] for i in range(4)], "task": ["chain_sum"] * 4}
    )
    args = SoftGRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        soft_rollout=mode,
        soft_thinking=SOFT,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=5,
        max_steps=1,
        report_to=[],
        save_strategy="no",
        learning_rate=1e-2,
        disable_tqdm=True,
    )
    trainer = SoftGRPOTrainer(
        model=str(base),
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=TOKENIZER,
        peft_config=LoraConfig(r=4, target_modules="all-linear") if lora else None,
    )
    trainer.train()
    trainer.save_model()
    return trainer, base, tmp_path / "out"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train(tmp_path_factory.mktemp("hub"))


def prompt_inputs():
    text = TOKENIZER.apply_chat_template(
        [{"role": "user", "content": "2 + 2"}], add_generation_prompt=True, tokenize=False
    )
    return TOKENIZER(text, return_tensors="pt")


def test_saved_folder_carries_the_soft_config_and_a_model_card(trained):
    trainer, base, out = trained
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    saved = json.loads((out / "generation_config.json").read_text())
    assert saved["soft_thinking"] == trainer.rollout_soft_config.to_dict()
    assert saved["soft_thinking"]["noise"] == "gaussian" and saved["eos_token_id"] == TOKENIZER.eos_token_id
    # transformers keeps the custom attribute on reload (the file is not marked _from_model_config)
    assert GenerationConfig.from_pretrained(out).soft_thinking == saved["soft_thinking"]
    assert load_soft_thinking_config(out) == trainer.rollout_soft_config
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft"
    assert {"hf_softthink", "soft-thinking", "soft-rollout-gaussian"} <= set(card.data.tags)
    assert not any(tag.startswith("base_model:") for tag in card.data.tags)  # PEFT's tag names a local path
    assert card.text.lstrip().startswith("# out")
    assert str(base) in card.text  # local base model: named in the text, not in the Hub metadata
    assert "`gaussian`" in card.text and "reasoning-gym (chain_sum)" in card.text
    assert "load_soft_adapter" in card.text and "soft_thinking=True" in card.text
    assert '"max_topk": 3' in card.text


def test_model_card_records_the_run_in_trls_layout(trained):
    """Base model, recipe, every setting, the reward curve beside it, final metrics, versions, citations."""
    import trl

    trainer, _, out = trained
    text = (out / "README.md").read_text()
    sections = ["## How to generate with soft thinking", "## Training procedure", "### Reward", "### Final metrics",
                "### Training settings", "### Framework versions", "## Citations"]
    assert [text.index(s) for s in sections] == sorted(text.index(s) for s in sections)
    assert "- **Recipe:** none: the settings below" in text
    assert "![Mean reward per training step](reward_curve.png)" in text
    assert (out / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"
    reward = next(h["reward"] for h in reversed(trainer.state.log_history) if "reward" in h)
    assert f"| reward | {reward:.4g} |" in text or f"| reward | {int(reward)} |" in text
    assert "| learning_rate | 0.01 |" in text and "| num_generations | 4 |" in text
    assert "| LoRA | `r=4, alpha=8, dropout=0.0, target_modules=['down_proj'," in text
    every = text[text.index("<details><summary>Every training setting"):]
    assert '"max_completion_length": 5' in every and '"loss_type": "dapo"' in every
    assert '"output_dir"' not in every  # this machine's paths stay out of a published card
    assert f"- TRL: {trl.__version__}" in text and "- PEFT: " in text and "- PyTorch: " in text
    assert "Cite Soft Thinking as:" in text and "Cite Soft Tokens, Hard Truths as:" in text  # gaussian rollouts
    assert "```bibtex" in text and "Cite SofT-GRPO" not in text


def test_model_card_reads_the_recipe_when_the_config_has_one(trained, tmp_path):
    from hf_softthink.hub import write_model_card

    trainer, _, _ = trained
    trainer.args.recipe = "softgrpo"  # SoftGRPOConfig's presets set it (issue 16); older configs have none
    try:
        write_model_card(trainer, tmp_path)
    finally:
        del trainer.args.recipe
    assert "- **Recipe:** `SoftGRPOConfig.softgrpo()`, with the settings below" in (tmp_path / "README.md").read_text()


def test_model_card_links_the_weights_and_biases_run(monkeypatch):
    import sys
    from types import SimpleNamespace

    from hf_softthink.hub import _wandb_run_url

    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    assert _wandb_run_url() is None
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=SimpleNamespace(url="https://wandb.ai/me/run")))
    assert _wandb_run_url() == "https://wandb.ai/me/run"
    card = soft_model_card(base_model="org/model", soft_rollout="gumbel", soft_thinking=SOFT, run_url=_wandb_run_url())
    assert "[Visualize this run in Weights & Biases](https://wandb.ai/me/run)" in card.text


def test_card_citations_are_the_papers_of_citation_cff():
    import re
    from pathlib import Path

    from hf_softthink.hub import _BIBTEX

    cff = (Path(__file__).resolve().parent.parent / "CITATION.cff").read_text()
    cited = set(re.findall(r"arXiv:(\d{4}\.\d{5})", "\n".join(_BIBTEX.values())))
    assert cited - {"2402.03300"} <= set(re.findall(r"arXiv:(\d{4}\.\d{5})", cff))  # GRPO: TRL's method


def test_reward_curve_and_summary():
    from hf_softthink.hub import plot_reward_curve, reward_summary

    assert reward_summary([]) == "no reward logged"
    assert reward_summary([0.0] * 5 + [1.0] * 15).startswith("first 5 steps 0.00 → last 5 steps 1.00 (20 steps)")
    assert plot_reward_curve([{"loss": 0.1, "step": 1}], "unused.png") is None


def test_peft_alone_does_not_load_the_soft_config(trained):
    _, base, out = trained
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out)
    assert getattr(model.get_base_model().generation_config, "soft_thinking", None) is None


def test_load_soft_adapter_generates_with_the_saved_config(trained):
    trainer, base, out = trained
    model, tokenizer = load_soft_adapter(out)  # base model from adapter_config.json
    assert isinstance(model, PeftModel) and tokenizer is not None
    trained_lora = {n: p for n, p in trainer.model.named_parameters() if "lora_B" in n}
    loaded_lora = dict(model.named_parameters())
    assert trained_lora and all(torch.equal(p, loaded_lora[n]) for n, p in trained_lora.items())
    out_gen = model.generate(
        **prompt_inputs(), soft_thinking=True, max_new_tokens=5, do_sample=False, return_dict_in_generate=True
    )
    assert out_gen.soft_topk_ids.shape[-1] == SOFT.max_topk  # the saved K, not the default 10
    assert out_gen.thinking_mask[0].tolist()[:3] == [True, True, False]  # the saved thinking budget
    assert out_gen.soft_input_embeddings is not None  # the saved Gaussian noise

    again, _ = load_soft_adapter(
        out, base_model=AutoModelForCausalLM.from_pretrained(base), tokenizer=TOKENIZER
    )
    saved = SOFT.to_dict() | {"noise": "gaussian", "stop_decision": "sample"}  # as the rollouts decoded
    assert again.get_base_model().generation_config.soft_thinking == saved


def test_full_fine_tuning_folder_reloads_with_its_soft_config(tmp_path):
    trainer, _, out = train(tmp_path, lora=False, mode="gumbel")
    assert not (out / "adapter_config.json").exists()
    model, _ = load_soft_adapter(out)
    assert not isinstance(model, PeftModel)
    assert model.generation_config.soft_thinking["noise"] == "gumbel"
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "soft-rollout-gumbel" in card.data.tags


def test_create_model_card_writes_the_soft_card(trained):
    trainer, _, out = trained
    trainer.create_model_card(model_name="my-adapter", dataset_name="org/addition")
    card = ModelCard.load(out / "README.md")
    assert card.text.lstrip().startswith("# my-adapter")
    assert card.data.datasets == ["org/addition"]


def test_model_card_maps_packaged_models_to_hub_ids(tmp_path):
    card = soft_model_card(
        base_model=str(tmp_path / "smollm2-135m"),
        soft_rollout="gumbel",
        soft_thinking=SOFT,
        datasets=["reasoning-gym (chain_sum)"],
        soft_density="soft_grpo",
    )
    assert card.data.base_model is None  # not an existing folder
    (tmp_path / "smollm2-135m").mkdir()
    card = soft_model_card(
        base_model=str(tmp_path / "smollm2-135m"), soft_rollout="gumbel", soft_thinking=SOFT
    )
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert 'base_model="smollm2-135m"' in card.text  # the short name load_soft_adapter accepts
    assert "SofT-GRPO" in card.text
    card = soft_model_card(base_model="org/model", soft_rollout="hard", soft_thinking=None, adapter=False)
    assert card.data.base_model == "org/model" and "Soft-step log-density" not in card.text


def test_save_soft_thinking_config_round_trip(tmp_path):
    path = save_soft_thinking_config(tmp_path, SOFT, GenerationConfig(eos_token_id=7))
    values = json.loads(path.read_text())
    assert values["eos_token_id"] == 7 and values["soft_thinking"] == SOFT.to_dict()
    assert load_soft_thinking_config(tmp_path) == SOFT
    assert load_soft_thinking_config(tmp_path / "missing") is None


def test_packaged_base_models_are_recorded_by_hub_id_and_load_offline(tmp_path, monkeypatch):
    """A folder trained from a packaged model (its converted checkpoint lives in this machine's cache) records
    the original Hub id in adapter_config.json and the card, and `load_soft_adapter` maps that id back to the
    packaged model without the Hub."""
    from hf_softthink.models import load_model

    monkeypatch.setenv("HF_SOFTTHINK_CACHE", str(tmp_path / "cache"))
    tiny_model("llama", seed=0).save_pretrained(tmp_path / "cache" / "smollm2-135m")  # stands in for the real one
    TOKENIZER.save_pretrained(tmp_path / "cache" / "smollm2-135m")
    model, tokenizer = load_model("smollm2-135m")
    assert str(tmp_path) in model.config._name_or_path  # what PEFT would record
    args = SoftGRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, soft_rollout="gumbel", soft_thinking=SOFT,
        per_device_train_batch_size=2, num_generations=2, max_completion_length=4, max_steps=1, report_to=[],
        save_strategy="no", disable_tqdm=True,
    )
    dataset = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": "1 + 1"}]] * 2})
    trainer = SoftGRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=LoraConfig(r=2, target_modules="all-linear"))
    trainer.train()
    trainer.save_model()
    out = tmp_path / "out"
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert ModelCard.load(out / "README.md").data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert str(tmp_path) not in (out / "README.md").read_text()

    original = AutoModelForCausalLM.from_pretrained.__func__

    def offline(cls, name, *args, **kwargs):
        if not os.path.isdir(name):
            raise OSError(f"no network to the Hub in this test ({name})")
        return original(cls, name, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(offline))
    reloaded, _ = load_soft_adapter(out)  # base from adapter_config.json: the Hub id -> the packaged model
    assert isinstance(reloaded, PeftModel)
    assert str(tmp_path / "cache" / "smollm2-135m") in reloaded.get_base_model().config._name_or_path
    generated = reloaded.generate(**prompt_inputs(), soft_thinking=True, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == prompt_inputs()["input_ids"].shape[1] + 3
