"""The papers' recipes as presets (SofT-GRPO, Soft Tokens Hard Truths) and the lower-variance estimators (issue 16)."""

import json
import math
import random

import datasets
import pytest
import torch
from test_soft_rl import ScaledThinkingGradient, _rollout_logits, even_trace
from test_trainer import (
    THINK,
    THINK_END,
    TOKENIZER,
    K,
    even_answer,
    make_args,
    make_trainer,
    prompts,
    rollout_batch,
    score,
)

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.mixing import embedding_rms
from hf_softthink.models import tiny_model
from hf_softthink.trainer import SoftGRPOConfig
from hf_softthink.trainer.densities import gaussian_log_density

EOS = TOKENIZER.eos_token_id
SMALL = dict(use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=4, max_steps=2,
             max_completion_length=THINK + 4, logging_steps=1, report_to=[], save_strategy="no", seed=0,
             disable_tqdm=True)


def stop_friendly_model(shift=-0.25):
    """The tiny Llama with EOS and think-end given the output row u (a unit vector), and `shift * u` added to the final
    hidden states (a hook on the final norm, so generation and the loss's forward see the same logits): sampled stop
    decisions, EOS and think-end, happen at a few steps of short rollouts."""
    model = tiny_model("llama", seed=0)
    direction = torch.zeros(model.config.hidden_size)
    direction[0] = 1.0
    with torch.no_grad():
        model.lm_head.weight[EOS] = direction
        model.lm_head.weight[THINK_END] = direction
    model.model.norm.register_forward_hook(lambda module, args, output: output + shift * direction)
    return model


# ------------------------------------------------------------------------------------------------ presets
def test_softgrpo_preset_has_the_reference_settings(tmp_path):
    args = SoftGRPOConfig.softgrpo(output_dir=str(tmp_path), use_cpu=True)
    soft = args.rollout_config()
    assert args.recipe == "softgrpo"
    assert (args.soft_rollout, args.soft_density, args.detach_input_embeddings) == ("gumbel", "soft_grpo", True)
    assert (soft.max_topk, soft.top_k, soft.top_p, soft.min_p, soft.temperature) == (5, 5, 0.95, 0.0, 1.0)
    assert (soft.noise, soft.gumbel_tau, soft.gumbel_noise_clamp) == ("gumbel", 0.1, (-1.5, 3.0))
    assert (args.beta, args.learning_rate, args.epsilon, args.loss_type) == (0.001, 1e-6, 0.2, "bnpo")
    assert (args.lr_scheduler_type, args.weight_decay, args.max_grad_norm) == ("constant", 0.01, 1.0)
    assert (args.num_generations, args.num_iterations, args.scale_rewards) == (8, 1, "group")
    assert (args.temperature, args.top_p, args.top_k) == (1.0, 0.95, 5)


@pytest.mark.parametrize("fuzzy", [False, True])
def test_stht_preset_has_the_papers_settings(tmp_path, fuzzy):
    args = SoftGRPOConfig.stht(fuzzy=fuzzy, output_dir=str(tmp_path), use_cpu=True)
    soft = args.rollout_config()
    assert args.recipe == ("stht-fuzzy" if fuzzy else "stht")
    assert args.soft_rollout == ("fuzzy" if fuzzy else "gaussian")
    assert (soft.max_topk, soft.top_k, soft.top_p, soft.min_p) == (None, None, 1.0, 0.0)  # the full vocabulary
    assert soft.temperature == (1e-4 if fuzzy else 0.5)
    assert (soft.noise, soft.gaussian_sigma, soft.gaussian_rms_token_ids) == ("gaussian", 0.33, None)
    assert (args.advantage_estimator, args.scale_rewards, args.loss_type, args.beta) == ("rloo", "none", "dr_grpo", 0.0)
    assert args.num_iterations == 1


def test_preset_overrides_replace_fields_and_merge_decoder_settings(tmp_path):
    args = SoftGRPOConfig.softgrpo(output_dir=str(tmp_path), use_cpu=True, learning_rate=3e-6, beta=0.0,
                                   soft_thinking={"max_thinking_tokens": 64, "gumbel_tau": 0.2})
    soft = args.rollout_config()
    assert (args.learning_rate, args.beta, args.recipe) == (3e-6, 0.0, "softgrpo")
    assert (soft.max_thinking_tokens, soft.gumbel_tau, soft.max_topk, soft.gumbel_noise_clamp) == (64, 0.2, 5, (-1.5, 3.0))
    replaced = SoftGRPOConfig.softgrpo(output_dir=str(tmp_path), use_cpu=True,
                                       soft_thinking=SoftThinkingConfig(max_topk=3, top_k=3))
    assert (replaced.rollout_config().max_topk, replaced.rollout_config().gumbel_noise_clamp) == (3, None)
    with pytest.raises(TypeError, match="soft_thinking= of a SoftGRPOConfig preset"):
        SoftGRPOConfig.stht(output_dir=str(tmp_path), use_cpu=True, soft_thinking=3)
    assert SoftGRPOConfig(output_dir=str(tmp_path), use_cpu=True).recipe is None
    assert args.to_dict()["recipe"] == "softgrpo"


def test_preset_merges_a_json_soft_thinking_string_as_its_dict(tmp_path):
    """A JSON string of decoder fields is merged as the dict it holds: the preset keeps its own decoder settings
    (SofT-GRPO's top-5 support, tau 0.1 and noise clamp)."""
    fields = {"max_thinking_tokens": 64, "gumbel_tau": 0.2}
    from_dict = SoftGRPOConfig.softgrpo(output_dir=str(tmp_path), use_cpu=True, soft_thinking=fields)
    from_json = SoftGRPOConfig.softgrpo(output_dir=str(tmp_path), use_cpu=True, soft_thinking=json.dumps(fields))
    assert from_json.rollout_config() == from_dict.rollout_config()
    assert from_json.rollout_config().gumbel_noise_clamp == (-1.5, 3.0)
    with pytest.raises(ValueError, match="is not valid JSON"):
        SoftGRPOConfig.stht(output_dir=str(tmp_path), use_cpu=True, soft_thinking='{"max_topk": 3')


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(soft_rollout="gaussian", soft_density="gumbel_max"), "scores Gumbel soft steps"),
        (dict(soft_rollout="dirichlet", soft_density="soft_grpo"), "scores Gumbel soft steps"),
        (dict(soft_rollout="gumbel", soft_density_residual=0.5), "weighs the exact density's residual"),
        (dict(soft_rollout="gumbel", soft_density="gumbel_max", soft_density_residual=2.0), r"in \[0, 1\]"),
        (dict(advantage_estimator="reinforce"), "advantage_estimator must|one of"),
        (dict(advantage_estimator="rloo", multi_objective_aggregation="normalize_then_sum"), "sum_then_normalize"),
        (dict(recipe="mine"), "names the preset"),
        (dict(soft_rollout="hard", detach_input_embeddings=True), "applies to soft rollouts"),
        (dict(soft_rollout="gaussian", beta=0.04, soft_thinking=SoftThinkingConfig(max_topk=None, top_k=None)),
         "full-vocabulary Gaussian"),
        (dict(soft_rollout="gumbel", soft_thinking=SoftThinkingConfig(max_topk=None, top_k=None)),
         "only Gaussian rollouts"),
    ],
)
def test_bad_recipe_settings_are_refused_with_the_fix(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        SoftGRPOConfig(output_dir=str(tmp_path), use_cpu=True, **overrides)


# ----------------------------------------------------------------------------------- new decoder settings
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gumbel_noise_clamp", (3.0, -1.5), "low < high"),
        ("gumbel_noise_clamp", (0.0,), "a pair"),
        ("gumbel_noise_clamp", (-math.inf, 1.0), "finite"),
        ("logistic_normal_sigma", 0.0, "logistic_normal_sigma"),
        ("gaussian_rms_token_ids", [], "non-empty list"),
        ("gaussian_rms_token_ids", [3, -1], "token ids >= 0"),
        ("noise", "gauss", "one of"),
    ],
)
def test_new_decoder_settings_are_validated(field, value, message):
    with pytest.raises(ValueError, match=f"SoftThinkingConfig.{field}=.*{message}"):
        SoftThinkingConfig(**{field: value})


def test_new_decoder_settings_survive_json():
    config = SoftThinkingConfig(noise="gumbel", gumbel_noise_clamp=(-1.5, 3), gaussian_rms_token_ids=[4, 9],
                                logistic_normal_sigma=0.5)
    restored = SoftThinkingConfig.from_json(config.to_json())
    assert restored == config and restored.gumbel_noise_clamp == (-1.5, 3)


# ---------------------------------------------------------------------------------------- SofT-GRPO's rollout
def _reference_weights(raw, k=5, top_p=0.95):
    """SofT-GRPO's sampler on raw logits at T = 1 (sglang sampler.py lines 119-162): softmax, top-k renorm, top-p renorm."""
    probs = torch.softmax(raw.double(), -1)
    kth = probs.topk(k, -1).values[..., -1:]
    probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    probs = probs / probs.sum(-1, keepdim=True)
    ordered, order = probs.sort(-1, descending=True)
    ordered = torch.where(ordered.cumsum(-1) - ordered < top_p, ordered, torch.zeros_like(ordered))
    return torch.zeros_like(probs).scatter(-1, order, ordered / ordered.sum(-1, keepdim=True))


@pytest.mark.parametrize("clamp", [(-1.5, 3.0), None])
def test_gumbel_noise_is_clamped_at_sampling(clamp):
    """The recorded perturbed log-weights are log w + g with w the thinking distribution of the raw logits; with the
    clamp every g lies in [-1.5, 3] and some sit on the bounds, without it some fall outside; the fed weights are
    softmax((log w + g) / tau)."""
    model = enable_soft_thinking(tiny_model("llama", seed=0), tokenizer=TOKENIZER)
    prompt = TOKENIZER("abc", return_tensors="pt")
    torch.manual_seed(0)
    config = SoftThinkingConfig(max_topk=5, top_k=5, top_p=0.95, min_p=0.0, temperature=1.0, noise="gumbel",
                                gumbel_tau=0.1, gumbel_noise_clamp=clamp, think_end=None)
    out = model.generate(**prompt, soft_thinking=config, max_new_tokens=6, num_return_sequences=64, do_sample=True,
                         return_dict_in_generate=True, output_logits=True, pad_token_id=TOKENIZER.pad_token_id)
    raw = torch.stack(out.logits, 1)  # (B, T, V)
    weights = _reference_weights(raw).gather(-1, out.soft_topk_ids)
    support = out.soft_topk_support
    assert torch.equal(support, weights > 0)
    noise = (out.soft_topk_perturbed_log_weights.double() - weights.log())[support]
    if clamp:
        assert noise.min() >= -1.5 - 1e-5 and noise.max() <= 3.0 + 1e-5
        at_low, at_high = (noise + 1.5).abs().lt(1e-5).double().mean(), (noise - 3.0).abs().lt(1e-5).double().mean()
        assert 0.004 < at_low < 0.03 and 0.03 < at_high < 0.07  # P(g < -1.5) = 0.011, P(g > 3) = 0.049
    else:
        assert noise.min() < -1.5 or noise.max() > 3.0
    fed = torch.log_softmax(out.soft_topk_perturbed_log_weights / 0.1, -1)
    torch.testing.assert_close(out.soft_topk_log_weights[support], fed[support], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------- SofT-GRPO's score, oracle
def test_softgrpo_loss_scores_thinking_and_stop_steps_as_the_reference_does(tmp_path, monkeypatch):
    """Oracle from the reference's formulas (verl torch_functional.py lines 140-164, sglang schedule_batch.py lines
    761-768), computed from the rollout's raw logits and its stored noise: a continue step and an EOS chosen while
    thinking score the mean Gumbel log-pdf of clamp(G - log p_theta, -1.5, 3) over the ids with p_theta > e^-3; a
    sampled think-end is a token, scored by its log-prob over the vocabulary at GRPO's temperature."""
    args = SoftGRPOConfig.softgrpo(output_dir=str(tmp_path), **{**SMALL, "per_device_train_batch_size": 16,
                                   "num_generations": 8, "max_completion_length": 12}, beta=0.0,
                                   soft_thinking={"max_thinking_tokens": 8})
    trainer = make_trainer(args, lora=False, model=stop_friendly_model(), dataset=prompts(16))
    torch.manual_seed(1)
    batch, raw = _rollout_logits(trainer, monkeypatch)
    logps, _, _ = score(trainer, batch)
    raw = raw[:, : batch["completion_ids"].size(1)].double()
    completion, scored, stops = batch["completion_ids"], batch["soft_mask"], batch["soft_stop"]
    think_end_steps = (completion == THINK_END) & batch["tool_mask"].bool() & batch["completion_mask"].bool()
    assert think_end_steps.any() and (stops & (completion == EOS)).any() and (scored & ~stops).any()
    assert not (scored & think_end_steps).any()  # a sampled think-end is out of the thinking steps
    # thinking steps (EOS stops included): the reference score of the stored noise
    ids, support = batch["soft_ids"][scored], batch["soft_support"][scored]
    weights = _reference_weights(raw[scored])
    assert torch.equal(support, weights.gather(-1, ids) > 0)
    stored = batch["soft_perturbed"][scored].double()
    topk_probs = torch.softmax(raw[scored], -1).gather(-1, ids) * support
    topk_log_probs = (topk_probs / topk_probs.sum(-1, keepdim=True)).log()
    x = (stored - topk_log_probs).clamp(-1.5, 3)
    mask = (support & (topk_log_probs > -3)).double()
    expected = ((-x - (-x).exp()) * mask).sum(-1) / mask.sum(-1)
    torch.testing.assert_close(logps[scored].double(), expected, atol=2e-4, rtol=0)
    # the stored noise is the sampled noise, clamped: G - log w in [-1.5, 3] on the support
    noise = (stored - weights.gather(-1, ids).log())[support]
    assert noise.min() >= -1.5 - 1e-4 and noise.max() <= 3 + 1e-4
    # a sampled think-end: the token's log-prob over the vocabulary at GRPO's temperature (1)
    token = torch.log_softmax(raw / args.temperature, -1).gather(-1, completion[..., None])[..., 0]
    torch.testing.assert_close(logps[think_end_steps].double(), token[think_end_steps], atol=2e-4, rtol=0)


# --------------------------------------------------------------------------------------------- detach option
@pytest.mark.parametrize("detach", [False, True])
def test_detached_input_embeddings_give_the_table_no_gradient_through_the_inputs(tmp_path, detach):
    args = make_args(tmp_path, "gumbel", detach_input_embeddings=detach, activation_checkpointing=True)
    trainer = make_trainer(args, lora=False)
    model = trainer.model
    assert not model.config.tie_word_embeddings
    torch.manual_seed(0)
    batch = rollout_batch(trainer)
    model.zero_grad()
    logps, _, _ = score(trainer, batch, grad=True)
    (logps * batch["completion_mask"]).sum().backward()
    table = model.get_input_embeddings().weight.grad
    trained = table is not None and torch.count_nonzero(table) > 0
    assert trained != detach
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0  # the transformer still trains
    assert model.lm_head.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------- RLOO
def _hand_rloo(rewards, group):
    out = []
    for start in range(0, len(rewards), group):
        block = rewards[start : start + group]
        scored = [r for r in block if not math.isnan(r)]
        for r in block:
            if math.isnan(r) or len(scored) < 2:
                out.append(0.0)
            else:
                out.append(r - (sum(scored) - r) / (len(scored) - 1))
    return out


def test_rloo_advantages_match_a_hand_computation(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "gaussian", advantage_estimator="rloo", scale_rewards="none"))
    trainer.model.train()
    nan = math.nan
    per_func = torch.tensor([[1.0, 0.5], [0.0, 0.5], [1.0, nan], [0.0, 0.0],   # group 1
                             [nan, nan], [2.0, 0.0], [1.0, 1.0], [0.0, nan]])  # group 2: one completion unscorable
    sums = [1.5, 0.5, 1.0, 0.0, nan, 2.0, 2.0, 0.0]
    want = torch.tensor(_hand_rloo(sums, 4))
    torch.testing.assert_close(trainer.rloo_advantages(per_func), want)
    assert want[0] == pytest.approx(1.5 - (0.5 + 1.0 + 0.0) / 3) and want[4] == 0.0
    assert want[5] == pytest.approx(2.0 - (2.0 + 0.0) / 2)  # n = 3 scorable completions in group 2
    trainer.scale_rewards = "batch"  # RLOOTrainer(normalize_advantages=True)
    normalized = (want[torch.tensor(sums).isfinite()] - want[torch.tensor(sums).isfinite()].mean())
    normalized = normalized / (normalized.std() + 1e-4)
    torch.testing.assert_close(trainer.rloo_advantages(per_func)[torch.tensor(sums).isfinite()], normalized)


def test_rloo_batches_carry_leave_one_out_advantages(tmp_path):
    trainer = make_trainer(make_args(tmp_path, "gaussian", advantage_estimator="rloo", scale_rewards="none"))
    torch.manual_seed(0)
    batch = rollout_batch(trainer)
    ids = [c[m.bool()].tolist() for c, m in zip(batch["completion_ids"], batch["completion_mask"], strict=True)]
    rewards = even_answer(None, ids)
    torch.testing.assert_close(batch["advantages"].float(), torch.tensor(_hand_rloo(rewards, 4)), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ full-vocabulary Gaussian steps
def test_full_vocabulary_gaussian_loss_scores_what_the_rollout_sampled(tmp_path, monkeypatch):
    """STHT's soft tokens: every thinking step mixes the whole vocabulary at T = 0.5 plus Gaussian noise; the loss
    scores a stop step by log p(x) and a continue step by log(1 - p(S)) + log N(h; p' E, s^2), p over the vocabulary,
    from the rollout's raw logits."""
    args = SoftGRPOConfig.stht(output_dir=str(tmp_path), **{**SMALL, "per_device_train_batch_size": 16,
                               "num_generations": 8, "max_completion_length": 10},
                               soft_thinking={"max_thinking_tokens": 6})
    trainer = make_trainer(args, lora=False, model=stop_friendly_model(), dataset=prompts(16))
    torch.manual_seed(2)
    batch, raw = _rollout_logits(trainer, monkeypatch)
    logps, _, _ = score(trainer, batch)
    scored, stops = batch["soft_mask"], batch["soft_stop"]
    assert stops.any() and (scored & ~stops).any()
    log_p = torch.log_softmax(raw[:, : scored.size(1)][scored].double() / 0.5, -1)
    expected = log_p.gather(-1, batch["soft_ids"][scored][:, :1])[:, 0]
    stop_ids = torch.tensor([EOS, THINK_END])
    non_stop = log_p.clone()
    non_stop[:, stop_ids] = -math.inf
    log_continue = torch.logsumexp(non_stop, -1)
    table = trainer.model.get_input_embeddings().weight.double()
    mean = (non_stop - log_continue[:, None]).exp() @ table
    std = 0.33 * table.square().mean().sqrt()
    assert batch["soft_noise_std"][0].item() == pytest.approx(std.item(), rel=1e-5)
    density = gaussian_log_density(batch["soft_embeds"][scored].double(), mean, std.item())
    cont = ~stops[scored]
    expected[cont] = (log_continue + density)[cont]
    torch.testing.assert_close(logps[scored].double(), expected, atol=1e-3, rtol=1e-6)


def test_gaussian_noise_scale_can_be_taken_over_the_rows_the_model_uses(tmp_path):
    model = tiny_model("llama", seed=0)
    module = model.get_input_embeddings()
    rows = [5, 6, 7, 40]
    assert embedding_rms(module, 263, token_ids=rows) == pytest.approx(module.weight[rows].square().mean().sqrt().item())
    with pytest.raises(ValueError, match="outside the vocabulary"):
        embedding_rms(module, 263, token_ids=[1, 300])
    soft = SoftThinkingConfig(max_topk=K, max_thinking_tokens=THINK, gaussian_rms_token_ids=rows)
    trainer = make_trainer(make_args(tmp_path, "gaussian", soft=soft), lora=False, model=model)
    batch = rollout_batch(trainer)
    want = 0.33 * module.weight[rows].square().mean().sqrt().item()
    assert batch["soft_noise_std"][0].item() == pytest.approx(want, rel=1e-5)


# ------------------------------------------------------------------------------------ learning through thinking
RECIPES = {
    "softgrpo": lambda out, **kw: SoftGRPOConfig.softgrpo(output_dir=out, beta=0.0, **kw),
    "gumbel_max": lambda out, **kw: SoftGRPOConfig(output_dir=out, soft_rollout="gumbel", soft_density="gumbel_max",
                                                   **kw),
    "logistic_normal": lambda out, **kw: SoftGRPOConfig(output_dir=out, soft_rollout="logistic_normal", **kw),
    "stht": lambda out, **kw: SoftGRPOConfig.stht(output_dir=out, **kw),
}
# each recipe's decoder settings with think_end=None (every step thinks); the mixture sizes of the presets are kept
DECODER = {
    "softgrpo": dict(think_end=None),
    "gumbel_max": dict(max_topk=K, think_end=None, temperature=1.0, top_p=1.0, min_p=0.0),
    "logistic_normal": dict(max_topk=K, think_end=None, temperature=1.0, top_p=1.0, min_p=0.0),
    "stht": dict(think_end=None, gaussian_sigma=1.0),  # sigma 1 as the gaussian learning test: 25 steps
}
# stht at 2e-2 collapses to one even token whatever the gradient's sign (the full-vocabulary Gaussian score is noisy)
LEARNING_RATE = {"stht": 5e-3}


def _thinking_only_reward(tmp_path, recipe, sign, steps=25):
    rng = random.Random(0)
    rows = ["".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(512)]
    dataset = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": r}] for r in rows]})
    values = {**SMALL, "per_device_train_batch_size": 32, "num_generations": 8, "max_completion_length": 3,
              "max_steps": steps, "learning_rate": LEARNING_RATE.get(recipe, 2e-2), "activation_checkpointing": False,
              "lr_scheduler_type": "linear", "weight_decay": 0.0}
    args = RECIPES[recipe](str(tmp_path / f"{recipe}{sign}"), soft_thinking=DECODER[recipe], **values)
    ScaledThinkingGradient.sign = sign
    trainer = make_trainer(args, lora=False, dataset=dataset, reward=even_trace, trainer_class=ScaledThinkingGradient)
    trainer.train()
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    return sum(rewards[-5:]) / 5


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_recipe_learns_a_task_solved_only_by_the_thinking_steps(tmp_path, recipe):
    """As test_soft_rl's learning test: no answer phase, the reward moves only through the thinking-step scores; the
    trainer's gradient raises it above the run without a thinking gradient (same seed), the flipped one lowers it."""
    without = _thinking_only_reward(tmp_path, recipe, 0.0)
    trained = _thinking_only_reward(tmp_path, recipe, 1.0)
    flipped = _thinking_only_reward(tmp_path, recipe, -1.0)
    print(f"{recipe}: last-5-step reward {trained:.2f} (trainer), {without:.2f} (none), {flipped:.2f} (flipped)")
    assert trained >= without + 0.15
    assert flipped <= without - 0.15


# --------------------------------------------------------------------------- logistic-normal noise in the decoder
def test_logistic_normal_noise_perturbs_the_log_weights_by_gaussians():
    from hf_softthink import LogisticNormalNoiseLogitsProcessor

    torch.manual_seed(0)
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]])).expand(20000, 4)
    out = LogisticNormalNoiseLogitsProcessor(sigma=0.7)(None, scores)
    assert torch.isinf(out[:, 3]).all()
    noise = out[:, :3] - torch.log_softmax(scores, -1)[:, :3]
    assert noise.mean().abs() < 0.02 and abs(noise.std().item() - 0.7) < 0.02
    model = enable_soft_thinking(tiny_model("llama", seed=0), tokenizer=TOKENIZER)
    out = model.generate(**TOKENIZER("abc", return_tensors="pt"), max_new_tokens=3, return_dict_in_generate=True,
                         soft_thinking=SoftThinkingConfig(max_topk=K, noise="logistic_normal", think_end=None),
                         pad_token_id=TOKENIZER.pad_token_id)
    assert torch.isfinite(out.soft_topk_log_weights[out.soft_topk_support]).all()
