r"""lm-evaluation-harness model ``hf-softthink``: soft thinking in the harness's generation tasks.

`SoftThinkingLM` is the harness's own `HFLM` (``--model hf``) whose ``generate_until`` decodes with soft
thinking (Soft Thinking, arXiv:2505.15778, and its randomised variants): the chain of thought feeds concept
tokens, and after the think-end marker the answer is decoded with the task's own generation settings
(``do_sample``, ``temperature``, ``until``, ``max_gen_toks``). Everything else (batching, chat templates, the
request cache, filters, metrics, ``--log_samples``) is the harness's.

**What the harness's filters see.** The answer: the text after the first think-end marker of each completion,
the marker where the decoder left thinking mode (written by the model, or forced by Cold Stop or the thinking
budget). The thinking trace is dropped before the text is returned, so a task's regex filters (e.g. gsm8k's
``strict-match`` / ``flexible-extract``) never pick a number out of the chain of thought, and the logged
``resps`` are the answers. A completion that never leaves thinking mode (it ends with the end-of-text token
while thinking, or ``max_gen_toks`` runs out) is returned whole (its top-1 trace), as HFLM's
``think_end_token`` and ``hf-softthink eval`` treat a completion without the marker; each ``generate_until``
batch logs how many completions ended thinking. The task's stop sequences (``until``) apply to the answer
only, so a ``"\n\n"`` or ``"Question:"`` inside the thinking trace does not end the generation.

Only ``generate_until`` tasks are soft: a loglikelihood (multiple-choice) task scores fixed continuations,
where soft thinking has no meaning, and raises a `ValueError` (use ``--model hf`` for those).

Model arguments, besides every ``HFLM`` argument (``pretrained``, ``dtype``, ``batch_size``, ``peft``, ...):

* ``pretrained``: a Hub id, a local folder, or a packaged model's short name (``smollm2-135m``,
  ``gemma3-270m``; see `hf_softthink.models`).
* ``soft_thinking``: ``True`` (default: the config saved with the model or with the ``peft`` adapter, else
  the `SoftThinkingConfig` defaults), ``False`` (plain ``HFLM`` decoding), a JSON object of
  `SoftThinkingConfig` fields, or the path of a JSON file holding one.
* ``soft_<field>`` for any `SoftThinkingConfig` field, overriding it: ``soft_max_topk=10``,
  ``soft_noise=gumbel``, ``soft_max_thinking_tokens=256``, ``soft_think_end=</think>``,
  ``soft_cold_stop_entropy=0.01``, ``soft_temperature=0.6`` (the *thinking* temperature; the answer's is the
  task's ``temperature``) ...
* ``think_end_token`` (HFLM's own argument, needed by its ``enable_thinking=True`` check) is the same marker:
  it sets ``think_end`` unless ``soft_think_end`` says otherwise (then it is an error).

The harness (0.4.x) has no plugin discovery for models: its registry holds the models it ships and those
registered by an import. ``hf-softthink lm-eval <lm_eval arguments>`` imports this module and then runs the
harness's own command line unchanged; in Python, ``import hf_softthink.lm_eval_harness`` before
``lm_eval.simple_evaluate(model="hf-softthink", ...)``.

Example:

```bash
hf-softthink lm-eval --model hf-softthink \
    --model_args pretrained=smollm2-135m,soft_max_topk=10,soft_max_thinking_tokens=64,dtype=float32 \
    --tasks gsm8k --device cpu --batch_size 8 --limit 20
```
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria

try:
    from lm_eval.api.registry import register_model
    from lm_eval.models.huggingface import HFLM
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "hf_softthink.lm_eval_harness needs lm-evaluation-harness: pip install 'hf-softthink[lm-eval]' "
        "(or pip install lm-eval)."
    ) from error

from .config import SoftThinkingConfig
from .generation import ThinkEnd, enable_soft_thinking, resolve_think_end

__all__ = ["MODEL_NAME", "AnswerStopCriteria", "SoftThinkingLM", "main", "strip_thinking"]

logger = logging.getLogger("lm_eval.models.hf_softthink")  # under lm_eval's logger, so its CLI shows it

#: the name the model is registered under in the harness
MODEL_NAME = "hf-softthink"
#: prefix of the model arguments that set one `SoftThinkingConfig` field
FIELD_PREFIX = "soft_"


class AnswerStopCriteria(StoppingCriteria):
    """Stops a row when one of the task's stop strings appears in its *answer*, the text after think-end.

    Also records, per row, where the answer starts: `answer_start[i]` is the index (in the generated part)
    of the first token after the think-end marker, or -1 while the row is still thinking. The marker is
    detected exactly as the soft-thinking decoder detects it (`ThinkEnd.reached` on the trace), at the step
    it is completed. With `think_end=None` (every step soft, no answer phase) the whole completion is the
    answer.

    Args:
        tokenizer: decodes the answer tokens.
        stop: the task's stop strings (``until``); empty strings are ignored.
        prompt_length: length of the (left-padded) prompt batch.
        think_end: the resolved marker (`hf_softthink.generation.resolve_think_end`), or None.
        batch_size: rows in the batch.
    """

    def __init__(
        self,
        tokenizer: Any,
        stop: Sequence[str],
        prompt_length: int,
        think_end: ThinkEnd | None,
        batch_size: int,
    ):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_length = prompt_length
        self.think_end = think_end
        self.answer_start = torch.full((batch_size,), -1 if think_end is not None else 0, dtype=torch.long)
        # tokens to decode at the end of an answer: enough to hold the longest stop string, and some spare
        self.lookback = (
            max((len(tokenizer.encode(s, add_special_tokens=False)) for s in self.stop), default=0) + 2
        )

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any) -> torch.BoolTensor:
        generated = input_ids.size(1) - self.prompt_length
        if self.think_end is not None:
            reached = self.think_end.reached(input_ids).cpu()
            self.answer_start = torch.where((self.answer_start < 0) & reached, generated, self.answer_start)
        done = torch.zeros(input_ids.size(0), dtype=torch.bool)
        if self.stop:
            for row in (self.answer_start >= 0).nonzero().flatten().tolist():
                start = max(int(self.answer_start[row]), generated - self.lookback)
                text = self.tokenizer.decode(input_ids[row, self.prompt_length + start :])
                done[row] = any(s in text for s in self.stop)
        return done.to(input_ids.device)


def strip_thinking(
    generated: torch.Tensor, answer_start: torch.Tensor, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The answers of `generated` (B, T) left-aligned and right-padded with `pad_token_id`, and a (B,) mask of
    the rows that left thinking (answer_start >= 0). A row that never left thinking is kept whole."""
    rows = []
    for tokens, start in zip(generated, answer_start.tolist(), strict=True):
        rows.append(tokens[max(start, 0) :])
    width = max((len(r) for r in rows), default=0)
    answers = generated.new_full((generated.size(0), width), pad_token_id)
    for i, row in enumerate(rows):
        answers[i, : len(row)] = row
    return answers, answer_start >= 0


def _parse_soft_thinking(value: Any) -> bool | dict[str, Any]:
    """`soft_thinking=` of the model arguments: a bool, a dict, a JSON object string, or a JSON file path."""
    if isinstance(value, (bool, dict)):
        return value
    if value is None:
        return False
    if isinstance(value, SoftThinkingConfig):
        return value.to_dict()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            return json.loads(text)
        if os.path.isfile(text):
            return json.loads(Path(text).read_text())
    raise ValueError(
        f"soft_thinking={value!r} is not understood: use True, False, a JSON object of SoftThinkingConfig fields "
        "(--model_args as JSON) or the path of a JSON file holding one; single fields go in soft_<field>=... "
        "(e.g. soft_max_topk=10)."
    )


@register_model(MODEL_NAME)
class SoftThinkingLM(HFLM):
    """The harness's `HFLM` with soft-thinking generation (module docstring: arguments, what filters see).

    Example (Python):

    ```python
    import lm_eval
    import hf_softthink.lm_eval_harness  # registers "hf-softthink"

    results = lm_eval.simple_evaluate(
        model="hf-softthink",
        model_args="pretrained=smollm2-135m,soft_max_topk=10,soft_max_thinking_tokens=64,dtype=float32",
        tasks=["gsm8k"], device="cpu", limit=20)
    ```
    """

    def __init__(self, pretrained: Any, soft_thinking: Any = True, **kwargs: Any):
        fields = {
            key[len(FIELD_PREFIX) :]: kwargs.pop(key) for key in list(kwargs) if key.startswith(FIELD_PREFIX)
        }
        parsed = _parse_soft_thinking(soft_thinking)
        think_end_token = kwargs.get("think_end_token")
        if parsed is not False:
            if think_end_token is not None:
                # HFLM's marker is our think_end: the answer after it is what the harness sees
                think_end_token = int(think_end_token) if str(think_end_token).isdigit() else think_end_token
                if fields.get("think_end", think_end_token) != think_end_token:
                    raise ValueError(
                        f"hf-softthink: think_end_token={think_end_token!r} and soft_think_end="
                        f"{fields['think_end']!r} disagree: give one of them (they name the same marker)."
                    )
                fields["think_end"] = think_end_token
        if isinstance(pretrained, str):
            from .models import PACKAGED_MODELS, packaged_model_path

            if pretrained in PACKAGED_MODELS:
                pretrained = str(packaged_model_path(pretrained))
        super().__init__(pretrained=pretrained, **kwargs)
        self.soft_config = self._resolve_config(parsed, fields, kwargs.get("peft"))
        self.think_end: ThinkEnd | None = None
        if self.soft_config is not None:
            self.think_end_token = (
                None  # the thinking part is removed in _model_generate, not by HFLM's split
            )
            if self.backend != "causal":
                raise ValueError(
                    "hf-softthink: soft thinking needs a decoder-only causal LM (backend='causal')."
                )
            enable_soft_thinking(self.model, tokenizer=self.tokenizer)
            vocab_size = self.model.config.get_text_config().vocab_size
            self.think_end = resolve_think_end(self.soft_config.think_end, self.tokenizer, vocab_size)

    def _resolve_config(
        self, parsed: bool | dict[str, Any], fields: dict[str, Any], peft: str | None
    ) -> SoftThinkingConfig | None:
        if parsed is False:
            if fields:
                raise ValueError(
                    f"hf-softthink: soft_thinking=False but soft-thinking fields were given ({sorted(fields)}): "
                    "drop them, or set soft_thinking=True."
                )
            return None
        if parsed is True:
            saved = None
            if peft is not None:
                from .hub import load_soft_thinking_config

                saved = load_soft_thinking_config(peft) if os.path.isdir(peft) else None
            if saved is None:
                saved = SoftThinkingConfig.from_generation_config(self.model.generation_config)
            values = saved.to_dict() if saved is not None else {}
        else:
            values = dict(parsed)
        values.update(fields)
        return SoftThinkingConfig.from_dict(values)

    # ------------------------------------------------------------------------------------------ generation
    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        """`HFLM._model_generate` with soft thinking: returns `[context, answer]` (the thinking part removed,
        answers right-padded with the end-of-text token), which `HFLM.generate_until` decodes and post-processes
        as usual (stop strings, the task's filters)."""
        if self.soft_config is None:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        generation_kwargs["temperature"] = generation_kwargs.get("temperature", 0.0)
        do_sample = generation_kwargs.get("do_sample")
        if (temperature := generation_kwargs.get("temperature")) == 0.0 and do_sample is None:
            generation_kwargs["do_sample"] = do_sample = False
        if do_sample is False and temperature == 0.0:
            generation_kwargs.pop("temperature", None)
        criteria = AnswerStopCriteria(self.tokenizer, stop, context.size(1), self.think_end, context.size(0))
        with torch.autocast(
            device_type=self.device.type,
            dtype=self.mixed_precision_dtype,
            enabled=self.mixed_precision_dtype is not None,
        ):
            sequences = self.model.generate(
                input_ids=context,
                max_length=max_length,
                stopping_criteria=[criteria],
                pad_token_id=self.tokenizer.pad_token_id,
                use_cache=True,
                soft_thinking=self.soft_config,
                **generation_kwargs,
            )
        generated = sequences[:, context.size(1) :]
        answers, has_answer = strip_thinking(
            generated, criteria.answer_start.to(generated.device), self.eot_token_id
        )
        self._log_thinking(generated, criteria.answer_start, has_answer)
        return torch.cat([context, answers.to(context.device)], dim=1)

    def _log_thinking(
        self, generated: torch.Tensor, answer_start: torch.Tensor, has_answer: torch.Tensor
    ) -> None:
        thinking = torch.where(answer_start >= 0, answer_start, generated.size(1)).float().mean().item()
        logger.info(
            "hf-softthink: %d of %d completions ended thinking (the others are returned whole); "
            "mean %.1f tokens before the answer",
            int(has_answer.sum()),
            generated.size(0),
            thinking,
        )

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._refuse_scoring("loglikelihood")
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        self._refuse_scoring("loglikelihood_rolling")
        return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def _refuse_scoring(self, kind: str) -> None:
        if self.soft_config is not None:
            raise ValueError(
                f"hf-softthink: {kind} tasks score fixed continuations, where soft thinking (a generation "
                "method) has no effect. Evaluate them with --model hf, or pass soft_thinking=False; soft thinking "
                "applies to generate_until tasks (gsm8k, ...)."
            )


def main(argv: Sequence[str] | None = None) -> int:
    """lm-evaluation-harness's own command line, with ``hf-softthink`` registered: ``hf-softthink lm-eval ...``."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm-eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
