"""Decoding modes of an evaluation: :class:`DecodingMode` and the named presets (:data:`PRESETS`).

The presets and the reasons for their settings are in the docstring of :mod:`hf_softthink.evaluation`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..config import SoftThinkingConfig
from ..evaluation_metrics import DEFAULT_THINK_END

#: the named decoding-mode presets, in table order
PRESETS = ("hard-greedy", "hard-sample", "soft-greedy", "soft-sample", "fuzzy-greedy", "fuzzy-sample")
#: sampling settings of the ``*-sample`` presets: the soft-thinking defaults (temperature, top-k, top-p)
SAMPLE_TEMPERATURE, SAMPLE_TOP_K, SAMPLE_TOP_P = 0.6, 30, 0.95
#: thinking temperature of fuzzy tokens (arXiv:2509.19170)
FUZZY_TEMPERATURE = 1e-4
#: what each preset does, one line each (``hf-softthink eval --help``)
PRESET_DESCRIPTIONS = {
    "hard-greedy": "ordinary tokens throughout, greedy (decoded once per problem)",
    "hard-sample": f"ordinary tokens throughout, sampled (T {SAMPLE_TEMPERATURE}, top-k {SAMPLE_TOP_K}, "
    f"top-p {SAMPLE_TOP_P})",
    "soft-greedy": "concept tokens while thinking (SoftThinkingConfig defaults: top-10 mixtures, no noise), "
    "then a greedy answer (decoded once per problem)",
    "soft-sample": "concept tokens plus Gaussian noise on the mixed embedding (sigma 0.33 of the embedding "
    "rms, arXiv:2509.19170) while thinking, then a sampled answer",
    "fuzzy-greedy": f"fuzzy tokens: concept tokens at thinking temperature {FUZZY_TEMPERATURE} (almost the "
    "top token) plus that Gaussian noise, then a greedy answer",
    "fuzzy-sample": "fuzzy tokens while thinking, then a sampled answer",
}


@dataclass(frozen=True)
class DecodingMode:
    """One way of decoding: hard or soft thinking, greedy or sampled answers.

    Args:
        name: the label in tables, plots and ``results.json``.
        soft_thinking: the soft-thinking config of the thinking phase, or ``None`` for ordinary ("hard")
            decoding.
        do_sample: sample the answer-phase tokens (and, for hard modes, the thinking tokens too);
            ``False``: greedy.
        temperature / top_k / top_p: the sampling settings (only with ``do_sample=True``; ``None`` leaves
            the model's generation config). ``top_k=0`` switches top-k off.
        forced_end_text: hard modes: the text the thinking budget forces instead of the think-end marker alone
            (the marker, then an answer prefix such as ``"</think>\nThe answer is \\boxed{"``;
            :class:`~hf_softthink.processors.HardThinkingBudgetProcessor`). ``None``: the marker. A soft mode's
            forced text belongs to its ``SoftThinkingConfig``.
    """

    name: str
    soft_thinking: SoftThinkingConfig | None = None
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    forced_end_text: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or "," in self.name:
            raise ValueError(
                f"DecodingMode.name must be a non-empty string without commas, got {self.name!r}"
            )
        if self.soft_thinking is not None and not isinstance(self.soft_thinking, SoftThinkingConfig):
            raise TypeError(
                "DecodingMode.soft_thinking must be a SoftThinkingConfig or None, "
                f"got {type(self.soft_thinking).__name__}"
            )
        if not self.do_sample and any(v is not None for v in (self.temperature, self.top_k, self.top_p)):
            raise ValueError(
                f"DecodingMode {self.name!r}: temperature/top_k/top_p only apply to sampling; "
                "set do_sample=True or leave them None"
            )
        if self.forced_end_text is not None and (self.soft_thinking is not None or not self.forced_end_text):
            raise ValueError(
                f"DecodingMode {self.name!r}: forced_end_text is the text a hard mode's thinking budget forces; "
                + ("it cannot be empty" if self.soft_thinking is None else
                   "a soft mode's forced text is set in its SoftThinkingConfig")
            )
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"DecodingMode {self.name!r}: temperature must be > 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"DecodingMode {self.name!r}: top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0
        ):
            raise ValueError(f"DecodingMode {self.name!r}: top_k must be an int >= 0, got {self.top_k!r}")

    @property
    def kind(self) -> str:
        """``"hard"`` (ordinary decoding) or ``"soft"`` (concept tokens while thinking)."""
        return "hard" if self.soft_thinking is None else "soft"

    @property
    def deterministic(self) -> bool:
        """Greedy answers and no noise: every sample would be the same, so one is decoded per problem."""
        return not self.do_sample and (self.soft_thinking is None or self.soft_thinking.noise == "none")

    def generate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``model.generate`` for this mode (besides inputs and lengths)."""
        kwargs: dict[str, Any] = {"do_sample": self.do_sample}
        if self.do_sample:
            for key in ("temperature", "top_k", "top_p"):
                if getattr(self, key) is not None:
                    kwargs[key] = getattr(self, key)
        if self.soft_thinking is not None:
            kwargs["soft_thinking"] = self.soft_thinking
        return kwargs

    def with_thinking_budget(self, max_thinking_tokens: int | None) -> DecodingMode:
        """This mode with the soft config's thinking budget set, unless the config has its own."""
        if (
            self.soft_thinking is None
            or max_thinking_tokens is None
            or self.soft_thinking.max_thinking_tokens is not None
        ):
            return self
        return dataclasses.replace(
            self,
            soft_thinking=dataclasses.replace(self.soft_thinking, max_thinking_tokens=max_thinking_tokens),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (``results.json``, the resume fingerprint)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "soft_thinking": None if self.soft_thinking is None else self.soft_thinking.to_dict(),
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            # only when set, so the fingerprints of the runs that never set it stay as they were
            **({"forced_end_text": self.forced_end_text} if self.forced_end_text is not None else {}),
        }


def _unknown_mode_error(name: str) -> ValueError:
    close = difflib.get_close_matches(name, PRESETS, n=2)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Unknown decoding mode {name!r}.{hint} The presets are {', '.join(PRESETS)}; for any other "
        "setting pass a DecodingMode(...) or a SoftThinkingConfig(...) to evaluate_modes."
    )


def preset_mode(
    name: str,
    *,
    max_thinking_tokens: int | None = None,
    think_end: str = DEFAULT_THINK_END,
) -> DecodingMode:
    """The :class:`DecodingMode` of a preset name (module docstring table).

    ``max_thinking_tokens`` and ``think_end`` go into the soft presets' ``SoftThinkingConfig``.
    """
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise _unknown_mode_error(str(name))
    thinking, answer = key.split("-")
    sampling = (
        {"do_sample": True, "temperature": SAMPLE_TEMPERATURE, "top_k": SAMPLE_TOP_K, "top_p": SAMPLE_TOP_P}
        if answer == "sample"
        else {"do_sample": False}
    )
    common = {"think_end": think_end, "max_thinking_tokens": max_thinking_tokens}
    if thinking == "hard":
        soft = None
    elif thinking == "soft":
        soft = SoftThinkingConfig(noise="gaussian" if answer == "sample" else "none", **common)
    else:  # fuzzy
        soft = SoftThinkingConfig(temperature=FUZZY_TEMPERATURE, noise="gaussian", **common)
    return DecodingMode(key, soft_thinking=soft, **sampling)


def _config_label(config: SoftThinkingConfig) -> str:
    default = SoftThinkingConfig().to_dict()
    diff = [f"{k}={v}" for k, v in config.to_dict().items() if default[k] != v and k != "max_thinking_tokens"]
    return "soft" + (f"[{';'.join(diff)}]" if diff else "")


def resolve_modes(
    modes: str | DecodingMode | SoftThinkingConfig | Iterable[str | DecodingMode | SoftThinkingConfig],
    *,
    max_thinking_tokens: int | None = None,
    think_end: str = DEFAULT_THINK_END,
) -> list[DecodingMode]:
    """Turn preset names (a list, or one comma-separated string), :class:`DecodingMode` objects and
    ``SoftThinkingConfig`` objects (a greedy-answer soft mode named after its non-default fields) into
    decoding modes, with the thinking budget filled into soft configs that set none.

    Raises:
        ValueError: an unknown preset name (the message lists the presets), no modes, a repeated name.
    """
    if isinstance(modes, (str, DecodingMode, SoftThinkingConfig)):
        modes = [modes]
    specs: list[Any] = []
    for spec in modes:
        if isinstance(spec, str):
            specs.extend(part for part in (p.strip() for p in spec.split(",")) if part)
        else:
            specs.append(spec)
    if not specs:
        raise ValueError(f"No decoding modes given; choose from {', '.join(PRESETS)}")
    out: list[DecodingMode] = []
    for spec in specs:
        if isinstance(spec, str):
            mode = preset_mode(spec, max_thinking_tokens=max_thinking_tokens, think_end=think_end)
        elif isinstance(spec, SoftThinkingConfig):
            mode = DecodingMode(_config_label(spec), soft_thinking=spec).with_thinking_budget(
                max_thinking_tokens
            )
        elif isinstance(spec, DecodingMode):
            mode = spec.with_thinking_budget(max_thinking_tokens)
        else:
            raise TypeError(
                "A decoding mode must be a preset name, a DecodingMode or a SoftThinkingConfig, "
                f"got {type(spec).__name__}"
            )
        out.append(mode)
    names = [m.name for m in out]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"Decoding mode name(s) {repeated} given more than once; give each mode once")
    return out
