"""`SoftGRPOConfig`: `trl.GRPOConfig` plus the soft-rollout settings of `SoftGRPOTrainer`.

Pinned to TRL 1.16 (see `SoftGRPOTrainer`): the fields below are additive, every GRPO field keeps its meaning.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from ..config import SoftThinkingConfig
from .inputs import check_reward_weights

#: the rollout kinds of `SoftGRPOConfig.soft_rollout`
SOFT_ROLLOUTS = ("hard", "gaussian", "fuzzy", "gumbel", "dirichlet", "logistic_normal")
#: the soft-step scores of `SoftGRPOConfig.soft_density`
SOFT_DENSITIES = ("exact", "soft_grpo", "gumbel_max")
#: the advantage estimators of `SoftGRPOConfig.advantage_estimator`
ADVANTAGE_ESTIMATORS = ("grpo", "rloo")
#: the presets of `SoftGRPOConfig` (`recipe`)
RECIPES = ("softgrpo", "stht", "stht-fuzzy")
#: rollouts whose Gaussian importance ratios leave the clip range after one update: trained on-policy only
ON_POLICY_ROLLOUTS = ("gaussian", "fuzzy")
#: the thinking temperature of "fuzzy" rollouts ("Soft Tokens, Hard Truths", arXiv:2509.19170)
FUZZY_TEMPERATURE = 1e-4

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# the decoder noise each soft rollout kind needs
_ROLLOUT_NOISE = {
    "gaussian": "gaussian",
    "fuzzy": "gaussian",
    "gumbel": "gumbel",
    "dirichlet": "dirichlet",
    "logistic_normal": "logistic_normal",
}


def is_full_vocabulary(config: SoftThinkingConfig) -> bool:
    """Whether a decoder config mixes the whole vocabulary (`max_topk=None` and no top-k)."""
    return config.max_topk is None and not config.top_k


@dataclass
class SoftGRPOConfig(GRPOConfig):
    r"""Configuration of `SoftGRPOTrainer`: every `trl.GRPOConfig` field plus the soft-rollout settings.

    A soft rollout decodes the chain of thought with concept tokens (`hf_softthink` soft thinking) whose noise
    makes each soft step a stochastic action with a density; the answer after the think-end token is ordinary
    sampling with GRPO's own generation settings (`temperature`, `top_p`, ...). `soft_rollout` picks the
    noise, and so the density scored in the loss:

    * `"hard"`: plain GRPO (`SoftGRPOTrainer` behaves exactly like `trl.GRPOTrainer`);
    * `"gaussian"`: Gaussian noise on the concept-token embedding (arXiv:2509.19170), scale
      `soft_thinking.gaussian_sigma` times the embedding rms;
    * `"fuzzy"`: the same with a near-greedy thinking temperature of 1e-4 ("fuzzy tokens", arXiv:2509.19170);
    * `"gumbel"`: Gumbel-Softmax weights over the top-K ids (SofT-GRPO, arXiv:2511.06411), temperature
      `soft_thinking.gumbel_tau`;
    * `"dirichlet"`: Dirichlet weights `Dir(alpha * p)` (arXiv:2508.03440), with
      `alpha = soft_thinking.dirichlet_alpha`;
    * `"logistic_normal"`: Gaussian noise on the mixture's log-weights, `softmax(log p + s * eps)` with
      `s = soft_thinking.logistic_normal_sigma` (the Gaussian counterpart of Gumbel-Softmax: its score lives on
      the K weights, not on the d-dimensional embedding).

    Presets: `SoftGRPOConfig.softgrpo()` (SofT-GRPO as published) and `SoftGRPOConfig.stht()` ("Soft Tokens,
    Hard Truths"; `stht(fuzzy=True)` for its fuzzy tokens); `recipe` records which built the config.

    `soft_thinking` holds the decoder settings of the rollouts (a `SoftThinkingConfig`, or a dict / JSON
    string of its fields; stored as a plain dict so `to_dict()` / `to_json_string()` and the checkpoints'
    args work). Its `noise` is set from `soft_rollout`: leave it at `"none"` (or set the matching kind). The
    resolved decoder config is `rollout_config()`; it is also saved with the trained adapter, so
    `generate(soft_thinking=True)` on the reloaded model decodes as the rollouts did.

    Soft rollouts run through `model.generate` (our decoder): `use_vllm` and transformers continuous batching
    are not supported with them and raise.

    Example:

    ```python
    >>> from hf_softthink import SoftThinkingConfig
    >>> from hf_softthink.trainer import SoftGRPOConfig
    >>> args = SoftGRPOConfig(output_dir="out", soft_rollout="gumbel", use_cpu=True,
    ...                       soft_thinking=SoftThinkingConfig(max_topk=5, gumbel_tau=0.5))
    >>> args.rollout_config().noise
    'gumbel'

    ```
    """

    _VALID_DICT_FIELDS = GRPOConfig._VALID_DICT_FIELDS + ["soft_thinking"]

    # TRL 1.16 defaults transformers' deprecated alias `gradient_checkpointing` to True, which made every config
    # warn (FutureWarning). Default the alias to None and turn TRL's default on under its new name instead
    # (`__post_init__`); passing `gradient_checkpointing` still works, with transformers' deprecation warning.
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated alias of `activation_checkpointing` (on by default, as in TRL)."},
    )

    soft_rollout: str = field(
        default="gaussian",
        metadata={
            "help": "Kind of soft rollout: 'hard' (plain GRPO), 'gaussian' (Gaussian noise on the "
            "concept-token embedding), 'fuzzy' (thinking temperature 1e-4 plus Gaussian noise), 'gumbel' "
            "(Gumbel-Softmax weights over the top-K ids) or 'dirichlet' (Dirichlet weights).",
            "choices": list(SOFT_ROLLOUTS),
        },
    )
    soft_thinking: dict | str | None = field(
        default=None,
        metadata={
            "help": "Soft-thinking decoder settings of the rollouts: a `SoftThinkingConfig`, a dict of its "
            "fields or a JSON string (None: the defaults). Its `noise` is set from `soft_rollout` ('fuzzy' "
            "also sets the thinking temperature to 1e-4). The mixture size `max_topk` (or `top_k`) must be "
            "finite: K ids are stored per step."
        },
    )
    soft_density: str = field(
        default="exact",
        metadata={
            "help": "Score of the soft steps in the loss: 'exact' (the Gaussian, Concrete, Dirichlet or "
            "logistic-normal density of the fed action), 'soft_grpo' (gumbel only: SofT-GRPO's clamped "
            "per-coordinate Gumbel score from its public code, not a log-density; a sampled think-end is then "
            "scored as a token, as there) or 'gumbel_max' (gumbel only: log p of the step's Gumbel-max id, plus "
            "soft_density_residual times the exact density's residual; lower variance, biased when the mixture "
            "weights and not only the chosen ids move the reward).",
            "choices": list(SOFT_DENSITIES),
        },
    )
    soft_density_residual: float = field(
        default=0.0,
        metadata={
            "help": "soft_density='gumbel_max' only: weight lambda in [0, 1] of the exact density's residual, "
            "log p(k) + lambda * (log q(y) - log p(k)) (0: the Gumbel-max id alone; 1: the exact Concrete density)."
        },
    )
    detach_input_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Feed every input embedding of the loss's forward (prompt, concept tokens, answer) detached "
            "from the input-embedding module, as SofT-GRPO's verl actor does: the embedding table (and a LoRA on "
            "it) gets no gradient through the inputs; tied to the LM head it still trains through the logits. "
            "Soft rollouts only."
        },
    )
    advantage_estimator: str = field(
        default="grpo",
        metadata={
            "help": "Advantages from a prompt's num_generations rewards: 'grpo' (TRL's GRPOTrainer: reward minus "
            "the group mean, scaled as scale_rewards says) or 'rloo' (TRL's RLOOTrainer: reward minus the mean of "
            "the group's other completions, the leave-one-out baseline; scale_rewards='none' leaves it unscaled "
            "as RLOOTrainer does by default, 'batch' normalises it over the batch as RLOOTrainer's "
            "normalize_advantages=True, 'group' divides it by the group's reward std).",
            "choices": list(ADVANTAGE_ESTIMATORS),
        },
    )
    recipe: str | None = field(
        default=None,
        metadata={"help": "The preset that built this config ('softgrpo', 'stht', 'stht-fuzzy'), or None."},
    )

    log_soft_grad_norms: bool = field(
        default=False,
        metadata={
            "help": "Log soft/grad_norm_thinking and soft/grad_norm_tokens: the gradient norms of the loss "
            "through the thinking-step scores and through the token log-probs (two extra backward passes per "
            "step; a diagnostic)."
        },
    )

    def __post_init__(self):
        if self.gradient_checkpointing is None and self.activation_checkpointing is None:
            self.activation_checkpointing = True  # TRL's default, without its deprecated spelling
        if isinstance(self.soft_thinking, SoftThinkingConfig):
            self.soft_thinking = self.soft_thinking.to_dict()
        if self.soft_rollout not in SOFT_ROLLOUTS:
            raise ValueError(
                f"SoftGRPOConfig.soft_rollout={self.soft_rollout!r} is invalid: soft_rollout must be one of "
                f"{SOFT_ROLLOUTS}."
            )
        if self.soft_density not in SOFT_DENSITIES:
            raise ValueError(
                f"SoftGRPOConfig.soft_density={self.soft_density!r} is invalid: soft_density must be one of "
                f"{SOFT_DENSITIES}."
            )
        if self.soft_density in ("soft_grpo", "gumbel_max") and self.soft_rollout != "gumbel":
            raise ValueError(
                f"SoftGRPOConfig.soft_density={self.soft_density!r} scores Gumbel soft steps: it needs "
                f"soft_rollout='gumbel', got soft_rollout={self.soft_rollout!r}. Use soft_density='exact'."
            )
        residual = self.soft_density_residual
        if isinstance(residual, bool) or not isinstance(residual, (int, float)) or not 0.0 <= residual <= 1.0:
            raise ValueError(
                f"SoftGRPOConfig.soft_density_residual={residual!r} is invalid: it must be a number in [0, 1]."
            )
        if residual and self.soft_density != "gumbel_max":
            raise ValueError(
                f"SoftGRPOConfig.soft_density_residual={residual} weighs the exact density's residual of "
                f"soft_density='gumbel_max', got soft_density={self.soft_density!r}. Set soft_density='gumbel_max' "
                "or soft_density_residual=0."
            )
        if self.advantage_estimator not in ADVANTAGE_ESTIMATORS:
            raise ValueError(
                f"SoftGRPOConfig.advantage_estimator={self.advantage_estimator!r} is invalid: it must be one of "
                f"{ADVANTAGE_ESTIMATORS}."
            )
        if self.advantage_estimator == "rloo" and self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                "SoftGRPOConfig.advantage_estimator='rloo' takes the leave-one-out baseline of the weighted sum "
                "of the rewards: it needs multi_objective_aggregation='sum_then_normalize', got "
                f"{self.multi_objective_aggregation!r}."
            )
        if self.recipe is not None and self.recipe not in RECIPES:
            raise ValueError(
                f"SoftGRPOConfig.recipe={self.recipe!r} is invalid: it names the preset that built the config, "
                f"one of {RECIPES}, or None."
            )
        check_reward_weights(self.reward_weights)
        self._check_rollout_numbers()
        if isinstance(self.soft_thinking, str):  # TRL would parse it too, but its JSONDecodeError names nothing
            try:
                SoftThinkingConfig.from_json(self.soft_thinking)
            except (TypeError, ValueError) as error:
                raise ValueError(f"SoftGRPOConfig.soft_thinking: {error}") from None
            self.soft_thinking = json.loads(self.soft_thinking)  # the fields as given
        super().__post_init__()
        if self.soft_thinking is not None and not isinstance(self.soft_thinking, dict):
            raise TypeError(
                "SoftGRPOConfig.soft_thinking must be a SoftThinkingConfig, a dict of its fields, a JSON "
                f"object string or None, got {type(self.soft_thinking).__name__}."
            )
        if self.soft_rollout != "hard":
            self.check_generation_engine()
            config = self.rollout_config()  # validates the decoder settings now, not at the first training step
            if is_full_vocabulary(config) and self.beta != 0.0:
                raise ValueError(
                    f"SoftGRPOConfig: beta={self.beta} with a full-vocabulary Gaussian mixture (soft_thinking "
                    "max_topk=None and top_k=None) is not supported: the exact per-step KL of a Gaussian step "
                    "needs the reference's whole distribution at every thinking position, O(batch x length x "
                    "vocabulary). Set beta=0.0, or a finite max_topk."
                )
        elif self.detach_input_embeddings:
            raise ValueError(
                "SoftGRPOConfig.detach_input_embeddings=True applies to soft rollouts; with soft_rollout='hard' "
                "the trainer is TRL's GRPOTrainer. Set detach_input_embeddings=False, or a soft rollout."
            )
        generate_every = self.steps_per_generation * self.num_iterations
        if self.soft_rollout in ON_POLICY_ROLLOUTS and self.gradient_accumulation_steps % generate_every:
            raise ValueError(
                f"SoftGRPOConfig: soft_rollout={self.soft_rollout!r} trains on-policy only, but num_iterations="
                f"{self.num_iterations} and steps_per_generation={self.steps_per_generation} with "
                f"gradient_accumulation_steps={self.gradient_accumulation_steps} reuse rollouts after an update. "
                "The importance ratio of a Gaussian step is exp((|h - mu_old|^2 - |h - mu_new|^2) / (2 s^2)) "
                "with s = sigma * rms(E) small: after one update most ratios leave the clip range, so those "
                "steps carry no gradient and the rest are unstable. Set num_iterations=1 and "
                "steps_per_generation=gradient_accumulation_steps (the defaults), or use "
                "soft_rollout='gumbel' / 'dirichlet' for multi-iteration training."
            )

    def _check_rollout_numbers(self) -> None:
        """Raise a `ValueError` naming a GRPO rollout setting that cannot work (TRL accepts them and fails later,
        e.g. `max_completion_length=0` as a `max_new_tokens` error of `generate`)."""
        checks = (
            ("max_completion_length", self.max_completion_length is None or (
                _is_int(self.max_completion_length) and self.max_completion_length >= 1), "None or an integer >= 1"),
            ("num_iterations", _is_int(self.num_iterations) and self.num_iterations >= 1, "an integer >= 1"),
            ("temperature", _is_number(self.temperature) and self.temperature > 0,
             "a number > 0 (the token log-probs are taken at logits / temperature)"),
            ("top_p", _is_number(self.top_p) and 0 < self.top_p <= 1, "in (0, 1]"),
            # transformers' set_seed seeds numpy too: "Seed must be between 0 and 2**32 - 1", naming no field
            ("seed", _is_int(self.seed) and 0 <= self.seed < 2**32, "an integer in [0, 2**32 - 1]"),
            ("data_seed", self.data_seed is None or (_is_int(self.data_seed) and 0 <= self.data_seed < 2**32),
             "None or an integer in [0, 2**32 - 1]"),
        )
        for name, fits, allowed in checks:
            if not fits:
                raise ValueError(
                    f"SoftGRPOConfig.{name}={getattr(self, name)!r} is invalid: {name} must be {allowed}."
                )

    def check_generation_engine(self) -> None:
        """Raise `ValueError` if a soft rollout is set to generate with vLLM (any `vllm_mode`) or transformers'
        continuous batching: soft rollouts run only through hf_softthink's decoder (`docs/vllm.md` designs
        the vLLM path). Called at construction and again by `SoftGRPOTrainer` (flags set afterwards)."""
        if self.soft_rollout == "hard":
            return
        for flag in ("use_vllm", "use_transformers_paged", "use_transformers_continuous_batching"):
            if getattr(self, flag, False):
                mode = f" (vllm_mode={self.vllm_mode!r})" if flag == "use_vllm" else ""
                raise ValueError(
                    f"SoftGRPOConfig.{flag}=True is not supported with "
                    f"soft_rollout={self.soft_rollout!r}{mode}: soft rollouts feed concept-token embeddings "
                    "back through hf_softthink's decoder inside `model.generate`, which vLLM and "
                    f"transformers' continuous-batching engine do not run (docs/vllm.md). Set {flag}=False, or "
                    "soft_rollout='hard' for plain GRPO."
                )

    def rollout_config(self) -> SoftThinkingConfig | None:
        """The decoder config of the rollouts (None for `soft_rollout="hard"`).

        `soft_thinking` with `noise` set from `soft_rollout` (and thinking temperature 1e-4 for "fuzzy").
        Raises `ValueError` if `soft_thinking.noise` names another kind of noise, or for settings a soft
        rollout cannot train with (no finite mixture size, no Gaussian noise).
        """
        if self.soft_rollout == "hard":
            return None
        values: dict[str, Any] = dict(self.soft_thinking or {})
        base = SoftThinkingConfig.from_dict(values)
        noise = _ROLLOUT_NOISE[self.soft_rollout]
        if base.noise not in ("none", noise):
            raise ValueError(
                f"SoftGRPOConfig.soft_thinking.noise={base.noise!r} contradicts "
                f"soft_rollout={self.soft_rollout!r}, which uses noise={noise!r}. Leave soft_thinking.noise "
                "at 'none' (soft_rollout sets it) or choose the soft_rollout of that noise."
            )
        values["noise"] = noise
        values["stop_decision"] = "sample"  # stopping is an action of the policy: sampled and scored
        if self.soft_rollout == "fuzzy":
            values["temperature"] = FUZZY_TEMPERATURE
        config = SoftThinkingConfig.from_dict(values)
        if is_full_vocabulary(config) and noise != "gaussian":
            raise ValueError(
                f"SoftGRPOConfig.soft_thinking needs a finite mixture size for soft_rollout={self.soft_rollout!r}: "
                "set max_topk (or top_k). With max_topk=None and top_k=None every step would store the weights "
                "of the whole vocabulary (O(B*T*V)); only Gaussian rollouts (gaussian, fuzzy), whose action is "
                "the embedding, train a full-vocabulary mixture."
            )
        if noise == "gaussian" and config.gaussian_sigma <= 0:
            raise ValueError(
                f"SoftGRPOConfig.soft_thinking.gaussian_sigma={config.gaussian_sigma} is invalid with "
                f"soft_rollout={self.soft_rollout!r}: the Gaussian action needs noise, so gaussian_sigma "
                "must be > 0."
            )
        return config

    # ------------------------------------------------------------------------------------------ presets
    @classmethod
    def softgrpo(cls, **overrides: Any) -> SoftGRPOConfig:
        r"""SofT-GRPO as published (Zheng et al., arXiv:2511.06411; its public code, `docs/soft_rl.md` §8).

        Every setting below was read from the reference code (the SGLang sampler, verl's `torch_functional.py`
        and `dp_actor.py`, the run script `SofT-GRPO-deepscaler-8k.sh`); `docs/soft_rl.md` has the table
        with file and line:

        * rollouts: `soft_rollout="gumbel"` over the top 5 ids after top-p 0.95 (top_k 5, min_p 0),
          renormalised, thinking temperature 1, Gumbel-Softmax tau 0.1, the Gumbel noise clamped to
          [-1.5, 3] at sampling (`gumbel_noise_clamp`); the answer sampled at temperature 1, top-p 0.95,
          top-k 5;
        * loss: `soft_density="soft_grpo"`, the reference's clamped Gumbel score of the stored perturbed
          log-weights, a sampled `</think>` scored as a token (its log-prob over the vocabulary at
          temperature 1) and an EOS chosen while thinking with the Gumbel score, as the reference does; every
          input embedding fed detached (`detach_input_embeddings=True`); `loss_type="bnpo"` (verl's
          token-mean per micro-batch), GRPO advantages scaled by the group std;
        * optimisation: `learning_rate=1e-6` constant, `weight_decay=0.01`, `max_grad_norm=1.0`, clip
          `epsilon=0.2`, `beta=0.001` (TRL's k3 on the scores, verl's `low_var_kl` without its [-10, 10]
          clamp), one iteration per batch, `num_generations=8`.

        The reference's batch (64 prompts x 8 completions, two optimizer steps of 32 prompts per batch),
        response length (8192) and model are hardware and task choices left to the caller: e.g.
        `per_device_train_batch_size=256 // num_processes`, `steps_per_generation=2`,
        `max_completion_length=8192`.

        `overrides` replace any field; `soft_thinking=` as a dict (or its JSON string) is merged into the
        preset's decoder settings (e.g. `{"max_thinking_tokens": 1024}`), as a `SoftThinkingConfig` it replaces
        them.

        Example:

        ```python
        >>> from hf_softthink.trainer import SoftGRPOConfig
        >>> args = SoftGRPOConfig.softgrpo(output_dir="out", use_cpu=True)
        >>> args.recipe, args.soft_density, args.rollout_config().gumbel_noise_clamp
        ('softgrpo', 'soft_grpo', (-1.5, 3.0))

        ```
        """
        soft = dict(
            max_topk=5, top_k=5, top_p=0.95, min_p=0.0, temperature=1.0, gumbel_tau=0.1,
            gumbel_noise_clamp=(-1.5, 3.0),
        )
        values: dict[str, Any] = dict(
            recipe="softgrpo", soft_rollout="gumbel", soft_density="soft_grpo", detach_input_embeddings=True,
            beta=0.001, learning_rate=1e-6, lr_scheduler_type="constant", weight_decay=0.01, max_grad_norm=1.0,
            epsilon=0.2, loss_type="bnpo", scale_rewards="group", num_iterations=1, num_generations=8,
            temperature=1.0, top_p=0.95, top_k=5,
        )
        return cls._from_preset(values, soft, overrides)

    @classmethod
    def stht(cls, fuzzy: bool = False, **overrides: Any) -> SoftGRPOConfig:
        r"""Soft Tokens, Hard Truths (Butt et al., arXiv:2509.19170), from its text (no public code).

        * rollouts: concept tokens over the **full vocabulary** (`max_topk=None`, no top-k / top-p / min-p) at
          thinking temperature 0.5 ("soft tokens"), or 1e-4 with `fuzzy=True` ("fuzzy tokens",
          `soft_rollout="fuzzy"`), plus Gaussian noise on the input embedding of scale
          `gaussian_sigma=0.33` times the embedding rms;
        * advantages: RLOO (`advantage_estimator="rloo"`, the leave-one-out baseline, unscaled:
          `scale_rewards="none"`, as TRL's RLOOTrainer by default); the loss sums each completion's token
          scores (`loss_type="dr_grpo"`: REINFORCE on the sequence's log-probability, up to the constant
          `max_completion_length` that the learning rate absorbs); on-policy (`num_iterations=1`).

        Where the text we worked from is silent, and what we chose (`docs/soft_rl.md` §9):

        * the rms is taken per coordinate over **every row** of the (effective) embedding matrix,
          $\sqrt{\mathrm{mean}(E^2)}$ (a per-row norm would make the noise $\sqrt d$ times larger than an
          embedding); `soft_thinking={"gaussian_rms_token_ids": [...]}` takes it over the rows the model
          uses instead (the rows the grid's chain_sum task uses have twice the all-rows rms on the grid's
          byte-level model, 0.85 of it on SmolLM2: `docs/soft_rl.md` §9);
        * no KL term (`beta=0.0`); answer tokens sampled at temperature 1; TRL's defaults for the learning
          rate and batch.

        `overrides` replace any field (`soft_thinking=` as for `softgrpo`). Full-vocabulary Gaussian steps are
        scored from the policy's whole distribution at each thinking position (O(thinking steps x vocabulary)
        memory in the loss); `beta > 0` is refused with them.

        Example:

        ```python
        >>> from hf_softthink.trainer import SoftGRPOConfig
        >>> args = SoftGRPOConfig.stht(fuzzy=True, output_dir="out", use_cpu=True)
        >>> args.recipe, args.soft_rollout, args.advantage_estimator, args.rollout_config().temperature
        ('stht-fuzzy', 'fuzzy', 'rloo', 0.0001)

        ```
        """
        soft = dict(max_topk=None, top_k=None, top_p=1.0, min_p=0.0, temperature=0.5, gaussian_sigma=0.33)
        values: dict[str, Any] = dict(
            recipe="stht-fuzzy" if fuzzy else "stht", soft_rollout="fuzzy" if fuzzy else "gaussian",
            advantage_estimator="rloo", scale_rewards="none", loss_type="dr_grpo", beta=0.0, num_iterations=1,
            temperature=1.0,
        )
        return cls._from_preset(values, soft, overrides)

    @classmethod
    def _from_preset(cls, values: dict[str, Any], soft: dict[str, Any], overrides: dict[str, Any]) -> SoftGRPOConfig:
        overrides = dict(overrides)
        user_soft = overrides.pop("soft_thinking", None)
        if isinstance(user_soft, str):  # a JSON object of fields, merged as the dict it holds
            SoftThinkingConfig.from_json(user_soft)  # a ValueError naming bad JSON or a bad field
            user_soft = json.loads(user_soft)
        if isinstance(user_soft, SoftThinkingConfig):
            soft = user_soft.to_dict()
        elif isinstance(user_soft, dict):
            soft = {**soft, **user_soft}
        elif user_soft is not None:
            raise TypeError(
                "soft_thinking= of a SoftGRPOConfig preset must be a dict of SoftThinkingConfig fields or its JSON "
                f"string (merged into the preset's), or a SoftThinkingConfig (replacing them), got "
                f"{type(user_soft).__name__}."
            )
        return cls(**{**values, **overrides, "soft_thinking": soft})

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        if isinstance(values.get("soft_thinking"), SoftThinkingConfig):  # set after construction
            values["soft_thinking"] = values["soft_thinking"].to_dict()
        return values
