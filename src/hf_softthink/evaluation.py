"""Evaluate decoding modes on a dataset: pass@k, maj@k, token cost and wall time.

Answers one question quickly and honestly: *does soft thinking help this model on this task, at pass@1
and at pass@k, and at what token cost?*

```python
>>> from hf_softthink.data import reasoning_gym_dataset
>>> from hf_softthink.evaluation import evaluate_modes
>>> ds = reasoning_gym_dataset("chain_sum", size=20, seed=10**6)               # doctest: +SKIP
>>> result = evaluate_modes(model, tokenizer, ds, ["hard-sample", "soft-sample", "fuzzy-sample"],
...                         samples=8, ks=[1, 8], output_dir="eval_out")        # doctest: +SKIP
>>> print(result.to_markdown())                                                 # doctest: +SKIP
```

Decoding modes (:class:`DecodingMode`; presets in :data:`PRESETS`, built by :func:`preset_mode`):

| preset         | thinking phase                                   | answer phase (hard modes: all tokens) |
|----------------|--------------------------------------------------|---------------------------------------|
| `hard-greedy`  | ordinary tokens                                  | greedy                                |
| `hard-sample`  | ordinary tokens                                  | sampled: T 0.6, top-k 30, top-p 0.95  |
| `soft-greedy`  | concept tokens, `SoftThinkingConfig()`, no noise | greedy                                |
| `soft-sample`  | concept tokens + Gaussian noise (sigma 0.33)     | sampled as hard-sample                |
| `fuzzy-greedy` | fuzzy tokens: thinking T 1e-4 + Gaussian noise   | greedy                                |
| `fuzzy-sample` | fuzzy tokens, as fuzzy-greedy                    | sampled as hard-sample                |

Choices, and why:

* *soft-sample* randomises the concept tokens with Gaussian noise on the input embedding at the default
  ``gaussian_sigma`` (0.33 of the embedding rms): the noise with which "Soft Tokens, Hard Truths"
  (arXiv:2509.19170) makes soft rollouts a stochastic policy, chosen over Dirichlet or Gumbel noise
  (2508.03440) so that soft-sample and fuzzy-sample differ only in the thinking temperature, as the
  paper's soft and fuzzy modes do. Any other soft variant is one :class:`DecodingMode` (or
  ``SoftThinkingConfig``) away, e.g. ``DecodingMode("gumbel", SoftThinkingConfig(noise="gumbel"))``.
* *fuzzy* tokens (2509.19170) are soft thinking at a tiny thinking temperature (1e-4: the mixture is
  almost the argmax token) plus that Gaussian noise. The noise is what makes them fuzzy, so
  *fuzzy-greedy* keeps it: only its answer phase is greedy, its thinking is stochastic.
* The sampled presets use the soft-thinking defaults (T=0.6, top-k 30, top-p 0.95) for the sampled
  tokens, so hard and soft modes sample from the same filtered distribution.
* Deterministic modes (greedy answer and no noise: hard-greedy, soft-greedy) are decoded **once** per
  problem and the result is counted ``samples`` times: pass@k of a deterministic decoder is its pass@1.

Every mode gets the same thinking budget (``max_thinking_tokens``): soft modes through
``SoftThinkingConfig.max_thinking_tokens`` (when the mode sets none), hard modes through
:class:`HardThinkingBudgetProcessor`. So a small model that never writes ``</think>`` by itself (SmolLM2
has no think tokens: the marker is matched on the decoded text) still reaches an answer phase, and hard
and soft modes are compared at the same budget. Thinking tokens are the generated tokens before the
first think-end marker; answer tokens those after it (up to end-of-sequence). A completion that never
closes its thinking counts all its tokens as thinking, and its answer is read from the whole text.

Scoring is the dataset's verifier (:func:`hf_softthink.data.grade_sample`): reasoning-gym's
``score_answer`` for reasoning-gym rows, math-verify against the ``answer`` column otherwise.

Resumable: each (mode, problem) result is appended to ``samples.jsonl`` in ``output_dir`` as soon as its
samples are done; a rerun with the same settings skips what is saved (an interrupted run loses nothing it
saved). Results are keyed by a fingerprint of the model name, the mode's settings, the number of samples,
the token limits, think-end, the seed and the prompt, so changing any of them recomputes.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from .config import SoftThinkingConfig
from .data import DEFAULT_THINKING_INSTRUCTION, apply_chat_template, build_prompt, grade_sample
from .evaluation_metrics import DEFAULT_THINK_END, majority_at_k, parse_ks, pass_at_k, summarize
from .processors import force_tokens

__all__ = [
    "DEFAULT_MAX_THINKING_TOKENS",
    "DecodingMode",
    "EvaluationResult",
    "HardThinkingBudgetProcessor",
    "PRESETS",
    "RECORDS_FILE",
    "evaluate_modes",
    "majority_at_k",
    "parse_ks",
    "pass_at_k",
    "preset_mode",
    "resolve_modes",
    "summarize",
]

#: the named decoding-mode presets, in table order
PRESETS = ("hard-greedy", "hard-sample", "soft-greedy", "soft-sample", "fuzzy-greedy", "fuzzy-sample")
#: sampling settings of the ``*-sample`` presets: the soft-thinking defaults (temperature, top-k, top-p)
SAMPLE_TEMPERATURE, SAMPLE_TOP_K, SAMPLE_TOP_P = 0.6, 30, 0.95
#: thinking temperature of fuzzy tokens (arXiv:2509.19170)
FUZZY_TEMPERATURE = 1e-4
#: default thinking budget of an evaluation: small models must reach an answer phase
DEFAULT_MAX_THINKING_TOKENS = 64

RECORDS_FILE = "samples.jsonl"
RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
PLOT_FILE = "pass_at_k.png"


# --------------------------------------------------------------------------------------------
# decoding modes
# --------------------------------------------------------------------------------------------


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
    """

    name: str
    soft_thinking: SoftThinkingConfig | None = None
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None

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


# --------------------------------------------------------------------------------------------
# the thinking budget of hard modes
# --------------------------------------------------------------------------------------------


class HardThinkingBudgetProcessor(LogitsProcessor):
    """Forces the think-end marker into ordinary (hard) decoding once the thinking budget is spent.

    The hard-decoding counterpart of ``SoftThinkingConfig.max_thinking_tokens``: a row that has generated
    ``max_thinking_tokens`` tokens without writing ``think_end`` (matched on the decoded text, so a
    multi-token marker such as SmolLM2's ``</``, ``think``, ``>`` counts) is made to spell the marker's
    tokens, one per step; then it decodes freely (the answer phase). Rows that wrote the marker themselves
    are left alone. State lives for one ``generate`` call: build one per call.
    """

    def __init__(self, tokenizer: Any, think_end: str, max_thinking_tokens: int, prompt_length: int):
        if (
            isinstance(max_thinking_tokens, bool)
            or not isinstance(max_thinking_tokens, int)
            or max_thinking_tokens < 0
        ):
            raise ValueError(f"max_thinking_tokens must be an integer >= 0, got {max_thinking_tokens!r}")
        if not think_end:
            raise ValueError("think_end must be a non-empty string for a thinking budget")
        self.tokenizer = tokenizer
        self.think_end = think_end
        self.marker_ids = list(tokenizer.encode(think_end, add_special_tokens=False))
        if not self.marker_ids:
            raise ValueError(f"think_end={think_end!r} encodes to no tokens with this tokenizer")
        self.max_thinking_tokens = max_thinking_tokens
        self.prompt_length = prompt_length
        self.done: list[bool] | None = None
        self.progress: list[int] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] - self.prompt_length < self.max_thinking_tokens:
            return scores
        batch = input_ids.shape[0]
        if self.done is None:
            self.done, self.progress = [False] * batch, [0] * batch
        rows = torch.zeros(batch, dtype=torch.bool, device=scores.device)
        next_ids = torch.zeros(batch, dtype=torch.long, device=scores.device)
        for row in range(batch):
            if self.done[row]:
                continue
            if self.progress[row] >= len(self.marker_ids) or self.think_end in self.tokenizer.decode(
                input_ids[row, self.prompt_length :]
            ):
                self.done[row] = True
                continue
            rows[row] = True
            next_ids[row] = self.marker_ids[self.progress[row]]
            self.progress[row] += 1
        if not bool(rows.any()):
            return scores
        return force_tokens(scores, rows, next_ids)


# --------------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------------


def _rows(dataset: Any) -> list[dict[str, Any]]:
    if dataset is None:
        raise ValueError("The dataset is empty (None): pass a datasets.Dataset or a list of rows")
    if hasattr(dataset, "to_list"):
        rows = dataset.to_list()
    elif isinstance(dataset, Sequence) and not isinstance(dataset, (str, bytes)):
        rows = [dict(r) for r in dataset]
    else:
        raise TypeError(
            f"dataset must be a datasets.Dataset or a list of dict rows, got {type(dataset).__name__}"
        )
    if not rows:
        raise ValueError(
            "The dataset is empty (0 problems): give at least one problem (e.g. --num-problems >= 1, or a "
            "JSONL file with rows)"
        )
    for i, row in enumerate(rows):
        if not row.get("prompt") and not row.get("prompt_text") and row.get("question") is None:
            raise ValueError(
                f"Problem {i} has no 'question' (nor 'prompt'); build the dataset with "
                "hf_softthink.data.load_prompts(..., question_column=<name>) or reasoning_gym_dataset(...)"
            )
        has_verifier = bool(row.get("task")) and bool(row.get("entry"))
        if not has_verifier and row.get("answer") is None:
            raise ValueError(
                f"Problem {i} has no gold answer: the 'answer' column is missing or empty and it is not a "
                "reasoning-gym row (task/entry). Load the data with an answer column "
                "(load_prompts(..., answer_column=<name>), --answer-column NAME on the command line)."
            )
    return rows


def _prompt_text(
    row: Mapping[str, Any], tokenizer: Any, thinking_instruction: str | None
) -> tuple[str, bool]:
    """(prompt text, whether it is chat-templated, i.e. already holds the special tokens)."""
    if row.get("prompt_text"):
        return str(row["prompt_text"]), True
    messages = row.get("prompt") or build_prompt(str(row["question"]), thinking_instruction)
    if getattr(tokenizer, "chat_template", None):
        return apply_chat_template(tokenizer, messages), True
    return "\n\n".join(str(m["content"]) for m in messages) + "\n", False


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """What :func:`evaluate_modes` measured.

    Attributes:
        summary: per mode name: pass@k and maj@k for each k, ``mean_thinking_tokens``,
            ``mean_answer_tokens``, ``mean_soft_steps``, ``wall_seconds`` (generation time, summed over
            batches, including time spent by earlier runs that this one resumed), ``num_problems``,
            ``num_samples``, ``generated_sequences`` and the mode's settings under ``"mode"``.
        ks: the k values.
        records: per mode name, one record per problem (problem order): ``correct``, ``scores``,
            ``answers``, ``thinking_tokens``, ``answer_tokens``, ``soft_steps``, ``seconds`` and, if
            saved, ``completions``.
        settings: the evaluation settings.
        output_dir: where the files were written (``None``: nothing written).
    """

    summary: dict[str, dict[str, Any]]
    ks: list[int]
    records: dict[str, list[dict[str, Any]]]
    settings: dict[str, Any]
    output_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The content of ``results.json``."""
        return {"settings": self.settings, "ks": self.ks, "modes": self.summary}

    def to_markdown(self) -> str:
        """A Markdown table: one row per mode, pass@k per k, maj@max-k, mean tokens, wall time."""
        top = max(self.ks)
        headers = ["mode", *[f"pass@{k}" for k in self.ks]]
        if top > 1:
            headers.append(f"maj@{top}")
        headers += ["thinking tokens", "answer tokens", "seconds"]
        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|",
        ]
        for name, s in self.summary.items():
            cells = [name, *[f"{s[f'pass@{k}']:.3f}" for k in self.ks]]
            if top > 1:
                cells.append(f"{s[f'maj@{top}']:.3f}" if f"maj@{top}" in s else "-")
            cells += [
                f"{s.get('mean_thinking_tokens', 0.0):.1f}",
                f"{s.get('mean_answer_tokens', 0.0):.1f}",
                f"{s.get('wall_seconds', 0.0):.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        problems = next(iter(self.summary.values()))["num_problems"] if self.summary else 0
        lines.append("")
        lines.append(
            f"{problems} problems, {self.settings.get('samples')} samples per problem; pass@k: unbiased "
            "estimator (Chen et al. 2021); tokens: means per sample; seconds: generation wall time "
            "(greedy modes without noise decode once per problem)."
        )
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Save a PNG of pass@k against k, one line per mode (matplotlib, Agg canvas; pyplot untouched)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        styles = [(m, ls) for ls in ("-", "--", ":") for m in ("o", "s", "^", "D", "v", "P")]
        for i, (name, s) in enumerate(self.summary.items()):
            marker, line = styles[i % len(styles)]
            ax.plot(self.ks, [s[f"pass@{k}"] for k in self.ks], marker=marker, linestyle=line, label=name)
        if max(self.ks) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(self.ks)
        ax.set_xticklabels([str(k) for k in self.ks])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k")
        title = f"pass@k by decoding mode ({self.settings.get('model')}"
        if self.settings.get("task"):
            title += f", {self.settings['task']}"
        ax.set_title(title + ")", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, format="png")
        return path

    def save(self, output_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``results.json``, ``results.md`` and ``pass_at_k.png`` into ``output_dir``."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"results": out / RESULTS_FILE, "table": out / TABLE_FILE, "plot": out / PLOT_FILE}
        files["results"].write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        files["table"].write_text(self.to_markdown() + "\n", encoding="utf-8")
        self.plot(files["plot"])
        files["records"] = out / RECORDS_FILE
        self.files = files
        self.output_dir = out
        return files


def _load_records(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    saved: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.exists():
        return saved
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption: that problem is redone
                continue
            if isinstance(record, dict) and "run" in record and "problem_key" in record:
                saved[(record["run"], record["problem_key"])] = record
    return saved


def _end_with_newline(path: Path) -> None:
    """Close a last line cut short by an interruption, so the next record starts on its own line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            fh.write(b"\n")


def _append_record(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _summarize_mode(mode: DecodingMode, records: list[dict[str, Any]], ks: list[int]) -> dict[str, Any]:
    out = summarize(records, ks)
    steps = [s for r in records for s in r["soft_steps"]]
    out["mean_soft_steps"] = float(sum(steps) / len(steps)) if steps else 0.0
    out["wall_seconds"] = float(sum(r["seconds"] for r in records))
    out["generated_sequences"] = int(sum(r["generated"] for r in records))
    out["mode"] = mode.to_dict()
    return out


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def _think_end_span(tokenizer: Any, ids: list[int], think_end: str | None) -> tuple[int, int] | None:
    """(start, end) token positions of the first ``think_end`` in the decoded ids, or None.

    ``end`` is the smallest prefix length whose text contains the marker, ``start`` the largest position
    such that ``ids[start:end]`` still spells it (a marker may span several tokens).
    """
    if not think_end or not ids or think_end not in tokenizer.decode(ids):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if think_end in tokenizer.decode(ids[:mid]):
            hi = mid
        else:
            lo = mid + 1
    end = lo
    lo, hi = 0, end - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if think_end in tokenizer.decode(ids[mid:end]):
            lo = mid
        else:
            hi = mid - 1
    return lo, end


@dataclass
class _Job:
    problem: int
    count: int


def _batches(jobs: list[_Job], batch_size: int) -> list[list[_Job]]:
    out: list[list[_Job]] = []
    current: list[_Job] = []
    size = 0
    for job in jobs:
        remaining = job.count
        while remaining > 0:
            take = min(remaining, batch_size - size)
            current.append(_Job(job.problem, take))
            size += take
            remaining -= take
            if size == batch_size:
                out.append(current)
                current, size = [], 0
    if current:
        out.append(current)
    return out


def _generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    templated: bool,
    mode: DecodingMode,
    *,
    max_new_tokens: int,
    max_thinking_tokens: int | None,
    think_end: str | None,
    eos_ids: set[int],
) -> list[dict[str, Any]]:
    """Decode one batch of prompts; per sequence: text, thinking/answer token counts, soft steps."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not templated)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    prompt_length = inputs["input_ids"].shape[1]
    kwargs = mode.generate_kwargs()
    if mode.soft_thinking is None and max_thinking_tokens is not None and think_end:
        kwargs["logits_processor"] = LogitsProcessorList(
            [HardThinkingBudgetProcessor(tokenizer, think_end, max_thinking_tokens, prompt_length)]
        )
    pad = tokenizer.pad_token_id
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            pad_token_id=pad,
            tokenizer=tokenizer,
            **kwargs,
        )
    new = out.sequences[:, prompt_length:].tolist()
    mask = getattr(out, "thinking_mask", None)
    marker = think_end
    if mode.soft_thinking is not None and isinstance(mode.soft_thinking.think_end, str):
        marker = mode.soft_thinking.think_end
    results = []
    for row, ids in enumerate(new):
        length = next((i for i, t in enumerate(ids) if t in eos_ids), len(ids))
        ids = ids[:length]
        span = _think_end_span(tokenizer, ids, marker)
        thinking, answer = (len(ids), 0) if span is None else (span[0], length - span[1])
        results.append(
            {
                "text": tokenizer.decode(ids, skip_special_tokens=True),
                "thinking_tokens": thinking,
                "answer_tokens": answer,
                "soft_steps": int(mask[row, :length].sum()) if mask is not None else 0,
            }
        )
    return results


def _batch_seed(seed: int, mode: str, batch: list[_Job], offset: int) -> int:
    return zlib.crc32(f"{seed}:{mode}:{batch[0].problem}:{offset}:{len(batch)}".encode()) & 0x7FFFFFFF


def _decode_mode(
    model: Any,
    tokenizer: Any,
    mode: DecodingMode,
    problems: list[int],
    prompts: list[tuple[str, bool]],
    *,
    samples: int,
    batch_size: int,
    max_new_tokens: int,
    max_thinking_tokens: int | None,
    think_end: str,
    seed: int,
    eos_ids: set[int],
    progress: Callable[[int], Any],
) -> Iterator[tuple[int, list[dict[str, Any]], float]]:
    """Decode ``problems`` in one mode, in batches; yield ``(problem, outputs, seconds)`` as each completes.

    A deterministic mode decodes one sequence per problem, a stochastic one ``samples``; ``seconds`` is the
    problem's share of its batches' wall time.
    """
    per_problem = 1 if mode.deterministic else samples
    buffers: dict[int, list[dict[str, Any]]] = {}
    seconds: dict[int, float] = {}
    for batch in _batches([_Job(p, per_problem) for p in problems], batch_size):
        texts = [prompts[job.problem][0] for job in batch for _ in range(job.count)]
        offset = len(buffers.get(batch[0].problem, []))
        torch.manual_seed(_batch_seed(seed, mode.name, batch, offset))
        start = time.perf_counter()
        generated = _generate(
            model,
            tokenizer,
            texts,
            all(prompts[job.problem][1] for job in batch),
            mode,
            max_new_tokens=max_new_tokens,
            max_thinking_tokens=max_thinking_tokens,
            think_end=think_end,
            eos_ids=eos_ids,
        )
        elapsed = time.perf_counter() - start
        progress(len(texts))
        cursor = 0
        for job in batch:
            buffers.setdefault(job.problem, []).extend(generated[cursor : cursor + job.count])
            cursor += job.count
            seconds[job.problem] = seconds.get(job.problem, 0.0) + elapsed * job.count / len(texts)
            if len(buffers[job.problem]) == per_problem:
                yield job.problem, buffers.pop(job.problem), seconds.pop(job.problem)


def evaluate_modes(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    modes: Any = ("hard-greedy", "soft-greedy"),
    *,
    samples: int = 1,
    ks: int | str | Iterable[int] | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    max_thinking_tokens: int | None = DEFAULT_MAX_THINKING_TOKENS,
    think_end: str = DEFAULT_THINK_END,
    thinking_instruction: str | None = DEFAULT_THINKING_INSTRUCTION,
    seed: int = 0,
    output_dir: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    task_name: str | None = None,
    save_completions: bool = True,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> EvaluationResult:
    """Decode every problem ``samples`` times in each mode, score, and summarise.

    Args:
        model / tokenizer: a causal LM and its tokenizer. Soft modes call
            :func:`hf_softthink.enable_soft_thinking` on the model (in place, idempotent).
        dataset: a ``datasets.Dataset`` (or list of row dicts) with the columns of
            :mod:`hf_softthink.data`: ``prompt`` (chat messages) or ``question``, and ``task`` + ``entry``
            (reasoning-gym verifier) or ``answer`` (math-verify). A ``prompt_text`` column is used as is.
        modes: preset names (list or ``"hard-greedy,soft-sample"``), :class:`DecodingMode` objects or
            ``SoftThinkingConfig`` objects (:func:`resolve_modes`).
        samples: completions per problem (``n`` of pass@k).
        ks: the k of pass@k / maj@k (default ``[1, samples]``); each must be <= ``samples``.
        batch_size: sequences per ``generate`` call; a problem's samples are the same prompt repeated,
            split over calls when ``samples > batch_size``.
        max_new_tokens: generated tokens per completion, thinking and answer together.
        max_thinking_tokens: thinking budget of every mode (``None``: none); see the module docstring.
        think_end: the end-of-thinking marker (a string, matched on decoded text).
        thinking_instruction: system prompt for rows without a ``prompt`` column (the dataset's own
            prompts, built by :mod:`hf_softthink.data`, already carry the instruction).
        seed: seeds the sampling (each batch is seeded from it, the mode and the batch's first problem;
            the caller's global RNG state is restored afterwards).
        output_dir: where ``samples.jsonl`` (resume log), ``results.json``, ``results.md`` and
            ``pass_at_k.png`` go; ``None`` writes nothing and resumes nothing.
        model_name / task_name: labels for the results (the model name also enters the resume fingerprint;
            default: ``model.config._name_or_path``).
        save_completions: keep the completion texts in the records.
        progress: show a tqdm progress bar (sequences generated).
        on_record: called with each finished (mode, problem) record right after it is saved.

    Raises:
        ValueError: unknown mode, k larger than samples, empty dataset, a problem without gold answer or
            verifier, bad sizes.
    """
    for name, value, low in (
        ("samples", samples, 1),
        ("batch_size", batch_size, 1),
        ("max_new_tokens", max_new_tokens, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if max_thinking_tokens is not None and (
        isinstance(max_thinking_tokens, bool)
        or not isinstance(max_thinking_tokens, int)
        or max_thinking_tokens < 0
    ):
        raise ValueError(f"max_thinking_tokens must be None or an integer >= 0, got {max_thinking_tokens!r}")
    if not isinstance(think_end, str) or not think_end:
        raise ValueError(f"think_end must be a non-empty string such as '</think>', got {think_end!r}")
    ks_list = parse_ks(ks if ks is not None else sorted({1, samples}), samples)
    mode_list = resolve_modes(modes, max_thinking_tokens=max_thinking_tokens, think_end=think_end)
    rows = _rows(dataset)

    if any(m.soft_thinking is not None for m in mode_list):
        from .generation import enable_soft_thinking

        enable_soft_thinking(model, tokenizer=tokenizer)
    model_label = (
        model_name or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    )
    prompts = [_prompt_text(row, tokenizer, thinking_instruction) for row in rows]
    problem_keys = [
        _digest([text, row.get("answer"), row.get("task"), row.get("entry")])
        for (text, _), row in zip(prompts, rows, strict=True)
    ]
    settings = {
        "model": str(model_label),
        "task": task_name,
        "num_problems": len(rows),
        "samples": samples,
        "ks": ks_list,
        "max_new_tokens": max_new_tokens,
        "max_thinking_tokens": max_thinking_tokens,
        "think_end": think_end,
        "seed": seed,
        "batch_size": batch_size,
        "modes": [m.name for m in mode_list],
    }
    out_dir = Path(output_dir) if output_dir is not None else None
    records_path = None
    saved: dict[tuple[str, str], dict[str, Any]] = {}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        records_path = out_dir / RECORDS_FILE
        saved = _load_records(records_path)
        _end_with_newline(records_path)

    run_keys = {
        m.name: _digest(
            {
                "model": str(model_label),
                "mode": m.to_dict(),
                "samples": samples,
                "max_new_tokens": max_new_tokens,
                "hard_budget": max_thinking_tokens if m.soft_thinking is None else None,
                "think_end": think_end,
                "seed": seed,
            }
        )
        for m in mode_list
    }
    pending = {
        m.name: [p for p in range(len(rows)) if (run_keys[m.name], problem_keys[p]) not in saved]
        for m in mode_list
    }
    total = sum(len(pending[m.name]) * (1 if m.deterministic else samples) for m in mode_list)

    eos_ids = _eos_ids(model, tokenizer)
    restore = {"padding_side": tokenizer.padding_side, "pad_token": tokenizer.pad_token}
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    bar = tqdm(total=total, unit="seq", desc="eval", disable=not progress or total == 0, dynamic_ncols=True)
    try:
        device = getattr(model, "device", torch.device("cpu"))
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=rng_devices):
            for mode in mode_list:
                bar.set_postfix_str(mode.name)
                finished = _decode_mode(
                    model,
                    tokenizer,
                    mode,
                    pending[mode.name],
                    prompts,
                    samples=samples,
                    batch_size=batch_size,
                    max_new_tokens=max_new_tokens,
                    max_thinking_tokens=max_thinking_tokens,
                    think_end=think_end,
                    seed=seed,
                    eos_ids=eos_ids,
                    progress=bar.update,
                )
                for problem, outputs, seconds in finished:
                    record = _finish_record(
                        mode,
                        problem,
                        rows[problem],
                        outputs,
                        samples=samples,
                        seconds=seconds,
                        run_key=run_keys[mode.name],
                        problem_key=problem_keys[problem],
                        think_end=think_end,
                        save_completions=save_completions,
                    )
                    saved[(record["run"], record["problem_key"])] = record
                    if records_path is not None:
                        _append_record(records_path, record)
                    if on_record is not None:
                        on_record(record)
    finally:
        bar.close()
        tokenizer.padding_side = restore["padding_side"]
        if restore["pad_token"] is None:
            tokenizer.pad_token = None

    records = {m.name: [saved[(run_keys[m.name], key)] for key in problem_keys] for m in mode_list}
    summary = {m.name: _summarize_mode(m, records[m.name], ks_list) for m in mode_list}
    result = EvaluationResult(summary=summary, ks=ks_list, records=records, settings=settings)
    if out_dir is not None:
        result.save(out_dir)
    return result


def _finish_record(
    mode: DecodingMode,
    problem: int,
    row: Mapping[str, Any],
    outputs: list[dict[str, Any]],
    *,
    samples: int,
    seconds: float,
    run_key: str,
    problem_key: str,
    think_end: str | None,
    save_completions: bool,
) -> dict[str, Any]:
    generated = len(outputs)
    if generated < samples:  # a deterministic mode: one decoding stands for every sample
        outputs = [outputs[i % generated] for i in range(samples)]
    grades = [grade_sample(row, o["text"], think_end=think_end) for o in outputs]
    record: dict[str, Any] = {
        "run": run_key,
        "problem_key": problem_key,
        "mode": mode.name,
        "problem": problem,
        "generated": generated,
        "correct": [g.correct for g in grades],
        "scores": [g.score if math.isfinite(g.score) else 0.0 for g in grades],
        "answers": [g.answer for g in grades],
        "thinking_tokens": [o["thinking_tokens"] for o in outputs],
        "answer_tokens": [o["answer_tokens"] for o in outputs],
        "soft_steps": [o["soft_steps"] for o in outputs],
        "seconds": seconds,
    }
    if save_completions:
        record["completions"] = [o["text"] for o in outputs]
    return record
