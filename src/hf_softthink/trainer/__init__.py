"""RL training with soft-thinking rollouts: `SoftGRPOConfig`, `SoftGRPOTrainer` and the soft-action densities.

The trainer subclasses `trl.GRPOTrainer` through private seams of TRL 1.16 (pinned in the requirements).
`SoftGRPOConfig` and `SoftGRPOTrainer` are imported lazily, so `hf_softthink.trainer.densities` does not
import TRL.
"""

from __future__ import annotations

import importlib
from typing import Any

from .densities import (
    concrete_log_density,
    dirichlet_log_density,
    gaussian_log_density,
    gaussian_step_kl,
    gumbel_max_log_density,
    logistic_normal_log_density,
    soft_grpo_gumbel_log_density,
)

_LAZY = {
    "FUZZY_TEMPERATURE": ".config",
    "ON_POLICY_ROLLOUTS": ".config",
    "SOFT_DENSITIES": ".config",
    "SOFT_ROLLOUTS": ".config",
    "SoftGRPOConfig": ".config",
    "SOFT_BATCH_KEYS": ".trainer",
    "SoftGRPOTrainer": ".trainer",
}

__all__ = [
    "concrete_log_density",
    "dirichlet_log_density",
    "gaussian_log_density",
    "gaussian_step_kl",
    "gumbel_max_log_density",
    "logistic_normal_log_density",
    "soft_grpo_gumbel_log_density",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
