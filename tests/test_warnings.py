"""Our code raises no deprecation warning, and third-party notices a user cannot act on are quieted.

The suite also turns every FutureWarning / DeprecationWarning attributed to an `hf_softthink` module into
an error (`filterwarnings` in pyproject.toml).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import datasets
import pytest
from peft import LoraConfig

from hf_softthink import SoftThinkingConfig
from hf_softthink._quiet import BITSANDBYTES_CPU_LOGGER, KERNELS_NOTICE
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer


def _config(tmp_path, **overrides) -> SoftGRPOConfig:
    values = dict(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, soft_rollout="gumbel",
        soft_thinking=SoftThinkingConfig(max_topk=4, max_thinking_tokens=3), per_device_train_batch_size=4,
        num_generations=4, max_completion_length=8, max_steps=1, report_to=[], save_strategy="no",
        disable_tqdm=True,
    )
    return SoftGRPOConfig(**{**values, **overrides})


@pytest.mark.parametrize("overrides", [{}, {"activation_checkpointing": False}, {"activation_checkpointing": True}])
def test_soft_grpo_config_raises_no_deprecation_warning(tmp_path, overrides):
    """TRL 1.16's default `gradient_checkpointing=True` made every config warn; ours keeps the default on
    under the new name."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        args = _config(tmp_path, **overrides)
    expected = overrides.get("activation_checkpointing", True)
    assert args.activation_checkpointing is expected and args.gradient_checkpointing is expected


def test_the_deprecated_spelling_still_works(tmp_path):
    with pytest.warns(FutureWarning, match="gradient_checkpointing"):
        args = _config(tmp_path, gradient_checkpointing=False)
    assert args.activation_checkpointing is False


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_a_training_step_warns_nothing_from_our_code(tmp_path):
    """One SoftGRPOTrainer step: no Python warning raised from hf_softthink code or about our config, and no
    deprecation logged by transformers (e.g. "Passing `generation_config` together with generation-related
    arguments ... is deprecated")."""
    tokenizer = tiny_tokenizer()
    dataset = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": c}] for c in "abcd"]})
    logging.Logger.warning_once.cache_clear()  # transformers logs some deprecations once per process
    handler = _Messages()
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = SoftGRPOTrainer(
                model=tiny_model("llama"), reward_funcs=lambda completions, **kw: [1.0] * len(completions),
                args=_config(tmp_path), train_dataset=dataset, processing_class=tokenizer,
                peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
            )
            trainer.train()
    finally:
        transformers_logger.removeHandler(handler)
    ours = [
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        for w in caught
        if issubclass(w.category, (FutureWarning, DeprecationWarning))
        and ("hf_softthink" in w.filename or "`gradient_checkpointing` is deprecated" in str(w.message))
    ]
    assert ours == []
    assert [m for m in handler.messages if "deprecated" in m] == []


def test_bitsandbytes_kernels_notice_is_dropped(caplog):
    """bitsandbytes' notice about the optional `kernels` package is filtered; its other messages are not."""
    import hf_softthink  # noqa: F401  (installs the filter)

    logger = logging.getLogger(BITSANDBYTES_CPU_LOGGER)
    with caplog.at_level(logging.WARNING, logger=BITSANDBYTES_CPU_LOGGER):
        logger.warning("%s: No module named 'kernels'. Please make sure ...", KERNELS_NOTICE)
        logger.warning("some other bitsandbytes problem")
    assert [r.getMessage() for r in caplog.records] == ["some other bitsandbytes problem"]


def test_importing_peft_after_hf_softthink_prints_no_kernels_notice():
    pytest.importorskip("bitsandbytes")
    done = subprocess.run([sys.executable, "-c", "import hf_softthink, peft, bitsandbytes"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert KERNELS_NOTICE not in done.stderr

