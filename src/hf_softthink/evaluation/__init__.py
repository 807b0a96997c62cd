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
:class:`~hf_softthink.processors.HardThinkingBudgetProcessor`. So a small model that never writes ``</think>`` by itself (SmolLM2
has no think tokens: the marker is matched on the decoded text) still reaches an answer phase, and hard
and soft modes are compared at the same budget. Thinking tokens are the generated tokens before the
first think-end marker; answer tokens those after it (up to end-of-sequence). A completion that never
closes its thinking counts all its tokens as thinking (all as answer when the prompts ask for no thinking:
neither a thinking instruction nor a budget), and its answer is read from the whole text.

Scoring is the dataset's verifier (:func:`hf_softthink.data.grade_sample`): reasoning-gym's
``score_answer`` for reasoning-gym rows, math-verify against the ``answer`` column otherwise.

Resumable: each (mode, problem) result is appended to ``samples.jsonl`` in ``output_dir`` as soon as its
samples are done; a rerun with the same settings skips what is saved (an interrupted run loses nothing it
saved). Results belong to the model that made them: they are keyed by digests of the model's weights, its
adapter, its tokenizer and its generation config (:mod:`.identity`; never by its name, so a folder
overwritten by more training or two in-memory models of one class are told apart), by every setting (the
mode's, the number of samples, the token limits, think-end, the seed, the batch size) and by the problem's
index and content. A rerun with another model or setting decodes again and warns, naming what changed. Saved
records are checked when read back; one that does not fit stops the run, naming its file and line. The
batches of a mode are fixed by the dataset and the batch size, each seeded from the seed, the mode and its
first (problem, sample): an interrupted and resumed run gives the same completions as an uninterrupted one.

The package, one concern a module: :mod:`.modes` (decoding modes and presets), :mod:`.run` (the
run/resume loop, :func:`evaluate_modes`), :mod:`.decoding` (batches and ``generate`` calls),
:mod:`.records` (the resume log), :mod:`.identity` (digests of the model, adapter, tokenizer),
:mod:`.results` (:class:`EvaluationResult`: table, plot, files).
Everything public is importable from ``hf_softthink.evaluation``.
"""

from ..evaluation_metrics import majority_at_k, parse_ks, pass_at_k, summarize
from ..processors import HardThinkingBudgetProcessor
from .decoding import _think_end_span as _think_end_span  # the tests pin its token spans
from .modes import FUZZY_TEMPERATURE as FUZZY_TEMPERATURE
from .modes import PRESET_DESCRIPTIONS, PRESETS, DecodingMode, preset_mode, resolve_modes
from .modes import SAMPLE_TEMPERATURE as SAMPLE_TEMPERATURE
from .modes import SAMPLE_TOP_K as SAMPLE_TOP_K
from .modes import SAMPLE_TOP_P as SAMPLE_TOP_P
from .records import RECORDS_FILE
from .results import PLOT_FILE as PLOT_FILE
from .results import RESULTS_FILE as RESULTS_FILE
from .results import TABLE_FILE as TABLE_FILE
from .results import EvaluationResult
from .run import DEFAULT_MAX_THINKING_TOKENS, EvaluationInterrupted, evaluate_modes

__all__ = [
    "DEFAULT_MAX_THINKING_TOKENS",
    "DecodingMode",
    "EvaluationInterrupted",
    "EvaluationResult",
    "HardThinkingBudgetProcessor",
    "PRESETS",
    "PRESET_DESCRIPTIONS",
    "RECORDS_FILE",
    "evaluate_modes",
    "majority_at_k",
    "parse_ks",
    "pass_at_k",
    "preset_mode",
    "resolve_modes",
    "summarize",
]
