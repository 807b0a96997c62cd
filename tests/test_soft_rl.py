"""Soft RL correctness: what the rollout did is exactly what the loss scores (issue 7's defects)."""

import math
import random

import datasets
import pytest
import torch
from test_trainer import THINK, THINK_END, TOKENIZER, K, make_args, make_trainer, rollout_batch, score
from transformers import LogitsProcessor, LogitsProcessorList

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.models import tiny_model
from hf_softthink.trainer import SOFT_ROLLOUTS, SoftGRPOTrainer
from hf_softthink.trainer.densities import (
    concrete_log_density,
    dirichlet_log_density,
    gaussian_log_density,
    gaussian_step_kl,
)

SOFT_MODES = [m for m in SOFT_ROLLOUTS if m != "hard"]
EOS = TOKENIZER.eos_token_id


# ------------------------------------------------------------------------------------- defect 1: entropy
@pytest.mark.parametrize("mode", SOFT_MODES)
@pytest.mark.parametrize("entropy", [dict(entropy_coef=0.05), dict(use_adaptive_entropy=True, entropy_target=9.0)])
def test_entropy_bonus_keeps_gradients_finite_with_ids_outside_the_support(tmp_path, mode, entropy):
    """T=0.05 and top_p=0.6 leave stored ids outside the support (log p = -inf there): the entropy's backward must not give
    0 * -inf = nan."""
    soft = SoftThinkingConfig(max_topk=K, max_thinking_tokens=THINK, temperature=0.05, top_p=0.6)
    trainer = make_trainer(make_args(tmp_path, mode, soft=soft, **entropy), lora=False)
    batch = rollout_batch(trainer)
    support = batch["soft_support"][batch["soft_mask"]]
    assert (~support).any() and support.any(-1).all()  # some stored ids are off the support
    trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)


# ---------------------------------------------------------------------------- defect 2: stop decisions
class FixedScores(LogitsProcessor):
    """Every step: EOS has probability 0.41, ids 10, 11, 12 share the rest (0.3, 0.2, 0.09)."""

    def __call__(self, input_ids, scores):
        fixed = torch.full_like(scores, -math.inf)
        fixed[:, EOS], fixed[:, 10], fixed[:, 11], fixed[:, 12] = map(math.log, (0.41, 0.3, 0.2, 0.09))
        return fixed


@pytest.mark.parametrize("noise", ["none", "gaussian", "dirichlet", "gumbel"])
def test_sampled_stop_decisions_stop_with_the_stop_probability(noise):
    """argmax always stops without weight noise (EOS has the largest weight); 'sample' stops with probability p(EOS) = 0.41 and
    otherwise continues with the non-stop ids only (gumbel: the Gumbel-max id is the sample)."""
    model = enable_soft_thinking(tiny_model("llama", seed=0), tokenizer=TOKENIZER)
    prompt = TOKENIZER("abc", return_tensors="pt")
    rows = 400
    stopped = {}
    for decision in ("argmax", "sample"):
        torch.manual_seed(0)
        config = SoftThinkingConfig(max_topk=K, temperature=1.0, top_p=1.0, min_p=0.0, noise=noise,
                                    stop_decision=decision)
        out = model.generate(
            **prompt, soft_thinking=config, max_new_tokens=2, do_sample=True, num_return_sequences=rows,
            logits_processor=LogitsProcessorList([FixedScores()]), return_dict_in_generate=True,
            pad_token_id=TOKENIZER.pad_token_id, eos_token_id=EOS,
        )
        first = out.sequences[:, prompt["input_ids"].shape[1]]
        stopped[decision] = (first == EOS).float().mean().item()
        if decision == "sample":
            assert torch.equal(out.stop_decision_mask[:, 0], first == EOS)
            assert not (out.thinking_mask[:, 0] & (first == EOS)).any()
            go_on = ~out.stop_decision_mask[:, 0]
            weights = out.soft_topk_weights[go_on, 0]
            eos_weight = (weights * (out.soft_topk_ids[go_on, 0] == EOS)).sum(-1)
            if noise == "gumbel":  # y keeps weight on EOS; continuing means its Gumbel-max id is not EOS
                assert (eos_weight > 0).all() and (out.soft_topk_ids[go_on, 0, 0] != EOS).all()
            else:  # continuing mixtures hold no EOS
                assert torch.equal(eos_weight, torch.zeros_like(eos_weight))
            assert out.soft_topk_support[:, 0].sum(-1).eq(4).all()  # the 4 ids of w, EOS included
    if noise in ("none", "gaussian"):  # the noise-free top-1 is EOS on every row
        assert stopped["argmax"] == 1.0
    assert abs(stopped["sample"] - 0.41) < 0.08


class ThinkEndLikely(LogitsProcessor):
    """Every step: the think-end token has probability 0.5, ids 10 and 11 share the rest (0.3, 0.2)."""

    def __call__(self, input_ids, scores):
        fixed = torch.full_like(scores, -math.inf)
        fixed[:, THINK_END], fixed[:, 10], fixed[:, 11] = map(math.log, (0.5, 0.3, 0.2))
        return fixed


def test_a_sampled_think_end_is_fed_and_recorded_as_its_token_embedding():
    """Gaussian rollouts: a drawn think-end feeds its token's embedding (no noise) and `soft_input_embeddings` records
    exactly that, so the loss feeds the answer what the rollout fed; the step is a natural THINK_END."""
    from hf_softthink.events import StepEvent

    model = enable_soft_thinking(tiny_model("llama", seed=0), tokenizer=TOKENIZER)
    prompt = TOKENIZER("abc", return_tensors="pt")
    torch.manual_seed(0)
    config = SoftThinkingConfig(max_topk=K, temperature=1.0, top_p=1.0, min_p=0.0, noise="gaussian",
                                stop_decision="sample", think_end=THINK_END)
    out = model.generate(
        **prompt, soft_thinking=config, max_new_tokens=3, do_sample=True, num_return_sequences=64,
        logits_processor=LogitsProcessorList([ThinkEndLikely()]), return_dict_in_generate=True,
        pad_token_id=TOKENIZER.pad_token_id, eos_token_id=EOS,
    )
    stopped = out.sequences[:, prompt["input_ids"].shape[1]] == THINK_END
    assert stopped.any() and (~stopped).any()
    assert torch.equal(out.stop_decision_mask[:, 0], stopped)
    assert (out.step_events[stopped, 0] == StepEvent.THINK_END).all()
    assert (out.step_events[stopped, 1] == StepEvent.ANSWER).all()
    assert (out.step_events[~stopped, 0] == StepEvent.SOFT).all()
    token = model.get_input_embeddings()(torch.tensor([THINK_END]))[0]
    torch.testing.assert_close(out.soft_input_embeddings[stopped, 0], token.expand(int(stopped.sum()), -1))
    assert out.soft_topk_support[stopped, 0].sum(-1).eq(3).all()  # the 3 ids of w, think-end included


def _rollout_logits(trainer, monkeypatch):
    """Run one generation batch, keeping the rollout's own per-step raw logits (output_logits=True)."""
    model_class = type(trainer.accelerator.unwrap_model(trainer.model).get_base_model()
                       if hasattr(trainer.model, "get_base_model") else trainer.model)
    original = model_class.generate
    captured = {}

    def generate(self, *args, **kwargs):
        out = original(self, *args, output_logits=True, **kwargs)
        captured["logits"] = torch.stack(out.logits, dim=1)
        return out

    monkeypatch.setattr(model_class, "generate", generate)
    batch = rollout_batch(trainer)
    monkeypatch.setattr(model_class, "generate", original)
    return batch, captured["logits"]


@pytest.mark.parametrize("mode", SOFT_MODES)
def test_loss_scores_exactly_what_the_rollout_sampled(tmp_path, mode, monkeypatch):
    """Rollout/loss consistency: at every scored position the loss's log-probability at the rollout's parameters
    equals the one implied by the rollout's own logits (thinking steps: the thinking distribution over the stored
    support, stop decisions included; answer tokens: GRPO's temperature), and forced tokens are out of the loss."""
    soft = SoftThinkingConfig(max_topk=K, max_thinking_tokens=THINK, temperature=0.8, top_p=0.9, min_p=0.0)
    args = make_args(tmp_path, mode, soft=soft, temperature=0.7, max_completion_length=THINK + 3,
                     per_device_train_batch_size=8, num_generations=8)
    trainer = make_trainer(args, lora=False)
    torch.manual_seed(3)
    batch, rollout = _rollout_logits(trainer, monkeypatch)
    logps, _, _ = score(trainer, batch)
    config = trainer.rollout_soft_config
    completion = batch["completion_ids"]
    length = completion.size(1)
    rollout = rollout[:, :length]
    scored = batch["soft_mask"]
    stops = batch["soft_stop"]
    policy = batch["completion_mask"].bool() & batch["tool_mask"].bool()
    assert scored.any() and (policy & ~scored).any()
    # thinking steps, from the rollout's logits and the stored actions
    ids, support = batch["soft_ids"][scored], batch["soft_support"][scored]
    z = rollout[scored].gather(-1, ids) / config.temperature
    log_p = torch.log_softmax(z.masked_fill(~support, -math.inf), -1)
    is_stop = torch.isin(ids, trainer.stop_ids)
    keep = support & ~is_stop
    stop_rows = stops[scored]
    expected = torch.empty(len(ids))
    expected[stop_rows] = log_p[stop_rows, 0]
    cont = ~stop_rows
    log_keep = torch.logsumexp(log_p.masked_fill(~keep, -math.inf), -1)
    p_keep = (log_p - log_keep[:, None]).exp().masked_fill(~keep, 0.0)
    log_w = batch["soft_log_weights"][scored]
    if mode in ("gaussian", "fuzzy"):
        vectors = trainer.model.get_input_embeddings()(ids).float()
        mean = (p_keep[..., None] * vectors).sum(-2)
        std = batch["soft_noise_std"][:, None].expand_as(scored)[scored]
        density = gaussian_log_density(batch["soft_embeds"][scored], mean, std[:, None])
        # the fed mixture is p' exactly (no noise on the weights)
        torch.testing.assert_close(log_w[cont].exp(), p_keep[cont].gather(-1, torch.arange(K).expand(cont.sum(), K)),
                                   atol=1e-5, rtol=0)
        expected[cont] = (log_keep + density)[cont]
    elif mode == "dirichlet":
        density = dirichlet_log_density(None, config.dirichlet_alpha * p_keep, log_y=log_w.masked_fill(~keep, 0.0))
        expected[cont] = (log_keep + density)[cont]
    elif mode == "logistic_normal":  # y' = softmax(log p' + s eps) over the non-stop ids
        u = torch.where(keep, log_w - torch.log(p_keep), 0.0)
        n = keep.sum(-1)
        centred = torch.where(keep, u - u.sum(-1, keepdim=True) / n[:, None], 0.0)
        s2 = config.logistic_normal_sigma**2
        density = (-centred.square().sum(-1) / (2 * s2) - (n - 1) / 2 * math.log(2 * math.pi * s2)
                   - 0.5 * torch.log(n.float()) - torch.where(keep, log_w, 0.0).sum(-1))
        expected[cont] = (log_keep + density)[cont]
    else:
        density = concrete_log_density(z.masked_fill(~support, -math.inf), log_w.masked_fill(~support, 0.0),
                                       config.gumbel_tau)
        expected[cont] = density[cont]
    torch.testing.assert_close(logps[scored], expected, atol=2e-4, rtol=1e-5)
    # answer tokens: the token log-prob at GRPO's temperature
    hard = policy & ~scored
    token_logps = torch.log_softmax(rollout / args.temperature, -1).gather(-1, completion[..., None])[..., 0]
    torch.testing.assert_close(logps[hard], token_logps[hard], atol=2e-4, rtol=1e-5)
    # the forced think-end (thinking budget) is the only position out of the loss, and it is not scored
    forced = batch["completion_mask"].bool() & ~batch["tool_mask"].bool()
    assert (completion[forced] == THINK_END).all() and not (forced & scored).any()
    assert batch["num_items_in_batch"] == policy.sum()


# ------------------------------------------------------------------------ defect 4: Gaussian KL and ratios
@pytest.mark.parametrize("mode", ["gaussian", "fuzzy"])
@pytest.mark.parametrize("overrides", [dict(num_iterations=2), dict(steps_per_generation=2)])
def test_gaussian_rollouts_refuse_off_policy_training_and_say_why(tmp_path, mode, overrides):
    with pytest.raises(ValueError, match="trains on-policy only.*leave the clip range"):
        make_args(tmp_path, mode, **overrides)


def test_gaussian_step_kl_matches_torch_distributions():
    from torch.distributions import Categorical, Normal, kl_divergence

    torch.manual_seed(0)
    logits, ref_logits = torch.randn(5), torch.randn(5)
    stop_set = torch.tensor([True, False, False, True, False])
    mean, ref_mean, std = torch.randn(7), torch.randn(7), 0.3
    log_p, ref_log_p = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    kl = gaussian_step_kl(log_p, ref_log_p, stop_set, mean, ref_mean, std)

    def branches(log_probs):  # the stop tokens, then "continue"
        return torch.cat([log_probs[stop_set], torch.logsumexp(log_probs[~stop_set], -1, keepdim=True)])

    expected = kl_divergence(Categorical(logits=branches(log_p)), Categorical(logits=branches(ref_log_p)))
    continue_prob = log_p[~stop_set].exp().sum()
    expected = expected + continue_prob * kl_divergence(Normal(mean, std), Normal(ref_mean, std)).sum()
    torch.testing.assert_close(kl, expected, atol=1e-5, rtol=1e-5)


def test_gaussian_kl_penalty_is_exact_and_stays_finite(tmp_path):
    """beta > 0 with gaussian rollouts: the KL at thinking steps is the exact per-step KL (logged as soft/kl),
    0 before the first update and finite after large LoRA updates (k3 on the Gaussian density ratio has a
    variance of order d |mu - mu_ref|^2 / s^2 and overflowed on SmolLM2, issue 7)."""
    args = make_args(tmp_path, "gaussian", beta=0.04, max_steps=4, learning_rate=5e-2)
    trainer = make_trainer(args)
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    kls = [e["kl"] for e in logs]
    assert kls[0] == 0.0 and logs[0]["soft/kl"] == 0.0
    assert all(math.isfinite(k) for k in kls) and all(math.isfinite(e["soft/kl"]) for e in logs)
    assert any(e["soft/kl"] > 0 for e in logs[1:])
    assert all(math.isfinite(e["loss"]) for e in logs)


def test_gaussian_kl_penalty_is_not_masked_by_top_entropy_quantile(tmp_path):
    """TRL 1.16 adds its KL term after the high-entropy mask (`top_entropy_quantile`) has masked the policy loss,
    and aggregates over every completion token: the gaussian penalty does the same (here at answer tokens, where
    it is TRL's k3)."""
    args = make_args(tmp_path, "gaussian", beta=0.04, top_entropy_quantile=0.5, loss_type="grpo")
    trainer = make_trainer(args)
    trainer.model.eval()  # no gradient-accumulation scaling
    logps = torch.log(torch.tensor([[0.5, 0.4, 0.3, 0.2], [0.6, 0.1, 0.7, 0.9]]))
    ref = torch.log(torch.tensor([[0.4, 0.4, 0.5, 0.1], [0.3, 0.2, 0.7, 0.8]]))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    inputs = {"completion_mask": mask, "ref_per_token_logps": ref, "soft_mask": torch.zeros(2, 4, dtype=torch.bool)}
    terms = {"logps": logps, "entropies": torch.tensor([[0.1, 2.0, 0.2, 3.0], [1.5, 0.1, 2.5, 0.3]])}
    k3 = torch.exp(ref - logps) - (ref - logps) - 1
    expected = ((k3 * mask).sum(-1) / mask.sum(-1)).mean()  # TRL's "grpo" aggregation over the completion mask
    torch.testing.assert_close(trainer._gaussian_kl_loss(inputs, terms), expected)


@pytest.mark.parametrize("mode", ["gaussian", "dirichlet"])
def test_thinking_step_metrics_and_gradient_norm_split_are_logged(tmp_path, mode):
    trainer = make_trainer(make_args(tmp_path, mode, beta=0.04, log_soft_grad_norms=True))
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    for entry in logs:
        assert entry["soft/forced_rate"] == 1.0  # the thinking budget forces every think-end here
        assert 0.0 <= entry["soft/eos_in_thinking_rate"] <= 1.0
        assert entry["soft/ratio_clip_frac"] == 0.0 and entry["soft/log_ratio_abs_mean"] == 0.0  # on-policy
        assert math.isfinite(entry["soft/kl" if mode == "gaussian" else "soft/k3"])
    assert all(e["soft/grad_norm_thinking"] > 0 and e["soft/grad_norm_tokens"] > 0 for e in logs)


# ------------------------------------------------------------------------------- learning through thinking
def even_trace(completions, completion_ids, **kwargs):
    """Fraction of even token ids in the completion: with think_end=None every step is a thinking step."""
    return [sum(i % 2 == 0 for i in ids) / max(len(ids), 1) for ids in completion_ids]


class ScaledThinkingGradient(SoftGRPOTrainer):
    """Multiplies the gradient of every thinking-step score by `sign` (values unchanged): 1 is the trainer,
    0 removes the thinking gradient, -1 flips it."""

    sign = 1.0

    def soft_log_density(self, *args, **kwargs):
        density, entropy = super().soft_log_density(*args, **kwargs)
        return self.sign * density + (1 - self.sign) * density.detach(), entropy


def _thinking_only_reward_curve(tmp_path, mode, sign, steps=25):
    rng = random.Random(0)
    rows = ["".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(512)]
    dataset = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": r}] for r in rows]})
    soft = SoftThinkingConfig(max_topk=K, think_end=None, gaussian_sigma=1.0, temperature=1.0, top_p=1.0, min_p=0.0)
    args = make_args(tmp_path / f"{mode}{sign}", mode, soft=soft, per_device_train_batch_size=32, num_generations=8,
                     max_completion_length=3, max_steps=steps, learning_rate=2e-2, gradient_checkpointing=False)
    ScaledThinkingGradient.sign = sign
    trainer = make_trainer(args, lora=False, dataset=dataset, reward=even_trace,
                           trainer_class=ScaledThinkingGradient)
    trainer.train()
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    return sum(rewards[-5:]) / 5


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gaussian", "gumbel", "dirichlet"])  # fuzzy: one-id mixtures carry no gradient
def test_soft_rl_learns_a_task_solved_only_by_the_thinking_steps(tmp_path, mode):
    """No answer phase (think_end=None): the reward (even ids among the 3 generated steps) moves only through
    the thinking-step scores. Same seed, so the runs differ only in that gradient: the trainer's raises the
    reward well above the run without a thinking gradient, and the flipped gradient drives it down."""
    without = _thinking_only_reward_curve(tmp_path, mode, 0.0)
    trained = _thinking_only_reward_curve(tmp_path, mode, 1.0)
    flipped = _thinking_only_reward_curve(tmp_path, mode, -1.0)
    print(f"{mode}: last-5-step reward {trained:.2f} (trainer), {without:.2f} (no thinking gradient), "
          f"{flipped:.2f} (flipped)")
    assert trained >= without + 0.15 and trained >= 0.9
    assert flipped <= without - 0.15


# -------------------------------------------------------------------- defect 3: the Gaussian mean and E
@pytest.mark.parametrize("mode", ["gaussian", "fuzzy"])
def test_gaussian_scores_do_not_differentiate_the_embedding_table_through_the_noise_mean(tmp_path, mode):
    """Full fine-tuning: the score of a Gaussian step through E_j is p_j eps / s, pure noise of norm ~ sqrt(d)/s
    (it sent ~7e3 into the embedding rows of the tiny model). The trainer differentiates the mean through
    p_theta only: from fixed hidden states, a Gaussian step's score gives the (untied) input embedding no
    gradient, and the LM head (the logits) one."""
    trainer = make_trainer(make_args(tmp_path, mode), lora=False)
    model = trainer.model
    assert not model.config.tie_word_embeddings
    torch.manual_seed(0)
    n, d = 6, model.config.hidden_size
    ids = torch.randint(10, 200, (n, K))
    support = torch.ones(n, K, dtype=torch.bool)
    std = torch.full((n,), 0.01)
    fed = model.get_input_embeddings()(ids).mean(1).detach() + 0.01 * torch.randn(n, d)
    model.zero_grad()
    density, _ = trainer.soft_log_density(
        model, torch.randn(n, d), ids, support, torch.zeros(n, dtype=torch.bool), torch.zeros(n, K), fed, std
    )
    density.sum().backward()
    embedding = model.get_input_embeddings().weight.grad
    assert embedding is None or torch.count_nonzero(embedding) == 0
    if mode == "gaussian":  # fuzzy: p_theta is one-hot at T = 1e-4, so the logits get nothing either
        assert model.lm_head.weight.grad.abs().sum() > 0
