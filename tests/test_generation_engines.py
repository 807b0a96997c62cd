"""Soft rollouts refuse every generation engine that cannot feed concept tokens (vLLM in both modes,
transformers continuous batching), at config construction and again when the trainer is built."""

import datasets
import pytest

from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.trainer import SOFT_ROLLOUTS, SoftGRPOConfig, SoftGRPOTrainer

# `use_transformers_paged` (TRL's deprecated name) is passed on purpose: soft rollouts must refuse it too
pytestmark = pytest.mark.filterwarnings("ignore:`use_transformers_paged` is deprecated:FutureWarning")

SOFT_MODES = [m for m in SOFT_ROLLOUTS if m != "hard"]
ENGINES = [
    dict(use_vllm=True, vllm_mode="colocate"),
    dict(use_vllm=True, vllm_mode="server"),
    dict(use_transformers_continuous_batching=True),
    dict(use_transformers_paged=True),
]
ENGINE_IDS = ["vllm-colocate", "vllm-server", "continuous-batching", "paged"]


def flag_of(engine):
    return next(key for key in engine if key.startswith("use_"))


@pytest.mark.parametrize("engine", ENGINES, ids=ENGINE_IDS)
@pytest.mark.parametrize("mode", SOFT_MODES)
def test_soft_rollouts_refuse_engines_that_cannot_feed_concept_tokens(mode, engine):
    with pytest.raises(
        ValueError, match=rf"{flag_of(engine)}=True is not supported with soft_rollout='{mode}'"
    ):
        SoftGRPOConfig(output_dir="unused", use_cpu=True, soft_rollout=mode, **engine)


@pytest.mark.parametrize("engine", ENGINES, ids=ENGINE_IDS)
def test_engine_flags_set_after_the_config_are_refused_by_the_trainer(engine, tmp_path):
    """Without the trainer's check, TRL would start vLLM (here: fail to import it) while our soft rollouts
    silently bypass it."""
    args = SoftGRPOConfig(output_dir=str(tmp_path), use_cpu=True, soft_rollout="gumbel", report_to=[])
    for key, value in engine.items():
        setattr(args, key, value)
    dataset = datasets.Dataset.from_dict({"prompt": ["a", "b"]})
    with pytest.raises(
        ValueError, match=rf"{flag_of(engine)}=True is not supported with soft_rollout='gumbel'"
    ):
        SoftGRPOTrainer(
            model=tiny_model("llama"),
            reward_funcs=lambda completions, **kw: [0.0] * len(completions),
            args=args,
            train_dataset=dataset,
            processing_class=tiny_tokenizer(),
        )


def test_hard_rollouts_keep_trl_engines():
    for engine in ENGINES:
        config = SoftGRPOConfig(output_dir="unused", use_cpu=True, soft_rollout="hard", **engine)
        config.check_generation_engine()  # no error: plain GRPO may use vLLM
