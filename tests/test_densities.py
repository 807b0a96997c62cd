"""Soft-action log-densities: closed forms, agreement with torch.distributions, numerics."""

import math

import pytest
import torch
from torch.distributions import Dirichlet, Normal, RelaxedOneHotCategorical

from hf_softthink.trainer.densities import (
    concrete_log_density,
    dirichlet_log_density,
    gaussian_log_density,
    gumbel_max_log_density,
    logistic_normal_log_density,
    soft_grpo_gumbel_log_density,
)

F64 = torch.float64


def _gumbel(shape, generator, dtype=F64):
    u = torch.rand(shape, generator=generator, dtype=dtype).clamp(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(u))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------
# Gaussian
# ------------------------------------------------------------------------------------------


def test_gaussian_d1_matches_manual_formula():
    x, m, s = 0.7, -0.2, 0.4
    want = -((x - m) ** 2) / (2 * s * s) - 0.5 * math.log(2 * math.pi * s * s)
    got = gaussian_log_density(torch.tensor([x]), torch.tensor([m]), s)
    assert got.shape == ()
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_gaussian_isotropic_closed_form_batched():
    g = _gen(1)
    x = torch.randn(2, 3, 5, generator=g, dtype=F64)
    mean = torch.randn(2, 3, 5, generator=g, dtype=F64)
    s = 0.3
    want = -((x - mean) ** 2).sum(-1) / (2 * s * s) - 5 / 2 * math.log(2 * math.pi * s * s)
    got = gaussian_log_density(x, mean, s)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, want)
    # per-row std tensor (fewer dims than x) and same thing given as (..., 1)
    std_rows = torch.full((2, 3), s, dtype=F64)
    torch.testing.assert_close(gaussian_log_density(x, mean, std_rows), want)
    torch.testing.assert_close(gaussian_log_density(x, mean, std_rows[..., None]), want)
    # mean broadcast from (d,)
    got_b = gaussian_log_density(x, mean[0, 0], s)
    torch.testing.assert_close(got_b[0, 0], want[0, 0])


def test_gaussian_per_coordinate_std():
    g = _gen(2)
    x = torch.randn(4, 3, generator=g, dtype=F64)
    mean = torch.randn(4, 3, generator=g, dtype=F64)
    std = torch.tensor([[0.5, 1.0, 2.0]], dtype=F64)  # same rank as x: per coordinate
    want = Normal(mean, std.expand_as(mean)).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_log_density(x, mean, std), want)


def test_gaussian_upcasts_bf16_and_validates():
    x = torch.randn(2, 8).to(torch.bfloat16)
    out = gaussian_log_density(x, torch.zeros(8, dtype=torch.bfloat16), 0.5)
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match="std"):
        gaussian_log_density(x, torch.zeros(8), 0.0)
    with pytest.raises(ValueError, match="last"):
        gaussian_log_density(x, torch.zeros(7), 1.0)


def test_gaussian_score_identity_and_grad():
    # E_x[d/dmean log N(x; mean, s)] = 0 for x drawn from the distribution itself.
    g = _gen(3)
    n, d, s = 20000, 4, 0.7
    mean0 = torch.randn(d, generator=g, dtype=F64)
    x = mean0 + s * torch.randn(n, d, generator=g, dtype=F64)
    mean = mean0.expand(n, d).clone().requires_grad_(True)
    std = torch.tensor(s, dtype=F64, requires_grad=True)
    gaussian_log_density(x, mean, std).sum().backward()
    per_sample = mean.grad
    se = per_sample.std(0) / math.sqrt(n)
    assert (per_sample.mean(0).abs() < 5 * se).all()
    assert std.grad is not None and torch.isfinite(std.grad)


# ------------------------------------------------------------------------------------------
# Concrete / Gumbel-Softmax
# ------------------------------------------------------------------------------------------


def _manual_concrete(logits, log_y, tau):
    k = logits.shape[-1]
    return (
        math.lgamma(k)
        + (k - 1) * math.log(tau)
        + logits.sum(-1)
        - (tau + 1) * log_y.sum(-1)
        - k * torch.logsumexp(logits - tau * log_y, -1)
    )


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_concrete_matches_torch_relaxed_one_hot(tau):
    # torch's RelaxedOneHotCategorical.log_prob is the same density (ExpConcrete log-prob minus
    # the exp Jacobian sum_i log y_i == Maddison et al.'s Concrete density on the first K-1
    # coordinates): they agree to rounding wherever y does not underflow.
    g = _gen(4)
    logits = torch.randn(3, 5, 6, generator=g, dtype=F64)
    dist = RelaxedOneHotCategorical(torch.tensor(tau, dtype=F64), logits=logits)
    torch.manual_seed(0)
    y = dist.sample()
    got = concrete_log_density(logits, y.log(), tau)
    assert got.shape == (3, 5)
    torch.testing.assert_close(got, dist.log_prob(y))
    torch.testing.assert_close(got, _manual_concrete(logits, y.log(), tau))


def test_concrete_shift_invariance_and_normalised_logits():
    g = _gen(5)
    logits = torch.randn(4, 7, generator=g, dtype=F64)
    log_y = torch.log_softmax((logits + _gumbel((4, 7), g)) / 0.5, -1)
    base = concrete_log_density(logits, log_y, 0.5)
    shift = torch.randn(4, 1, generator=g, dtype=F64) * 50
    torch.testing.assert_close(concrete_log_density(logits + shift, log_y, 0.5), base)
    torch.testing.assert_close(concrete_log_density(torch.log_softmax(logits, -1), log_y, 0.5), base)


def test_concrete_batched_leading_dims_match_rows():
    g = _gen(6)
    logits = torch.randn(2, 3, 4, 5, generator=g, dtype=F64)
    log_y = torch.log_softmax((logits + _gumbel(logits.shape, g)) / 0.7, -1)
    tau = torch.rand(2, 3, 4, generator=g, dtype=F64) + 0.3  # per-row tau
    out = concrete_log_density(logits, log_y, tau)
    assert out.shape == (2, 3, 4)
    for idx in [(0, 0, 0), (1, 2, 3), (0, 1, 2)]:
        want = concrete_log_density(logits[idx], log_y[idx], tau[idx].item())
        torch.testing.assert_close(out[idx], want)


@pytest.mark.parametrize("tau", [0.3, 2.0])
def test_concrete_integrates_to_one_k2(tau):
    # K = 2: the density is over y_1 in (0, 1). Substitute y_1 = sigmoid(u), dy_1 = y_1 y_2 du,
    # which removes the integrable y^(tau-1) endpoint singularity; log y stays exact.
    logits = torch.tensor([0.4, -0.9], dtype=F64)
    u = torch.linspace(-60 / tau, 60 / tau, 200001, dtype=F64)
    log_y = torch.stack([torch.nn.functional.logsigmoid(u), torch.nn.functional.logsigmoid(-u)], -1)
    log_p = concrete_log_density(logits.expand(u.shape[0], 2), log_y, tau)
    integrand = torch.exp(log_p + log_y.sum(-1))
    assert torch.trapezoid(integrand, u).item() == pytest.approx(1.0, abs=1e-6)


def test_concrete_small_tau_finite_where_torch_fails():
    # tau = 0.05: most y_i underflow to exactly 0 in float32, log_y stays finite.
    g = _gen(7)
    logits = torch.randn(64, 10, generator=g)
    log_y = torch.log_softmax((logits + _gumbel((64, 10), g, torch.float32)) / 0.05, -1)
    assert (log_y.exp() == 0).any()
    out = concrete_log_density(logits, log_y, 0.05)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    want = concrete_log_density(logits.double(), log_y.double(), 0.05)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-3)
    # torch.distributions takes y, so it goes through log(0): not finite on underflowed rows.
    torch_lp = RelaxedOneHotCategorical(torch.tensor(0.05), logits=logits, validate_args=False).log_prob(
        log_y.exp()
    )
    underflow_rows = (log_y.exp() == 0).any(-1)
    assert not torch.isfinite(torch_lp[underflow_rows]).any()
    # gradients are finite too
    lg = logits.clone().requires_grad_(True)
    concrete_log_density(lg, log_y, 0.05).sum().backward()
    assert torch.isfinite(lg.grad).all()


def test_concrete_score_identity():
    # E_y[d/dl log p(y)] = 0 when y is drawn from the Concrete distribution with logits l.
    g = _gen(8)
    n, k, tau = 20000, 4, 0.5
    l0 = torch.tensor([1.0, 0.2, -0.5, -1.5], dtype=F64)
    log_y = torch.log_softmax((l0 + _gumbel((n, k), g)) / tau, -1)
    logits = l0.expand(n, k).clone().requires_grad_(True)
    concrete_log_density(logits, log_y, tau).sum().backward()
    per_sample = logits.grad
    se = per_sample.std(0) / math.sqrt(n)
    assert (per_sample.mean(0).abs() < 5 * se).all()


def test_concrete_gumbel_samples_consistent_with_torch_sampler():
    # Samples built by hand (log_softmax((l + g) / tau)) and by torch's rsample have the same
    # distribution: their mean log-densities (a Monte-Carlo estimate of -entropy) agree.
    tau = 1.0
    l0 = torch.tensor([0.5, -0.3, 0.1], dtype=F64)
    n = 20000
    ours = concrete_log_density(l0, torch.log_softmax((l0 + _gumbel((n, 3), _gen(9))) / tau, -1), tau)
    torch.manual_seed(1)
    y = RelaxedOneHotCategorical(torch.tensor(tau, dtype=F64), logits=l0).sample((n,))
    theirs = concrete_log_density(l0, y.log(), tau)
    se = math.sqrt((ours.var() + theirs.var()).item() / n)
    assert abs(ours.mean().item() - theirs.mean().item()) < 5 * se


def test_concrete_support_masking():
    g = _gen(10)
    full = torch.randn(3, 4, generator=g, dtype=F64)
    log_y_sub = torch.log_softmax((full + _gumbel((3, 4), g)) / 0.5, -1)
    want = concrete_log_density(full, log_y_sub, 0.5)
    # Pad to K = 6 with two absent categories (logits -inf); their log_y entries are junk.
    logits = torch.cat([full, torch.full((3, 2), float("-inf"), dtype=F64)], -1)
    log_y = torch.cat([log_y_sub, torch.full((3, 2), float("-inf"), dtype=F64)], -1)
    logits = logits[:, [0, 4, 1, 2, 5, 3]]  # mask need not be a suffix
    log_y = log_y[:, [0, 4, 1, 2, 5, 3]]
    lg = logits.clone().requires_grad_(True)
    got = concrete_log_density(lg, log_y, 0.5)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    assert torch.isfinite(lg.grad).all()
    assert (lg.grad[:, [1, 4]] == 0).all()
    # A single valid category is a point mass: 0; no valid category: 0 (finite gradient).
    one = torch.tensor([[0.3, float("-inf"), float("-inf")], [float("-inf")] * 3], dtype=F64)
    one.requires_grad_(True)
    out = concrete_log_density(one, torch.zeros(2, 3, dtype=F64), 0.5)
    assert out.tolist() == [0.0, 0.0]
    out.sum().backward()
    assert torch.isfinite(one.grad).all()


def test_concrete_tau_gradient_and_validation():
    logits = torch.randn(2, 3, dtype=F64, requires_grad=True)
    tau = torch.tensor(0.6, dtype=F64, requires_grad=True)
    log_y = torch.log_softmax(torch.randn(2, 3, dtype=F64), -1)
    concrete_log_density(logits, log_y, tau).sum().backward()
    assert logits.grad is not None and tau.grad is not None
    with pytest.raises(ValueError, match="tau"):
        concrete_log_density(logits, log_y, -1.0)
    with pytest.raises(ValueError, match="last"):
        concrete_log_density(logits, log_y[:, :2], 0.5)
    assert concrete_log_density(logits.to(torch.bfloat16), log_y, 0.5).dtype == F64


def _reference_topk_probs(raw, k=5, top_p=0.95):
    """SofT-GRPO's sampler (sglang sampler.py lines 119-162): softmax, top-k renorm, top-p renorm, top-k ids."""
    probs = torch.softmax(raw, -1)
    kth = probs.topk(k, -1).values[..., -1:]
    probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    probs = probs / probs.sum(-1, keepdim=True)
    ordered, order = probs.sort(-1, descending=True)
    before = ordered.cumsum(-1) - ordered
    ordered = torch.where(before < top_p, ordered, torch.zeros_like(ordered))
    probs = torch.zeros_like(probs).scatter(-1, order, ordered)
    probs = probs / probs.sum(-1, keepdim=True)
    top, ids = probs.topk(k, -1)
    return top / top.sum(-1, keepdim=True), ids


def _reference_score(raw_theta, ids, stored_gumbels):
    """verl's logprobs_from_logits_topk_gumbel (torch_functional.py lines 150-155), written out."""
    topk_probs = torch.softmax(raw_theta, -1).gather(-1, ids)
    topk_log_probs = (topk_probs / topk_probs.sum(-1, keepdim=True) + 1e-6).log()
    x = (stored_gumbels - topk_log_probs).clamp(-1.5, 3)
    score = -x - (-x).exp()
    mask = (topk_log_probs > -3).float()
    return (score * mask).sum(-1) / mask.sum(-1)


@pytest.mark.parametrize("top_p", [1.0, 0.95])
def test_soft_grpo_score_matches_the_reference_code_from_raw_logits_and_stored_noise(top_p):
    """The oracle is the reference pipeline written from its code: raw logits over a vocabulary, the sampler's top-k
    5 / top-p filters, Gumbel noise clamped to [-1.5, 3] and stored as log(p + 1e-6) + g, then the score of the
    stored noise under other (policy) logits, value and gradient. Ours stores log p + g and uses log-softmaxes: equal
    on-policy, within O(1e-6 / p) off-policy. With top_p < 1 ids leave the nucleus: the reference renormalises over
    its K stored ids, ours over the nucleus (documented); the oracle's ids outside the nucleus get a policy
    probability far below its 0.05 mask so the two agree."""
    g = _gen(5)
    raw_old = 3 * torch.randn(64, 50, generator=g, dtype=F64)
    topk_probs, ids = _reference_topk_probs(raw_old, top_p=top_p)
    gumbels = _gumbel((64, 5), g).clamp(-1.5, 3)
    assert ((gumbels == -1.5) | (gumbels == 3)).any()
    stored = torch.log(topk_probs + 1e-6) + gumbels  # the sampler's topk_gumbels (sampler.py lines 184-192)
    support = topk_probs > 0
    ours_stored = torch.where(support, torch.log(topk_probs) + gumbels, torch.full_like(stored, -math.inf))
    if top_p < 1:
        assert (~support).any()
    for shift in (0.0, 0.3):  # on-policy (the rollout's logits), then an updated policy
        raw = (raw_old + shift * torch.randn(64, 50, generator=g, dtype=F64)).requires_grad_(True)
        if top_p < 1:
            with torch.no_grad():  # the reference's zero-probability ids: negligible policy mass
                raw.scatter_(-1, ids, torch.where(support, raw.gather(-1, ids), raw.gather(-1, ids) - 30))
        want = _reference_score(raw, ids, stored)
        (want_grad,) = torch.autograd.grad(want.sum(), raw)
        got = soft_grpo_gumbel_log_density(raw.gather(-1, ids).masked_fill(~support, -math.inf), ours_stored)
        (got_grad,) = torch.autograd.grad(got.sum(), raw)
        tolerance = 1e-9 if shift == 0.0 else 1e-4
        torch.testing.assert_close(got, want, atol=tolerance, rtol=0)
        if shift:  # on-policy the clamp sits exactly on its bounds, where the gradient is a matter of rounding
            torch.testing.assert_close(got_grad, want_grad, atol=1e-4, rtol=0)
        lo, hi = -3.0 - math.exp(-3.0), -1.0  # range of -x - e^-x for x in [-1.5, 3]
        assert (got >= lo - 1e-9).all() and (got <= hi + 1e-9).all()


def test_soft_grpo_score_is_not_a_density_and_its_gradient_vanishes_when_the_policy_is_certain():
    u = torch.linspace(-40, 40, 20001, dtype=F64)
    ly = torch.stack([torch.nn.functional.logsigmoid(u), torch.nn.functional.logsigmoid(-u)], -1)
    logits = torch.zeros(u.shape[0], 2, dtype=F64)
    s = soft_grpo_gumbel_log_density(logits, 0.5 * ly)  # G = tau * log y
    assert abs(torch.trapezoid(torch.exp(s + ly.sum(-1)), u).item() - 1.0) > 0.1
    # a confident step: p ~ (1, 0): the masked mean keeps one id, whose clamp is active or whose l ~ 0 moves little
    confident = torch.tensor([[12.0, 0.0, -1.0]], dtype=F64, requires_grad=True)
    stored = torch.log_softmax(confident.detach(), -1) + torch.tensor([[0.2, 1.0, -0.5]], dtype=F64)
    soft_grpo_gumbel_log_density(confident, stored).sum().backward()
    exact = torch.tensor([[12.0, 0.0, -1.0]], dtype=F64, requires_grad=True)
    concrete_log_density(exact, torch.log_softmax(stored / 0.1, -1), 0.1).sum().backward()
    assert confident.grad.abs().max() < 1e-4 < exact.grad.abs().max()


# ------------------------------------------------------------------------------------------
# Gumbel-max score
# ------------------------------------------------------------------------------------------
def test_gumbel_max_score_is_the_log_probability_of_the_gumbel_max_id_plus_the_weighted_residual():
    g = _gen(8)
    logits = torch.randn(6, 5, generator=g, dtype=F64).requires_grad_(True)
    log_y = torch.log_softmax((torch.log_softmax(logits.detach(), -1) + _gumbel((6, 5), g)) / 0.3, -1)
    chosen = log_y.argmax(-1)
    score = gumbel_max_log_density(logits, log_y, 0.3)
    (grad,) = torch.autograd.grad(score.sum(), logits)
    want = torch.log_softmax(logits, -1).gather(-1, chosen[:, None])[:, 0]
    (want_grad,) = torch.autograd.grad(want.sum(), logits)
    torch.testing.assert_close(score, want)
    torch.testing.assert_close(grad, want_grad)
    exact = concrete_log_density(logits, log_y, 0.3)
    torch.testing.assert_close(gumbel_max_log_density(logits, log_y, 0.3, residual=1.0), exact)
    torch.testing.assert_close(gumbel_max_log_density(logits, log_y, 0.3, residual=0.25), want + 0.25 * (exact - want))
    # ids off the support are neither chosen nor counted
    masked = logits.detach().clone()
    masked[:, 0] = -math.inf
    y = log_y.clone()
    y[:, 0] = 10.0
    off = gumbel_max_log_density(masked, y, 0.3)
    assert torch.isfinite(off).all()
    with pytest.raises(ValueError, match="residual"):
        gumbel_max_log_density(logits, log_y, 0.3, residual=1.5)


# ------------------------------------------------------------------------------------------
# Logistic-normal
# ------------------------------------------------------------------------------------------
def test_logistic_normal_density_matches_a_multivariate_normal_on_the_log_ratios():
    """Oracle: v_i = log(y_i / y_K) ~ N(l_i - l_K, s^2 (I + 11^T)), and the density of y is that of v over
    prod y_i (the additive log-ratio Jacobian)."""
    from torch.distributions import MultivariateNormal

    g = _gen(9)
    k, sigma = 5, 0.7
    logits = torch.randn(8, k, generator=g, dtype=F64)
    log_y = torch.log_softmax(torch.log_softmax(logits, -1) + sigma * torch.randn(8, k, generator=g, dtype=F64), -1)
    v = log_y[:, :-1] - log_y[:, -1:]
    mean = logits[:, :-1] - logits[:, -1:]
    cov = sigma**2 * (torch.eye(k - 1, dtype=F64) + torch.ones(k - 1, k - 1, dtype=F64))
    want = MultivariateNormal(mean, covariance_matrix=cov).log_prob(v) - log_y.sum(-1)
    torch.testing.assert_close(logistic_normal_log_density(logits, log_y, sigma), want)
    torch.testing.assert_close(logistic_normal_log_density(logits + 3.0, log_y, sigma), want)  # shift-invariant
    # ids off the support drop out: the density over the valid ids
    masked = torch.cat([logits, torch.full((8, 1), -math.inf, dtype=F64)], -1)
    padded = torch.cat([log_y, torch.zeros(8, 1, dtype=F64)], -1)
    torch.testing.assert_close(logistic_normal_log_density(masked, padded, sigma), want)
    # K = 2: it integrates to one over the simplex
    u = torch.linspace(-30, 30, 40001, dtype=F64)
    ly = torch.stack([torch.nn.functional.logsigmoid(u), torch.nn.functional.logsigmoid(-u)], -1)
    dens = logistic_normal_log_density(torch.tensor([0.3, -0.4], dtype=F64), ly, 1.3)
    y1 = ly[:, 0].exp()
    assert abs(torch.trapezoid(dens.exp(), y1).item() - 1.0) < 1e-4


# ------------------------------------------------------------------------------------------
# Dirichlet
# ------------------------------------------------------------------------------------------


def test_dirichlet_matches_torch_batched():
    g = _gen(12)
    conc = torch.rand(2, 3, 5, generator=g, dtype=F64) * 3 + 0.2
    torch.manual_seed(2)
    y = Dirichlet(conc).sample()
    got = dirichlet_log_density(y, conc)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, Dirichlet(conc).log_prob(y))
    torch.testing.assert_close(dirichlet_log_density(None, conc, log_y=y.log()), got)


def test_dirichlet_k2_is_beta():
    a, b, x = 2.5, 0.7, 0.3
    want = torch.distributions.Beta(torch.tensor(a), torch.tensor(b)).log_prob(torch.tensor(x))
    got = dirichlet_log_density(torch.tensor([x, 1 - x]), torch.tensor([a, b]))
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_dirichlet_underflow_is_clamped_finite():
    conc = torch.tensor([[0.05, 0.05, 2.0]], requires_grad=True)
    y = torch.tensor([[0.0, 1e-30, 1.0]])
    out = dirichlet_log_density(y, conc)
    assert torch.isfinite(out).all()
    assert not torch.isfinite(Dirichlet(conc.detach(), validate_args=False).log_prob(y)).all()
    out.sum().backward()
    assert torch.isfinite(conc.grad).all()
    assert (
        dirichlet_log_density(y.to(torch.bfloat16), conc.detach().to(torch.bfloat16)).dtype == torch.float32
    )


def test_dirichlet_support_masking():
    conc = torch.tensor([[1.5, 0.0, 0.7, 2.0]], dtype=F64)
    y = torch.tensor([[0.3, 0.0, 0.2, 0.5]], dtype=F64)
    want = Dirichlet(conc[:, [0, 2, 3]]).log_prob(y[:, [0, 2, 3]])
    torch.testing.assert_close(dirichlet_log_density(y, conc), want)


def test_dirichlet_score_identity():
    g = _gen(13)
    n = 20000
    a0 = torch.tensor([0.8, 1.5, 3.0], dtype=F64)
    torch.manual_seed(3)
    y = Dirichlet(a0).sample((n,))
    conc = a0.expand(n, 3).clone().requires_grad_(True)
    dirichlet_log_density(y, conc).sum().backward()
    per_sample = conc.grad
    se = per_sample.std(0) / math.sqrt(n)
    assert (per_sample.mean(0).abs() < 5 * se).all()
    del g


def test_every_density_is_exported_by_the_trainer_package():
    import hf_softthink.trainer as trainer
    from hf_softthink.trainer import densities

    assert set(densities.__all__) <= set(trainer.__all__)
    assert all(getattr(trainer, name) is getattr(densities, name) for name in densities.__all__)
