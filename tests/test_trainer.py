"""SoftGRPOTrainer: config, rollouts and stored soft data, log-densities in the loss, TRL features, errors."""

import json
import math
import random

import datasets
import pytest
import torch
from peft import LoraConfig
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from trl import GRPOConfig, GRPOTrainer

from hf_softthink import SoftThinkingConfig
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.trainer import SOFT_BATCH_KEYS, SOFT_ROLLOUTS, SoftGRPOConfig, SoftGRPOTrainer

SOFT_MODES = [m for m in SOFT_ROLLOUTS if m != "hard"]
K = 4
THINK = 3  # soft steps before think-end (the thinking budget forces it)
TOKENIZER = tiny_tokenizer()
THINK_END = TOKENIZER.convert_tokens_to_ids("</think>")


def prompts(n=8, seed=0):
    rng = random.Random(seed)
    rows = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 6))) for _ in range(n)]
    return datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": r}] for r in rows]})


def even_answer(completions, completion_ids, **kwargs):
    """Fraction of even token ids after the think-end token (the whole completion without one)."""
    rewards = []
    for ids in completion_ids:
        answer = ids[ids.index(THINK_END) + 1 :] if THINK_END in ids else ids
        answer = [i for i in answer if i != TOKENIZER.eos_token_id]
        rewards.append(sum(i % 2 == 0 for i in answer) / max(len(answer), 1))
    return rewards


def make_args(tmp_path, mode="gaussian", soft=None, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,  # fp32 forward, as the rollout (TRL's CPU default is bf16 autocast, covered below)
        soft_rollout=mode,
        soft_thinking=soft or SoftThinkingConfig(max_topk=K, max_thinking_tokens=THINK),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=THINK + 4,
        max_steps=2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=0,
        learning_rate=1e-2,
        disable_tqdm=True,
    )
    values.update(overrides)
    return SoftGRPOConfig(**values)


def make_trainer(args, lora=True, model=None, reward=even_answer, dataset=None, trainer_class=None, **kwargs):
    return (trainer_class or SoftGRPOTrainer)(
        model=model if model is not None else tiny_model("llama", seed=0),
        reward_funcs=reward,
        args=args,
        train_dataset=dataset if dataset is not None else prompts(),
        processing_class=TOKENIZER,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear") if lora else None,
        **kwargs,
    )


def rollout_batch(trainer):
    """One generation batch of the trainer's dataset, through TRL's own generate-and-score path."""
    rows = [trainer.train_dataset[i] for i in range(trainer.args.per_device_train_batch_size)]
    trainer.model.train()
    return trainer._generate_and_score_completions(rows)


def score(trainer, batch, grad=False):
    """Per-position log-probs / log-densities of a batch under the current parameters (the loss's path)."""
    trainer._soft_context = {key: batch[key] for key in SOFT_BATCH_KEYS if key in batch}
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    try:
        with torch.set_grad_enabled(grad):
            return trainer._get_per_token_logps_and_entropies(
                trainer.model,
                input_ids,
                attention_mask,
                batch["completion_ids"].size(1),
                compute_entropy=True,
            )
    finally:
        trainer._soft_context = None


# ----------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(soft_rollout="soft"), "soft_rollout must be one of"),
        (dict(soft_density="approx"), "soft_density must be one of"),
        (dict(soft_density="soft_grpo"), "needs soft_rollout='gumbel'"),
        (dict(use_vllm=True), "use_vllm=True is not supported with soft_rollout='gaussian'"),
        (dict(use_transformers_continuous_batching=True), "continuous_batching=True is not supported"),
        (dict(soft_thinking={"noise": "gumbel"}), "contradicts soft_rollout='gaussian'"),
        (dict(soft_rollout="dirichlet", soft_thinking={"max_topk": None, "top_k": None}), "finite mixture size"),
        (dict(soft_thinking={"gaussian_sigma": 0.0}), "gaussian_sigma"),
        (dict(soft_thinking={"max_topk": 0}), "max_topk"),
        (dict(soft_thinking={"nope": 1}), "Unknown SoftThinkingConfig field"),
        (dict(soft_thinking="not json"), "SoftGRPOConfig.soft_thinking: .* is not valid JSON"),
    ],
)
def test_config_rejects_bad_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        SoftGRPOConfig(output_dir="unused", use_cpu=True, **overrides)


def test_config_hard_allows_vllm_flags_and_fields_have_help():
    import dataclasses

    SoftGRPOConfig(
        output_dir="unused", use_cpu=True, soft_rollout="hard", use_transformers_continuous_batching=True
    )
    for name in ("soft_rollout", "soft_thinking", "soft_density"):
        field = next(f for f in dataclasses.fields(SoftGRPOConfig) if f.name == name)
        assert field.metadata["help"]


def test_config_resolves_noise_per_mode_and_serialises(tmp_path):
    expected = {
        "gaussian": ("gaussian", 0.6),
        "fuzzy": ("gaussian", 1e-4),
        "gumbel": ("gumbel", 0.6),
        "dirichlet": ("dirichlet", 0.6),
        "logistic_normal": ("logistic_normal", 0.6),
    }
    for mode, (noise, temperature) in expected.items():
        args = SoftGRPOConfig(
            output_dir="unused", use_cpu=True, soft_rollout=mode, soft_thinking=SoftThinkingConfig(max_topk=5)
        )
        config = args.rollout_config()
        assert (config.noise, config.temperature, config.max_topk) == (noise, temperature, 5)
        assert args.soft_thinking == SoftThinkingConfig(max_topk=5).to_dict()  # stored as a plain dict
        restored = json.loads(args.to_json_string())
        assert restored["soft_thinking"]["max_topk"] == 5 and restored["soft_rollout"] == mode
    assert SoftGRPOConfig(output_dir="unused", use_cpu=True, soft_rollout="hard").rollout_config() is None
    from_json = SoftGRPOConfig(output_dir="unused", use_cpu=True, soft_thinking='{"max_topk": 3}')
    assert from_json.soft_thinking == {"max_topk": 3} and from_json.rollout_config().max_topk == 3


# ------------------------------------------------------------------------------------------------ errors
def test_trainer_needs_soft_config(tmp_path):
    with pytest.raises(TypeError, match="SoftGRPOConfig"):
        SoftGRPOTrainer(
            model=tiny_model(),
            reward_funcs=even_answer,
            processing_class=TOKENIZER,
            args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True, activation_checkpointing=True),
        )


def test_tools_and_rollout_func_are_not_supported_with_soft_rollouts(tmp_path):
    args = make_args(tmp_path)
    with pytest.raises(ValueError, match="does not support `rollout_func`"):
        make_trainer(args, rollout_func=lambda prompts, trainer: {})
    with pytest.raises(ValueError, match="does not support `tools`"):
        make_trainer(args, tools=[len])


def _word_tokenizer():
    vocab = {w: i for i, w in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", "hi", "there"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def test_tokenizer_without_the_think_end_token_fails_at_init(tmp_path):
    tokenizer = _word_tokenizer()
    dataset = datasets.Dataset.from_dict({"prompt": ["hi there"] * 4})
    with pytest.raises(ValueError, match=r"think_end='</think>' cannot be used with this tokenizer"):
        SoftGRPOTrainer(
            model=tiny_model(vocab_size=len(tokenizer)),
            reward_funcs=even_answer,
            args=make_args(tmp_path),
            train_dataset=dataset,
            processing_class=tokenizer,
        )
    soft = SoftThinkingConfig(max_topk=K, think_end=10**6)
    with pytest.raises(ValueError, match="this model cannot produce or feed"):
        make_trainer(make_args(tmp_path, soft=soft))


def test_reward_functions_returning_the_wrong_length_raise(tmp_path):
    def short_reward(completions, **kwargs):
        return [1.0]

    with pytest.raises(ValueError, match="'short_reward' returned 1 rewards, but 4 were expected"):
        make_trainer(make_args(tmp_path, max_steps=1), reward=short_reward).train()


def nan_for_the_first(completions, completion_ids, **kwargs):
    """NaN (no verdict) for the first completion of each call, the even-answer reward for the others."""
    return [math.nan] + even_answer(completions[1:], completion_ids[1:])


@pytest.mark.parametrize("mode", SOFT_ROLLOUTS)
def test_nan_rewards_are_unscored_as_in_grpo_trainer(tmp_path, mode):
    """GRPOTrainer treats a NaN reward as 'no verdict' (like None); hard mode is GRPOTrainer exactly."""
    args = make_args(tmp_path, mode, max_steps=2)
    trainer = make_trainer(args, reward=nan_for_the_first)
    trainer.train()
    logs = [(e["loss"], e["grad_norm"], e["reward"]) for e in trainer.state.log_history if "loss" in e]
    assert len(logs) == 2 and all(math.isfinite(x) for entry in logs for x in entry)
    if mode == "hard":
        fields = set(GRPOConfig.__dataclass_fields__) - {"generation_batch_size"}
        common = {k: v for k, v in args.to_dict().items() if k in fields}
        reference = make_trainer(GRPOConfig(**common), reward=nan_for_the_first, trainer_class=GRPOTrainer)
        reference.train()
        assert logs == [(e["loss"], e["grad_norm"], e["reward"]) for e in reference.state.log_history if "loss" in e]


def test_none_rewards_keep_trl_handling(tmp_path):
    def partial_reward(completions, **kwargs):
        return [None] + [1.0] * (len(completions) - 1)

    trainer = make_trainer(make_args(tmp_path, max_steps=1), reward=partial_reward)
    trainer.train()
    assert trainer.state.global_step == 1


# ---------------------------------------------------------------------------------------- stored data
@pytest.mark.parametrize("mode", SOFT_MODES)
def test_rollout_stores_o_btk_soft_data_and_rewards_see_the_text(tmp_path, mode):
    seen = []

    def reward(completions, **kwargs):
        seen.extend(c[0]["content"] for c in completions)
        return even_answer(completions, **kwargs)

    trainer = make_trainer(make_args(tmp_path, mode), reward=reward)
    batch = rollout_batch(trainer)
    b, length = batch["completion_ids"].shape
    d = trainer.model.config.hidden_size
    assert batch["soft_mask"].shape == (b, length) and batch["soft_mask"].dtype == torch.bool
    assert batch["soft_ids"].shape == (b, length, K) and batch["soft_log_weights"].shape == (b, length, K)
    if mode in ("gaussian", "fuzzy"):
        assert batch["soft_embeds"].shape == (b, length, d) and batch["soft_noise_std"].shape == (b,)
    else:
        assert "soft_embeds" not in batch
    vocab = trainer.model.config.vocab_size
    assert all(vocab not in t.shape for k, t in batch.items() if k.startswith("soft_"))  # never O(B*T*V)
    mask = batch["soft_mask"]
    assert (mask.sum(1) == THINK).all()  # the budget forces think-end after THINK soft steps
    assert not (mask & ~batch["completion_mask"].bool()).any()
    assert (batch["completion_ids"][:, THINK] == THINK_END).all()  # the think-end step itself is hard
    assert all("</think>" in text for text in seen)
    log_w = batch["soft_log_weights"][mask]
    assert torch.allclose(log_w.exp().sum(-1), torch.ones(len(log_w)), atol=1e-5)
    assert (log_w[:, 0] > -math.inf).all()


def test_soft_data_travels_with_its_rows_through_shuffle_and_split(tmp_path):
    from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

    trainer = make_trainer(make_args(tmp_path, "gumbel"))
    batch = rollout_batch(trainer)
    key = torch.cat([batch["completion_ids"], batch["soft_ids"].flatten(1)], dim=1)
    batch["row_key"] = key
    for part in split_tensor_dict(shuffle_sequence_dict(batch), 2):
        assert torch.equal(part["row_key"][:, : part["completion_ids"].size(1)], part["completion_ids"])
        assert torch.equal(part["row_key"][:, part["completion_ids"].size(1) :], part["soft_ids"].flatten(1))


# ---------------------------------------------------------------------------------------- log-densities
@pytest.mark.parametrize("arch", ["llama", "gemma3"])  # gemma3: tied, sqrt(d)-scaled embeddings
def test_forward_reproduces_the_rollout_mixture_and_gaussian_noise(tmp_path, arch):
    """At the rollout's parameters the forward pass sees what the decoder saw: p'_theta (the non-stop part of the
    thinking distribution, renormalised) equals the rollout's mixture weights, and (h - mu'_theta) / s is the
    standard normal noise the decoder added."""
    trainer = make_trainer(make_args(tmp_path, "gaussian"), lora=False, model=tiny_model(arch, seed=0))
    batch = rollout_batch(trainer)
    captured = {}
    original = trainer.soft_log_density

    def spy(model, hidden, ids, support, stop, log_weights, fed, noise_std, **kwargs):
        captured.update(hidden=hidden, ids=ids, support=support, stop=stop, log_weights=log_weights, fed=fed,
                        std=noise_std, model=model)
        return original(model, hidden, ids, support, stop, log_weights, fed, noise_std, **kwargs)

    trainer.soft_log_density = spy
    score(trainer, batch)
    config = trainer.rollout_soft_config
    go_on = ~captured["stop"]
    ids = captured["ids"][go_on]
    logits = trainer.candidate_logits(captured["model"], captured["hidden"][go_on], ids) / config.temperature
    keep = captured["support"][go_on] & ~torch.isin(ids, trainer.stop_ids)
    log_p = torch.log_softmax(logits.masked_fill(~keep, -math.inf), -1)
    log_weights = captured["log_weights"][go_on]
    assert torch.equal(keep, log_weights > -math.inf)
    assert torch.allclose(log_p[keep], log_weights[keep], atol=1e-4)
    vectors = trainer.model.get_input_embeddings()(ids)
    mean = (log_p.exp().unsqueeze(-1) * vectors).sum(-2)
    eps = (captured["fed"][go_on] - mean) / captured["std"][go_on, None]
    # about 4 standard errors of 768 draws
    assert abs(eps.square().mean().item() - 1.0) < 0.2 and abs(eps.mean().item()) < 0.15


def test_with_no_soft_steps_logps_match_grpo_trainer(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "gumbel"))
    batch = rollout_batch(trainer)
    batch["soft_mask"] = torch.zeros_like(batch["soft_mask"])
    logps, entropies, _ = score(trainer, batch)
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        expected, expected_entropies, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            trainer,
            trainer.model,
            input_ids,
            attention_mask,
            batch["completion_ids"].size(1),
            compute_entropy=True,
        )
    mask = batch["completion_mask"].bool()
    torch.testing.assert_close(logps[mask], expected[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(entropies[mask], expected_entropies[mask], atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["gaussian", "gumbel", "dirichlet"])  # fuzzy: one-id mixtures, docs/soft_rl.md
def test_gradients_reach_lora_weights_through_the_soft_log_density(tmp_path, mode):
    # a bias on </think> makes sampled stop decisions frequent: their scores and the continue steps' both backprop
    bias = {"sequence_bias": {(THINK_END,): 2.0}}
    args = make_args(tmp_path, mode, generation_kwargs=bias, per_device_train_batch_size=8, num_generations=8)
    trainer = make_trainer(args)
    torch.manual_seed(1)
    batch = rollout_batch(trainer)
    trainer.model.zero_grad()
    logps, entropies, _ = score(trainer, batch, grad=True)
    soft = batch["soft_mask"]
    assert batch["soft_stop"].any() and (soft & ~batch["soft_stop"]).any()
    assert torch.isfinite(logps[soft]).all()
    (logps[soft].sum() + entropies[soft].sum()).backward()  # soft positions only: no token log-prob
    grads = [p.grad for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


@pytest.mark.parametrize("mode", ["gumbel", "dirichlet"])  # gaussian / fuzzy refuse off-policy training
def test_new_minus_old_log_density_is_exactly_zero_before_any_update(tmp_path, mode):
    ratios = []

    class Recording(SoftGRPOTrainer):
        def _compute_loss(self, model, inputs):
            if self.state.global_step == 0:
                logps, _, _ = score(self, inputs)
                ratios.append(
                    (logps - inputs["old_per_token_logps"], inputs["soft_mask"], inputs["completion_mask"])
                )
            return super()._compute_loss(model, inputs)

    # num_iterations=2 makes TRL compute old log-probs at generation time (with the same formula)
    args = make_args(tmp_path, mode, num_iterations=2, steps_per_generation=2, max_steps=1)
    trainer = make_trainer(args, trainer_class=Recording)
    trainer.train()
    ((diff, soft, completion),) = ratios
    assert soft.any()
    assert torch.equal(diff[completion.bool()], torch.zeros_like(diff[completion.bool()]))


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("mode", SOFT_ROLLOUTS)
def test_two_step_run_finishes_and_logs_soft_metrics(tmp_path, mode):
    trainer = make_trainer(make_args(tmp_path, mode))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry["loss"]) for entry in logs)
    if mode == "hard":
        assert "soft/frac_soft_steps" not in logs[0]
    else:
        assert logs[0]["soft/frac_soft_steps"] == pytest.approx(THINK / (THINK + 4), abs=0.15)
        assert logs[0]["soft/thinking_length"] == THINK and logs[0]["soft/think_end_rate"] == 1.0
        assert logs[0]["soft/cold_stop_rate"] == 0.0
        # fuzzy: at thinking temperature 1e-4 top-p keeps one id, a one-hot mixture
        assert (
            logs[0]["soft/mixture_entropy"] > 0 if mode != "fuzzy" else logs[0]["soft/mixture_entropy"] < 1e-3
        )


def test_cold_stop_and_no_think_end_metrics(tmp_path):
    # every step is "confident" under a 100-nat threshold: Cold Stop forces think-end after 2 soft steps
    cold = SoftThinkingConfig(max_topk=K, cold_stop_entropy=100.0, cold_stop_patience=2)
    trainer = make_trainer(make_args(tmp_path, "gumbel", soft=cold, max_steps=1))
    trainer.train()
    logs = trainer.state.log_history[0]
    assert logs["soft/cold_stop_rate"] == 1.0 and logs["soft/thinking_length"] == 1.0
    # think_end=None: no answer phase, every generated step is soft
    endless = SoftThinkingConfig(max_topk=K, think_end=None)
    trainer = make_trainer(make_args(tmp_path, "dirichlet", soft=endless, max_steps=1))
    trainer.train()
    logs = trainer.state.log_history[0]
    assert logs["soft/think_end_rate"] == 0.0 and logs["soft/frac_soft_steps"] == 1.0
    assert logs["soft/thinking_length"] == logs["completions/mean_length"]


def test_evaluation_runs_soft_rollouts(tmp_path):
    args = make_args(
        tmp_path, "gaussian", max_steps=1, eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=4
    )
    trainer = make_trainer(args, eval_dataset=prompts(4, seed=1))
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_soft/frac_soft_steps"] > 0


def test_hard_mode_reproduces_grpo_trainer_losses(tmp_path):
    def run(trainer_class, args):
        trainer = make_trainer(args, trainer_class=trainer_class)
        trainer.train()
        return [(e["loss"], e["grad_norm"], e["reward"]) for e in trainer.state.log_history if "loss" in e]

    common = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=0,
        learning_rate=1e-2,
        beta=0.05,
        disable_tqdm=True,
        activation_checkpointing=True,  # TRL's default, spelled so that GRPOConfig raises no FutureWarning
    )
    expected = run(GRPOTrainer, GRPOConfig(**common))
    actual = run(SoftGRPOTrainer, SoftGRPOConfig(soft_rollout="hard", **common))
    assert actual == expected
    assert any(loss != 0 for loss, _, _ in expected)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(loss_type="grpo", beta=0.1),
        dict(loss_type="dr_grpo"),
        dict(loss_type="bnpo", num_iterations=2),
        dict(loss_type="cispo"),
        dict(loss_type="sapo"),
        dict(importance_sampling_level="sequence", loss_type="grpo"),
        dict(gradient_accumulation_steps=2, per_device_train_batch_size=2, top_entropy_quantile=0.5),
        dict(activation_checkpointing=True, activation_checkpointing_kwargs={"use_reentrant": True}, beta=0.05),
        dict(activation_checkpointing=False, mask_truncated_completions=True),
        dict(bf16=True, beta=0.05),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items() if k != "activation_checkpointing_kwargs"),
)
def test_trl_options_train_with_soft_rollouts(tmp_path, overrides):
    trainer = make_trainer(
        make_args(tmp_path, "gumbel" if {"loss_type", "num_iterations"} <= set(overrides) or
                  overrides.get("loss_type") == "cispo" else "gaussian", **overrides)
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses and all(math.isfinite(x) for x in losses)
    if not overrides.get("mask_truncated_completions"):  # with it every completion here is masked
        assert any(
            not torch.equal(before[n], p) for n, p in trainer.model.named_parameters() if p.requires_grad
        )


def test_beta_with_a_reference_model_and_full_fine_tuning(tmp_path):
    path = tmp_path / "tiny"
    tiny_model("llama", seed=0).save_pretrained(path)
    trainer = SoftGRPOTrainer(
        model=str(path),
        reward_funcs=even_answer,
        processing_class=TOKENIZER,
        args=make_args(tmp_path, "dirichlet", beta=0.1),
        train_dataset=prompts(),
    )
    assert trainer.ref_model is not None
    trainer.train()
    kls = [e["kl"] for e in trainer.state.log_history if "kl" in e]
    assert kls[0] == 0.0 and math.isfinite(kls[1])


def test_qlora_4bit_trains(tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path = tmp_path / "tiny"
    tiny_model("llama", seed=0).save_pretrained(path)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quantization)
    trainer = make_trainer(make_args(tmp_path, "gumbel", beta=0.05), model=model)
    trainer.train()
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)


def test_crash_mid_training_leaves_resumable_checkpoints(tmp_path):
    calls = []

    def crashing_reward(completions, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash at step 3")
        return even_answer(completions, **kwargs)

    args = make_args(tmp_path, "gaussian", save_strategy="steps", save_steps=1, max_steps=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_trainer(args, reward=crashing_reward).train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "out" / "checkpoint-3").exists()
    saved = json.loads((checkpoint / "generation_config.json").read_text())["soft_thinking"]
    assert saved["noise"] == "gaussian" and saved["max_thinking_tokens"] == THINK
    resumed = make_trainer(args)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4
    assert [e["step"] for e in resumed.state.log_history if "loss" in e][-2:] == [3, 4]
    assert (tmp_path / "out" / "checkpoint-4" / "generation_config.json").is_file()


# ---------------------------------------------------------------------------------------------- learning
def _learning_curve(tmp_path, mode, steps=40, seed=0):
    rng = random.Random(0)
    rows = ["".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(256)]
    dataset = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": r}] for r in rows]})
    soft = SoftThinkingConfig(max_topk=K, max_thinking_tokens=THINK, gaussian_sigma=1.0)
    args = make_args(
        tmp_path,
        mode,
        soft=soft,
        per_device_train_batch_size=16,
        num_generations=8,
        max_completion_length=THINK + 3,
        max_steps=steps,
        learning_rate=2e-2,
        activation_checkpointing=False,
        seed=seed,
    )
    trainer = make_trainer(args, lora=False, dataset=dataset, model=tiny_model("llama", seed=seed))
    trainer.train()
    return [e["reward"] for e in trainer.state.log_history if "reward" in e]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gaussian", "gumbel"])
def test_soft_grpo_raises_the_reward_of_an_easy_task(tmp_path, mode):
    """Reward: the fraction of even token ids in the answer after the soft thinking (~50% at the start)."""
    curve = _learning_curve(tmp_path, mode)
    start, end = sum(curve[:3]) / 3, sum(curve[-5:]) / 5
    print(f"{mode} reward curve: {[round(r, 2) for r in curve]} (start {start:.2f}, end {end:.2f})")
    assert 0.3 <= start <= 0.65
    assert end >= start + 0.15 and end >= 0.7
