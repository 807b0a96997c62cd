r"""`SoftGRPOTrainer`: a `trl.GRPOTrainer` whose chain of thought is soft (reparameterised soft rollouts).

**Pinned to TRL 1.16.** The trainer overrides private seams of `trl.GRPOTrainer` that change between TRL
releases (hence `trl>=1.16,<1.17` in the package requirements):

* `_generate_single_turn` -- rollouts through hf_softthink's decoder
  (`model.generate(..., soft_thinking=...)`);
* `_generate_and_score_completions` -- attaches the per-position soft tensors to the batch dict, where TRL
  shuffles and splits everything with a leading batch dimension together with the completions;
* `_get_per_token_logps_and_entropies` -- feeds the rollout's inputs back and scores soft steps with their
  log-density (hard steps keep the token log-prob of TRL's fused LM head);
* `_compute_loss` -- only hands the batch's soft tensors to the seam above, TRL's loss is unchanged;
* `_save` / `create_model_card` -- the saved folder carries the soft-thinking config and a model card
  (`hf_softthink.hub`).

With `soft_rollout="hard"` none of the soft code runs: every seam defers to `GRPOTrainer`.

**What is stored per completion position** (right-padded to the completion length): the soft-step mask
`(B, T)`, the K mixed ids `(B, T, K)` and their log-weights `(B, T, K)` (from a log-softmax, so Gumbel
weights that underflow stay finite), plus for Gaussian/fuzzy rollouts the noisy embedding that was fed
`(B, T, d)` and the noise scale `(B,)`. That is O(B·T·K) (+ B·T·d), never O(B·T·V).

**Log-density of a soft step** at completion position t under the current parameters, from the final
hidden state at the previous position and the K stored ids only (their rows of the output embedding; no
(B, T, V) logits at soft positions), with $z$ the K logits and $T$ the thinking temperature:

* gaussian / fuzzy: $\log \mathcal N(h;\ \mu_\theta, s^2 I)$ with $\mu_\theta = \sum_j p_\theta(j) E_j$,
  $p_\theta = \mathrm{softmax}(z / T)$ over the stored ids whose rollout weight was > 0, $h$ the stored
  noisy embedding, $s = \sigma\,\mathrm{rms}(E)$;
* gumbel: the Concrete density of the stored log-weights with logits $z / T$ (`soft_density="exact"`), or
  SofT-GRPO's clamped Gumbel score (`"soft_grpo_approx"`, a labelled compatibility option);
* dirichlet: $\log \mathrm{Dir}(y;\ \alpha\,p_\theta)$.

Hard steps (the answer after the think-end marker, the marker itself, explicit steps of switch mode) keep
the ordinary token log-prob at GRPO's `temperature`, exactly as `GRPOTrainer` computes it. The forward pass
feeds what the rollout fed: the concept embedding of step t (rebuilt through the input-embedding module
from the stored ids and detached weights) or the stored noisy embedding at position t, token embeddings
elsewhere.

Hard token log-probs come from TRL's fused LM head, which never holds `(B, T, V)` logits: it works in
chunks and, with Triton (CUDA), only at positions that have a label; soft positions get none. Without
Triton (CPU) the kernel scores every position chunk by chunk, so there the soft positions still cost a
vocabulary-wide chunk of compute (not memory) that is then discarded.

Fuzzy rollouts: at thinking temperature 1e-4 the thinking filters (top-p, min-p) usually keep a single id,
so a fuzzy step's mixture is one token plus noise and its density does not depend on the logits (no policy
gradient through the thinking steps; the answer tokens still train).
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import torch
from accelerate.utils import is_peft_model
from torch import nn
from transformers import PreTrainedModel
from trl import GRPOConfig, GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad

from ..config import SoftThinkingConfig
from ..generation import enable_soft_thinking, resolve_think_end
from ..mixing import concept_embedding, embedding_rms, input_embedding_module
from .config import SoftGRPOConfig
from .densities import (
    concrete_log_density,
    dirichlet_log_density,
    gaussian_log_density,
    soft_grpo_gumbel_log_density,
)
from .inputs import check_trainer_inputs, checked_reward_funcs, warn_on_rollout_settings

__all__ = ["SOFT_BATCH_KEYS", "SoftGRPOTrainer"]

#: keys of the per-completion soft tensors in the batch dict (all with a leading batch dimension)
SOFT_BATCH_KEYS = ("soft_mask", "soft_ids", "soft_log_weights", "soft_embeds", "soft_noise_std")
# keys whose second dimension is the completion position
_POSITIONAL_KEYS = ("soft_mask", "soft_ids", "soft_log_weights", "soft_embeds")


def _pad_positions(tensor: torch.Tensor, length: int, value: float | bool | int) -> torch.Tensor:
    """Truncate or right-pad dimension 1 of `tensor` to `length`."""
    current = tensor.size(1)
    if current >= length:
        return tensor[:, :length]
    shape = (tensor.size(0), length - current, *tensor.shape[2:])
    return torch.cat([tensor, tensor.new_full(shape, value)], dim=1)


def align_soft_batch(soft: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """The soft tensors with their position dimension truncated / right-padded to `length` positions."""
    out = dict(soft)
    for key in _POSITIONAL_KEYS:
        if key in out:
            out[key] = _pad_positions(out[key], length, False if key == "soft_mask" else 0)
    return out


def _logit_transform(config: Any) -> tuple[float, float | None]:
    """(logit_scale, final_logit_softcapping) of a model, resolved as TRL's fused LM head resolves them."""
    text_config = config.get_text_config()
    softcap = getattr(text_config, "final_logit_softcapping", None)
    scale = getattr(text_config, "logit_scale", None)
    if scale is None:
        scale = getattr(text_config, "output_multiplier", None)
    if scale is None:
        scale = getattr(text_config, "lm_head_multiplier", None)
    if scale is None and getattr(text_config, "logits_scaling", None) is not None:
        scaling = text_config.logits_scaling
        scale = scaling if text_config.model_type == "hyperclovax" else 1 / scaling
    return (1.0 if scale is None else scale), softcap


def _transformers_model(model: nn.Module) -> nn.Module:
    return model.get_base_model() if is_peft_model(model) else model


def _finite_rewards(func, name: str):
    """Wrap a reward function so that a NaN / inf reward raises instead of vanishing silently in `nansum`."""

    def check(values):
        for index, value in enumerate(values):
            if value is not None and isinstance(value, (int, float)) and not math.isfinite(value):
                raise ValueError(
                    f"The reward function {name!r} returned {value!r} for completion {index}. Rewards must "
                    "be finite numbers; return None for a completion the function cannot score (TRL then "
                    "leaves it out of that function's mean and gives it no advantage when no function scores "
                    "it)."
                )
        return values

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def checked_async(*args, **kwargs):
            return check(await func(*args, **kwargs))

        return checked_async

    @functools.wraps(func)
    def checked(*args, **kwargs):
        return check(func(*args, **kwargs))

    return checked


class SoftGRPOTrainer(GRPOTrainer):
    r"""GRPO with soft-thinking rollouts: a `trl.GRPOTrainer` whose chain of thought feeds concept tokens.

    Takes the arguments of `trl.GRPOTrainer` (TRL 1.16), with `args` a `SoftGRPOConfig`. Rollouts decode with
    `args.rollout_config()` through hf_softthink's decoder; rewards see the decoded text (the top-1 trace, the
    think-end marker and the answer). Soft steps are scored with the log-density of the action that was fed
    (module docstring), hard steps with the token log-prob, and TRL's loss (any `loss_type`, `beta > 0`,
    `num_iterations > 1`, gradient accumulation and checkpointing, LoRA / QLoRA via `peft_config`) runs
    on them unchanged. `soft_rollout="hard"` is `GRPOTrainer` exactly.

    Logged metrics (besides TRL's): `soft/frac_soft_steps` (soft steps / completion tokens),
    `soft/mixture_entropy` (mean entropy of the rollout mixture weights at soft steps, nats),
    `soft/thinking_length` (completion tokens before the think-end marker; the whole completion without one),
    `soft/think_end_rate`, and `soft/cold_stop_rate` (fraction of completions whose think-end Cold Stop
    forced, detected from the recorded entropies; 0 when Cold Stop is off).

    Not supported with soft rollouts (clear errors): vLLM, transformers continuous batching, tools /
    environments, `rollout_func`, vision-language models.

    Notes:
        * Reward functions that return NaN or inf raise a `ValueError` (`None` is TRL's "no verdict").
        * The think-end marker and hard steps inside the thinking phase (forced by Cold Stop or the budget,
          explicit steps of switch mode) are scored as ordinary tokens at GRPO's `temperature` (DESIGN.md §5).
        * Dirichlet draws that underflow to exactly 0 in the decoder are recorded with log-weight `-inf`,
          which cannot be told apart from an id outside the support: such ids are left out of the density
          (the density of the remaining coordinates). It is exact when no draw underflows.
        * The caller's answer-phase logits processors (e.g. `repetition_penalty`) also shape the rollout's
          mixture weights; the soft density ignores them, as GRPO's token log-probs do.
        * The saved folders (`save_model`, checkpoints, `push_to_hub`) carry `generation_config.json` with the
          rollout's `soft_thinking` config and a model card; reload with `hf_softthink.hub.load_soft_adapter`.

    Example:

    ```python
    from peft import LoraConfig
    from hf_softthink import SoftThinkingConfig
    from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

    args = SoftGRPOConfig(output_dir="out", soft_rollout="gumbel", num_generations=8,
                          soft_thinking=SoftThinkingConfig(max_topk=10, max_thinking_tokens=64))
    trainer = SoftGRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ds,
                              processing_class=tokenizer,
                              peft_config=LoraConfig(r=16, target_modules="all-linear"))
    trainer.train()
    ```
    """

    _tag_names = ["trl", "grpo", "hf_softthink", "soft-thinking"]
    _name = "SoftGRPO"

    def __init__(
        self,
        model: str | PreTrainedModel | nn.Module,
        reward_funcs: Any = None,
        args: SoftGRPOConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        reward_processing_classes: Any = None,
        callbacks: Any = None,
        optimizers: tuple = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
        tools: Any = None,
        rollout_func: Any = None,
        environment_factory: Any = None,
    ):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "") or "model"
            args = SoftGRPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-SoftGRPO")
        elif not isinstance(args, SoftGRPOConfig):
            kind = "a GRPOConfig" if isinstance(args, GRPOConfig) else type(args).__name__
            raise TypeError(
                f"SoftGRPOTrainer needs `args` to be a SoftGRPOConfig, got {kind}. Build one with the same "
                "fields plus soft_rollout=... (soft_rollout='hard' is plain GRPO)."
            )
        self.soft_rollout = args.soft_rollout
        self.soft_density = args.soft_density
        self.rollout_soft_config: SoftThinkingConfig | None = args.rollout_config()
        check_trainer_inputs(args, train_dataset, eval_dataset)  # before the model loads (trainer/inputs.py)
        reward_funcs = checked_reward_funcs(reward_funcs)
        if self.is_soft:
            args.check_generation_engine()  # again: the flags may have been set after the config was built
            unsupported = {
                "tools": tools,
                "rollout_func": rollout_func,
                "environment_factory": environment_factory,
            }
            for key, value in unsupported.items():
                if value:
                    raise ValueError(
                        f"SoftGRPOTrainer does not support `{key}` with soft_rollout={self.soft_rollout!r}: "
                        "soft rollouts run through hf_softthink's decoder in one `generate` call per batch "
                        f"and the loss needs their per-step soft actions. Drop `{key}`, or use "
                        "soft_rollout='hard'."
                    )
        self._rollout: dict[str, torch.Tensor] | None = None  # soft tensors of the batch being generated
        self._soft_context: dict[str, torch.Tensor] | None = None  # soft tensors of the rows being scored
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
            tools=tools,
            rollout_func=rollout_func,
            environment_factory=environment_factory,
        )
        self.reward_funcs = [
            f if isinstance(f, nn.Module) else _finite_rewards(f, name)
            for f, name in zip(self.reward_funcs, self.reward_func_names, strict=True)
        ]
        self.think_end = None
        if self.is_soft:
            if self._is_vlm:
                raise ValueError(
                    "SoftGRPOTrainer supports text-only causal LMs with soft rollouts, not vision-language "
                    "models (got a processor, not a tokenizer). Use soft_rollout='hard' for GRPO on a VLM."
                )
            unwrapped = self.accelerator.unwrap_model(self.model)
            enable_soft_thinking(unwrapped, tokenizer=self._tokenizer)
            vocab_size = unwrapped.config.get_text_config().vocab_size
            warn_on_rollout_settings(
                self.rollout_soft_config, args.max_completion_length, self._tokenizer, self.eos_token_ids,
                vocab_size,
            )
            try:
                self.think_end = resolve_think_end(
                    self.rollout_soft_config.think_end, self._tokenizer, vocab_size
                )
            except ValueError as error:
                raise ValueError(
                    f"SoftGRPOTrainer: the rollouts' think-end marker soft_thinking.think_end="
                    f"{self.rollout_soft_config.think_end!r} cannot be used with this tokenizer/model: "
                    f"{error} Add it to the tokenizer (tokenizer.add_tokens([...]) and "
                    "model.resize_token_embeddings), choose a marker the tokenizer can spell, or set "
                    "think_end=None (every step soft)."
                ) from error

    # ------------------------------------------------------------------------------------------ properties
    @property
    def is_soft(self) -> bool:
        """True unless `soft_rollout="hard"`."""
        return self.soft_rollout != "hard"

    # ------------------------------------------------------------------------------------------- rollouts
    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        """Rollouts through hf_softthink's decoder (TRL 1.16 private seam; `GRPOTrainer`'s for "hard").

        Mirrors the plain-transformers path of `GRPOTrainer._generate_single_turn` (left-padded prompts,
        `unwrap_model_for_generation`, completion cut after the first EOS) but calls
        `generate(..., soft_thinking=rollout_config, return_dict_in_generate=True)` and keeps the per-step
        soft tensors for `_generate_and_score_completions` (and for the old / reference log-densities that
        TRL computes in between).
        """
        if not self.is_soft:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images=has_tool_images
            )
        if images is not None or multimodal_fields:
            raise ValueError(
                "SoftGRPOTrainer's soft rollouts are text-only: the batch has images / multimodal fields."
            )
        device = self.accelerator.device
        prompts = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(
            prompts,
            padding_value=self._tokenizer.pad_token_id,
            padding_side="left",
            pad_to_multiple_of=self.pad_to_multiple_of,
        ).to(device)
        attention_mask = pad(
            [torch.ones_like(t) for t in prompts],
            padding_value=0,
            padding_side="left",
            pad_to_multiple_of=self.pad_to_multiple_of,
        ).to(device)
        config = self.rollout_soft_config
        with (
            profiling_context(self, "soft_thinking.generate"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            enable_soft_thinking(unwrapped_model, tokenizer=self._tokenizer)
            out = unwrapped_model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=self.generation_config,
                soft_thinking=config,
                return_dict_in_generate=True,
            )
            noise_std = 0.0
            if config.noise == "gaussian":  # after generate: FSDP2 runs a submodule only after the root's forward
                embedding = input_embedding_module(unwrapped_model)
                vocab_size = unwrapped_model.config.get_text_config().vocab_size
                noise_std = config.gaussian_sigma * embedding_rms(embedding, vocab_size)
        completion_ids = out.sequences[:, input_ids.size(1) :]
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=device))
        eos_idx = torch.full((is_eos.size(0),), is_eos.size(1), dtype=torch.long, device=device)
        eos_idx[is_eos.any(dim=1)] = is_eos.int().argmax(dim=1)[is_eos.any(dim=1)]
        positions = torch.arange(is_eos.size(1), device=device).expand(is_eos.size(0), -1)
        completion_mask = positions <= eos_idx.unsqueeze(1)

        soft_mask = out.thinking_mask & completion_mask
        rollout = {
            "soft_mask": soft_mask,
            "soft_ids": out.soft_topk_ids.masked_fill(~soft_mask[..., None], 0),
            "soft_log_weights": out.soft_topk_log_weights.masked_fill(~soft_mask[..., None], 0.0),
        }
        if config.noise == "gaussian":
            rollout["soft_embeds"] = out.soft_input_embeddings.float()
            rollout["soft_noise_std"] = torch.full((soft_mask.size(0),), noise_std, device=device)
        self._log_rollout_metrics(out, completion_ids, completion_mask, soft_mask)
        del out
        self._rollout = rollout
        self._soft_context = rollout  # TRL computes old / reference log-probs before the batch dict exists
        completion_list = [
            c[m].tolist() for c, m in zip(completion_ids.cpu(), completion_mask.cpu(), strict=True)
        ]
        return completion_list, None

    @torch.no_grad()
    def _log_rollout_metrics(self, out, completion_ids, completion_mask, soft_mask) -> None:
        mode = "train" if self.model.training else "eval"
        device = completion_ids.device
        log_w = out.soft_topk_log_weights.float()
        mixture_entropy = -(log_w.exp() * log_w).nan_to_num(0.0).sum(-1)  # exp(-inf) * -inf is nan -> 0
        lengths = completion_mask.sum(1)
        think_start = self._think_end_positions(completion_ids, completion_mask)
        has_end = think_start < lengths
        thinking_length = torch.where(has_end, think_start, lengths)
        cold = torch.zeros_like(has_end)
        config = self.rollout_soft_config
        if config.cold_stop_entropy is not None and has_end.any():
            patience = config.cold_stop_patience
            low = (out.entropies < config.cold_stop_entropy).long()
            # low-entropy run ending at the think-end step, inclusive
            run = torch.cat([low.new_zeros(low.size(0), 1), low.cumsum(1)], dim=1)
            end = think_start.clamp_max(low.size(1) - 1)
            start = (end + 1 - patience).clamp_min(0)
            count = run.gather(1, (end + 1)[:, None]) - run.gather(1, start[:, None])
            cold = has_end & (end + 1 >= patience) & (count[:, 0] >= patience)
        stats = torch.stack(
            [
                soft_mask.sum().float(),
                lengths.sum().float(),
                (mixture_entropy * soft_mask).sum(),
                thinking_length.sum().float(),
                has_end.sum().float(),
                cold.sum().float(),
                torch.tensor(float(lengths.numel()), device=device),
            ]
        )
        stats = self.accelerator.reduce(stats, reduction="sum").tolist()
        n_soft, n_tokens, entropy_sum, thinking_sum, ends, colds, rows = stats
        metrics = self._metrics[mode]
        metrics["soft/frac_soft_steps"].append(n_soft / max(n_tokens, 1.0))
        metrics["soft/mixture_entropy"].append(entropy_sum / n_soft if n_soft else float("nan"))
        metrics["soft/thinking_length"].append(thinking_sum / max(rows, 1.0))
        metrics["soft/think_end_rate"].append(ends / max(rows, 1.0))
        metrics["soft/cold_stop_rate"].append(colds / max(rows, 1.0))

    def _think_end_positions(
        self, completion_ids: torch.Tensor, completion_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B,) index of the first token of the think-end marker in each completion (its length if absent)."""
        length = completion_ids.size(1)
        absent = torch.full((completion_ids.size(0),), length, dtype=torch.long, device=completion_ids.device)
        if self.think_end is None or length == 0:
            return absent
        marker = torch.tensor(self.think_end.token_ids, device=completion_ids.device)
        n = marker.numel()
        if n > length:
            return absent
        windows = completion_ids.unfold(1, n, 1)  # (B, length - n + 1, n)
        hit = (windows == marker).all(-1) & completion_mask[:, n - 1 :]
        first = torch.where(hit.any(1), hit.int().argmax(1), absent)
        return first

    def _generate_and_score_completions(self, inputs):
        """TRL's generation + scoring, plus the soft tensors in the batch dict (TRL 1.16 private seam).

        Everything TRL returns is kept; the soft tensors (`SOFT_BATCH_KEYS`) have a leading batch
        dimension and are right-padded to the completion length, so TRL's shuffle / split carries them with
        their rows.
        """
        if not self.is_soft:
            return super()._generate_and_score_completions(inputs)
        self._rollout = None
        try:
            output = super()._generate_and_score_completions(inputs)
            if self._rollout is None:
                raise RuntimeError(
                    "SoftGRPOTrainer: no soft rollout was recorded for this batch (the generation did not go "
                    "through _generate_single_turn)."
                )
            soft = align_soft_batch(self._rollout, output["completion_ids"].size(1))
            soft["soft_mask"] = soft["soft_mask"] & output["completion_mask"].bool()
            output.update(soft)
            return output
        finally:
            self._rollout = None
            self._soft_context = None

    # ------------------------------------------------------------------------------------------ scoring
    def _compute_loss(self, model, inputs):
        """TRL's loss, with the batch's soft tensors handed to `_get_per_token_logps_and_entropies`.

        TRL 1.16 private seam: `GRPOTrainer._compute_loss` calls `_get_per_token_logps_and_entropies`
        without the batch dict, so the soft tensors are passed through `self._soft_context` for the duration
        of the call.
        """
        if not self.is_soft:
            return super()._compute_loss(model, inputs)
        self._soft_context = {key: inputs[key] for key in SOFT_BATCH_KEYS if key in inputs}
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._soft_context = None

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **multimodal,
    ):
        """Per-position log-probs (hard steps) and log-densities (soft steps), entropies, aux loss.

        TRL 1.16 private seam (returns `(logps, entropies, aux_loss)` like `GRPOTrainer`'s). Without soft
        tensors for the rows (hard rollouts) it is `GRPOTrainer`'s. Otherwise the inputs are the rollout's
        (concept or noisy embeddings at soft positions), hard positions go through TRL's fused LM head
        exactly as in `GRPOTrainer`, and soft positions are scored from the final hidden state at the
        previous position and the K stored ids. The entropy at a soft position is that of $p_\\theta$ over
        the stored ids.
        """
        soft = self._soft_context
        if soft is None:
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **multimodal,
            )
        if any(value is not None for value in multimodal.values()):
            raise ValueError("SoftGRPOTrainer's soft rollouts are text-only: got multimodal model inputs.")
        soft = align_soft_batch(soft, logits_to_keep)
        if soft["soft_mask"].size(0) != input_ids.size(0):
            raise RuntimeError(
                f"SoftGRPOTrainer: {soft['soft_mask'].size(0)} rows of soft rollout data for "
                f"{input_ids.size(0)} sequences; the soft tensors must travel with their rows."
            )
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            logps, entropies, aux = self._soft_forward(
                model,
                input_ids[start:end],
                attention_mask[start:end],
                logits_to_keep,
                {key: value[start:end] for key, value in soft.items()},
                compute_entropy,
                compute_aux_loss,
            )
            all_logps.append(logps)
            all_entropies.append(entropies)
            all_aux.append(aux)
        logps = torch.cat(all_logps, dim=0)
        entropies = torch.cat(all_entropies, dim=0) if compute_entropy else None
        aux_loss = torch.stack(all_aux).mean() if compute_aux_loss else None
        return logps, entropies, aux_loss

    def _soft_forward(
        self, model, input_ids, attention_mask, logits_to_keep, soft, compute_entropy, compute_aux_loss
    ):
        # Everything that reads the model's weights runs inside the model's own forward, through hooks: the
        # concept embeddings replace the input-embedding module's output, and the soft densities are scored
        # from the backbone's output. Under FSDP the weights are gathered only during that forward; calling
        # the embedding or reading LM-head rows outside it would see the shards (or freed storage).
        unwrapped = self.accelerator.unwrap_model(model)
        completion_start = input_ids.size(1) - logits_to_keep
        mask = soft["soft_mask"].bool() & attention_mask[:, completion_start:].bool()
        any_soft = bool(mask.any())

        labels = input_ids.masked_fill(attention_mask == 0, -100)
        labels[:, :-logits_to_keep] = -100
        labels[:, completion_start:] = labels[:, completion_start:].masked_fill(mask, -100)
        model_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if compute_aux_loss:
            model_inputs["output_router_logits"] = True

        handles = []
        scored: dict[str, Any] = {}
        if any_soft:
            ids = soft["soft_ids"][mask]
            log_weights = soft["soft_log_weights"][mask].float()
            std = soft["soft_noise_std"][:, None].expand_as(mask)[mask] if "soft_noise_std" in soft else None

            def feed(module, args, output):
                if "fed" in scored or scored.get("feeding"):  # only the model's own embedding of the inputs
                    return None
                scored["feeding"] = True
                try:
                    fed = soft["soft_embeds"][mask] if "soft_embeds" in soft else None
                    if fed is None:
                        fed = concept_embedding(module, ids, log_weights.exp())
                finally:
                    scored["feeding"] = False
                scored["fed"] = fed
                completion = output[:, completion_start:].masked_scatter(mask[..., None], fed.to(output.dtype))
                return torch.cat([output[:, :completion_start], completion], dim=1)

            def score(module, args, output):
                hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
                hidden = hidden[:, completion_start - 1 : input_ids.size(1) - 1][mask]
                scored["density"], scored["entropy"] = self.soft_log_density(
                    unwrapped, hidden, ids, log_weights, scored["fed"], std
                )

            backbone = _transformers_model(unwrapped).base_model
            handles.append(input_embedding_module(unwrapped).register_forward_hook(feed))
            handles.append(backbone.register_forward_hook(score))
        try:
            with self.accelerator.autocast():
                outputs = model(**model_inputs, labels=labels, fused_lm_head=True)
        finally:
            for handle in handles:
                handle.remove()
        logps = outputs.log_probs[:, -logits_to_keep:]
        entropies = outputs.entropy[:, -logits_to_keep:] if compute_entropy else None
        aux = outputs.aux_loss if compute_aux_loss else None
        if any_soft:
            logps = logps.masked_scatter(mask, scored["density"].to(logps.dtype))
            if entropies is not None:
                entropies = entropies.masked_scatter(mask, scored["entropy"].to(entropies.dtype))
        return logps, entropies, aux

    def candidate_logits(self, model: nn.Module, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """`(n, K)` fp32 logits of the ids `ids` (n, K) from final hidden states `hidden` (n, d).

        Gathers the K rows of the output embedding, so no `(n, V)` logits are formed; applies the model's
        logit scale and final soft-capping as its LM head does. An LM head that is not a plain linear layer
        (a LoRA layer on `lm_head`, a quantised head) is evaluated in full at the soft positions only.
        """
        head = model.get_output_embeddings()
        scale, softcap = _logit_transform(model.config)
        weight = getattr(head, "weight", None)
        with torch.autocast(hidden.device.type, enabled=False):
            if type(head) is nn.Linear and weight is not None and weight.dtype.is_floating_point:
                rows = weight[ids].float()  # (n, K, d)
                logits = torch.einsum("nd,nkd->nk", hidden.to(rows.device).float(), rows)
                if head.bias is not None:
                    logits = logits + head.bias[ids].float()
            else:
                logits = head(hidden).float().gather(-1, ids.to(hidden.device))
        logits = logits * scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        return logits

    def soft_log_density(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        ids: torch.Tensor,
        log_weights: torch.Tensor,
        fed: torch.Tensor,
        noise_std: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-density of `n` soft actions under the current parameters, and the entropy of $p_\\theta$.

        Args:
            model: the (unwrapped) policy or reference model.
            hidden: `(n, d)` final hidden states at the positions before the soft steps.
            ids: `(n, K)` stored ids.
            log_weights: `(n, K)` stored rollout log-weights (`-inf`: not in the support).
            fed: `(n, d)` the fed embeddings (the Gaussian action).
            noise_std: `(n,)` Gaussian noise scale (Gaussian / fuzzy rollouts).

        Returns:
            `(n,)` log-densities and `(n,)` entropies (nats) of $p_\\theta$ over the stored support.
        """
        config = self.rollout_soft_config
        valid = log_weights > -math.inf
        logits = self.candidate_logits(model, hidden, ids) / config.temperature
        logits = logits.masked_fill(~valid, -math.inf)
        log_p = torch.log_softmax(logits, dim=-1)
        p = log_p.exp()
        entropy = -torch.where(valid, p * log_p, torch.zeros_like(p)).sum(-1)
        if config.noise == "gaussian":
            vectors = input_embedding_module(model)(ids).float()
            mean = (p.unsqueeze(-1) * vectors).sum(-2)
            density = gaussian_log_density(fed.float(), mean, noise_std.float())
        elif config.noise == "gumbel":
            log_y = log_weights.masked_fill(~valid, 0.0)
            if self.soft_density == "soft_grpo_approx":
                density = soft_grpo_gumbel_log_density(logits, log_y, config.gumbel_tau)
            else:
                density = concrete_log_density(logits, log_y, config.gumbel_tau)
        elif config.noise == "dirichlet":
            density = dirichlet_log_density(
                None, config.dirichlet_alpha * p, log_y=log_weights.masked_fill(~valid, 0.0)
            )
        else:  # pragma: no cover - SoftGRPOConfig sets the noise of every soft rollout
            raise ValueError(f"no soft-step density for noise={config.noise!r}")
        return density, entropy

    # ------------------------------------------------------------------------------------------ saving
    def _save(self, output_dir: str | None = None, state_dict=None):
        """`Trainer._save`, plus `generation_config.json` (soft-thinking config) and the model card."""
        super()._save(output_dir, state_dict=state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            from ..hub import save_soft_thinking_files

            save_soft_thinking_files(self, output_dir)

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None, tags=None):
        """The soft-thinking model card in `args.output_dir/README.md` (see `hf_softthink.hub`)."""
        if not self.is_world_process_zero():
            return
        from ..hub import write_model_card

        write_model_card(
            self, self.args.output_dir, model_name=model_name, dataset_name=dataset_name, tags=tags
        )
