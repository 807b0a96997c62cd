"""hf_softthink: soft thinking (concept tokens) for HuggingFace transformers, TRL and PEFT."""

from .config import SoftThinkingConfig
from .generation import (
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
    ThinkingBudgetLogitsProcessor,
)

__version__ = "0.1.0"

__all__ = [
    "ColdStopLogitsProcessor",
    "DirichletNoiseLogitsProcessor",
    "EntropySwitchLogitsProcessor",
    "GumbelSoftmaxNoiseLogitsProcessor",
    "SoftThinkingConfig",
    "SoftThinkingGenerateOutput",
    "SoftThinkingGenerationMixin",
    "ThinkingBudgetLogitsProcessor",
    "enable_soft_thinking",
    "soft_thinking_sample",
]
