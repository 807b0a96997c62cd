"""The logits-processor family of soft thinking.

Each class is a `transformers.LogitsProcessor`: it takes `(input_ids, scores)` and returns new scores, so
it composes in a `LogitsProcessorList`. The thinking-phase filters themselves are transformers' own
warpers (temperature, top-p, min-p); top-k is a *candidate reduction* (`top_k_candidates`) after which
every later filter and noise works on the `(batch, top_k)` candidate scores instead of the whole
vocabulary — top-p and min-p give the same kept set either way, at a fraction of the cost.

Processors that force the think-end token (Cold Stop, the thinking budget, SwiReasoning's switch limit) are
`ThinkEndForcer`s. Their decision is `fires(input_ids, thinking=, entropy=)` -> (B,) bool, the rows forced
this step (the decoder calls only that: it writes the forced text itself); as logits processors they take
three extra keyword arguments, passed by `LogitsProcessorList(..., thinking=, entropy=, forced=)`:
`thinking` (B,) bool marks the rows that are thinking, `entropy` (B,) the full-distribution entropy of the
step, and `forced` (B,) bool is *written*: a processor sets it for every row it forces. Each names the
`StepEvent` its forcing is recorded as (`forced_event`).

Ties are resolved as `torch.argmax` and plain greedy `generate` resolve them: the lowest token id first
(`top_k_lowest_ids`, `order_ties_by_position`).

Arithmetic that divides scores by a small number (temperature, Gumbel-Softmax tau) first shifts each row so
that its maximum is 0: softmax is unchanged, and the division can no longer overflow to inf and give NaN.
"""

from __future__ import annotations

import math
import string
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from .config import SoftThinkingConfig
from .events import StepEvent
from .token_ids import EmbeddingSizes, check_token_ids


def full_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Entropy (nats) of softmax(logits / T) over the **whole** vocabulary, per row.

    $H = -\sum_v p_v \log p_v$. It is taken before any filtering: after top-p, a confident model's
    distribution collapses to one token and H to exactly 0, which would make Cold Stop fire on anything.
    Tokens at probability 0 contribute 0; non-finite logits give a NaN entropy (never a number that looks
    valid), which the decoder reports.
    """
    log_p = torch.log_softmax(shift_to_zero_max(logits.float()) / temperature, dim=-1)
    p = log_p.exp()
    return -torch.where(p > 0, p * log_p, p).sum(-1)


def shift_to_zero_max(scores: torch.Tensor) -> torch.Tensor:
    """`scores - max(scores)` per row: same softmax, and dividing it by a tiny scale cannot overflow.

    Entries at `-inf` stay `-inf`; a row that is all `-inf` (or has a NaN or `+inf`) becomes NaN, which the
    decoder's checks report.
    """
    return scores - scores.amax(-1, keepdim=True)


def order_ties_by_position(values: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort `(values, positions)` pairs along the last dimension by value, descending, and equal values by
    position, ascending (`torch.topk` and `torch.sort` leave the order of equal values unspecified).

    Two sorts of the `k` pairs: the positions, then a *stable* sort of the values.
    """
    positions, by_position = positions.sort(dim=-1)
    values, order = values.gather(-1, by_position).sort(dim=-1, descending=True, stable=True)
    return values, positions.gather(-1, order)


def top_k_lowest_ids(
    scores: torch.Tensor, k: int, settle_boundary: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` highest scores of each row and their positions (token ids), sorted by score, descending, ties
    by lowest position first: as `torch.argmax` and greedy `generate` break ties (in low precision logits tie
    often).

    `torch.topk` keeps the right *values*; among positions tied at the k-th value it may keep any, in any
    order. The order is settled by `order_ties_by_position` (cheap: `k` pairs). With `settle_boundary` the
    places holding the k-th value also get the lowest tied positions of the whole row (one more top-k over the
    row): needed when the `k` kept are used whole; a caller that keeps only a prefix whose last value is above
    the k-th can skip it.

    Example:

    ```python
    >>> import torch
    >>> top_k_lowest_ids(torch.tensor([[0.0, 2.0, 1.0, 2.0, 1.0, 1.0]]), 3)[1].tolist()
    [[1, 3, 2]]

    ```
    """
    values, ids = torch.topk(scores, k, dim=-1)
    if settle_boundary and k < scores.shape[-1]:
        boundary = values[..., -1:]
        places = values == boundary  # the last places: those holding the k-th value
        size = scores.shape[-1]
        lowest_first = size - torch.arange(size, device=scores.device, dtype=torch.float32)  # exact below 2**24
        tied = torch.topk(torch.where(scores == boundary, lowest_first, 0.0), k, dim=-1).indices  # lowest tied ids
        start = k - places.sum(-1, keepdim=True)
        ids = torch.where(places, tied.gather(-1, (torch.arange(k, device=scores.device) - start).clamp_min(0)), ids)
    return order_ties_by_position(values, ids)


def top_k_candidates(
    scores: torch.Tensor, k: int | None, settle_boundary: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The `k` highest scores of each row, sorted descending (ties: lowest id first), and their token ids.

    `k=None` (or `k >= vocab`) keeps the whole vocabulary: the scores as they are, and `None` for the ids
    (the candidates are the vocabulary, in vocabulary order; no `(B, V)` id tensor is built).
    `settle_boundary`: see `top_k_lowest_ids`.
    """
    if k is None or k >= scores.shape[-1]:
        return scores, None
    return top_k_lowest_ids(scores, k, settle_boundary)


def force_tokens(scores: torch.Tensor, rows: torch.Tensor, token_ids: torch.Tensor | int) -> torch.Tensor:
    """Scores in which each row of `rows` (bool (B,)) can only emit its token of `token_ids` (int or (B,))."""
    token_ids = torch.as_tensor(token_ids, device=scores.device).expand(scores.shape[0])
    forced = torch.full_like(scores, -math.inf).scatter_(-1, token_ids[:, None], 0.0)
    return torch.where(rows[:, None], forced, scores)


class DirichletNoiseLogitsProcessor(LogitsProcessor):
    r"""Replaces the scores by the log of a Dirichlet sample around their softmax (arXiv:2508.03440).

    With $w = \mathrm{softmax}(s)$ over the finite entries, returns $\log y$, $y \sim \mathrm{Dir}(\alpha w)$,
    so `softmax` of the output is the randomised concept-token weights. Entries at `-inf` stay `-inf`. The
    sample is drawn as normalised Gamma variates (`torch._standard_gamma`, as `torch.distributions` does);
    draws that underflow stay on the support at the fp32 floor, and a row with a single finite entry (a
    forced token) stays one-hot.

    Example:

    ```python
    >>> import math, torch
    >>> _ = torch.manual_seed(0)
    >>> scores = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    >>> round(DirichletNoiseLogitsProcessor(alpha=1.0)(None, scores).softmax(-1).sum().item(), 5)
    1.0

    ```
    """

    def __init__(self, alpha: float = 1.0):
        if not alpha > 0:
            raise ValueError(f"`alpha` must be > 0, got {alpha}.")
        self.alpha = alpha

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(scores.float(), dim=-1)
        support = weights > 0
        concentration = (self.alpha * weights).clamp_min(torch.finfo(torch.float32).tiny)
        gamma = torch._standard_gamma(concentration).where(support, 0.0)
        gamma = gamma / gamma.amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)  # no overflow in sum
        total = gamma.sum(-1, keepdim=True)
        tiny = torch.finfo(torch.float32).tiny
        # all Gamma draws of a row underflowed (tiny concentrations): keep the row's weights
        sample = torch.where(total > 0, gamma / total.clamp_min(tiny), weights)
        # a draw that underflowed stays on the support at the fp32 floor, so its log-density is finite
        return torch.where(support, sample.clamp_min(tiny), 0.0).log()


class GumbelSoftmaxNoiseLogitsProcessor(LogitsProcessor):
    r"""Gumbel-Softmax (Concrete) perturbation of the scores (arXiv:2508.03440, SofT-GRPO arXiv:2511.06411).

    Returns $(\log w + g - m) / \tau$ with $w = \mathrm{softmax}(s)$, $g \sim \mathrm{Gumbel}(0, 1)$ i.i.d. and
    $m$ the row's maximum of $\log w + g$ (a shift that leaves the softmax unchanged and keeps small $\tau$
    from overflowing), so `softmax` of the output is a Gumbel-Softmax sample and its argmax a Gumbel-max
    sample of $w$. Entries at `-inf` stay `-inf`.

    With `noise_clamp=(low, high)` each $g$ is clamped to $[low, high]$ first, as SofT-GRPO's sampler does
    (`(-1.5, 3)`): the weights are then no longer a Concrete sample, nor the argmax an exact sample of $w$.
    `perturbed_log_weights` returns $\log w + g$ itself (SofT-GRPO's `topk_gumbels`, what its score needs).

    Example:

    ```python
    >>> import math, torch
    >>> _ = torch.manual_seed(0)
    >>> out = GumbelSoftmaxNoiseLogitsProcessor(tau=0.5)(None, torch.tensor([[0.0, -1.0, -math.inf]]))
    >>> bool(out[0, 2] == -math.inf)
    True

    ```
    """

    def __init__(self, tau: float = 0.5, noise_clamp: tuple[float, float] | None = None):
        if not tau > 0:
            raise ValueError(f"`tau` must be > 0, got {tau}.")
        if noise_clamp is not None and not noise_clamp[0] < noise_clamp[1]:
            raise ValueError(f"`noise_clamp` must be (low, high) with low < high, got {noise_clamp!r}.")
        self.tau = tau
        self.noise_clamp = noise_clamp

    def perturbed_log_weights(self, scores: torch.Tensor) -> torch.Tensor:
        r"""$\log w + g$ per entry (`-inf` where the scores are `-inf`), $g$ drawn (and clamped) here."""
        log_w = torch.log_softmax(scores.float(), dim=-1)
        uniform = torch.rand_like(log_w).clamp_(torch.finfo(torch.float32).tiny, 1.0)
        gumbel = -torch.log(-torch.log(uniform))
        if self.noise_clamp is not None:
            gumbel = gumbel.clamp(*self.noise_clamp)
        return log_w + gumbel

    def scores_from_perturbed(self, perturbed: torch.Tensor) -> torch.Tensor:
        """The processor's output from `perturbed_log_weights`: shifted to a zero maximum, divided by tau."""
        return shift_to_zero_max(perturbed) / self.tau

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.Tensor) -> torch.Tensor:
        return self.scores_from_perturbed(self.perturbed_log_weights(scores))


class LogisticNormalNoiseLogitsProcessor(LogitsProcessor):
    r"""Gaussian noise on the log-weights: a logistic-normal mixture (Aitchison & Shen 1980).

    Returns $\log w + s\,\epsilon$ with $w = \mathrm{softmax}(s_{in})$ over the finite entries and
    $\epsilon \sim \mathcal N(0, I)$, so `softmax` of the output, $y = \mathrm{softmax}(\log w + s\epsilon)$,
    is the randomised concept-token weights. It is the Gaussian counterpart of the Gumbel-Softmax noise: the
    noise lives on the K log-weights, not on the d-dimensional embedding, so its density
    (`hf_softthink.trainer.densities.logistic_normal_log_density`) has a score of size about $1/s$ per unit of
    $\nabla \log p$ instead of $|E| / (\sigma\,\mathrm{rms}(E))$. Entries at `-inf` stay `-inf`.

    Example:

    ```python
    >>> import math, torch
    >>> _ = torch.manual_seed(0)
    >>> out = LogisticNormalNoiseLogitsProcessor(sigma=1.0)(None, torch.tensor([[0.0, -1.0, -math.inf]]))
    >>> bool(out[0, 2] == -math.inf), round(out.softmax(-1).sum().item(), 5)
    (True, 1.0)

    ```
    """

    def __init__(self, sigma: float = 3.0):
        if not sigma > 0:
            raise ValueError(f"`sigma` must be > 0, got {sigma}.")
        self.sigma = sigma

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.Tensor) -> torch.Tensor:
        log_w = torch.log_softmax(scores.float(), dim=-1)
        return log_w + self.sigma * torch.randn_like(log_w)


class ThinkEndForcer(LogitsProcessor):
    """Base of the processors that force the think-end token on some thinking rows.

    Subclasses implement `fires` (advance their state, return the rows forced this step) and name the
    `StepEvent` of their forcing (`forced_event`). As a logits processor, `__call__` marks those rows in `forced`
    and lets them emit only `think_end_token_id`.
    """

    forced_event: StepEvent
    think_end_token_id: int | None

    def fires(self, input_ids: torch.LongTensor | None, thinking: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the rows of `thinking` forced this step (and the processor's state moves on)."""
        raise NotImplementedError

    def __call__(
        self,
        input_ids: torch.LongTensor | None,
        scores: torch.Tensor,
        thinking: torch.Tensor,
        entropy: torch.Tensor,
        forced: torch.Tensor,
    ) -> torch.Tensor:
        fire = self.fires(input_ids, thinking=thinking, entropy=entropy)
        forced |= fire
        return force_tokens(scores, fire, self.think_end_token_id if self.think_end_token_id is not None else 0)


class ColdStopLogitsProcessor(ThinkEndForcer):
    r"""Cold Stop: forces the think-end token after `patience` consecutive confident thinking steps.

    Keeps a per-row count of consecutive thinking steps with full-distribution entropy $H < $
    `entropy_threshold` (any step with $H \ge$ threshold resets it). On the step where the count reaches
    `patience`, the row's scores are replaced so that only `think_end_token_id` can be emitted, and the row
    is marked in `forced`. Rows that are not thinking are untouched and their count is reset.

    The count is state across the steps of **one** `generate` call: build a new instance per call.
    Recorded as `StepEvent.FORCED_COLD_STOP`.

    Example:

    ```python
    >>> import torch
    >>> stop = ColdStopLogitsProcessor(think_end_token_id=2, entropy_threshold=0.1, patience=2)
    >>> thinking, low = torch.tensor([True]), torch.tensor([0.01])
    >>> forced = torch.zeros(1, dtype=torch.bool)
    >>> _ = stop(None, torch.zeros(1, 4), thinking=thinking, entropy=low, forced=forced)
    >>> out = stop(None, torch.zeros(1, 4), thinking=thinking, entropy=low, forced=forced)
    >>> out.argmax(-1).item(), forced.item()
    (2, True)

    ```
    """

    forced_event = StepEvent.FORCED_COLD_STOP

    def __init__(self, think_end_token_id: int, entropy_threshold: float, patience: int):
        if patience < 1:
            raise ValueError(f"`patience` must be >= 1, got {patience}.")
        self.think_end_token_id = think_end_token_id
        self.entropy_threshold = entropy_threshold
        self.patience = patience
        self.low_entropy_steps: torch.Tensor | None = None

    def fires(self, input_ids: torch.LongTensor | None, thinking: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
        if self.low_entropy_steps is None:
            self.low_entropy_steps = torch.zeros(thinking.shape[0], dtype=torch.long, device=thinking.device)
        low = thinking & (entropy < self.entropy_threshold)
        self.low_entropy_steps = torch.where(low, self.low_entropy_steps + 1, 0)
        return thinking & (self.low_entropy_steps >= self.patience)


class ThinkingBudgetLogitsProcessor(ThinkEndForcer):
    r"""Forces the think-end token once a thinking row has generated `max_thinking_tokens` tokens.

    The thinking phase is the start of the generation, so the thinking length of a row that is still
    thinking is `input_ids.shape[1] - prompt_length`. When it reaches the budget the row can only emit
    `think_end_token_id` (and is marked in `forced`): at most `max_thinking_tokens` thinking tokens precede
    the think-end. Stateless (`entropy` is accepted for a uniform forcer signature and unused). Recorded as
    `StepEvent.FORCED_BUDGET`.

    Example:

    ```python
    >>> import torch
    >>> budget = ThinkingBudgetLogitsProcessor(think_end_token_id=3, max_thinking_tokens=2, prompt_length=4)
    >>> forced = torch.zeros(1, dtype=torch.bool)
    >>> ids = torch.zeros(1, 6, dtype=torch.long)  # 4 prompt + 2 thinking tokens
    >>> thinking, entropy = torch.tensor([True]), torch.tensor([1.0])
    >>> budget(ids, torch.zeros(1, 5), thinking=thinking, entropy=entropy, forced=forced).argmax(-1).item()
    3

    ```
    """

    forced_event = StepEvent.FORCED_BUDGET

    def __init__(self, think_end_token_id: int, max_thinking_tokens: int, prompt_length: int):
        self.think_end_token_id = think_end_token_id
        self.max_thinking_tokens = max_thinking_tokens
        self.prompt_length = prompt_length

    def fires(self, input_ids: torch.LongTensor, thinking: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] - self.prompt_length < self.max_thinking_tokens:
            return torch.zeros_like(thinking)
        return thinking


class HardThinkingBudgetProcessor(LogitsProcessor):
    """Forces the think-end marker into ordinary (hard) decoding once the thinking budget is spent.

    The hard-decoding counterpart of ``SoftThinkingConfig.max_thinking_tokens``: a row that has generated
    ``max_thinking_tokens`` tokens without writing ``think_end`` (matched on the decoded text, so a
    multi-token marker such as SmolLM2's ``</``, ``think``, ``>`` counts) is made to spell the marker's
    tokens, one per step; then it decodes freely (the answer phase). Rows that wrote the marker themselves
    are left alone. State lives for one ``generate`` call: build one per call.

    ``forced_text`` (default: ``think_end``) is the text spelled when the budget is spent: the marker followed
    by an answer prefix, e.g. ``"</think>\nThe answer is \\boxed{"``, so a small model that would stop right
    after a forced marker is led into its answer. It must start with ``think_end``; a row that wrote the marker
    itself gets no prefix.

    Unlike the forcers of soft thinking it takes no ``thinking``/``entropy``/``forced`` arguments: it goes
    into the ``logits_processor`` of an ordinary ``generate`` call (``hf_softthink.evaluation`` does so for
    its hard modes).

    Example:

    ```python
    >>> import torch
    >>> from hf_softthink.models import tiny_tokenizer
    >>> tok = tiny_tokenizer()
    >>> budget = HardThinkingBudgetProcessor(tok, "END", max_thinking_tokens=2, prompt_length=1)
    >>> ids = torch.tensor([tok.encode("?ab", add_special_tokens=False)])  # 1 prompt + 2 thinking tokens
    >>> tok.decode(budget(ids, torch.zeros(1, len(tok))).argmax(-1))  # the marker's first token is forced
    'E'

    ```
    """

    def __init__(
        self, tokenizer: Any, think_end: str, max_thinking_tokens: int, prompt_length: int,
        forced_text: str | None = None,
    ):
        if (
            isinstance(max_thinking_tokens, bool)
            or not isinstance(max_thinking_tokens, int)
            or max_thinking_tokens < 0
        ):
            raise ValueError(f"max_thinking_tokens must be an integer >= 0, got {max_thinking_tokens!r}")
        if not think_end:
            raise ValueError("think_end must be a non-empty string for a thinking budget")
        if forced_text is not None and not forced_text.startswith(think_end):
            raise ValueError(
                f"forced_text={forced_text!r} must start with the think-end marker {think_end!r}: it is what the "
                "budget writes instead of the marker alone (the marker, then an answer prefix)."
            )
        self.tokenizer = tokenizer
        self.think_end = think_end
        self.forced_text = think_end if forced_text is None else forced_text
        self.forced_ids = list(tokenizer.encode(self.forced_text, add_special_tokens=False))
        if not self.forced_ids:
            raise ValueError(f"think_end={think_end!r} encodes to no tokens with this tokenizer")
        self.max_thinking_tokens = max_thinking_tokens
        self.prompt_length = prompt_length
        self.done: list[bool] | None = None
        self.progress: list[int] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] - self.prompt_length < self.max_thinking_tokens:
            return scores
        batch = input_ids.shape[0]
        if self.done is None:
            self.done, self.progress = [False] * batch, [0] * batch
            # the text is forced through these scores: an id beyond them is named (by its setting), not an IndexError
            width = scores.shape[-1]
            setting = "think_end" if self.forced_text == self.think_end else "forced_text"
            check_token_ids(None, {f"{setting}={self.forced_text!r}": self.forced_ids}, tokenizer=self.tokenizer,
                            sizes=EmbeddingSizes(width, width))
        rows = torch.zeros(batch, dtype=torch.bool, device=scores.device)
        next_ids = torch.zeros(batch, dtype=torch.long, device=scores.device)
        for row in range(batch):
            if self.done[row]:
                continue
            checks_marker = self.progress[row] == 0 or self.forced_text == self.think_end  # not mid-prefix
            if self.progress[row] >= len(self.forced_ids) or checks_marker and self.think_end in self.tokenizer.decode(
                input_ids[row, self.prompt_length :]
            ):
                self.done[row] = True
                continue
            rows[row] = True
            next_ids[row] = self.forced_ids[self.progress[row]]
            self.progress[row] += 1
        if not bool(rows.any()):
            return scores
        return force_tokens(scores, rows, next_ids)


class EntropySwitchLogitsProcessor(ThinkEndForcer):
    r"""SwiReasoning (arXiv:2510.05069): entropy-driven switching between soft (latent) and explicit thinking.

    Per row, a *block* starts with a reference entropy $H_{ref}$, the entropy of its first step. A soft row
    switches to *explicit* when $H < H_{ref}$; an explicit row switches back to soft when $H > H_{ref}$ after
    at least `switch_window` steps in its block, unless it is *locked* (`lock`: it drew the think-end token).
    Each switch starts a new block ($H_{ref}$ becomes the current $H$). Only soft -> explicit switches are
    counted (`switches`); on the step *after* the `max_switches`-th one the row can only emit the think-end
    token and is marked in `forced` (`StepEvent.FORCED_SWITCH_LIMIT`); with `limit_repeats` (SwiReasoning's
    code) so it is after every counted switch from the `max_switches`-th to the `2 * max_switches`-th.
    The scores are otherwise unchanged: the decoder reads `explicit` (the row's mode after this step's
    decision), `to_explicit` and `to_soft` ((B,) bool) to know what each row feeds.

    `thinking` marks the rows whose state advances this step. State across the steps of **one** `generate`
    call: build a new instance per call.

    Example:

    ```python
    >>> import torch
    >>> switch = EntropySwitchLogitsProcessor(switch_window=1, max_switches=1, think_end_token_id=3)
    >>> row, forced = torch.tensor([True]), torch.zeros(1, dtype=torch.bool)
    >>> for h in [1.0, 0.5]:  # reference 1.0, then 0.5 < 1.0: soft -> explicit, the 1st (and last) switch
    ...     _ = switch(None, torch.zeros(1, 4), thinking=row, entropy=torch.tensor([h]), forced=forced)
    >>> switch.explicit.item(), switch.switches.item(), forced.item()
    (True, 1, False)
    >>> switch(None, torch.zeros(1, 4), thinking=row, entropy=torch.tensor([0.9]), forced=forced).argmax().item()
    3

    ```
    """

    forced_event = StepEvent.FORCED_SWITCH_LIMIT

    def __init__(
        self,
        switch_window: int,
        max_switches: int | None = None,
        think_end_token_id: int | None = None,
        limit_repeats: bool = False,
    ):
        if max_switches is not None and think_end_token_id is None:
            raise ValueError("`max_switches` needs `think_end_token_id`: the switch limit forces think-end.")
        self.switch_window = switch_window
        self.max_switches = max_switches
        self.think_end_token_id = think_end_token_id
        self.limit_repeats = limit_repeats
        self.explicit: torch.Tensor | None = None
        self.to_explicit: torch.Tensor | None = None
        self.to_soft: torch.Tensor | None = None
        self.reference_entropy: torch.Tensor | None = None
        self.block_steps: torch.Tensor | None = None
        self.switches: torch.Tensor | None = None
        self.limit_pending: torch.Tensor | None = None
        self.locked: torch.Tensor | None = None

    def _start(self, rows: torch.Tensor) -> None:
        if self.explicit is None:
            batch, device = rows.shape[0], rows.device
            self.explicit = torch.zeros(batch, dtype=torch.bool, device=device)
            self.reference_entropy = torch.full((batch,), math.nan, device=device)
            self.block_steps = torch.zeros(batch, dtype=torch.long, device=device)
            self.switches = torch.zeros(batch, dtype=torch.long, device=device)
            self.limit_pending = torch.zeros(batch, dtype=torch.bool, device=device)
            self.locked = torch.zeros(batch, dtype=torch.bool, device=device)

    def lock(self, rows: torch.Tensor) -> None:
        """From this step on, `rows` never switch back to soft (they drew the think-end token); a soft row still
        switches to explicit, and counts it."""
        self._start(rows)
        self.locked = self.locked | rows

    def may_feed_mixture(self, rows: torch.Tensor) -> torch.Tensor:
        """(B,) the rows of `rows` that can be soft, or switch, on the next step: in a soft block, or in an
        explicit block that the next step may leave. The others feed their token whatever their entropy."""
        if self.explicit is None:
            return rows
        leaving_soon = ~self.locked & (self.block_steps + 1 >= self.switch_window)
        return rows & (~self.explicit | leaving_soon)

    def fires(self, input_ids: torch.LongTensor | None, thinking: torch.Tensor, entropy: torch.Tensor) -> torch.Tensor:
        self._start(thinking)
        fire = thinking & self.limit_pending
        self.limit_pending = self.limit_pending & ~thinking
        entropy = entropy.to(self.reference_entropy.dtype)
        block_start = thinking & self.reference_entropy.isnan()
        self.reference_entropy = torch.where(block_start, entropy, self.reference_entropy)
        self.block_steps = torch.where(thinking & ~block_start, self.block_steps + 1, self.block_steps)
        self.to_explicit = thinking & ~self.explicit & (entropy < self.reference_entropy)
        self.to_soft = (
            thinking & self.explicit & ~self.locked & (self.block_steps >= self.switch_window)
            & (entropy > self.reference_entropy)
        )
        switched = self.to_explicit | self.to_soft
        self.explicit = self.explicit ^ switched
        self.reference_entropy = torch.where(switched, entropy, self.reference_entropy)
        self.block_steps = torch.where(switched, 0, self.block_steps)
        self.switches = self.switches + self.to_explicit.long()
        if self.max_switches is not None:
            at_limit = (self.switches >= self.max_switches) & (self.switches <= 2 * self.max_switches) if (
                self.limit_repeats) else self.switches == self.max_switches
            self.limit_pending = self.limit_pending | (self.to_explicit & at_limit)
        return fire


#: SwiReasoning's math symbols (its code's `get_math_symbols_ids`): with `explicit_math_tokens`, a soft step whose
#: drawn token is one of their tokens feeds it explicitly. Digits and single ASCII letters are added by
#: `math_token_ids`.
SWIREASONING_MATH_SYMBOLS = (
    # operators and relations
    "+", "-", "*", "/", "^", "=", "<", ">", "\\leq", "\\geq", "\\neq", "\\approx", "\\sim", "\\equiv", "\\to",
    "\\implies", "\\iff",
    # brackets
    "(", ")", "[", "]", "{", "}", "\\left(", "\\right)", "\\left[", "\\right]", "\\left\\{", "\\right\\}",
    "\\begin{pmatrix}", "\\end{pmatrix}",
    # fractions, roots, sets
    "\\frac", "\\dfrac", "\\sqrt", "\\sqrt[]", "\\in", "\\notin", "\\subset", "\\supset", "\\subseteq",
    "\\supseteq", "\\cup", "\\cap", "\\emptyset", "\\varnothing",
    # Greek letters and functions
    "\\pi", "\\theta", "\\alpha", "\\beta", "\\gamma", "\\delta", "\\epsilon", "\\zeta", "\\lambda", "\\mu",
    "\\nu", "\\sin", "\\cos", "\\tan", "\\arcsin", "\\arccos", "\\arctan", "\\log", "\\ln", "\\exp",
    # sub/superscripts, binomials, dots, fonts
    "_", "\\binom", "\\choose", "\\cdot", "\\dots", "\\ldots", "\\cdots", "\\vdots", "\\ddots", "\\mathbb",
    "\\mathbf", "\\mathrm", "\\text", "\\mbox",
    # other symbols and delimiters
    "\\infty", "\\circ", "\\prime", "\\ast", "\\star", "\\triangle", "\\triangleleft", "\\triangleright",
    "\\perp", "\\parallel", "\\angle", "\\boxed", "\\overline", "\\underline", "\\lceil", "\\rceil",
    "\\lfloor", "\\rfloor", "\\left", "\\right", "\\mid", "|", "\\vert", "\\Vert",
    # logic, big operators, named functions
    "\\because", "\\therefore", "\\forall", "\\exists", "\\wedge", "\\vee", "\\neg", "\\sum", "\\prod",
    "\\int", "\\lim", "\\min", "\\max", "\\arg", "\\deg", "\\gcd", "\\operatorname", "\\cot", "\\cotg",
    "\\sec", "\\csc",
)


def math_token_ids(tokenizer: Any) -> list[int]:
    """The token ids SwiReasoning feeds explicitly (`explicit_math_tokens`), built as its code builds them.

    Every id of `tokenizer.encode(symbol, add_special_tokens=False)` for each of `SWIREASONING_MATH_SYMBOLS`,
    the digits 0-9 and the letters a-z, A-Z (so a symbol that is several tokens contributes all of them),
    sorted.
    """
    symbols = SWIREASONING_MATH_SYMBOLS + tuple("0123456789") + tuple(string.ascii_lowercase) + tuple(
        string.ascii_uppercase)
    return sorted({i for symbol in symbols for i in tokenizer.encode(symbol, add_special_tokens=False)})


def thinking_warpers(config: SoftThinkingConfig) -> LogitsProcessorList:
    """transformers' warpers for the thinking phase: temperature, then top-p and min-p (when on).

    Apply them to the `top_k_candidates` of the scores (the top-k filter itself is the candidate
    reduction), or to full-vocabulary scores after a `TopKLogitsWarper`: both keep the same tokens.
    """
    warpers = LogitsProcessorList([TemperatureLogitsWarper(config.temperature)])
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))
    if config.min_p > 0.0:
        warpers.append(MinPLogitsWarper(config.min_p))
    return warpers


def mixture_noise(config: SoftThinkingConfig) -> LogitsProcessorList:
    """The noise processor on the concept-token weights (empty for 'none' and 'gaussian')."""
    if config.noise == "dirichlet":
        return LogitsProcessorList([DirichletNoiseLogitsProcessor(config.dirichlet_alpha)])
    if config.noise == "gumbel":
        return LogitsProcessorList([GumbelSoftmaxNoiseLogitsProcessor(config.gumbel_tau, config.gumbel_noise_clamp)])
    if config.noise == "logistic_normal":
        return LogitsProcessorList([LogisticNormalNoiseLogitsProcessor(config.logistic_normal_sigma)])
    return LogitsProcessorList()


def think_end_forcers(
    config: SoftThinkingConfig, think_end_token_id: int | None, prompt_length: int
) -> LogitsProcessorList:
    """The processors that force think-end, in the order budget, switch limit, Cold Stop.

    `think_end_token_id` is the token they force: the first of `forced_end_text` when it is set.
    """
    forcers = LogitsProcessorList()
    if config.max_thinking_tokens is not None:
        forcers.append(ThinkingBudgetLogitsProcessor(think_end_token_id, config.max_thinking_tokens, prompt_length))
    if config.mode == "switch":
        forcers.append(EntropySwitchLogitsProcessor(config.switch_window, config.max_switches, think_end_token_id,
                                                    limit_repeats=config.switch_after_think_end))
    if config.cold_stop_entropy is not None:
        forcers.append(
            ColdStopLogitsProcessor(think_end_token_id, config.cold_stop_entropy, config.cold_stop_patience)
        )
    return forcers
