"""Standard errors of the grid's cells and of paired differences between rows (pure functions).

A cell holds one value per (seed, problem): ``x[s][i]``, e.g. the pass@1 of problem ``i`` by the model of seed
``s``, estimated from its 32 samples (the mean of their 0/1 scores: "mean@32"). Seeds are the RL runs (the
training randomness), problems the held-out test problems (a sample of the task); both vary, so a cell has two
standard errors:

* **over seeds**: ``SE_s = sd_s(x̄_s) / sqrt(S)``, the spread of the per-seed means ``x̄_s = mean_i x[s][i]``
  (what another training run would change; with the problems fixed);
* **over problems**: ``SE_p = sd_i(x̄_i) / sqrt(n)``, the spread of the per-problem values averaged over the
  seeds ``x̄_i = mean_s x[s][i]`` (what other problems of the task would change; with the models fixed). For
  one model (the SFT start, or one seed) it is the usual within-model SE over problems.

Under the two-way random-effects model ``x[s][i] = mu + a_s + b_i + e_si`` the variance of the grand mean is
``var(a)/S + var(b)/n + var(e)/(S n)``; ``SE_s²`` estimates ``var(a)/S + var(e)/(S n)`` and ``SE_p²`` estimates
``var(b)/n + var(e)/(S n)``. The grid's **combined SE** is ``sqrt(SE_s² + SE_p²)``: it counts both sources and
over-counts the residual ``var(e)/(S n)`` once (at most the smaller of the two terms), so it is conservative and
never negative (the exact ANOVA estimate subtracts the residual mean square and can go below zero). With one
seed ``SE_s`` is undefined and the combined SE is ``SE_p``.

**Paired differences** between two rows (a soft training mode against hard) use the same formulas on
``d[s][i] = x_soft[s][i] - x_hard[s][i]``: runs are paired by seed (same SFT start, same RL prompt order, same
evaluation seed) and by problem (same test problems). Pairing removes the problem difficulty (``b_i`` is common
to both rows), a large part of a cell's ``SE_p`` (in the issue-16 pilot, pass@1 mean@32 on 500 problems: 0.011
for the paired gap against 0.015-0.018 for the two cells); ``SE_s`` of the differences is the seed-to-seed spread
of the per-seed gap. With 3 seeds ``SE_s`` rests on 2 degrees of freedom and can come out small by chance; the
problem-level term keeps the combined SE from resting on it alone. The targets use the combined SE.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CellStats:
    """Mean and standard errors of one cell (or of a paired difference) over seeds x problems."""

    mean: float
    se_seeds: float | None  # None: one seed
    se_problems: float | None  # None: one problem
    seeds: int
    problems: int
    per_seed: tuple[float, ...]

    @property
    def se(self) -> float:
        """The combined SE, ``sqrt(SE_s² + SE_p²)`` (module docstring); the one defined when the other is not."""
        terms = [se for se in (self.se_seeds, self.se_problems) if se is not None]
        return math.sqrt(sum(se * se for se in terms)) if terms else float("nan")


def _se(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None


def cell_stats(values: Sequence[Sequence[float]]) -> CellStats:
    """:class:`CellStats` of ``values[s][i]`` (seed ``s``, problem ``i``; every seed the same problems)."""
    if not values or not values[0]:
        raise ValueError("cell_stats needs at least one seed with at least one problem")
    problems = len(values[0])
    if any(len(row) != problems for row in values):
        raise ValueError(f"every seed needs the same problems, got {[len(row) for row in values]} values")
    per_seed = tuple(statistics.fmean(row) for row in values)
    per_problem = [statistics.fmean(column) for column in zip(*values, strict=True)]
    return CellStats(
        mean=statistics.fmean(per_seed),
        se_seeds=_se(per_seed),
        se_problems=_se(per_problem),
        seeds=len(values),
        problems=problems,
        per_seed=per_seed,
    )


def paired_stats(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> CellStats:
    """:class:`CellStats` of the paired difference ``a - b`` (seed by seed, problem by problem)."""
    if len(a) != len(b):
        raise ValueError(f"paired rows need the same seeds, got {len(a)} and {len(b)}")
    return cell_stats([[x - y for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)])


def per_problem_pass_at_k(correct_counts: Sequence[int], samples: int, k: int) -> list[float]:
    """The unbiased pass@k of each problem from its number of correct samples out of ``samples``
    (pass@1 = correct / samples: the mean over the samples)."""
    from hf_softthink.evaluation_metrics import pass_at_k

    return [pass_at_k(samples, int(c), k) for c in correct_counts]
