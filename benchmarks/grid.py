"""Train x inference grid of "Soft Tokens, Hard Truths" (arXiv:2509.19170) at the scale of a CPU.

    python benchmarks/grid.py --threads 1     # the issue-16 grid (below): 105 min of stage time on one core
    python benchmarks/grid.py --smoke         # ~1 minute end-to-end check (used by tests/test_grid.py)
    python benchmarks/grid.py --help          # this text and every knob

**How to run the issue-16 grid.** The defaults are that grid: reasoning-gym ``countdown`` (3 numbers in 1..12,
``+ - *``; its thinking branches: a test problem has 1.86 solutions on average, 46% more than one, and the SFT
trace is drawn from all of them; the SFT start stops at dev greedy 0.40, mean@32 0.36), 500 held-out test
problems and 300 dev problems, 6 rows x 3 seeds, each model evaluated greedy, with 32 samples at T 0.6 (pass@1 =
mean@32, pass@32), and the soft rows also with their own training noise; cells with standard errors over seeds
and over problems, and a targets block (each row against hard, paired by seed and problem).

1. Choose settings on the dev split only: ``--eval-split dev`` evaluates the same models on the dev problems
   (the RL runs are shared with the test grid, the evaluations are not), e.g.
   ``python benchmarks/grid.py --threads 1 --eval-split dev --seeds 0 --train-modes hard,gumbel --section dev``.
2. Run the test grid once, with the chosen settings: ``python benchmarks/grid.py --threads 1`` writes the block
   between the markers of ``benchmarks/RESULTS_grid.md`` and ``grid_results.png``; every stage is cached, so an
   interrupted run resumes.
3. The rows are ``grid_stages/rows.py:ROWS`` (row name -> how its ``SoftGRPOConfig`` is built); add one there
   (e.g. the presets ``SoftGRPOConfig.softgrpo`` / ``.stht``) and name it in ``--train-modes`` or in
   ``rows.DEFAULT_ROWS``: only the new row's runs and evaluations are computed, the others are reused.

Measured pilot (``--threads 1 --seeds 0 --train-modes hard,gumbel``; block ``issue16-pilot`` of
``RESULTS_grid.md``), in CPU seconds of the process, which with one thread is about the wall time on one quiet
core (the machine was shared with other jobs, load 2-12 on 2 cores, and the wall times were 1.1-3.2x longer):
splits 9 s; SFT 618 s (2200 steps); RL, 120 steps: hard 118 s, gumbel 133 s; evaluation on the 500 test
problems (greedy once, 16,000 hard-sample sequences, and for a soft row 16,000 own-noise ones): SFT start 94 s,
hard 96 s, gumbel 194 s; the SFT start on the 300 dev problems 63 s. Extrapolated to the whole grid (3 seeds x
5 rows; dirichlet's RL taken as 1.3x gumbel's, its ratio in the chain_sum grid): SFT 10 min + RL 15 runs 35 min
+ 17 evaluations 46 min = about 91 min. Measured, the grid of 6 rows x 3 seeds (``benchmarks/RESULTS_grid.md``):
105 min of stage time, 96.6 min CPU (SFT 524 s; RL 99-124 s a run; evaluation 91 s for hard, 176-208 s for a
soft row with its own-noise column). Rows built otherwise (a preset's support or estimator) cost what their
rollouts cost: measure one run before adding several.

The grid before issue 16 (chain_sum, 64 test problems, the six inference presets) is
``--task chain_sum --test-problems 64 --dev-problems 100 --sft-max-steps 1500 --train-modes
hard,gaussian,fuzzy,gumbel,dirichlet --rl-lr 1e-4
--inference-modes hard-greedy,hard-sample,soft-greedy,soft-sample,fuzzy-greedy,fuzzy-sample`` (its rows are now
named ``gaussian`` for ``soft``; the reward is now 1/0 and the splits a random partition of distinct problems, so
its figures will not repeat the old block's to the digit: not rerun).

**Stages.** Each stage is saved under ``--out`` (default ``runs/grid``) and skipped when rerun:

1. **SFT.** A tiny random Llama (byte-level tokenizer with ``<think>``/``</think>`` tokens) is trained with a
   plain torch loop on the task's traces (``grid_stages/task.py``)::

       <|im_start|>user\n7, 5, 1 -> 2<|im_end|>\n<|im_start|>assistant\n
       <think>7 - 5 = 2, 2 * 1 = 2</think>(7 - 5) * 1<|im_end|>

   until it is *partly* right: greedy accuracy on the dev split reaches ``--sft-target`` (or
   ``--sft-max-steps``). The distinct problems of one pool are split at random into test, dev and train, so
   the evaluation is on problems never trained on.
2. **RL.** From the SFT checkpoint, `SoftGRPOTrainer` (full fine-tune, the model is 0.7M parameters) for the
   same number of steps in each row of ``grid_stages/rows.py`` (the default rows: ``hard`` = plain GRPO, the
   presets ``softgrpo``, ``stht`` and ``stht-fuzzy``, and ``gumbel-max`` and ``logistic-normal`` on the grid's
   recipe, the ``--rl-*`` flags; each row with its own learning rate, chosen on dev), for each seed. Reward: 1
   when reasoning-gym's verifier gives full marks, else 0.
3. **Evaluation.** Every model (the SFT start and each RL run) in the ``--inference-modes`` (default
   ``hard-greedy``, ``hard-sample`` and ``own``: the model's own rollout noise) on the same held-out
   problems, ``--samples`` completions per problem, pass@1 and pass@k (unbiased estimator); the number of
   correct samples of every problem is kept for the standard errors (``grid_stages/stats.py``).
4. **Out-of-domain drift.** Mean token NLL of each model on reasoning-gym ``basic_arithmetic`` question/answer
   chats (another task and format), minus the SFT start's, and the mean per-token KL(SFT || model) there.
5. **Report.** Markdown tables (pass@k with SEs, targets, rows, drift and cost, lengths), written between the
   markers of ``--results`` (default ``benchmarks/RESULTS_grid.md``; text outside the markers is kept), and a
   PNG plot (``--plot``).

**Cache rule.** A stage folder's name ends with a hash of everything the stage's output depends on, so a
rerun reuses a folder only when the stage would compute the same thing, and changing a flag or the code
recomputes what it affects and reuses the rest. The hash covers:

* the settings the stage reads (``SFT_KEYS``, ``RL_KEYS``, ``EVAL_KEYS`` in ``grid_stages/settings.py``;
  ``tests/test_grid.py`` checks that a stage module reads no setting outside its key);
* the folders of the stages it starts from: an RL run names its SFT folder (its row and seed are in its own
  folder name); an evaluation names the folder that made the model (``rl/<row>-s<seed>-<hash>`` or the SFT
  folder, hence every RL setting and the SFT start), the SFT folder (the OOD reference) and the rollout config
  its own-noise mode decodes with;
* for an RL run, the `SoftGRPOConfig` its row built (``to_dict()`` less the output paths), not the source of
  ``grid_stages/rows.py``: the row table is in no stage's code digest, so adding or editing a row reruns that
  row only; the recipe flags (``RECIPE_KEYS``: ``--rl-lr``, ``--rl-sigma``, ...) reach a run only through that
  config, so a flag a row ignores reruns nothing of it, and ``--rl-lr`` at a row's own learning rate reuses
  the row's run (the seed-0 runs of a dev sweep are the grid's);
* the code: a digest of the source of every module the stage runs, in ``grid_stages`` and ``hf_softthink``
  (its import closure, e.g. ``hf_softthink/trainer/`` for RL, ``hf_softthink/evaluation/`` for the
  evaluation), and of the versions of the libraries those modules import
  (``grid_stages/fingerprint.py`` states the rules). Editing the trainer reruns RL and the evaluations of
  the RL models, not SFT nor the SFT start's evaluation.

Left out on purpose: ``--threads`` and the output paths (how fast and where, not what). The report (tables,
plot, ``grid.json``) is not cached: it is rewritten from the stage records on every run. An interrupted
stage leaves no record and is redone (an evaluation resumes from its ``samples.jsonl``).

This script is the driver (:func:`main`); the stages live in ``benchmarks/grid_stages/``, one concern a
module (settings and CLI, task, rows, SFT, RL, evaluation and drift, statistics, report).
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
from grid_stages.cli import parse_args as _parse_args  # noqa: E402
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
from grid_stages.rows import (  # noqa: E402
    DEFAULT_ROWS,
    ROWS,
    Row,
    recipe_kwargs,
    row_label,
    run_kwargs,
    training_config,
)
from grid_stages.settings import (  # noqa: E402
    DEFAULT_INFERENCE_MODES,
    EVAL_KEYS,
    INFERENCE_MODES,
    OWN,
    RECIPE_KEYS,
    RL_KEYS,
    SFT_KEYS,
    START,
    GridSettings,
    settings_hash,
)
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
    "RECIPE_KEYS",
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
    epilog = __doc__.split("**Stages.**")[0].split("\n", 2)[2]
    return _parse_args(argv, epilog=epilog)


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
    # the SFT start on the dev split, where settings are chosen (the same evaluation when --eval-split dev)
    dev = dataclasses.replace(settings, eval_split="dev")
    dev_name = START if settings.eval_split == "dev" else f"{START}-dev"
    dev_start = run_eval(dev, dev_name, sft_folder, sft_folder, splits, tokenizer, ood)
    for row in settings.train_modes:
        evals[row] = [
            run_eval(
                settings, f"{row}-s{seed}", folder / "model", sft_folder, splits, tokenizer, ood, run["rollout_config"]
            )
            for seed, folder, run in zip(settings.seeds, folders[row], runs[row], strict=True)
        ]

    stages = [sft_info, *(r for rs in runs.values() for r in rs), *(e for es in evals.values() for e in es)]
    if settings.eval_split != "dev":
        stages.append(dev_start)
    total = sum(stage["seconds"] for stage in stages)
    total_cpu = sum(stage.get("cpu_seconds", 0.0) for stage in stages)
    command = "python benchmarks/grid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    info = task_info(splits[settings.eval_split])
    section = report(settings, sft_info, evals, runs, total, command.strip(), info, total_cpu, dev_start)
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
            "sft_dev": dev_start,
            "total_seconds": total,
            "total_cpu_seconds": total_cpu,
        },
    )
    log(f"done: {results} and {settings.plot} ({total / 60:.1f} min of stage time, {total_cpu / 60:.1f} min CPU)")
    print(section)
    return {"evals": evals, "runs": runs, "sft": sft_info, "total_seconds": total, "total_cpu_seconds": total_cpu}


if __name__ == "__main__":
    main()
