"""Log-densities of soft-thinking actions (DESIGN.md section 5).

A soft step's *action* is what was fed back to the model; the RL loss needs its log-density
under the current policy. Three noise families are supported, each exact:

* :func:`gaussian_log_density` -- Gaussian noise on the input embedding ("Soft Tokens, Hard
  Truths", arXiv 2509.19170): ``h = mu + s * eps``.
* :func:`concrete_log_density` -- Gumbel-Softmax / Concrete weights over the K stored ids
  (Maddison, Mnih & Teh 2017, arXiv 1611.00712; Jang, Gu & Poole 2017, arXiv 1611.01144),
  as used by SofT-GRPO (arXiv 2511.06411) rollouts.
* :func:`dirichlet_log_density` -- Dirichlet weights ``y ~ Dir(alpha * p)`` (arXiv 2508.03440).
* :func:`logistic_normal_log_density` -- Gaussian noise on the K log-weights,
  ``y = softmax(log p + s * eps)`` (a logistic-normal mixture, Aitchison & Shen 1980).

plus two scores that are not densities of the action, offered as options:

* :func:`soft_grpo_gumbel_log_density` -- the score of the SofT-GRPO reference implementation
  (its clamped per-coordinate Gumbel log-pdf);
* :func:`gumbel_max_log_density` -- the log-probability of a Gumbel step's Gumbel-max id, plus an
  optional weighted residual of the exact Concrete density (lower variance, biased when the mixture
  weights, not only the chosen ids, move the reward).

Conventions shared by every function here:

* Batched over arbitrary leading dimensions ``(...)``; the event is the last dimension.
* Differentiable in the distribution parameters (mean, std, logits, tau, concentration);
  the actions (``x``, ``log_y``, ``y``) are normally detached rollout data.
* Computed in float32 at least: bfloat16 / float16 inputs are upcast, float64 stays float64.
  The result has that compute dtype.
* Simplex densities (Concrete, Dirichlet) are with respect to Lebesgue measure on the first
  ``K - 1`` coordinates of the simplex, the convention of ``torch.distributions``.

Where ``torch.distributions`` is exact and stable it is used (``Normal`` / ``Independent``);
where it is not, the closed form is written out and the docstring says why.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Independent, Normal

__all__ = [
    "concrete_log_density",
    "dirichlet_log_density",
    "gaussian_log_density",
    "gaussian_step_kl",
    "gumbel_max_log_density",
    "logistic_normal_log_density",
    "soft_grpo_gumbel_log_density",
]


def _compute_dtype(*values) -> torch.dtype:
    """At least float32; float64 if any tensor argument is float64."""
    dtype = torch.float32
    for v in values:
        if isinstance(v, Tensor) and v.is_floating_point():
            dtype = torch.promote_types(dtype, v.dtype)
    return dtype


def _check_event_dims(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError(f"`{name_a}` and `{name_b}` must have an event dimension (..., K); got 0-d tensors.")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must share their last (event) dimension; "
            f"got {tuple(a.shape)} and {tuple(b.shape)}."
        )


def _positive_param(name: str, value, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A float or tensor parameter as a tensor of ``dtype``; Python numbers are checked to be > 0.

    Tensors are not checked (that would force a device sync inside the training loop).
    """
    if isinstance(value, Tensor):
        return value.to(dtype=dtype, device=device)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a positive float or a tensor, got {type(value).__name__}.")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return torch.tensor(float(value), dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# Gaussian
# --------------------------------------------------------------------------------------------


def gaussian_log_density(x: Tensor, mean: Tensor, std: float | Tensor) -> Tensor:
    r"""Log-density of an isotropic (or diagonal) Gaussian, summed over the last dimension.

    .. math::

        \log \mathcal N(x;\ \mu, s^2 I) = -\frac{\lVert x-\mu\rVert^2}{2 s^2} - \frac d2 \log(2\pi s^2)

    With a per-coordinate ``std`` the per-coordinate terms are summed (diagonal covariance).
    This is the log-density of the Gaussian soft action ``h = mu_old + s * eps`` of "Soft
    Tokens, Hard Truths" (arXiv 2509.19170), where ``mu`` is the probability-weighted mixture
    of token embeddings and ``s = sigma * rms(E)``.

    Args:
        x: actions, shape ``(..., d)``.
        mean: means, shape broadcastable with ``x``, last dimension ``d`` (differentiable).
        std: a positive float, or a tensor. A tensor with **fewer** dimensions than ``x`` is a
            per-row std, broadcast (right-aligned, numpy style) against ``x.shape[:-1]``. A
            tensor with the **same** number of dimensions as ``x`` is per-coordinate,
            broadcast against ``(..., d)`` (so a trailing size-1 dimension is per-row again).
            A per-coordinate std of shape ``(d,)`` for batched ``x`` must therefore be given
            with ``x``'s rank, e.g. ``std.view(1, d)``. Tensor values are not checked for
            positivity (no device sync); Python numbers are.

    Returns:
        ``(...)`` log-densities in float32 (float64 if an input is float64); bf16/fp16 inputs
        are upcast before anything is computed.

    Implemented with ``torch.distributions.Independent(Normal(mean, std), 1).log_prob`` (exact
    and stable; argument validation is off so no sync happens).

    Example:
        >>> x = torch.zeros(2, 3, 4)
        >>> gaussian_log_density(x, torch.zeros(4), 1.0).shape
        torch.Size([2, 3])
    """
    if not isinstance(x, Tensor) or not isinstance(mean, Tensor):
        raise TypeError("`x` and `mean` must be tensors of shape (..., d).")
    _check_event_dims("x", x, "mean", mean)
    dtype = _compute_dtype(x, mean, std)
    x = x.to(dtype)
    mean = mean.to(dtype)
    std_t = _positive_param("std", std, dtype, x.device)
    if std_t.dim() < x.dim():
        std_t = std_t.unsqueeze(-1)  # per-row -> (..., 1)
    elif std_t.shape[-1] not in (1, x.shape[-1]):
        raise ValueError(
            f"A per-coordinate `std` (same rank as `x`) must have last dimension 1 or d={x.shape[-1]}; "
            f"got shape {tuple(std_t.shape)}."
        )
    mean, std_t = torch.broadcast_tensors(mean, std_t)
    return Independent(Normal(mean, std_t, validate_args=False), 1, validate_args=False).log_prob(x)


def gaussian_step_kl(
    log_p: Tensor, ref_log_p: Tensor, stop_set: Tensor, mean: Tensor, ref_mean: Tensor, std: float | Tensor
) -> Tensor:
    r"""Exact KL(policy || reference) of one Gaussian thinking step with a sampled stop decision.

    The step (DESIGN.md section 3, `SoftThinkingConfig(stop_decision="sample")`) emits a stop token $x \in S$
    with probability $p(x)$, or continues with probability $c = 1 - p(S)$ and feeds
    $h \sim \mathcal N(\mu', s^2 I)$. For two such steps with thinking distributions $p$, $q$ over the same
    ids and continue means $\mu'$, $\mu'_q$ (same $s$):

    .. math::

        \mathrm{KL} = \sum_{x \in S} p(x) \log\frac{p(x)}{q(x)} + c \log\frac{c}{c_q}
                     + c\,\frac{\lVert \mu' - \mu'_q\rVert^2}{2 s^2}

    (the Gaussian term is the closed-form KL of two isotropic Gaussians with equal covariance). Without stop
    ids it is $\lVert \mu' - \mu'_q\rVert^2 / (2 s^2)$.

    Args:
        log_p: ``(..., K)`` policy log-probabilities of the K ids (``-inf`` off the support; differentiable).
        ref_log_p: ``(..., K)`` reference log-probabilities of the same ids.
        stop_set: ``(..., K)`` bool, the ids in S.
        mean: ``(..., d)`` policy continue mean (differentiable).
        ref_mean: ``(..., d)`` reference continue mean.
        std: noise scale $s$: a float or a tensor broadcastable to ``(...)``.

    Returns:
        ``(...)`` KL values (float32 at least).

    Example:
        >>> log_p = torch.log(torch.tensor([0.2, 0.8]))
        >>> stop = torch.tensor([True, False])
        >>> kl = gaussian_step_kl(log_p, log_p, stop, torch.ones(3), torch.zeros(3), 1.0)
        >>> round(kl.item(), 4)  # 0.8 * 3 / 2
        1.2
    """
    dtype = _compute_dtype(log_p, ref_log_p, mean, ref_mean, std)
    log_p, ref_log_p = log_p.to(dtype), ref_log_p.to(dtype)
    support = log_p > -math.inf
    ratio = torch.where(support, log_p - ref_log_p.clamp_min(torch.finfo(dtype).min), torch.zeros_like(log_p))
    stop_terms = torch.where(stop_set & support, log_p.exp() * ratio, torch.zeros_like(log_p)).sum(-1)
    non_stop = support & ~stop_set
    log_c = torch.logsumexp(log_p.masked_fill(~non_stop, -math.inf), -1)
    ref_log_c = torch.logsumexp(ref_log_p.masked_fill(~non_stop, -math.inf), -1)
    has_continue = non_stop.any(-1)
    log_c_safe = torch.where(has_continue, log_c, torch.zeros_like(log_c))
    ref_log_c_safe = torch.where(has_continue, ref_log_c, torch.zeros_like(ref_log_c))
    c = torch.where(has_continue, log_c_safe.exp(), torch.zeros_like(log_c))
    std_t = _positive_param("std", std, dtype, log_p.device)
    gaussian = (mean.to(dtype) - ref_mean.to(dtype)).square().sum(-1) / (2 * std_t.square())
    return stop_terms + c * (log_c_safe - ref_log_c_safe) + c * gaussian


# --------------------------------------------------------------------------------------------
# Concrete / Gumbel-Softmax
# --------------------------------------------------------------------------------------------


def _masked_inputs(logits: Tensor, log_y: Tensor):
    """Broadcast, find valid categories (logit != -inf) and zero out the invalid entries."""
    logits, log_y = torch.broadcast_tensors(logits, log_y)
    valid = logits != float("-inf")
    k = valid.sum(-1)
    # Shift-invariance: subtract the (detached) max over valid entries for numerical range.
    shift = torch.where(valid, logits, float("-inf")).amax(-1, keepdim=True).detach()
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    l_safe = torch.where(valid, logits - shift, torch.zeros_like(logits))
    ly_safe = torch.where(valid, log_y, torch.zeros_like(log_y))
    return valid, k, l_safe, ly_safe


def concrete_log_density(logits: Tensor, log_y: Tensor, tau: float | Tensor) -> Tensor:
    r"""Exact log-density of the Concrete (Gumbel-Softmax) distribution, from log-weights.

    For ``y = softmax((l + g) / tau)`` with ``g_i ~ Gumbel(0, 1)`` i.i.d. over K categories,
    Maddison, Mnih & Teh (2017, arXiv 1611.00712, eq. 3) give

    .. math::

        \log p(y) = \log\Gamma(K) + (K-1)\log\tau + \sum_i l_i - (\tau+1)\sum_i \log y_i
                    - K\,\operatorname{logsumexp}_i(l_i - \tau \log y_i),

    a density with respect to Lebesgue measure on the first ``K - 1`` coordinates of the
    simplex (the same convention as ``torch.distributions.RelaxedOneHotCategorical``). It is
    invariant to adding a constant to ``l``, so ``logits`` may be unnormalised (raw logits,
    log-probs over the full vocabulary, or log-probs renormalised over the K ids all give the
    same value).

    Why not ``torch.distributions.RelaxedOneHotCategorical(tau, logits=l).log_prob(y)``? It
    computes exactly this formula, but from ``y``: it takes ``log(y)`` internally. At small
    ``tau`` the Gumbel-Softmax weights underflow (``y_i == 0`` in float32 while
    ``log y_i`` is a perfectly finite number like -3000), and its ``log_prob`` returns
    ``nan``/``inf``. This function takes ``log_y`` -- keep it from a ``log_softmax`` at sampling
    time, never ``log(y)``.

    Support masking: categories whose ``logits`` entry is ``-inf`` are *not* part of the
    distribution (fewer than K candidates survived filtering). They are excluded from every
    sum and from ``K``: the result is the Concrete density over the valid categories only,
    with ``K`` = the number of valid entries in that row (their ``log_y`` entries are ignored,
    whatever they hold). A row with a single valid category is a point mass and gets 0; a row
    with none gets 0 too. ``log_y`` must be finite on valid categories.

    Args:
        logits: ``(..., K)`` policy logits / log-probs of the K stored ids (differentiable).
        log_y: ``(..., K)`` log-weights of the sampled action, e.g.
            ``torch.log_softmax((l_old + g) / tau, -1)``; broadcastable with ``logits``.
        tau: Gumbel-Softmax temperature > 0: a float or a tensor broadcastable to ``(...)``.

    Returns:
        ``(...)`` log-densities (float32 at least; bf16 inputs are upcast).

    Example:
        >>> l = torch.log_softmax(torch.randn(4, 10), -1)
        >>> g = -torch.log(-torch.log(torch.rand(4, 10)))
        >>> log_y = torch.log_softmax((l + g) / 0.05, -1)  # y itself underflows
        >>> bool(torch.isfinite(concrete_log_density(l, log_y, 0.05)).all())
        True
    """
    if not isinstance(logits, Tensor) or not isinstance(log_y, Tensor):
        raise TypeError("`logits` and `log_y` must be tensors of shape (..., K).")
    _check_event_dims("logits", logits, "log_y", log_y)
    dtype = _compute_dtype(logits, log_y, tau)
    logits = logits.to(dtype)
    log_y = log_y.to(dtype)
    tau_t = _positive_param("tau", tau, dtype, logits.device)

    valid, k, l_safe, ly_safe = _masked_inputs(logits, log_y)
    tau_e = tau_t.unsqueeze(-1) if tau_t.dim() > 0 else tau_t
    score = torch.where(valid, l_safe - tau_e * ly_safe, torch.full_like(l_safe, float("-inf")))
    empty = (k == 0).unsqueeze(-1)
    score = torch.where(empty, torch.zeros_like(score), score)  # keeps logsumexp (and its grad) finite
    k_f = k.clamp_min(1).to(dtype)

    out = (
        torch.lgamma(k_f)
        + (k_f - 1) * torch.log(tau_t)
        + l_safe.sum(-1)
        - (tau_t + 1) * ly_safe.sum(-1)
        - k_f * torch.logsumexp(score, dim=-1)
    )
    return torch.where(k > 1, out, torch.zeros_like(out))


def gumbel_max_log_density(logits: Tensor, log_y: Tensor, tau: float | Tensor, residual: float = 0.0) -> Tensor:
    r"""Score of a Gumbel soft step by its Gumbel-max id, plus an optional weighted residual of the exact density.

    With $k = \arg\max_i y_i$ (the Gumbel-max id, an exact sample of $p_\theta = \mathrm{softmax}(l)$ over the
    valid ids when the noise is not clamped) the Concrete density factorises as
    $q_\theta(y) = p_\theta(k)\, q_\theta(y \mid k)$. This returns

    .. math::

        \log p_\theta(k) + \lambda\,\big(\log q_\theta(y) - \log p_\theta(k)\big)
        = \log p_\theta(k) + \lambda \log q_\theta(y \mid k),

    $\lambda$ = `residual` in [0, 1]: 0 scores the step as the token $k$ (the lowest variance), 1 is
    :func:`concrete_log_density`. Bias: the dropped term $E[R\,\nabla \log q_\theta(y \mid k)]$ is zero
    when the reward depends on the rollout only through the chosen ids $k$, so $\lambda = 0$ is then
    unbiased; in soft thinking the continuation sees the weights $y$, not only $k$, and the estimator is
    biased by that term, more so the further $y$ is from one-hot (large tau). With a clamped noise
    (`SoftThinkingConfig.gumbel_noise_clamp`) $k$ is no longer a sample of $p_\theta$ and even
    $\lambda = 1$ is not the density of the action.

    Args:
        logits: ``(..., K)`` policy logits (differentiable); ``-inf`` marks ids off the support.
        log_y: ``(..., K)`` log-weights of the fed mixture (its argmax over the valid ids is $k$).
        tau: Gumbel-Softmax temperature (used by the residual only).
        residual: $\lambda$, the weight of the exact density's residual.

    Returns:
        ``(...)`` scores (float32 at least). A row with a single valid id gets 0.

    Example:
        >>> l = torch.log(torch.tensor([0.7, 0.2, 0.1]))
        >>> log_y = torch.log(torch.tensor([0.1, 0.85, 0.05]))  # the Gumbel-max id is 1
        >>> round(gumbel_max_log_density(l, log_y, 0.5).item(), 4) == round(math.log(0.2), 4)
        True
    """
    if not isinstance(logits, Tensor) or not isinstance(log_y, Tensor):
        raise TypeError("`logits` and `log_y` must be tensors of shape (..., K).")
    _check_event_dims("logits", logits, "log_y", log_y)
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"`residual` must be in [0, 1], got {residual!r}.")
    dtype = _compute_dtype(logits, log_y, tau)
    logits, log_y = torch.broadcast_tensors(logits.to(dtype), log_y.to(dtype))
    valid = logits != float("-inf")
    log_p = torch.log_softmax(logits.masked_fill(~valid.any(-1, keepdim=True), 0.0), dim=-1)
    chosen = log_y.masked_fill(~valid, float("-inf")).argmax(-1, keepdim=True)
    token = torch.where(valid, log_p, torch.zeros_like(log_p)).gather(-1, chosen)[..., 0]
    token = torch.where(valid.sum(-1) > 1, token, torch.zeros_like(token))
    if residual == 0.0:
        return token
    exact = concrete_log_density(logits, log_y.masked_fill(~valid, 0.0), tau)
    return token + residual * (exact - token)


def soft_grpo_gumbel_log_density(
    logits: Tensor,
    perturbed: Tensor,
    *,
    noise_clamp: tuple[float, float] = (-1.5, 3.0),
    min_log_prob: float = -3.0,
) -> Tensor:
    r"""SofT-GRPO's score of a Gumbel soft step (its public code) -- a bounded score, NOT a log-density.

    The SofT-GRPO reference (arXiv 2511.06411; verl fork ``verl/utils/torch_functional.py``
    ``logprobs_from_logits_topk_gumbel``, lines 140-164) scores a thinking step from the stored perturbed
    log-weights $G_i = \log w_i + g_i$ (its ``topk_gumbels``, $g$ clamped at sampling) and the policy's
    log-probabilities $l_i = \log p_{\theta,i}$ of the stored ids, renormalised over them:

    .. math::

        x_i = \mathrm{clamp}(G_i - l_i,\ a,\ b), \qquad
        \mathrm{score} = \frac{1}{|M|} \sum_{i \in M} \big(-x_i - e^{-x_i}\big), \qquad
        M = \{i : l_i > c\}.

    $x_i$ is the Gumbel noise that would turn $\log p_\theta$ into the stored $G$ (on-policy: the sampled
    noise itself), clamped to $[a, b]$ = `noise_clamp`, and $-x - e^{-x}$ is the standard Gumbel log-pdf; $M$
    keeps the ids with $l_i > c$ = `min_log_prob` ($p_\theta > 0.0498$). The score is bounded
    ($[-3.05, -1]$ with the default clamp), has no Jacobian of the softmax, and its gradient
    $\sum_{i \in M} (e^{-x_i} - 1)\,\nabla l_i / |M|$ vanishes where the clamp is active or where
    $p_\theta \to 1$ (a confident step), unlike the Concrete density's.

    Two details differ from the reference, neither on-policy: it adds $10^{-6}$ inside both logs,
    $\log(w + 10^{-6})$ and $\log(p_\theta + 10^{-6})$ (to avoid $\log 0$), where this uses log-softmaxes
    (both give $x = g$ on-policy; off-policy they differ by $O(10^{-6} / p)$ on the averaged ids, $p > 0.05$);
    and it renormalises $p_\theta$ over its K stored ids, whose ids outside the nucleus are arbitrary
    zero-probability ids (``torch.topk`` among ties), where this renormalises over the support (``-inf``
    logits mark the rest), which the mask $M$ drops anyway.

    Args:
        logits: ``(..., K)`` policy logits of the stored ids at the thinking temperature
            (differentiable); ``-inf`` marks ids off the support.
        perturbed: ``(..., K)`` stored $G = \log w + g$ (``soft_topk_perturbed_log_weights``); ``-inf`` off
            the support.
        noise_clamp: $(a, b)$, the clamp of the recovered noise (the reference: ``(-1.5, 3)``).
        min_log_prob: $c$, the ids averaged have $l_i > c$ (the reference: ``-3``).

    Returns:
        ``(...)`` scores (float32 at least); 0 for a row with no valid id.

    Example:
        >>> l = torch.log(torch.tensor([0.6, 0.4]))
        >>> g = torch.tensor([0.5, -0.2])
        >>> expected = (-g - torch.exp(-g)).mean()  # on-policy: the Gumbel log-pdf of the noise itself
        >>> torch.allclose(soft_grpo_gumbel_log_density(l, l + g), expected)
        True
    """
    if not isinstance(logits, Tensor) or not isinstance(perturbed, Tensor):
        raise TypeError("`logits` and `perturbed` must be tensors of shape (..., K).")
    _check_event_dims("logits", logits, "perturbed", perturbed)
    low, high = noise_clamp
    if not low < high:
        raise ValueError(f"`noise_clamp` must be (low, high) with low < high, got {noise_clamp!r}.")
    dtype = _compute_dtype(logits, perturbed)
    logits, perturbed = torch.broadcast_tensors(logits.to(dtype), perturbed.to(dtype))
    valid = logits != float("-inf")
    l = torch.log_softmax(logits.masked_fill(~valid.any(-1, keepdim=True), 0.0), dim=-1)  # noqa: E741
    l_safe = torch.where(valid, l, torch.zeros_like(l))
    known = valid & torch.isfinite(perturbed)
    x = torch.where(known, perturbed - l_safe, torch.full_like(l, low)).clamp(low, high)
    score = -x - torch.exp(-x)
    use = (valid & (l_safe > min_log_prob)).to(dtype)
    n = use.sum(-1)
    return torch.where(n > 0, (score * use).sum(-1) / n.clamp_min(1), torch.zeros_like(n))


# --------------------------------------------------------------------------------------------
# Logistic-normal (Gaussian noise on the log-weights)
# --------------------------------------------------------------------------------------------


def logistic_normal_log_density(logits: Tensor, log_y: Tensor, sigma: float | Tensor) -> Tensor:
    r"""Exact log-density of a logistic-normal mixture $y = \mathrm{softmax}(l + s\,\epsilon)$, $\epsilon \sim \mathcal N(0, I_K)$.

    With $u_i = \log y_i - l_i$ and $\bar u$ their mean over the $K$ valid ids (any constant shift of
    $l$ or $\log y$ cancels), the additive log-ratios $v_i = \log(y_i / y_K)$ are Gaussian with
    covariance $s^2 (I_{K-1} + 11^\top)$, whose inverse is $s^{-2}(I - 11^\top / K)$ and determinant
    $s^{2(K-1)} K$; the map $y \mapsto v$ has Jacobian $1 / \prod_i y_i$. So (Aitchison & Shen 1980)

    .. math::

        \log q(y) = -\frac{1}{2 s^2} \sum_i (u_i - \bar u)^2 - \frac{K-1}{2} \log(2\pi s^2)
                    - \frac12 \log K - \sum_i \log y_i,

    with respect to Lebesgue measure on the first $K - 1$ simplex coordinates (as
    :func:`concrete_log_density`). The score $\nabla_\theta \log q = \sum_i (u_i - \bar u)\,\nabla l_i / s^2$
    has a size of about $1/s$ per unit of $\nabla l$: the noise is on the K log-weights, not on the
    d-dimensional embedding (compare :func:`gaussian_log_density`, whose score is of size $|E| / s_{emb}$).

    Ids with ``logits == -inf`` are off the support and excluded (K counts the valid ids); a row with one
    valid id is a point mass and gets 0. ``log_y`` must be finite on the valid ids (keep it from a
    log-softmax).

    Args:
        logits: ``(..., K)`` policy logits / log-probs (differentiable).
        log_y: ``(..., K)`` log-weights of the sampled mixture.
        sigma: noise scale $s > 0$ (float or tensor broadcastable to ``(...)``).

    Returns:
        ``(...)`` log-densities (float32 at least).

    Example:
        >>> l = torch.log(torch.tensor([0.5, 0.3, 0.2]))
        >>> bool(torch.isfinite(logistic_normal_log_density(l, torch.log_softmax(l + torch.randn(3), -1), 1.0)))
        True
    """
    if not isinstance(logits, Tensor) or not isinstance(log_y, Tensor):
        raise TypeError("`logits` and `log_y` must be tensors of shape (..., K).")
    _check_event_dims("logits", logits, "log_y", log_y)
    dtype = _compute_dtype(logits, log_y, sigma)
    sigma_t = _positive_param("sigma", sigma, dtype, logits.device)
    logits, log_y = torch.broadcast_tensors(logits.to(dtype), log_y.to(dtype))
    valid = logits != float("-inf")
    k = valid.sum(-1)
    k_f = k.clamp_min(1).to(dtype)
    u = torch.where(valid, log_y - logits, torch.zeros_like(logits))
    centred = torch.where(valid, u - (u.sum(-1, keepdim=True) / k_f.unsqueeze(-1)), torch.zeros_like(u))
    ly = torch.where(valid, log_y, torch.zeros_like(log_y))
    out = (
        -centred.square().sum(-1) / (2 * sigma_t.square())
        - (k_f - 1) / 2 * torch.log(2 * math.pi * sigma_t.square())
        - 0.5 * torch.log(k_f)
        - ly.sum(-1)
    )
    return torch.where(k > 1, out, torch.zeros_like(out))


# --------------------------------------------------------------------------------------------
# Dirichlet
# --------------------------------------------------------------------------------------------


def dirichlet_log_density(y: Tensor | None, concentration: Tensor, *, log_y: Tensor | None = None) -> Tensor:
    r"""Log-density of a Dirichlet distribution, in closed form.

    .. math::

        \log \mathrm{Dir}(y;\ a) = \log\Gamma\Big(\sum_i a_i\Big) - \sum_i \log\Gamma(a_i)
                                   + \sum_i (a_i - 1) \log y_i

    with respect to Lebesgue measure on the first ``K - 1`` simplex coordinates (the
    convention of ``torch.distributions.Dirichlet.log_prob``, which computes the same
    formula with ``xlogy``). Used for Dirichlet soft actions ``y ~ Dir(alpha * p_theta)``.

    Numerical handling (why not ``torch.distributions.Dirichlet(a).log_prob(y)`` as is): with
    small concentrations (``alpha * p`` for unlikely ids) the sampled weights underflow to
    exactly 0 in float32, where torch returns ``+inf`` (``a < 1``) or ``-inf`` (``a > 1``) and
    non-finite gradients. Here ``y`` is clamped to ``>= torch.finfo(dtype).tiny`` (the
    smallest normal number, which is also the floor ``torch``'s Dirichlet sampler applies),
    so a weight that underflowed is scored as that floor. If exact log-weights are
    available (e.g. a sampler that works in log space), pass them as ``log_y=`` instead;
    ``y`` is then ignored and may be ``None``. Elsewhere the result equals torch's.

    Support masking: categories with ``concentration == 0`` (ids with zero probability, e.g.
    fewer than K survived filtering) are excluded: the density is over the remaining
    categories (their ``y`` entries are ignored). A row with a single positive
    concentration is a point mass and gets 0; a row with none gets 0 too. Positivity of the
    other entries is not checked (no device sync).

    Args:
        y: ``(..., K)`` weights on the simplex (the sampled action), or ``None`` with ``log_y``.
        concentration: ``(..., K)`` concentrations ``a >= 0`` (differentiable), e.g.
            ``alpha * softmax(logits)``; broadcastable with ``y``.
        log_y: optional ``(..., K)`` exact log-weights, used instead of ``log(clamp(y))``.

    Returns:
        ``(...)`` log-densities (float32 at least; bf16 inputs are upcast).

    Example:
        >>> a = torch.tensor([1.0, 2.0, 3.0])
        >>> y = torch.tensor([0.2, 0.3, 0.5])
        >>> torch.allclose(dirichlet_log_density(y, a), torch.distributions.Dirichlet(a).log_prob(y))
        True
    """
    if not isinstance(concentration, Tensor):
        raise TypeError("`concentration` must be a tensor of shape (..., K).")
    if log_y is None:
        if not isinstance(y, Tensor):
            raise TypeError("`y` must be a tensor of shape (..., K) (or pass `log_y=`).")
        _check_event_dims("y", y, "concentration", concentration)
        dtype = _compute_dtype(y, concentration)
        log_y = torch.log(y.to(dtype).clamp_min(torch.finfo(dtype).tiny))
    else:
        if not isinstance(log_y, Tensor):
            raise TypeError("`log_y` must be a tensor of shape (..., K).")
        _check_event_dims("log_y", log_y, "concentration", concentration)
        dtype = _compute_dtype(log_y, concentration)
        log_y = log_y.to(dtype)
    conc = concentration.to(dtype)
    conc, log_y = torch.broadcast_tensors(conc, log_y)

    valid = conc != 0
    k = valid.sum(-1)
    a = torch.where(valid, conc, torch.ones_like(conc))  # lgamma(1) = 0 and (1 - 1) * log y = 0
    ly = torch.where(valid, log_y, torch.zeros_like(log_y))
    total = torch.where(valid, conc, torch.zeros_like(conc)).sum(-1)
    total = torch.where(k > 0, total, torch.ones_like(total))
    out = ((a - 1) * ly).sum(-1) + torch.lgamma(total) - torch.lgamma(a).sum(-1)
    return torch.where(k > 1, out, torch.zeros_like(out))
