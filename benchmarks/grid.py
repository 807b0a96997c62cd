"""Train x inference grid of "Soft Tokens, Hard Truths" (arXiv:2509.19170) at the scale of a CPU.

    python benchmarks/grid.py                 # the full grid: 33 min on one quiet CPU core, 86 min on busy shared cores
    python benchmarks/grid.py --smoke         # ~1 minute end-to-end check (used by tests/test_grid.py)
    python benchmarks/grid.py --help          # every knob

What it does, each stage saved under ``--out`` (default ``runs/grid``) and skipped when rerun:

1. **SFT.** A tiny random Llama (byte-level tokenizer with ``<think>``/``</think>`` tokens) is trained with a
   plain torch loop on reasoning-gym ``chain_sum`` problems (three single-digit terms, ``+``/``-``), with a
   chain-of-thought trace written out step by step::

       <|im_start|>user\\n4 - 1 + 7 =<|im_end|>\\n<|im_start|>assistant\\n
       <think>4 - 1 = 3, 3 + 7 = 10</think>10<|im_end|>

   until it is *partly* right: greedy accuracy on a dev split reaches ``--sft-target`` (or
   ``--sft-max-steps``). Held-out problems (the test and dev splits, drawn with seeds 10**6 and 2*10**6) are
   removed from the SFT and RL data, so the evaluation is on problems never trained on.
2. **RL.** From the SFT checkpoint, `SoftGRPOTrainer` (full fine-tune, the model is 0.7M parameters) for the
   same number of steps in each training mode: ``hard`` (plain GRPO), ``soft`` (``soft_rollout="gaussian"``:
   concept tokens at the sampling temperature plus Gaussian noise on the input embedding), ``fuzzy``
   (``soft_rollout="fuzzy"``: thinking temperature 1e-4 plus the same noise), ``gumbel`` and ``dirichlet``
   (SofT-GRPO's ``soft_rollout="gumbel"``: Gumbel-Softmax mixture weights, and ``"dirichlet"``: Dirichlet
   weights), for each seed. Reward: the reasoning-gym verifier (`hf_softthink.rewards.reasoning_gym_reward`).
3. **Evaluation.** Every model (the SFT start and each RL run) with every inference preset of
   `hf_softthink.evaluation` (hard/soft/fuzzy x greedy/sample) on the same held-out problems, ``--samples``
   completions per problem, pass@1 and pass@k (unbiased estimator).
4. **Out-of-domain drift.** Mean token NLL of each model on reasoning-gym ``basic_arithmetic`` question/answer
   chats (another task and format), minus the SFT start's, and the mean per-token KL(SFT || model) there.
5. **Report.** Mean +- sample std over seeds: a Markdown table (rows: training mode, columns: inference mode x
   {pass@1, pass@k}), drift and wall times, written between the markers of ``--results``
   (default ``benchmarks/RESULTS_grid.md``; text outside the markers is kept), and a PNG plot (``--plot``).

**Cache rule.** A stage folder's name ends with a hash of everything the stage's output depends on, so a
rerun reuses a folder only when the stage would compute the same thing, and changing a flag or the code
recomputes what it affects and reuses the rest. The hash covers:

* the settings the stage reads (``SFT_KEYS``, ``RL_KEYS``, ``EVAL_KEYS`` in ``grid_stages/settings.py``;
  ``tests/test_grid.py`` checks that a stage module reads no setting outside its key);
* the folders of the stages it starts from: an RL run names its SFT folder (and its training mode and seed
  are in its own folder name); an evaluation names the folder that made the model (``rl/<mode>-s<seed>-<hash>``
  or the SFT folder, hence every RL setting and the SFT start) and the SFT folder (the OOD reference);
* the code: a digest of the source of every module the stage runs, in ``grid_stages`` and ``hf_softthink``
  (its import closure, e.g. ``hf_softthink/trainer/`` for RL, ``hf_softthink/evaluation/`` for the
  evaluation), and of the versions of the libraries those modules import
  (``grid_stages/fingerprint.py`` states the rules). Editing the trainer reruns RL and the evaluations of
  the RL models, not SFT nor the SFT start's evaluation.

Left out on purpose: ``--threads`` and the output paths (how fast and where, not what). The report (tables,
plot, ``grid.json``) is not cached: it is rewritten from the stage records on every run. An interrupted
stage leaves no record and is redone (an evaluation resumes from its ``samples.jsonl``).

This script is the driver (:func:`main`); the stages live in ``benchmarks/grid_stages/``, one concern a
module (settings and CLI, task, SFT, RL, evaluation and drift, report).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the grid_stages package next to this script
from grid_stages.common import log, read_json, write_json  # noqa: E402
from grid_stages.evaluate import (  # noqa: E402
    OWN_NOISE,
    eval_run_folder,
    ood_drift,
    own_noise_mode,
    problems_digest,
    run_eval,
    token_logprobs,
)
from grid_stages.report import (  # noqa: E402
    BEGIN,
    END,
    above_hard,
    drift_table,
    format_cell,
    format_gap,
    format_mean_std,
    grid_table,
    length_collapse,
    length_table,
    mean_std,
    merge_section,
    paired_gap,
    plot_grid,
    report,
    rows_table,
    section_markers,
    targets_table,
    within_one_se,
)
from grid_stages.rl import config_digest, correct_reward, rl_dataset, rl_run_folder, run_rl  # noqa: E402
from grid_stages.rows import ROWS, Row, recipe_kwargs, row_label, run_kwargs, training_config  # noqa: E402
from grid_stages.settings import (  # noqa: E402
    DEFAULT_INFERENCE_MODES,
    DEFAULT_ROWS,
    EVAL_KEYS,
    INFERENCE_MODES,
    OWN,
    RL_KEYS,
    SFT_KEYS,
    START,
    GridSettings,
    settings_hash,
)
from grid_stages.settings import parse_args as _parse_args  # noqa: E402
from grid_stages.sft import run_sft, sft_batch, sft_run_folder  # noqa: E402
from grid_stages.stats import CellStats, cell_stats, paired_stats, per_problem_pass_at_k  # noqa: E402
from grid_stages.task import (  # noqa: E402
    build_splits,
    chain_trace,
    completion_text,
    countdown_solutions,
    ood_texts,
    problem_row,
)

#: the stages' helpers, importable from this script (tests, notebooks)
__all__ = [
    "BEGIN",
    "DEFAULT_INFERENCE_MODES",
    "DEFAULT_ROWS",
    "END",
    "EVAL_KEYS",
    "INFERENCE_MODES",
    "OWN",
    "OWN_NOISE",
    "RL_KEYS",
    "ROWS",
    "SFT_KEYS",
    "START",
    "CellStats",
    "GridSettings",
    "Row",
    "above_hard",
    "build_splits",
    "cell_stats",
    "chain_trace",
    "completion_text",
    "config_digest",
    "correct_reward",
    "countdown_solutions",
    "drift_table",
    "eval_run_folder",
    "format_cell",
    "format_gap",
    "format_mean_std",
    "grid_table",
    "length_collapse",
    "length_table",
    "main",
    "mean_std",
    "merge_section",
    "ood_drift",
    "ood_texts",
    "own_noise_mode",
    "paired_gap",
    "paired_stats",
    "parse_args",
    "per_problem_pass_at_k",
    "plot_grid",
    "problem_row",
    "problems_digest",
    "recipe_kwargs",
    "report",
    "rl_dataset",
    "rl_run_folder",
    "row_label",
    "rows_table",
    "run_eval",
    "run_kwargs",
    "run_rl",
    "run_sft",
    "section_markers",
    "settings_hash",
    "sft_batch",
    "sft_run_folder",
    "targets_table",
    "task_info",
    "token_logprobs",
    "training_config",
    "within_one_se",
]


def parse_args(argv: Sequence[str] | None = None) -> GridSettings:
    """CLI flags -> `GridSettings`; ``--train-modes`` may name any row of ``grid_stages/rows.py``."""
    return _parse_args(argv, row_names=tuple(ROWS), epilog=__doc__.split("**Stages.**")[0])


def task_info(problems: list[dict[str, Any]]) -> dict[str, float]:
    """How much the thinking branches on ``problems``: the mean number of solutions, the share with more
    than one."""
    counts = [len(row["solutions"]) for row in problems]
    return {
        "mean_solutions": sum(counts) / len(counts),
        "multiple_share": sum(c > 1 for c in counts) / len(counts),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    settings = parse_args(argv)
    torch.set_num_threads(settings.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hf_softthink.models import tiny_tokenizer

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", dataclasses.asdict(settings))
    tokenizer = tiny_tokenizer()
    log(f"settings: {json.dumps(dataclasses.asdict(settings), default=str)}")
    splits = build_splits(settings)
    sft_folder = run_sft(settings, splits, tokenizer)
    sft_info = read_json(sft_folder / "sft.json")

    runs: dict[str, list[dict[str, Any]]] = {}
    folders: dict[str, list[Path]] = {}
    for row in settings.train_modes:
        for seed in settings.seeds:
            args = training_config(settings, row, seed)
            folder = run_rl(settings, row, seed, sft_folder, splits, tokenizer, args)
            runs.setdefault(row, []).append(read_json(folder / "run.json"))
            folders.setdefault(row, []).append(folder)

    ood = ood_texts(settings, tokenizer)
    evals: dict[str, list[dict[str, Any]]] = {
        START: [run_eval(settings, START, sft_folder, sft_folder, splits, tokenizer, ood)]
    }
    for row in settings.train_modes:
        evals[row] = [
            run_eval(
                settings, f"{row}-s{seed}", folder / "model", sft_folder, splits, tokenizer, ood, run["rollout_config"]
            )
            for seed, folder, run in zip(settings.seeds, folders[row], runs[row], strict=True)
        ]

    total = sft_info["seconds"] + sum(r["seconds"] for rs in runs.values() for r in rs)
    total += sum(e["seconds"] for es in evals.values() for e in es)
    command = "python benchmarks/grid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    info = task_info(splits[settings.eval_split])
    section = report(settings, sft_info, evals, runs, total, command.strip(), info)
    results = Path(settings.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    existing = results.read_text(encoding="utf-8") if results.exists() else None
    if existing is None:
        existing = '# Train x inference grid ("Soft Tokens, Hard Truths", arXiv:2509.19170, at CPU scale)\n'
    results.write_text(merge_section(existing, section, settings.section), encoding="utf-8")
    plot_grid(
        evals,
        settings.inference_modes,
        settings.ks,
        settings.samples,
        settings.plot,
        title=f"tiny Llama on {settings.task} ({settings.terms} terms): training row x inference mode, "
        f"seeds {','.join(map(str, settings.seeds))}",
    )
    write_json(
        out / "grid.json",
        {
            "settings": dataclasses.asdict(settings),
            "sft": sft_info,
            "task": info,
            "runs": runs,
            "evals": evals,
            "total_seconds": total,
        },
    )
    log(f"done: {results} and {settings.plot} ({total / 60:.1f} min of stage time)")
    print(section)
    return {"evals": evals, "runs": runs, "sft": sft_info, "total_seconds": total}


if __name__ == "__main__":
    main()
