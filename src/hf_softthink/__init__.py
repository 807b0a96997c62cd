"""hf_softthink: soft thinking (concept tokens) for HuggingFace transformers, TRL and PEFT."""

from ._quiet import quiet_third_party_notices
from ._version import __version__ as __version__
from .config import SoftThinkingConfig
from .enabled_check import SoftThinkingNotEnabledError, install_generate_check
from .generation import (
    NonFiniteError,
    SoftThinkingGenerateOutput,
    SoftThinkingGenerationMixin,
    enable_soft_thinking,
    soft_thinking_sample,
)
from .processors import (
    ColdStopLogitsProcessor,
    DirichletNoiseLogitsProcessor,
    EntropySwitchLogitsProcessor,
    GumbelSoftmaxNoiseLogitsProcessor,
    LogisticNormalNoiseLogitsProcessor,
    ThinkingBudgetLogitsProcessor,
)

quiet_third_party_notices()  # before anything imports peft / bitsandbytes
install_generate_check()  # `soft_thinking=` on a model that was not enabled: an error naming the fix

__all__ = [
    "ColdStopLogitsProcessor",
    "DirichletNoiseLogitsProcessor",
    "EntropySwitchLogitsProcessor",
    "NonFiniteError",
    "GumbelSoftmaxNoiseLogitsProcessor",
    "LogisticNormalNoiseLogitsProcessor",
    "SoftThinkingConfig",
    "SoftThinkingGenerateOutput",
    "SoftThinkingGenerationMixin",
    "SoftThinkingNotEnabledError",
    "ThinkingBudgetLogitsProcessor",
    "enable_soft_thinking",
    "soft_thinking_sample",
    "SoftGRPOConfig",
    "SoftGRPOTrainer",
]


def __getattr__(name):
    # the trainer imports TRL (slow): load it on first use of `SoftGRPOConfig` / `SoftGRPOTrainer`
    if name in ("SoftGRPOConfig", "SoftGRPOTrainer"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
