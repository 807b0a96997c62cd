"""`SoftThinkingConfig`: every knob of soft-thinking decoding, validated, JSON round-trip.

The config lives in `model.generation_config.soft_thinking` (as a plain dict), so `save_pretrained`,
`push_to_hub` and `from_pretrained` carry it with the model or adapter.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

NOISE_KINDS = ("none", "dirichlet", "gumbel", "gaussian", "logistic_normal")
MODES = ("soft", "switch")
STOP_DECISIONS = ("argmax", "sample")

#: name of the attribute of `GenerationConfig` that holds the soft-thinking config
GENERATION_CONFIG_ATTRIBUTE = "soft_thinking"
#: the thinking-phase arithmetic (entropy, filters, noise, mixture weights) runs in float32 whatever the model's
#: dtype: a scale or divisor must be a positive *normal* float32, or it rounds to 0 / inf and gives NaN weights
FLOAT32 = torch.finfo(torch.float32)
FLOAT32_RANGE = f"in [{FLOAT32.tiny:.3g}, {FLOAT32.max:.3g}] (a normal float32: the thinking arithmetic runs in float32)"
#: SwiReasoning's termination text (its code's `termination_words`), forced when a row keeps switching past twice
#: the switch limit
SWIREASONING_FINAL_ANSWER = "</think>\n\nThe final answer is"
#: the token SwiReasoning's code blends into the first step (`convert_tokens_to_ids("\\n")`): the vocabulary token
#: spelled backslash + n (Qwen3 and Llama 3 have one), not a line break
SWIREASONING_FIRST_STEP_MARKER = "\\n"
#: how an error names a `soft_thinking` entry saved in a generation config whose file is not known
SAVED_SOURCE = "model.generation_config.soft_thinking"


_JSON_KINDS = {
    type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"
}


def generation_config_file(name_or_path: Any) -> Path | None:
    """The `generation_config.json` a model was loaded from: in its local folder, or for a Hub id in the local
    Hub cache (no network); None when there is none."""
    if not name_or_path or not isinstance(name_or_path, (str, Path)):
        return None
    folder = Path(name_or_path)
    if folder.is_dir():
        file = folder / "generation_config.json"
        return file if file.is_file() else None
    if str(name_or_path).count("/") != 1:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(str(name_or_path), "generation_config.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(cached) if isinstance(cached, str) else None


def _check(condition: bool, name: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ValueError(f"SoftThinkingConfig.{name}={value!r} is invalid: {name} must be {allowed}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_marker(value: Any) -> bool:
    """A marker field's value (`think_end`, `think_start`, `first_step_marker`): None, a non-empty string or an id."""
    return value is None or (isinstance(value, str) and value != "") or (_is_int(value) and value >= 0)


def _is_float32_scale(value: Any) -> bool:
    """A positive number that float32 represents as a normal number (no underflow to 0, no overflow to inf)."""
    return _is_number(value) and FLOAT32.tiny <= value <= FLOAT32.max


@dataclass
class SoftThinkingConfig:
    r"""Settings of soft-thinking decoding (Soft Thinking, arXiv:2505.15778, and its variants).

    While a row is *thinking*, each decoding step feeds back a **concept token**: the mixture
    $e = \sum_j w_j\,E_{id_j}$ of the input embeddings of the `max_topk` most probable tokens, weighted by
    their renormalised probabilities after the thinking-phase filters (temperature, top-k, top-p, min-p).
    When the row emits `think_end` (or Cold Stop / the thinking budget forces it) it switches to ordinary
    decoding with the caller's own generation settings.

    Defaults follow the Soft Thinking release. Every value is validated on construction; a bad value
    raises `ValueError` naming the field and its allowed range.

    Example:

    ```python
    >>> from hf_softthink import SoftThinkingConfig
    >>> cfg = SoftThinkingConfig(max_topk=5, noise="gumbel", gumbel_tau=0.5)
    >>> SoftThinkingConfig.from_json(cfg.to_json()) == cfg
    True

    ```
    """

    max_topk: int | None = field(
        default=10,
        metadata={
            "help": "Number of most probable tokens mixed into a concept token (None: every token left by the "
            "filters; a full-vocabulary mixture is one (B, V) @ (V, d) product and the outputs record its 32 "
            "largest weights)."
        },
    )
    temperature: float = field(default=0.6, metadata={"help": "Thinking-phase temperature T (> 0)."})
    top_k: int | None = field(
        default=30, metadata={"help": "Thinking-phase top-k filter (None or 0: off; the full vocabulary is sorted)."}
    )
    top_p: float = field(default=0.95, metadata={"help": "Thinking-phase nucleus filter, in (0, 1] (1: off)."})
    min_p: float = field(
        default=0.001,
        metadata={"help": "Thinking-phase min-p filter, in [0, 1): drops tokens with p < min_p * p_max (0: off)."},
    )
    noise: Literal["none", "dirichlet", "gumbel", "gaussian", "logistic_normal"] = field(
        default="none",
        metadata={
            "help": "Randomisation of the concept token: 'dirichlet' (w ~ Dir(alpha w)), 'gumbel' "
            "(w = softmax((log w + g) / tau)), 'gaussian' (e + sigma * rms(E) * eps), 'logistic_normal' "
            "(w = softmax(log w + s * eps): Gaussian noise on the mixture's log-weights), or 'none'."
        },
    )
    dirichlet_alpha: float = field(default=1.0, metadata={"help": "Dirichlet concentration scale alpha (> 0)."})
    gumbel_tau: float = field(default=0.5, metadata={"help": "Gumbel-Softmax temperature tau (> 0)."})
    gumbel_noise_clamp: tuple[float, float] | None = field(
        default=None,
        metadata={
            "help": "Clamp of the Gumbel noise g at sampling, (low, high) with low < high (None: off). SofT-GRPO "
            "clamps it to (-1.5, 3). With a clamp the Gumbel-max id is no longer an exact sample of w and the "
            "Concrete density is not the density of the fed weights."
        },
    )
    logistic_normal_sigma: float = field(
        default=3.0,
        metadata={
            "help": "Standard deviation s of the Gaussian noise on the log-weights of noise='logistic_normal' (> 0). "
            "3 is the value of 0.25, 1, 3 and 10 whose training gradient had a signal on the grid "
            "(docs/soft_rl.md §10)."
        },
    )
    gaussian_sigma: float = field(
        default=0.33, metadata={"help": "Gaussian embedding noise scale, as a fraction of the embedding rms (>= 0)."}
    )
    gaussian_rms_token_ids: list[int] | None = field(
        default=None,
        metadata={
            "help": "Token ids whose embedding rows the rms of gaussian_sigma is taken over (None: every row of the "
            "vocabulary). A model with many rows it never trained (a byte-level vocabulary used on digits) has "
            "an all-rows rms far below that of the rows it uses."
        },
    )
    cold_stop_entropy: float | None = field(
        default=None,
        metadata={"help": "Cold Stop entropy threshold in nats (None: Cold Stop off)."},
    )
    cold_stop_patience: int = field(
        default=256,
        metadata={"help": "Consecutive low-entropy thinking steps after which Cold Stop forces think_end (>= 1)."},
    )
    think_end: str | int | None = field(
        default="</think>",
        metadata={
            "help": "End of the thinking phase: a string (resolved with the tokenizer), a token id, or None "
            "(no answer phase: every generated step is a soft step)."
        },
    )
    max_thinking_tokens: int | None = field(
        default=None,
        metadata={"help": "Thinking budget: think_end is forced after this many thinking steps (None: no budget)."},
    )
    mode: Literal["soft", "switch"] = field(
        default="soft",
        metadata={"help": "'soft': every thinking step is soft; 'switch': SwiReasoning entropy-driven soft/explicit switching."},
    )
    stop_decision: Literal["argmax", "sample"] = field(
        default="argmax",
        metadata={
            "help": "How a thinking step decides to stop (emit EOS or the first token of think_end): 'argmax' "
            "(the recorded top-1 token is a stop token) or 'sample' (draw x ~ w over the mixed ids; a stop token "
            "ends thinking, otherwise the mixture continues without the stop ids). SoftGRPOTrainer's rollouts use "
            "'sample', so the decision is an action of the policy with a probability. Applies to mode='soft' (switch "
            "mode draws every thinking token with the caller's own sampling settings)."
        },
    )
    switch_window: int = field(
        default=512, metadata={"help": "Switch mode: minimum explicit steps before switching back to soft (>= 1)."}
    )
    max_switches: int | None = field(
        default=None,
        metadata={
            "help": "Switch mode: after this many soft -> explicit switches, think_end is forced on the following "
            "steps, then the answer (None: unlimited). Explicit -> soft switches do not count."
        },
    )
    switch_beta: float = field(
        default=1.0,
        metadata={
            "help": "Switch mode: beta_0 of the marker blend fed on a soft -> explicit switch, "
            "beta_t * concept + (1 - beta_t) * E[think_end] with beta_t = beta_0 + (1 - beta_0) * t / max_new_tokens "
            "(SwiReasoning: 0.7). In [0, 1]; 1: no blend, the step feeds its token."
        },
    )
    switch_alpha: float = field(
        default=1.0,
        metadata={
            "help": "Switch mode: alpha_0 of the marker blend fed on an explicit -> soft switch, "
            "alpha_t * concept + (1 - alpha_t) * E[think_start], same schedule as switch_beta (SwiReasoning tunes it "
            "per model, 0.3-1.0). In [0, 1]; 1: no blend."
        },
    )
    think_start: str | int | None = field(
        default="<think>",
        metadata={
            "help": "Switch mode: the thinking-start marker blended in by switch_alpha < 1: a string that is one "
            "token of the tokenizer, or a token id (unused when switch_alpha is 1)."
        },
    )
    final_answer: str | None = field(
        default=None,
        metadata={
            "help": "Switch mode: text forced when a row whose thinking the switch limit ended keeps switching "
            "(entropy still tracked in the answer) past 2 * max_switches; the answer is then cut "
            "final_answer_max_tokens tokens later (SwiReasoning: '\\n\\nThe final answer is'). None: off."
        },
    )
    final_answer_max_tokens: int = field(
        default=32,
        metadata={
            "help": "Switch mode: the row ends this many steps after the switch that starts final-answer forcing, "
            "that switch step included (>= 1; SwiReasoning: 32, i.e. the switch step and 31 more tokens, the "
            "final-answer text among them)."
        },
    )
    forced_end_text: str | None = field(
        default=None,
        metadata={
            "help": "Text the decoder writes whenever it ends a row's thinking itself (thinking budget, Cold Stop, "
            "switch limit) instead of the think_end marker alone; it must contain think_end, e.g. "
            "'\\n\\n</think>\\n\\n' or '</think>\\nThe answer is \\\\boxed{' (an answer prefix). Its tokens "
            "are forced one per step (forced step events: out of the policy loss); thinking ends where the marker "
            "is written. A think_end the model writes itself is not followed by it. None: the marker alone."
        },
    )
    first_step_blend: float = field(
        default=1.0,
        metadata={
            "help": "Switch mode: the first generated step, when soft, feeds first_step_blend * concept + "
            "(1 - first_step_blend) * E[first_step_marker] (SwiReasoning: 0.9). In [0, 1]; 1: no blend."
        },
    )
    first_step_marker: str | int | None = field(
        default=None,
        metadata={
            "help": "Switch mode: the one-token marker blended into the first step by first_step_blend < 1: a "
            "vocabulary token (looked up as spelled, then encoded) or a token id (SwiReasoning: '\\\\n', the "
            "token spelled backslash + n)."
        },
    )
    explicit_math_tokens: bool = field(
        default=False,
        metadata={
            "help": "Switch mode: a soft step whose drawn token is a math symbol, a digit or a single letter feeds "
            "that token instead of the concept token (SwiReasoning's rule; the ids are every token of "
            "tokenizer.encode(symbol) for each symbol of processors.SWIREASONING_MATH_SYMBOLS)."
        },
    )
    switch_after_think_end: bool = field(
        default=False,
        metadata={
            "help": "Switch mode: entropy switching goes on after think_end, as SwiReasoning's code does: a row "
            "that drew think_end never switches back to soft but still counts and blends soft -> explicit "
            "switches; after a forced think_end a row keeps switching (soft steps in its answer) and every switch "
            "up to 2 * max_switches forces the end text again; a forced piece on a soft step still feeds the "
            "concept token. False: a row's switching ends with its thinking (see docs/design.md section 5)."
        },
    )

    def __post_init__(self) -> None:
        _check(self.max_topk is None or (_is_int(self.max_topk) and self.max_topk >= 1), "max_topk", self.max_topk,
               "None or an integer >= 1")
        _check(_is_float32_scale(self.temperature), "temperature", self.temperature,
               f"{FLOAT32_RANGE}; a tiny value such as 1e-4 already gives near-greedy mixtures")
        _check(self.top_k is None or (_is_int(self.top_k) and self.top_k >= 0), "top_k", self.top_k,
               "None, 0 (off) or an integer >= 1")
        _check(_is_number(self.top_p) and 0 < self.top_p <= 1, "top_p", self.top_p, "in (0, 1]")
        _check(_is_number(self.min_p) and 0 <= self.min_p < 1, "min_p", self.min_p, "in [0, 1)")
        _check(self.noise in NOISE_KINDS, "noise", self.noise, f"one of {NOISE_KINDS}")
        _check(_is_float32_scale(self.dirichlet_alpha), "dirichlet_alpha", self.dirichlet_alpha, FLOAT32_RANGE)
        _check(_is_float32_scale(self.gumbel_tau), "gumbel_tau", self.gumbel_tau, FLOAT32_RANGE)
        if isinstance(self.gumbel_noise_clamp, list):  # JSON has no tuples
            self.gumbel_noise_clamp = tuple(self.gumbel_noise_clamp)
        _check(self.gumbel_noise_clamp is None or (
            isinstance(self.gumbel_noise_clamp, tuple) and len(self.gumbel_noise_clamp) == 2
            and all(_is_number(v) for v in self.gumbel_noise_clamp)
            and self.gumbel_noise_clamp[0] < self.gumbel_noise_clamp[1]),
            "gumbel_noise_clamp", self.gumbel_noise_clamp, "None or a pair (low, high) of finite numbers, low < high")
        _check(_is_float32_scale(self.logistic_normal_sigma), "logistic_normal_sigma", self.logistic_normal_sigma,
               FLOAT32_RANGE)
        if isinstance(self.gaussian_rms_token_ids, tuple):
            self.gaussian_rms_token_ids = list(self.gaussian_rms_token_ids)
        _check(self.gaussian_rms_token_ids is None or (
            isinstance(self.gaussian_rms_token_ids, list) and len(self.gaussian_rms_token_ids) > 0
            and all(_is_int(i) and i >= 0 for i in self.gaussian_rms_token_ids)),
            "gaussian_rms_token_ids", self.gaussian_rms_token_ids, "None or a non-empty list of token ids >= 0")
        _check(self.gaussian_sigma == 0 or _is_float32_scale(self.gaussian_sigma), "gaussian_sigma",
               self.gaussian_sigma, f"0 (off) or {FLOAT32_RANGE}")
        _check(self.cold_stop_entropy is None or _is_float32_scale(self.cold_stop_entropy),
               "cold_stop_entropy", self.cold_stop_entropy, f"None (off) or, in nats, {FLOAT32_RANGE}")
        _check(_is_int(self.cold_stop_patience) and self.cold_stop_patience >= 1, "cold_stop_patience",
               self.cold_stop_patience, "an integer >= 1")
        _check(_is_marker(self.think_end), "think_end", self.think_end, "a non-empty string, a token id >= 0, or None")
        _check(self.max_thinking_tokens is None or (_is_int(self.max_thinking_tokens) and self.max_thinking_tokens >= 0),
               "max_thinking_tokens", self.max_thinking_tokens, "None or an integer >= 0")
        _check(self.mode in MODES, "mode", self.mode, f"one of {MODES}")
        _check(self.stop_decision in STOP_DECISIONS, "stop_decision", self.stop_decision,
               f"one of {STOP_DECISIONS}")
        _check(_is_int(self.switch_window) and self.switch_window >= 1, "switch_window", self.switch_window,
               "an integer >= 1")
        _check(self.max_switches is None or (_is_int(self.max_switches) and self.max_switches >= 1), "max_switches",
               self.max_switches, "None or an integer >= 1")
        for name in ("switch_beta", "switch_alpha"):
            value = getattr(self, name)
            _check(_is_number(value) and 0 <= value <= 1, name, value, "in [0, 1] (1: no marker blend)")
        _check(_is_marker(self.think_start), "think_start", self.think_start,
               "a non-empty string, a token id >= 0, or None")
        if self.switch_alpha < 1 and self.think_start is None:
            raise ValueError(
                f"SoftThinkingConfig.think_start=None is invalid with switch_alpha={self.switch_alpha}: the blend "
                "alpha * concept + (1 - alpha) * E[think_start] needs the marker. Set think_start (e.g. '<think>' or "
                "a token id), or switch_alpha=1.0 (no blend)."
            )
        _check(self.final_answer is None or (isinstance(self.final_answer, str) and self.final_answer != ""),
               "final_answer", self.final_answer, "None (off) or a non-empty string")
        _check(_is_int(self.final_answer_max_tokens) and self.final_answer_max_tokens >= 1,
               "final_answer_max_tokens", self.final_answer_max_tokens, "an integer >= 1")
        _check(self.forced_end_text is None or (isinstance(self.forced_end_text, str) and self.forced_end_text != ""),
               "forced_end_text", self.forced_end_text, "None (the think_end marker alone) or a non-empty string")
        if self.forced_end_text is not None:
            if self.think_end is None:
                raise ValueError(
                    f"SoftThinkingConfig.forced_end_text={self.forced_end_text!r} needs think_end: it is written "
                    "when the decoder ends thinking, and must contain the think_end marker. Set think_end, or "
                    "forced_end_text=None."
                )
            if isinstance(self.think_end, str) and self.think_end not in self.forced_end_text:
                raise ValueError(
                    f"SoftThinkingConfig.forced_end_text={self.forced_end_text!r} does not contain think_end="
                    f"{self.think_end!r}: thinking ends where the marker is written, so the text must hold it "
                    f"(e.g. {self.think_end + chr(10)!r}). Add the marker, or set forced_end_text=None."
                )
        _check(_is_number(self.first_step_blend) and 0 <= self.first_step_blend <= 1, "first_step_blend",
               self.first_step_blend, "in [0, 1] (1: no blend)")
        _check(_is_marker(self.first_step_marker), "first_step_marker", self.first_step_marker,
               "a non-empty string, a token id >= 0, or None")
        if self.first_step_blend < 1 and self.first_step_marker is None:
            raise ValueError(
                f"SoftThinkingConfig.first_step_marker=None is invalid with first_step_blend={self.first_step_blend}: "
                "the blend w * concept + (1 - w) * E[first_step_marker] needs the marker. Set first_step_marker "
                "(SwiReasoning: '\\\\n'), or first_step_blend=1.0 (no blend)."
            )
        for name in ("explicit_math_tokens", "switch_after_think_end"):
            _check(isinstance(getattr(self, name), bool), name, getattr(self, name), "True or False")
        switch_only = [name for name, on in (("first_step_blend < 1", self.first_step_blend < 1),
                                             ("explicit_math_tokens", self.explicit_math_tokens),
                                             ("switch_after_think_end", self.switch_after_think_end)) if on]
        if switch_only and self.mode != "switch":
            raise ValueError(
                f"SoftThinkingConfig: {', '.join(switch_only)} belong(s) to SwiReasoning's switch mode, but mode="
                f"{self.mode!r}. Set mode='switch' (or use SoftThinkingConfig.swireasoning()), or turn them off."
            )
        if self.switch_after_think_end and self.think_end is None:
            raise ValueError(
                "SoftThinkingConfig.switch_after_think_end=True needs think_end: it changes what happens after the "
                "think-end marker. Set think_end, or switch_after_think_end=False."
            )
        if self.final_answer is not None and (self.mode != "switch" or self.max_switches is None):
            raise ValueError(
                f"SoftThinkingConfig.final_answer={self.final_answer!r} needs mode='switch' and max_switches: it is "
                "forced when a row keeps switching past 2 * max_switches. Set both, or final_answer=None."
            )
        needs_think_end = self.cold_stop_entropy is not None or self.max_thinking_tokens is not None or (
            self.mode == "switch" and (self.max_switches is not None or self.switch_beta < 1))
        if needs_think_end and self.think_end is None:
            raise ValueError(
                "SoftThinkingConfig.think_end=None is invalid with Cold Stop, a thinking budget, max_switches or "
                "switch_beta < 1: they force (or blend in) the think-end token, so set think_end to a string or "
                "token id."
            )

    @classmethod
    def swireasoning(cls, alpha: float = 1.0, max_switches: int | None = None, **overrides: Any) -> SoftThinkingConfig:
        r"""SwiReasoning as published (Shi et al., arXiv:2510.05069, and its public code: `generate_swir`, `run.py`).

        Entropy-driven switching (`mode="switch"`) with the reference's settings, so that a run reproduces its
        tokens from the first step (`tests/test_swireasoning_oracle.py` checks this against a port of its loop):

        * the switching entropy and the concept token are the full softmax at T = 1 over the whole vocabulary
          (`temperature=1`, no top-k / top-p / min-p, `max_topk=None`), `switch_window=512`;
        * the marker blends $\beta_0 = 0.7$ (to explicit, with `think_end`) and $\alpha_0$ = `alpha` (back to
          soft, with `think_start`; the reference tunes it per model and task, 0.3-1.0);
        * the first step feeds $0.9 \cdot$ concept $+ 0.1 \cdot E$[`"\\n"`] (`first_step_blend=0.9`; the reference
          looks up the vocabulary token spelled backslash + n, which Qwen3 and Llama 3 have: pass
          `first_step_marker="\n"` for a line break, or `first_step_blend=1.0` for none);
        * soft steps whose drawn token is a math symbol, a digit or a single letter feed that token
          (`explicit_math_tokens=True`);
        * switching goes on after the think-end marker (`switch_after_think_end=True`): a row that drew it never
          goes soft again but still counts and blends soft -> explicit switches;
        * with `max_switches`, the reference's switch-count control: every soft -> explicit switch from the
          `max_switches`-th to the `2 * max_switches`-th forces the end text on the following steps (the marker
          alone, as the reference writes it for Qwen models; its `run.py` writes `"\n\n</think>\n\n"` for other
          models: pass `forced_end_text="\n\n</think>\n\n"`), and a later one forces
          `"</think>\n\nThe final answer is"` and ends the row 32 steps after that switch (the switch step
          included).

        Explicit steps (and the token recorded at soft steps) follow the caller's own `generate` settings, so pass
        the reference's sampling too: `do_sample=True, temperature=0.6, top_p=0.95, top_k=20`. What still differs
        from the reference code is listed in `docs/design.md` (section 5). `overrides` replace any field.

        Example:

        ```python
        >>> from hf_softthink import SoftThinkingConfig
        >>> cfg = SoftThinkingConfig.swireasoning(alpha=0.5, max_switches=2)
        >>> cfg.mode, cfg.max_topk, cfg.temperature, cfg.switch_beta, cfg.switch_alpha, cfg.first_step_blend
        ('switch', None, 1.0, 0.7, 0.5, 0.9)
        >>> cfg.final_answer
        '</think>\n\nThe final answer is'

        ```
        """
        values: dict[str, Any] = dict(
            mode="switch", max_topk=None, temperature=1.0, top_k=None, top_p=1.0, min_p=0.0, noise="none",
            switch_window=512, switch_beta=0.7, switch_alpha=alpha, max_switches=max_switches,
            final_answer=SWIREASONING_FINAL_ANSWER if max_switches is not None else None, final_answer_max_tokens=32,
            first_step_blend=0.9, first_step_marker=SWIREASONING_FIRST_STEP_MARKER, explicit_math_tokens=True,
            switch_after_think_end=True,
        )
        values.update(overrides)
        return cls(**values)

    # ----------------------------------------------------------------------------------------- helpers
    @property
    def candidate_count(self) -> int | None:
        """Size of the candidate set the thinking filters work on (None: the whole vocabulary)."""
        return self.top_k or None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SoftThinkingConfig:
        if not isinstance(values, Mapping):
            raise TypeError(
                f"SoftThinkingConfig.from_dict needs a dict of its fields, e.g. {{'max_topk': 5}}, got "
                f"{type(values).__name__}: {values!r}."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown SoftThinkingConfig field(s) {unknown}; the fields are {sorted(known)}."
            )
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> SoftThinkingConfig:
        """The config from a JSON object of its fields (what `to_json` writes)."""
        try:
            values = json.loads(text)
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(
                f"SoftThinkingConfig.from_json needs a JSON object of its fields such as '{{\"max_topk\": 5}}': "
                f"{text!r:.80} is not valid JSON ({error})."
            ) from None
        if not isinstance(values, dict):
            raise ValueError(
                f"SoftThinkingConfig.from_json needs a JSON object of its fields such as '{{\"max_topk\": 5}}', "
                f"got {_JSON_KINDS.get(type(values), 'a JSON value')}: {text!r:.80}."
            )
        return cls.from_dict(values)

    @classmethod
    def coerce(cls, value: Any, saved: Any = None, source: str = SAVED_SOURCE) -> SoftThinkingConfig | None:
        """Turn a `soft_thinking=` argument into a config, or None for plain decoding.

        `True` means the config saved with the model (`saved`, a dict or config, read by `from_saved`; `source`
        names where it was saved) or the defaults; `False`/`None` mean plain decoding; a dict or a
        `SoftThinkingConfig` is used as given.
        """
        if value is None or value is False:
            return None
        if value is True:
            return cls.from_saved(saved, source) or cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise TypeError(
            f"soft_thinking must be True/False, a SoftThinkingConfig or a dict of its fields, "
            f"got {type(value).__name__}: {value!r}."
        )

    def save_to_generation_config(self, generation_config: Any) -> None:
        """Store this config in `generation_config.soft_thinking` (a JSON-safe dict).

        The generation config stops being marked `_from_model_config`: transformers drops custom attributes
        when it reloads a generation config with that mark, and this one now holds a user setting.
        """
        setattr(generation_config, GENERATION_CONFIG_ATTRIBUTE, self.to_dict())
        generation_config._from_model_config = False

    @classmethod
    def from_generation_config(cls, generation_config: Any, source: str = SAVED_SOURCE) -> SoftThinkingConfig | None:
        """The config saved in `generation_config.soft_thinking`, or None if there is none (`from_saved`)."""
        return cls.from_saved(getattr(generation_config, GENERATION_CONFIG_ATTRIBUTE, None), source)

    @classmethod
    def from_saved(cls, saved: Any, source: str = SAVED_SOURCE) -> SoftThinkingConfig | None:
        """The config of a saved `soft_thinking` entry (None for none: null, true or false), however it was
        written: a config, a dict of its fields or a JSON object string. Anything else, or a value a field does
        not allow, is a `ValueError` that names `source` (the file, or `model.generation_config.soft_thinking`)
        and the field."""
        if saved is None or saved is True or saved is False:
            return None
        if isinstance(saved, cls):
            return saved
        fix = "Correct the entry or delete it (generate then uses the defaults or its soft_thinking= argument)."
        if isinstance(saved, str):  # a JSON object string is read as the object, so a bad field is named below
            try:
                parsed = json.loads(saved)
            except json.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise ValueError(
                    f"{source}: the soft_thinking entry is the string {saved!r:.80}, not an object of "
                    f"SoftThinkingConfig fields such as {{\"max_topk\": 5}}. {fix}"
                )
            saved = parsed
        if not isinstance(saved, Mapping):
            kind = _JSON_KINDS.get(type(saved), type(saved).__name__)
            raise ValueError(
                f"{source}: the soft_thinking entry is {kind} ({saved!r:.80}), not an object of SoftThinkingConfig "
                f"fields such as {{\"max_topk\": 5}}. {fix}"
            )
        try:
            return cls.from_dict(dict(saved))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: the soft_thinking entry is invalid: {error} {fix}") from None
