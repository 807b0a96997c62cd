r"""`SoftGRPOTrainer`: a `trl.GRPOTrainer` whose chain of thought is soft (reparameterised soft rollouts).

**Pinned to TRL 1.16.** The trainer overrides private seams of `trl.GRPOTrainer` that change between TRL
releases (hence `trl>=1.16,<1.17` in the package requirements):

* `_generate_single_turn` -- rollouts through hf_softthink's decoder
  (`model.generate(..., soft_thinking=...)`);
* `_generate_and_score_completions` -- attaches the per-position soft tensors to the batch dict, where TRL
  shuffles and splits everything with a leading batch dimension together with the completions;
* `_get_per_token_logps_and_entropies` -- feeds the rollout's inputs back and scores soft steps with their
  log-density (hard steps keep the token log-prob of TRL's fused LM head);
* `_compute_loss` -- hands the batch's soft tensors to the seam above; TRL's loss is unchanged except that
  with `beta > 0` gaussian / fuzzy thinking steps use the exact per-step KL instead of k3;
* `_calculate_rewards` -- TRL's rewards, checked (an infinite reward, or a weighted sum beyond float32, names
  the function and the row) and kept for the RLOO advantages (`advantage_estimator="rloo"`);
* `train`, `_save_checkpoint` and the `_load_*` methods -- resume only from a complete checkpoint, name a
  damaged file, and save / restore the rollouts buffered for reuse (`trainer/checkpoints.py`);
* `_save` / `create_model_card` -- the saved folder carries the soft-thinking config and a model card
  (`hf_softthink.hub`).

With `soft_rollout="hard"` (and `advantage_estimator="grpo"`) none of the soft code runs: every seam defers to
`GRPOTrainer`, after the checks of rewards, prompts and checkpoints above.

**What is stored per completion position** (right-padded to the completion length): which steps the thinking
policy took (`soft_mask`: continue steps and sampled stop decisions) and which of them stopped (`soft_stop`),
the K ids `(B, T, K)`, their support in the thinking distribution `(B, T, K)` and the fed log-weights
`(B, T, K)` (from a log-softmax, so Gumbel weights that underflow stay finite), plus for Gaussian/fuzzy
rollouts the noisy embedding that was fed `(B, T, d)` and the noise scale `(B,)`, and for SofT-GRPO's score the
perturbed log-weights `(B, T, K)`. That is O(B·T·K) (+ B·T·d), never O(B·T·V). Tokens the decoder forced are 0
in the batch's `tool_mask` (out of the loss).

**Score of a thinking step** at completion position t under the current parameters, from the final hidden
state at the previous position and the K stored ids only (their rows of the output embedding; no (B, T, V)
logits at soft positions). With $z$ the K logits, $T$ the thinking temperature,
$p_\theta = \mathrm{softmax}(z / T)$ over the stored support, $S$ the stop set (EOS ids, the first token
of the think-end marker) and $p'_\theta$ its renormalised non-stop part (`docs/soft_rl.md` has the
derivation):

* a stop step that emitted $x \in S$: $\log p_\theta(x)$;
* gaussian / fuzzy continue step: $\log(1 - p_\theta(S)) + \log \mathcal N(h;\ \mu'_\theta, s^2 I)$ with
  $\mu'_\theta = \sum_{j \notin S} p'_\theta(j) E_j$ (not differentiated through the embedding table),
  $h$ the stored noisy embedding, $s = \sigma\,\mathrm{rms}(E)$;
* gumbel continue step: the Concrete density of the stored log-weights with logits $z / T$
  (`soft_density="exact"`), the log-probability of its Gumbel-max id (`"gumbel_max"`, plus the weighted
  residual of the exact density), or SofT-GRPO's clamped Gumbel score of the stored perturbed log-weights
  (`"soft_grpo"`: every Gumbel step, a sampled EOS included; a sampled think-end is then scored as a token,
  as the reference does);
* dirichlet / logistic_normal continue step: $\log(1 - p_\theta(S))$ plus the Dirichlet / logistic-normal
  density of the fed weights over the non-stop ids;
* a full-vocabulary Gaussian mixture ("Soft Tokens, Hard Truths"): the same Gaussian score with $p_\theta$ over
  the whole vocabulary (`full_vocabulary_log_density`).

With `detach_input_embeddings=True` the forward feeds every input embedding detached (SofT-GRPO's actor).
With `advantage_estimator="rloo"` the batch's advantages are TRL `RLOOTrainer`'s leave-one-out ones
(`rloo_advantages`, computed from the rewards `_calculate_rewards` returned).

Hard steps (the answer after the think-end marker, explicit steps of switch mode) keep the ordinary token
log-prob at GRPO's `temperature`, exactly as `GRPOTrainer` computes it. The forward pass
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

import copy
import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import is_peft_model
from torch import nn
from transformers import PreTrainedModel
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import nanstd, pad

from ..config import SoftThinkingConfig
from ..events import forced_mask
from ..generation import check_soft_thinking, enable_soft_thinking, resolve_think_end, stop_token_ids
from ..mixing import concept_embedding, embedding_rms, input_embedding_module
from ..processors import shift_to_zero_max, thinking_warpers
from ..token_ids import check_token_ids, check_tokenizer_fits
from .checkpoints import (
    ROLLOUTS_FILE,
    TRAINER_STATE,
    naming_checkpoint_files,
    resolve_resume_checkpoint,
    rollouts_needed,
)
from .config import SoftGRPOConfig, is_full_vocabulary
from .densities import (
    concrete_log_density,
    dirichlet_log_density,
    gaussian_log_density,
    gaussian_step_kl,
    gumbel_max_log_density,
    logistic_normal_log_density,
    soft_grpo_gumbel_log_density,
)
from .inputs import (
    check_combined_rewards,
    check_trainer_inputs,
    checked_reward_funcs,
    warn_on_rollout_settings,
)

__all__ = ["SOFT_BATCH_KEYS", "SoftGRPOTrainer"]

#: keys of the per-completion soft tensors in the batch dict (all with a leading batch dimension)
SOFT_BATCH_KEYS = (
    "soft_mask",
    "soft_stop",
    "soft_support",
    "soft_ids",
    "soft_log_weights",
    "soft_embeds",
    "soft_noise_std",
    "soft_perturbed",
)
# keys whose second dimension is the completion position
_POSITIONAL_KEYS = (
    "soft_mask", "soft_stop", "soft_support", "soft_ids", "soft_log_weights", "soft_embeds", "soft_perturbed"
)
_BOOL_KEYS = ("soft_mask", "soft_stop", "soft_support")


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
            out[key] = _pad_positions(out[key], length, False if key in _BOOL_KEYS else 0)
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


class SoftGRPOTrainer(GRPOTrainer):
    r"""GRPO with soft-thinking rollouts: a `trl.GRPOTrainer` whose chain of thought feeds concept tokens.

    Takes the arguments of `trl.GRPOTrainer` (TRL 1.16), with `args` a `SoftGRPOConfig`. Rollouts decode with
    `args.rollout_config()` through hf_softthink's decoder; rewards see the decoded text (the top-1 trace, the
    think-end marker and the answer). Thinking steps are scored with the probability of what the rollout did
    (module docstring), hard steps with the token log-prob, and TRL's loss (any `loss_type`, `beta > 0`,
    gradient accumulation and checkpointing, LoRA / QLoRA via `peft_config`; `num_iterations > 1` with
    gumbel / dirichlet rollouts) runs on them. `soft_rollout="hard"` is `GRPOTrainer` exactly.

    Logged metrics (besides TRL's): `soft/frac_soft_steps` (steps scored by the thinking policy / completion
    tokens), `soft/mixture_entropy` (mean entropy of the rollout mixture weights at soft steps, nats),
    `soft/thinking_length` (completion tokens before the think-end marker; the whole completion without one),
    `soft/think_end_rate`, `soft/cold_stop_rate` (fraction of completions whose think-end Cold Stop forced,
    detected from the recorded entropies; 0 when Cold Stop is off), `soft/eos_in_thinking_rate` (completions
    that ended with an EOS chosen while thinking), `soft/forced_rate` (completions with a forced token:
    budget, Cold Stop, switch limit, marker spelling), the thinking-step ratio / KL statistics of the loss
    (`soft/log_ratio_abs_mean`, `soft/ratio_clip_frac`, `soft/k3`, gaussian `soft/kl`) and, with
    `log_soft_grad_norms=True`, `soft/grad_norm_thinking` vs `soft/grad_norm_tokens`.

    Not supported with soft rollouts (clear errors): vLLM, transformers continuous batching, tools /
    environments, `rollout_func`, vision-language models.

    Notes:
        * Rewards are handled by TRL: `None` or NaN means "no verdict" for that completion (left out of that
          function's mean; no advantage when no function scores it), exactly as in `GRPOTrainer`.
        * Rollouts sample the stop decision (`SoftThinkingConfig.stop_decision="sample"`, also saved with the
          adapter). A think-end or EOS chosen while thinking is scored at the thinking temperature over the
          stored support; tokens forced by the budget, Cold Stop, the switch limit or the spelling of a
          multi-token marker are out of the loss. Explicit steps of switch mode are scored as tokens at
          GRPO's `temperature`.
        * gaussian / fuzzy rollouts train on-policy only (`num_iterations=1`, `steps_per_generation` dividing
          `gradient_accumulation_steps`); `SoftGRPOConfig` refuses the rest and says why.
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
        #: a full-vocabulary Gaussian mixture: its steps are scored from the policy's whole distribution
        self.full_vocabulary = self.rollout_soft_config is not None and is_full_vocabulary(self.rollout_soft_config)
        self._rewards_per_func: torch.Tensor | None = None  # the batch's rewards, for RLOO advantages
        # before the model loads (trainer/inputs.py); an IterableDataset comes back checked row by row
        train_dataset, eval_dataset = check_trainer_inputs(args, train_dataset, eval_dataset)
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
        self._step_terms: dict[str, Any] | None = None  # what a scoring call leaves for the caller, while collected
        self._collect_kl_terms = False  # whether scoring also builds the per-position terms of the exact KL
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
        self.think_end = None
        # every token id before the first step (hf_softthink.token_ids): a tokenizer with ids the model cannot
        # embed would fail mid-rollout with an IndexError
        check_tokenizer_fits(self.accelerator.unwrap_model(self.model), self._tokenizer)
        if self.is_soft:
            if self._is_vlm:
                raise ValueError(
                    "SoftGRPOTrainer supports text-only causal LMs with soft rollouts, not vision-language "
                    "models (got a processor, not a tokenizer). Use soft_rollout='hard' for GRPO on a VLM."
                )
            unwrapped = self.accelerator.unwrap_model(self.model)
            enable_soft_thinking(unwrapped, tokenizer=self._tokenizer)
            vocab_size = unwrapped.config.get_text_config().vocab_size
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
            warn_on_rollout_settings(
                self.rollout_soft_config, args.max_completion_length, self.think_end, self.eos_token_ids
            )
            #: the stop set S of a thinking step: EOS ids and the first token of the think-end marker
            self.stop_ids = stop_token_ids(self.eos_token_ids, self.think_end)
            try:  # everything the rollouts' generate resolves, checked as generate checks it
                check_soft_thinking(unwrapped, self.rollout_soft_config, self._tokenizer, self.generation_config)
                check_token_ids(unwrapped, {"the stop set (eos_token_id and the first think-end token)": self.stop_ids.tolist()},
                                tokenizer=self._tokenizer)
            except ValueError as error:
                raise ValueError(
                    f"SoftGRPOTrainer: the rollouts' soft-thinking settings cannot run on this model: {error}"
                ) from None

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

        The decode steps run on the cache and forward the config asks for, as `generate` runs them: the
        static cache with `cache_implementation="static"` (TRL passes it into the rollouts' generation
        config), and transformers' compiled forward when `generation_kwargs` holds a `compile_config`
        (a `transformers.CompileConfig`). TRL builds that generation config with `disable_compile=True`, so
        its own hard rollouts never compile; soft rollouts lift it when a `compile_config` asks, and then
        compile where `generate` would (a compileable cache, a GPU or a config flagged
        `_compile_all_devices`, no bitsandbytes quantizer; docs/design.md §8).
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
            # return_dict_in_generate goes into a copy of the config: transformers deprecates passing
            # generation arguments next to a generation_config
            generation_config = copy.deepcopy(self.generation_config)
            generation_config.return_dict_in_generate = True
            if generation_config.compile_config is not None:  # asked for: lift TRL's disable_compile
                generation_config.disable_compile = False
            out = unwrapped_model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=generation_config,
                soft_thinking=config,
            )
            noise_std = 0.0
            if config.noise == "gaussian":  # after generate: FSDP2 runs a submodule only after the root's forward
                embedding = input_embedding_module(unwrapped_model)
                vocab_size = unwrapped_model.config.get_text_config().vocab_size
                noise_std = config.gaussian_sigma * embedding_rms(
                    embedding, vocab_size, token_ids=config.gaussian_rms_token_ids
                )
        completion_ids = out.sequences[:, input_ids.size(1) :]
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=device))
        eos_idx = torch.full((is_eos.size(0),), is_eos.size(1), dtype=torch.long, device=device)
        eos_idx[is_eos.any(dim=1)] = is_eos.int().argmax(dim=1)[is_eos.any(dim=1)]
        positions = torch.arange(is_eos.size(1), device=device).expand(is_eos.size(0), -1)
        completion_mask = positions <= eos_idx.unsqueeze(1)

        stop = out.stop_decision_mask & completion_mask
        if self.soft_density == "soft_grpo" and self.think_end is not None:
            # SofT-GRPO makes a sampled think-end a one-hot token step and scores it as a token (its
            # schedule_batch.py update_topk_info, torch_functional.py ids_finish): out of the thinking steps
            stop = stop & (completion_ids != self.think_end.token_ids[0])
        soft_mask = (out.thinking_mask | stop) & completion_mask  # every step scored by the thinking policy
        rollout = {
            "soft_mask": soft_mask,
            "soft_stop": stop,
            "soft_support": out.soft_topk_support & soft_mask[..., None],
            "soft_ids": out.soft_topk_ids.masked_fill(~soft_mask[..., None], 0),
            "soft_log_weights": out.soft_topk_log_weights.masked_fill(~soft_mask[..., None], 0.0),
            "policy_mask": completion_mask & ~forced_mask(out.step_events),
        }
        if config.noise == "gaussian":
            rollout["soft_embeds"] = out.soft_input_embeddings.float()
            rollout["soft_noise_std"] = torch.full((soft_mask.size(0),), noise_std, device=device)
        if self.soft_density == "soft_grpo":  # log w + g: the reference's score reads the noise itself
            rollout["soft_perturbed"] = out.soft_topk_perturbed_log_weights.masked_fill(~soft_mask[..., None], 0.0)
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
        eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=device))
        stopped_thinking = (out.stop_decision_mask & completion_mask & eos).any(1)  # EOS chosen while thinking
        forced = (forced_mask(out.step_events) & completion_mask).any(1)
        stats = torch.stack(
            [
                soft_mask.sum().float(),
                lengths.sum().float(),
                (mixture_entropy * soft_mask).sum(),
                thinking_length.sum().float(),
                has_end.sum().float(),
                cold.sum().float(),
                torch.tensor(float(lengths.numel()), device=device),
                stopped_thinking.sum().float(),
                forced.sum().float(),
            ]
        )
        stats = self.accelerator.reduce(stats, reduction="sum").tolist()
        n_soft, n_tokens, entropy_sum, thinking_sum, ends, colds, rows, eos_stops, forced_rows = stats
        metrics = self._metrics[mode]
        metrics["soft/frac_soft_steps"].append(n_soft / max(n_tokens, 1.0))
        metrics["soft/mixture_entropy"].append(entropy_sum / n_soft if n_soft else float("nan"))
        metrics["soft/thinking_length"].append(thinking_sum / max(rows, 1.0))
        metrics["soft/think_end_rate"].append(ends / max(rows, 1.0))
        metrics["soft/cold_stop_rate"].append(colds / max(rows, 1.0))
        metrics["soft/eos_in_thinking_rate"].append(eos_stops / max(rows, 1.0))
        metrics["soft/forced_rate"].append(forced_rows / max(rows, 1.0))

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
            return self._with_advantages(super()._generate_and_score_completions(inputs))
        self._rollout = None
        # gaussian / fuzzy with beta > 0: the reference's per-position terms of the exact KL (the only scoring
        # call in here: gaussian rollouts refuse the old log-probs of off-policy training)
        self._collect_kl_terms = self.beta != 0.0 and self.rollout_soft_config.noise == "gaussian"
        self._step_terms = {} if self._collect_kl_terms else None
        try:
            output = super()._generate_and_score_completions(inputs)
            if self._rollout is None:
                raise RuntimeError(
                    "SoftGRPOTrainer: no soft rollout was recorded for this batch (the generation did not go "
                    "through _generate_single_turn)."
                )
            length = output["completion_ids"].size(1)
            soft = dict(self._rollout)
            policy_mask = _pad_positions(soft.pop("policy_mask"), length, True)
            soft = align_soft_batch(soft, length)
            completion_mask = output["completion_mask"]
            soft["soft_mask"] = soft["soft_mask"] & completion_mask.bool()
            output.update(soft)
            # forced tokens are not the policy's choices: out of the loss, as TRL keeps tool outputs out (tool_mask)
            tool_mask = output.get("tool_mask")
            tool_mask = policy_mask.to(completion_mask.dtype) * (1 if tool_mask is None else tool_mask)
            output["tool_mask"] = tool_mask
            output["num_items_in_batch"] = self.accelerator.gather((completion_mask * tool_mask).sum()).sum()
            if self._step_terms is not None:
                output["soft_ref_log_p"] = self._step_terms["log_p"]
                output["soft_ref_mean"] = self._step_terms["mean"]
            return self._with_advantages(output)
        finally:
            self._rollout = None
            self._soft_context = None
            self._step_terms = None
            self._collect_kl_terms = False

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards (TRL 1.16 private seam), checked before they become advantages: an infinite reward (a
        reward model's too) or a weighted sum beyond float32 stops training naming the function and the row
        (`trainer/inputs.py`), for hard rollouts as for soft ones; kept for the batch's RLOO advantages
        (`_with_advantages`)."""
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        generations = self.num_generations if self.model.training else self.num_generations_eval
        check_combined_rewards(rewards_per_func, self.reward_weights, self.reward_func_names, generations)
        self._rewards_per_func = rewards_per_func if self.args.advantage_estimator == "rloo" else None
        return rewards_per_func

    def _with_advantages(self, output: dict[str, Any]) -> dict[str, Any]:
        """`output` with RLOO advantages when `advantage_estimator="rloo"` (TRL's GRPO ones otherwise)."""
        rewards_per_func, self._rewards_per_func = self._rewards_per_func, None
        if self.args.advantage_estimator != "rloo":
            return output
        if rewards_per_func is None:  # TRL 1.16 scores every batch through _calculate_rewards (environments too)
            raise RuntimeError(
                "SoftGRPOTrainer: advantage_estimator='rloo' found no rewards for this batch: _calculate_rewards did "
                "not run before its advantages (a subclass that overrides it must call super()._calculate_rewards)."
            )
        local = output["advantages"]
        advantages = self.rloo_advantages(rewards_per_func)
        start = self.accelerator.process_index * local.size(0)
        output["advantages"] = advantages[start : start + local.size(0)].to(local.dtype)
        return output

    def rloo_advantages(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        r"""RLOO advantages of a gathered batch, as TRL's `RLOOTrainer` computes them (trl 1.16).

        With $r_i$ the weighted sum of completion $i$'s rewards and $n$ the number of completions of its group
        with a verdict (a completion every reward function returned None for is left out, and gets 0):

        $$A_i = r_i - \frac{1}{n - 1} \sum_{j \ne i} r_j,$$

        the leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024), equal to $\frac{n}{n-1}$ times
        the group-mean advantage. `scale_rewards`: "none" leaves it as is (`RLOOTrainer`'s default),
        "batch" normalises it over the batch, $(A - \bar A) / (\mathrm{std}(A) + 10^{-4})$
        (`RLOOTrainer(normalize_advantages=True)`), "group" divides it by the group's reward std
        $+ 10^{-4}$ as GRPO does.

        Args:
            rewards_per_func: `(N, F)` the rewards of the gathered batch (NaN: no verdict).

        Returns:
            `(N,)` advantages (0 where undefined).
        """
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        weights = self.reward_weights.to(rewards_per_func.device)
        unscorable = torch.isnan(rewards_per_func).all(dim=1)
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        rewards[unscorable] = torch.nan
        grouped = rewards.view(-1, group)
        if group > 1:
            counts = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
            baselines = (torch.nansum(grouped, dim=1, keepdim=True) - grouped) / (counts - 1)
            advantages = rewards - baselines.view(-1)
        else:
            advantages = torch.zeros_like(rewards)
        if self.scale_rewards == "batch":
            advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)
        elif self.scale_rewards == "group" and group > 1:
            advantages = advantages / (nanstd(grouped, dim=1).repeat_interleave(group) + 1e-4)
        return torch.nan_to_num(advantages, nan=0.0)

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
        exact_kl = self.beta != 0.0 and self.rollout_soft_config.noise == "gaussian"
        beta = self.beta
        self._step_terms = {}  # filled by the scoring call below with the policy's logps (and the KL's terms)
        self._collect_kl_terms = exact_kl
        try:
            if exact_kl:
                self.beta = 0.0  # TRL's k3 term is replaced by the exact one below
            loss = super()._compute_loss(model, inputs)
        finally:
            self.beta = beta
            self._soft_context = None
            terms, self._step_terms = self._step_terms, None
            self._collect_kl_terms = False
        if exact_kl:
            loss = loss + beta * self._gaussian_kl_loss(inputs, terms)
        self._log_soft_step_stats(model, inputs, terms, loss)
        return loss

    def _log_soft_step_stats(self, model, inputs, terms, loss) -> None:
        """Metrics of the thinking steps in the loss: importance ratios, k3, and (opt-in) gradient norms.

        * `soft/log_ratio_abs_mean`, `soft/ratio_clip_frac`: |log pi_theta - log pi_old| and the share of
          thinking steps whose ratio is outside [1 - epsilon_low, 1 + epsilon_high] (0 when on-policy);
        * `soft/k3`: TRL's k3 KL estimate at thinking steps (beta > 0; gaussian logs the exact `soft/kl`);
        * `soft/grad_norm_thinking`, `soft/grad_norm_tokens` (`log_soft_grad_norms=True`): the norms of the
          gradients of the loss through the thinking-step scores and through the token log-probs, before
          clipping (two extra backward passes).
        """
        logps = terms.get("logps")
        if logps is None:
            return
        mode = "train" if self.model.training else "eval"
        metrics = self._metrics[mode]
        completion_mask = inputs["completion_mask"]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        thinking = inputs["soft_mask"][:, : logps.size(1)].to(mask.dtype) * mask
        with torch.no_grad():
            old = inputs.get("old_per_token_logps")
            log_ratio = (logps - old) if old is not None else torch.zeros_like(logps)
            outside = (log_ratio.exp() < 1 - self.epsilon_low) | (log_ratio.exp() > 1 + self.epsilon_high)
            means = {
                "soft/log_ratio_abs_mean": (log_ratio.abs(), thinking),
                "soft/ratio_clip_frac": (outside.float(), thinking),
            }
            if self.beta != 0.0 and self.rollout_soft_config.noise != "gaussian":
                diff = inputs["ref_per_token_logps"] - logps
                means["soft/k3"] = (diff.exp() - diff - 1, thinking)
            for name, mean in zip(means, self._global_masked_means(*means.values()), strict=True):
                metrics[name].append(mean)
        if self.args.log_soft_grad_norms and mode == "train" and logps.requires_grad:
            params = [p for p in model.parameters() if p.requires_grad]
            (upstream,) = torch.autograd.grad(loss, logps, retain_graph=True)
            for name, part in (("thinking", thinking), ("tokens", mask - thinking)):
                grads = torch.autograd.grad(
                    logps, params, grad_outputs=upstream * part, retain_graph=True, allow_unused=True
                )
                norm = torch.sqrt(sum(g.float().square().sum() for g in grads if g is not None))
                metrics[f"soft/grad_norm_{name}"].append(norm.item())

    def _gaussian_kl_loss(self, inputs, terms) -> torch.Tensor:
        r"""The KL penalty of gaussian / fuzzy rollouts, aggregated as TRL aggregates its loss (`loss_type`).

        As TRL's k3 term, it covers every completion token the loss does: `top_entropy_quantile` masks the policy
        term only (TRL adds the KL after that mask).

        At answer tokens, TRL's k3 estimate $e^{r - l} - (r - l) - 1$ ($l$, $r$: policy and reference
        log-probs). At thinking steps the exact KL of the step's distribution given its prefix: with $p$, $q$
        the policy's and the reference's thinking distributions over the stored support, $S$ the stop set,
        $c = 1 - p(S)$, $c_q = 1 - q(S)$ and $\mu'$, $\mu'_q$ the means of the continue branch,

        $$\mathrm{KL} = \sum_{x \in S} p(x) \log\frac{p(x)}{q(x)} + c \log\frac{c}{c_q}
        + c\,\frac{\lVert \mu' - \mu'_q \rVert^2}{2 s^2}.$$

        k3 on the Gaussian density ratio has a variance of order $d\,\lVert\mu' - \mu'_q\rVert^2 / s^2$ and
        overflows after a few updates (issue 7); the exact term is deterministic given the prefix.
        """
        completion_mask = inputs["completion_mask"]
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        logps = terms["logps"]
        ref = inputs["ref_per_token_logps"]
        per_token_kl = torch.exp(ref - logps) - (ref - logps) - 1
        thinking = inputs["soft_mask"][:, : logps.size(1)]
        if thinking.any():
            step_kl = gaussian_step_kl(
                terms["log_p"][thinking],
                inputs["soft_ref_log_p"][:, : logps.size(1)][thinking],
                terms["stop_set"][thinking],
                terms["mean"][thinking],
                inputs["soft_ref_mean"][:, : logps.size(1)][thinking],
                inputs["soft_noise_std"][:, None].expand_as(thinking)[thinking],
            )
            per_token_kl = per_token_kl.masked_scatter(thinking, step_kl.to(per_token_kl.dtype))
        if self.args.use_bias_correction_kl:
            log_ratio = logps - logps.detach()  # on-policy: gaussian rollouts refuse old log-probs
            if self.importance_sampling_level == "sequence":
                log_ratio = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0))[:, None]
            per_token_kl = per_token_kl * torch.exp(log_ratio)
        mode = "train" if self.model.training else "eval"
        kl, thinking_kl = self._global_masked_means(
            (per_token_kl.detach(), mask), (per_token_kl.detach(), mask * thinking.to(mask.dtype))
        )
        self._metrics[mode]["kl"].append(kl)
        self._metrics[mode]["soft/kl"].append(thinking_kl)
        return self._aggregate_like_loss(per_token_kl, mask, inputs)

    def _global_masked_means(self, *pairs: tuple[torch.Tensor, torch.Tensor]) -> list[float]:
        """The mean of each `(values, mask)` pair's values over its mask, across processes (NaN where the mask
        is empty everywhere): one all-reduce and one device sync for all the pairs."""
        sums = [((values * mask).sum(), mask.sum()) for values, mask in pairs]
        totals = torch.stack([total.float() for pair in sums for total in pair])
        totals = self.accelerator.reduce(totals, reduction="sum").view(-1, 2)
        return torch.where(totals[:, 1] > 0, totals[:, 0] / totals[:, 1], math.nan).tolist()

    def _aggregate_like_loss(self, per_token: torch.Tensor, mask: torch.Tensor, inputs) -> torch.Tensor:
        """Reduce a per-token term exactly as `GRPOTrainer._compute_loss` reduces its loss (TRL 1.16)."""
        mode = "train" if self.model.training else "eval"
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        masked = per_token * mask
        if self.loss_type in ("grpo", "sapo"):
            return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / accumulation
        if self.loss_type == "bnpo":
            return masked.sum() / mask.sum().clamp(min=1.0) / accumulation
        if self.loss_type == "dr_grpo":
            return masked.sum() / (per_token.size(0) * self.max_completion_length) / accumulation
        if self.loss_type in ("cispo", "dapo", "vespo"):
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
            return masked.sum() / normalizer
        if self.loss_type == "luspo":
            return masked.sum(-1).mean() / accumulation
        raise ValueError(f"Unknown loss type: {self.loss_type}")

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
        if self._step_terms is not None:
            chunks = self._step_terms.pop("chunks", None)
            for key in ("log_p", "mean", "stop_set") if chunks else ():
                self._step_terms[key] = torch.cat([chunk[key] for chunk in chunks], dim=0)
            self._step_terms.update(logps=logps, entropies=entropies)
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
        terms = {} if self._collect_kl_terms else None
        detach = self.args.detach_input_embeddings
        if any_soft:
            ids = soft["soft_ids"][mask]
            log_weights = soft["soft_log_weights"][mask].float()
            support = soft["soft_support"][mask]
            stop = soft["soft_stop"][mask]
            std = soft["soft_noise_std"][:, None].expand_as(mask)[mask] if "soft_noise_std" in soft else None
            perturbed = soft["soft_perturbed"][mask].float() if "soft_perturbed" in soft else None

            def score(module, args, output):
                hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
                hidden = hidden[:, completion_start - 1 : input_ids.size(1) - 1][mask]
                scored["density"], scored["entropy"] = self.soft_log_density(
                    unwrapped, hidden, ids, support, stop, log_weights, scored["fed"], std, terms=terms,
                    perturbed=perturbed,
                )

        def feed(module, args, output):
            # only the model's own embedding of the inputs: not concept_embedding's lookups below
            if scored.get("embedded"):
                return None
            scored["embedded"] = True
            result = output
            if any_soft:
                fed = soft["soft_embeds"][mask] if "soft_embeds" in soft else None
                if fed is None:
                    fed = concept_embedding(module, ids, log_weights.exp())
                scored["fed"] = fed
                completion = output[:, completion_start:].masked_scatter(mask[..., None], fed.to(output.dtype))
                result = torch.cat([output[:, :completion_start], completion], dim=1)
            if detach:  # SofT-GRPO's actor feeds detached embeddings (a leaf, so checkpointing still runs)
                result = result.detach().requires_grad_(output.requires_grad)
            return result

        if any_soft or detach:
            handles.append(input_embedding_module(unwrapped).register_forward_hook(feed))
        if any_soft:
            backbone = _transformers_model(unwrapped).base_model
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
        if self._collect_kl_terms:
            # per-position terms of the exact Gaussian KL: (B, T, K), (B, T, d)
            shape = (*mask.shape, soft["soft_ids"].size(-1))
            chunk = {
                "log_p": torch.full(shape, -math.inf, device=mask.device),
                "stop_set": torch.zeros(shape, dtype=torch.bool, device=mask.device),
                "mean": torch.zeros(*mask.shape, soft["soft_embeds"].size(-1), device=mask.device),
            }
            if any_soft and terms:
                chunk = {key: value.masked_scatter(mask[..., None], terms[key]) for key, value in chunk.items()}
            self._step_terms.setdefault("chunks", []).append(chunk)
        return logps, entropies, aux

    def candidate_logits(self, model: nn.Module, hidden: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        """`(n, K)` fp32 logits of the ids `ids` (n, K) from final hidden states `hidden` (n, d).

        Gathers the K rows of the output embedding, so no `(n, V)` logits are formed; applies the model's
        logit scale and final soft-capping as its LM head does. An LM head that is not a plain linear layer
        (a LoRA layer on `lm_head`, a quantised head) is evaluated in full at the soft positions only.
        `ids=None` returns the `(n, V)` logits of the whole vocabulary.
        """
        head = model.get_output_embeddings()
        scale, softcap = _logit_transform(model.config)
        weight = getattr(head, "weight", None)
        with torch.autocast(hidden.device.type, enabled=False):
            if ids is not None and type(head) is nn.Linear and weight is not None and weight.dtype.is_floating_point:
                rows = weight[ids].float()  # (n, K, d)
                logits = torch.einsum("nd,nkd->nk", hidden.to(rows.device).float(), rows)
                if head.bias is not None:
                    logits = logits + head.bias[ids].float()
            else:
                logits = head(hidden).float()
                if ids is not None:
                    logits = logits.gather(-1, ids.to(hidden.device))
        logits = logits * scale
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        return logits

    def soft_log_density(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        ids: torch.Tensor,
        support: torch.Tensor,
        stop: torch.Tensor,
        log_weights: torch.Tensor,
        fed: torch.Tensor | None,
        noise_std: torch.Tensor | None,
        terms: dict[str, torch.Tensor] | None = None,
        perturbed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Log-probability of `n` thinking actions under the current parameters, and the entropy of $p_\theta$.

        $p_\theta = \mathrm{softmax}(z_\theta / T)$ over the stored support (module docstring), $S$ the stop set.
        A stop step (`stop`) emitted $x$ = `ids[:, 0]` and scores $\log p_\theta(x)$. A continue step scores
        (gaussian / fuzzy) $\log(1 - p_\theta(S)) + \log \mathcal N(h;\ \mu'_\theta, s^2 I)$ with
        $\mu'_\theta = \sum_{j \notin S} p'_\theta(j)\,E_j$, $p'_\theta$ the renormalised non-stop
        probabilities; (dirichlet) $\log(1 - p_\theta(S)) + \log \mathrm{Dir}(y';\ \alpha p'_\theta)$;
        (logistic_normal) $\log(1 - p_\theta(S)) + \log \mathrm{LN}(y';\ \log p'_\theta, s)$;
        (gumbel) the Concrete density of $y$ over the whole support (whether $\arg\max y \in S$ is a function
        of $y$, so that density already covers the decision), or with `soft_density="gumbel_max"` the
        log-probability of its Gumbel-max id (plus the weighted residual), or with `"soft_grpo"` SofT-GRPO's
        score of `perturbed` at every step, a sampled EOS included. A full-vocabulary Gaussian mixture is
        scored over the whole vocabulary (`full_vocabulary_log_density`).

        Args:
            model: the (unwrapped) policy or reference model.
            hidden: `(n, d)` final hidden states at the positions before the thinking steps.
            ids: `(n, K)` stored ids.
            support: `(n, K)` bool, the stored ids with weight > 0 in the rollout's thinking distribution.
            stop: `(n,)` bool, the step was a sampled stop decision (its token is `ids[:, 0]`).
            log_weights: `(n, K)` stored log-weights of the fed mixture (`-inf`: weight 0).
            fed: `(n, d)` the fed embeddings (the Gaussian action), or None.
            noise_std: `(n,)` Gaussian noise scale (Gaussian / fuzzy rollouts), or None.
            terms: a dict to fill, for gaussian / fuzzy, with `log_p` `(n, K)` ($\log p_\theta$, `-inf` off the
                support), `stop_set` `(n, K)` (the ids in S) and `mean` `(n, d)` ($\mu'_\theta$): what the exact KL
                needs.
            perturbed: `(n, K)` stored $\log w + g$ of Gumbel rollouts (`soft_density="soft_grpo"`), or None.

        Returns:
            `(n,)` log-probabilities / log-densities and `(n,)` entropies (nats) of $p_\theta$ over the support.
        """
        config = self.rollout_soft_config
        if self.full_vocabulary:
            return self.full_vocabulary_log_density(model, hidden, ids, stop, fed, noise_std)
        logits = self.candidate_logits(model, hidden, ids) / config.temperature
        log_p = torch.log_softmax(logits.masked_fill(~support, -math.inf), dim=-1)
        p = log_p.exp()
        # log p is -inf off the support: zero it *before* the product, or backward computes 0 * -inf = nan
        safe_log_p = log_p.masked_fill(~support, 0.0)
        entropy = -(p * safe_log_p).sum(-1)
        stop_density = safe_log_p[:, 0]
        # a stop step's fed weights are one-hot: give the (unselected) density branch finite inputs, or its
        # backward is 0 * nan
        log_weights = log_weights.masked_fill(stop[:, None], 0.0)
        if config.noise == "gumbel":
            log_y = log_weights.masked_fill(~support, 0.0)
            scores = logits.masked_fill(~support, -math.inf)
            if self.soft_density == "soft_grpo":  # every step, a sampled EOS included (the reference's)
                return soft_grpo_gumbel_log_density(scores, perturbed.masked_fill(~support, -math.inf)), entropy
            if self.soft_density == "gumbel_max":
                density = gumbel_max_log_density(scores, log_y, config.gumbel_tau, self.args.soft_density_residual)
            else:
                density = concrete_log_density(scores, log_y, config.gumbel_tau)
            return torch.where(stop, stop_density, density), entropy
        # continue steps: the non-stop part of the support, log(1 - p(S)) = logsumexp of its log-probs
        stop_set = support & torch.isin(ids, self.stop_ids.to(ids.device))
        keep = torch.where(stop[:, None] | stop_set.all(-1, keepdim=True), support, support & ~stop_set)
        log_continue = torch.logsumexp(log_p.masked_fill(~keep, -math.inf), dim=-1)
        p_continue = (log_p - log_continue[:, None]).exp().masked_fill(~keep, 0.0)
        if config.noise == "gaussian":
            # the embedding table maps the chosen mixture to a vector: it is not differentiated here (docs/soft_rl.md)
            vectors = input_embedding_module(model)(ids).float().detach()
            mean = (p_continue.unsqueeze(-1) * vectors).sum(-2)
            density = gaussian_log_density(fed.float(), mean, noise_std.float())
            if terms is not None:  # the step's distribution, whatever the action: the continue mean of every row
                non_stop = support & ~stop_set
                log_p_non_stop = log_p.masked_fill(~non_stop, -math.inf)
                log_c = torch.logsumexp(log_p_non_stop, -1, keepdim=True)
                weights = (log_p_non_stop - log_c.clamp_min(-1e30)).exp().masked_fill(~non_stop, 0.0)
                terms.update(log_p=log_p, stop_set=stop_set, mean=(weights.unsqueeze(-1) * vectors).sum(-2))
        elif config.noise == "dirichlet":
            density = dirichlet_log_density(
                None, config.dirichlet_alpha * p_continue, log_y=log_weights.masked_fill(~keep, 0.0)
            )
        elif config.noise == "logistic_normal":
            density = logistic_normal_log_density(
                log_p.masked_fill(~keep, -math.inf), log_weights.masked_fill(~keep, 0.0), config.logistic_normal_sigma
            )
        else:  # pragma: no cover - SoftGRPOConfig sets the noise of every soft rollout
            raise ValueError(f"no soft-step density for noise={config.noise!r}")
        return torch.where(stop, stop_density, log_continue + density), entropy

    def full_vocabulary_log_density(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        ids: torch.Tensor,
        stop: torch.Tensor,
        fed: torch.Tensor,
        noise_std: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Scores of full-vocabulary Gaussian thinking steps ("Soft Tokens, Hard Truths"), and the entropies.

        As `soft_log_density` for gaussian / fuzzy, with $p_\theta$ the thinking distribution over the whole
        vocabulary (the thinking warpers applied to the policy's `(n, V)` logits, as the decoder applies them):
        a stop step scores $\log p_\theta(x)$, a continue step
        $\log(1 - p_\theta(S)) + \log \mathcal N(h;\ p'_\theta E, s^2 I)$ with $E$ the `(V, d)` effective
        embedding matrix (not differentiated, as in the top-K case). Memory: O(n x V), plus that `(V, d)` matrix
        built in float32 by every scoring call (e.g. 2.5 GB for a 152k x 4096 vocabulary).
        """
        config = self.rollout_soft_config
        logits = thinking_warpers(config)(None, shift_to_zero_max(self.candidate_logits(model, hidden, None)))
        log_p = torch.log_softmax(logits, dim=-1)
        p = log_p.exp()
        entropy = -(p * log_p.masked_fill(p == 0, 0.0)).sum(-1)
        stop_density = log_p.gather(-1, ids[:, :1].to(log_p.device))[:, 0]
        is_stop = torch.zeros(log_p.size(-1), dtype=torch.bool, device=log_p.device)
        is_stop[self.stop_ids.to(log_p.device)] = True
        non_stop = log_p.masked_fill(is_stop, -math.inf)
        log_continue = torch.logsumexp(non_stop, dim=-1)
        p_continue = (non_stop - log_continue[:, None]).exp()
        with torch.no_grad():
            table = input_embedding_module(model)(torch.arange(log_p.size(-1), device=hidden.device)).float()
        density = gaussian_log_density(fed.float(), p_continue @ table, noise_std.float())
        return torch.where(stop, stop_density, log_continue + density), entropy

    # ------------------------------------------------------------------------------------------ checkpoints
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None):
        """`Trainer.train`, resuming only from a checkpoint it can trust (`trainer/checkpoints.py`):
        `resume_from_checkpoint=True` takes the newest *complete* checkpoint (a warning names each newer one
        skipped and why), a damaged file is named before anything loads, and the rollouts a checkpoint buffered
        for reuse (`num_iterations > 1`) are restored, so the resumed run reproduces the uninterrupted one."""
        if resume_from_checkpoint is not None and resume_from_checkpoint is not False:
            resume_from_checkpoint = resolve_resume_checkpoint(self.args.output_dir, resume_from_checkpoint)
            self._restore_rollouts(resume_from_checkpoint)
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval)

    @property
    def _generate_every(self) -> int:
        """Training steps (micro-batches) between two rollout generations (TRL's schedule)."""
        return self.args.steps_per_generation * self.num_iterations

    def _save_checkpoint(self, model, trial):
        """`Trainer._save_checkpoint`, plus the buffered rollouts when the next step reuses them (written first:
        `trainer_state.json`, written last, marks the checkpoint complete)."""
        if self._buffered_inputs is not None and self._step % self._generate_every:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            saved = {"step": self._step, "buffered_inputs": self._buffered_inputs}
            torch.save(saved, folder / ROLLOUTS_FILE.format(process=self.accelerator.process_index))
        super()._save_checkpoint(model, trial)

    def _restore_rollouts(self, checkpoint: str) -> None:
        """TRL's step counter and, inside a reuse window, the buffered rollouts of `checkpoint`."""
        global_step = json.loads((Path(checkpoint) / TRAINER_STATE).read_text())["global_step"]
        accumulation = self.args.gradient_accumulation_steps
        file = Path(checkpoint) / ROLLOUTS_FILE.format(process=self.accelerator.process_index)
        if file.is_file():
            with naming_checkpoint_files(checkpoint, file.name):
                saved = torch.load(file, map_location=self.accelerator.device, weights_only=True)
            self._step, self._buffered_inputs = saved["step"], saved["buffered_inputs"]
            return
        self._step = global_step * accumulation  # the regeneration schedule of the uninterrupted run
        if rollouts_needed(global_step, accumulation, self._generate_every):
            warnings.warn(
                f"{checkpoint} holds no buffered rollouts ({file.name}): the uninterrupted run would reuse the "
                f"rollouts it generated before step {global_step} (num_iterations={self.num_iterations}, "
                f"steps_per_generation={self.args.steps_per_generation}), this resumed run generates new ones. It "
                "trains correctly but its weights differ from an uninterrupted run's. (Checkpoints that "
                "SoftGRPOTrainer saves hold the rollouts; this one was saved by another trainer or version.)",
                UserWarning,
                stacklevel=3,
            )

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        with naming_checkpoint_files(resume_from_checkpoint, "the model or adapter weights"):
            return super()._load_from_checkpoint(resume_from_checkpoint, model=model)

    def _load_optimizer_and_scheduler(self, checkpoint):
        with naming_checkpoint_files(checkpoint, "optimizer.pt / scheduler.pt"):
            return super()._load_optimizer_and_scheduler(checkpoint)

    def _load_rng_state(self, checkpoint):
        with naming_checkpoint_files(checkpoint, "rng_state*.pth"):
            return super()._load_rng_state(checkpoint)

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
