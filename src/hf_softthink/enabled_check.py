"""A clear error when `soft_thinking=` reaches the `generate` of a model on which soft thinking is not enabled.

Without it, transformers answers `model.generate(..., soft_thinking=cfg)` on a model that never went through
`enable_soft_thinking` with "The following `model_kwargs` are not used by the model: ['soft_thinking']", which
does not say what to do. Worse, a model whose *saved* generation config holds a soft-thinking config (one saved
after `enable_soft_thinking`, reloaded with a plain `AutoModelForCausalLM.from_pretrained`) has a
`soft_thinking` attribute in its generation config, so transformers accepts `soft_thinking=True` as a generation
setting and silently decodes without soft thinking.

Where the check lives, and why there. The call goes straight from the user to transformers'
`GenerationMixin.generate`; nothing of this package runs on an un-enabled model. transformers has no hook for
extra `generate` arguments: it merges them into the generation config when the config has an attribute of that
name, and otherwise `_validate_model_kwargs` refuses them. Catching transformers' `ValueError` in our own entry
points would miss every direct `model.generate` call, and a class attribute `GenerationConfig.soft_thinking` would
make every model accept the argument and ignore it. So `import hf_softthink` wraps `GenerationMixin.generate`
once (:func:`install_generate_check`), as narrowly as possible:

* it acts only when the model is not enabled (`SoftThinkingGenerationMixin` is not among its classes) and no
  `custom_generate` is given (`custom_generate=soft_thinking_sample` is the documented way to use soft thinking
  without enabling);
* `soft_thinking=True`, a `SoftThinkingConfig` or a dict, or a `generation_config` carrying a
  `SoftThinkingConfig` or `True`, raises :class:`SoftThinkingNotEnabledError` (a `ValueError`, like
  transformers' own) naming `enable_soft_thinking`;
* `soft_thinking=False` / `None` ("no soft thinking") is dropped, so plain `generate` runs on any model;
* every other call goes to transformers' `generate` unchanged (one dictionary lookup).

Limit: the check exists once `hf_softthink` is imported. A program that never imports it and calls
`generate(soft_thinking=True)` on a reloaded model whose saved generation config holds a soft-thinking config
still gets plain decoding from transformers.
"""

from __future__ import annotations

import functools
from typing import Any

from transformers.generation.utils import GenerationMixin

from .config import GENERATION_CONFIG_ATTRIBUTE, SoftThinkingConfig
from .generation import SoftThinkingGenerationMixin

#: set on the wrapper, so installing twice wraps once
_MARK = "__hf_softthink_enabled_check__"


class SoftThinkingNotEnabledError(ValueError):
    """`generate(..., soft_thinking=...)` on a model without `enable_soft_thinking`; the message gives the fix."""


def not_enabled_error(model: Any) -> SoftThinkingNotEnabledError:
    name = type(model).__name__
    saved = getattr(getattr(model, "generation_config", None), GENERATION_CONFIG_ATTRIBUTE, None)
    reloaded = (
        " Its generation config holds a saved soft-thinking config, which `soft_thinking=True` will use once the "
        "model is enabled." if isinstance(saved, dict) else ""
    )
    return SoftThinkingNotEnabledError(
        f"`soft_thinking=` was passed to the generate of a {name} on which soft thinking is not enabled.{reloaded} "
        "Enable it first: `from hf_softthink import enable_soft_thinking; enable_soft_thinking(model, "
        "tokenizer=tokenizer)` (in place; also for a PeftModel or a 4-bit model; a saved adapter: "
        "`hf_softthink.hub.load_soft_adapter(path)`), or pass `custom_generate=soft_thinking_sample` to this call."
    )


def _asks_for_soft_thinking(kwargs: dict[str, Any], args: tuple[Any, ...]) -> bool:
    """Whether the call asks for soft thinking (and drops a `soft_thinking=False`/`None` from ``kwargs``)."""
    if GENERATION_CONFIG_ATTRIBUTE in kwargs:
        value = kwargs[GENERATION_CONFIG_ATTRIBUTE]
        if value is None or value is False:
            del kwargs[GENERATION_CONFIG_ATTRIBUTE]
        else:
            return True
    # generate(inputs, generation_config, ...): the config may come by keyword or second position
    generation_config = kwargs.get("generation_config", args[1] if len(args) > 1 else None)
    saved = getattr(generation_config, GENERATION_CONFIG_ATTRIBUTE, None)
    return saved is True or isinstance(saved, SoftThinkingConfig)  # a dict is the saved form: no request


def install_generate_check() -> None:
    """Wrap `transformers.GenerationMixin.generate` with the check of this module (idempotent)."""
    generate = GenerationMixin.generate
    if getattr(generate, _MARK, False):
        return

    @functools.wraps(generate)
    def generate_with_check(self, *args: Any, **kwargs: Any):
        if (
            not isinstance(self, SoftThinkingGenerationMixin)
            and kwargs.get("custom_generate") is None
            and _asks_for_soft_thinking(kwargs, args)
        ):
            raise not_enabled_error(self)
        return generate(self, *args, **kwargs)

    setattr(generate_with_check, _MARK, True)
    GenerationMixin.generate = generate_with_check
