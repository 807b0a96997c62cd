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
SOFT_ROLLOUTS = ("hard", "gaussian", "fuzzy", "gumbel", "dirichlet")
#: the soft-step densities of `SoftGRPOConfig.soft_density`
SOFT_DENSITIES = ("exact", "soft_grpo_approx")
#: rollouts whose Gaussian importance ratios leave the clip range after one update: trained on-policy only
ON_POLICY_ROLLOUTS = ("gaussian", "fuzzy")
#: the thinking temperature of "fuzzy" rollouts ("Soft Tokens, Hard Truths", arXiv:2509.19170)
FUZZY_TEMPERATURE = 1e-4

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# the decoder noise each soft rollout kind needs
_ROLLOUT_NOISE = {"gaussian": "gaussian", "fuzzy": "gaussian", "gumbel": "gumbel", "dirichlet": "dirichlet"}


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
      `alpha = soft_thinking.dirichlet_alpha`.

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
            "help": "Log-density of the soft steps: 'exact' (Gaussian, Concrete or Dirichlet density of the "
            "fed action) or 'soft_grpo_approx' (gumbel only: SofT-GRPO's clamped per-coordinate Gumbel "
            "score, a compatibility option that is not a true log-density).",
            "choices": list(SOFT_DENSITIES),
        },
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
        if self.soft_density == "soft_grpo_approx" and self.soft_rollout != "gumbel":
            raise ValueError(
                f"SoftGRPOConfig.soft_density='soft_grpo_approx' is SofT-GRPO's Gumbel score: it needs "
                f"soft_rollout='gumbel', got soft_rollout={self.soft_rollout!r}. Use soft_density='exact'."
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
            self.rollout_config()  # validates the decoder settings now, not at the first training step
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
        if config.max_topk is None and not config.top_k:
            raise ValueError(
                "SoftGRPOConfig.soft_thinking needs a finite mixture size for training: set max_topk (or "
                "top_k). With max_topk=None and top_k=None every step would store the whole vocabulary "
                "(O(B*T*V))."
            )
        if noise == "gaussian" and config.gaussian_sigma <= 0:
            raise ValueError(
                f"SoftGRPOConfig.soft_thinking.gaussian_sigma={config.gaussian_sigma} is invalid with "
                f"soft_rollout={self.soft_rollout!r}: the Gaussian action needs noise, so gaussian_sigma "
                "must be > 0."
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        if isinstance(values.get("soft_thinking"), SoftThinkingConfig):  # set after construction
            values["soft_thinking"] = values["soft_thinking"].to_dict()
        return values
