"""Stage 5: the Markdown tables (pass@k with standard errors, the targets, drift and cost, lengths), the plot,
and the generated block of the results file (pure helpers: they read the stage records, they run nothing).

Standard errors: ``grid_stages/stats.py`` (over seeds, over problems, and their conservative combination).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_softthink.evaluation import SAMPLE_TEMPERATURE

from .common import mean_or_nan
from .evaluate import OWN_NOISE
from .rows import row_label
from .settings import OWN, START, GridSettings
from .stats import CellStats, cell_stats, paired_stats, per_problem_pass_at_k
from .task import OOD_TASK, THINK_END, chain_trace, countdown_solutions

#: the presets that decode once per problem (greedy answers, no noise): pass@1 only
DETERMINISTIC = ("hard-greedy", "soft-greedy")
#: the row the targets compare the soft rows against, and the inference of its own policy
HARD_ROW, HARD_SAMPLE = "hard", "hard-sample"
#: a length collapse: the thinking length falls below this fraction of the reference (:func:`length_collapse`)
COLLAPSE_RATIO = 0.5
#: the scale of each noise kind, as (name, SoftThinkingConfig field)
NOISE_SCALES = {
    "gumbel": ("tau", "gumbel_tau"),
    "gaussian": ("sigma", "gaussian_sigma"),
    "dirichlet": ("alpha", "dirichlet_alpha"),
    "logistic_normal": ("s", "logistic_normal_sigma"),
}


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for fewer than two values)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan"), None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_std(values: Sequence[float], digits: int = 2, signed: bool = False) -> str:
    """``"0.45 ± 0.03"`` (sample std), ``"0.45"`` for one value, ``"–"`` for none."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "–"
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of ``rows`` under ``headers``: the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def mode_name(mode: str) -> str:
    """The evaluation-record name of an inference mode (``own`` is recorded as ``own-noise``)."""
    return OWN_NOISE if mode == OWN else mode


def grid_columns(modes: Sequence[str], ks: Sequence[int]) -> list[tuple[str, int]]:
    """The (record mode name, k) of each column: pass@1 only for the deterministic presets."""
    return [(mode_name(m), k) for m in modes for k in ((1,) if m in DETERMINISTIC else ks)]


def column_header(mode: str, k: int, samples: int) -> str:
    if mode in DETERMINISTIC:
        return f"{mode} pass@1"
    return f"{mode} pass@1 (mean@{samples})" if k == 1 else f"{mode} pass@{k}"


def values_by_seed(records: Sequence[Mapping[str, Any]], mode: str, k: int) -> list[list[float]] | None:
    """Per seed (record), the pass@k of each problem in ``mode``; ``None`` if a record lacks the mode."""
    if not records or any(mode not in r.get("correct_counts", {}) for r in records):
        return None
    return [per_problem_pass_at_k(r["correct_counts"][mode], r["samples"], k) for r in records]


def format_cell(stats: CellStats | None, digits: int = 3) -> str:
    """``"0.623 ± 0.015/0.011"``: mean ± SE over seeds / SE over problems (``–`` where undefined)."""
    if stats is None:
        return "–"

    def se(value: float | None) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    return f"{stats.mean:.{digits}f} ± {se(stats.se_seeds)}/{se(stats.se_problems)}"


def noise_label(rollout: Mapping[str, Any] | None) -> str:
    """The own-noise mode of a row in words: ``"gumbel tau 0.5, top-10"``; ``"–"`` without soft rollouts."""
    if rollout is None:
        return "–"
    noise = rollout["noise"]
    name, key = NOISE_SCALES.get(noise, ("", ""))
    scale = f" {name} {rollout[key]:g}" if key in rollout else ""
    if rollout.get("gumbel_noise_clamp"):
        scale += f" (noise clamped to {list(rollout['gumbel_noise_clamp'])})"
    support = f"top-{rollout['max_topk']}" if rollout.get("max_topk") else "full vocabulary"
    temperature = rollout["temperature"]  # own-noise inference keeps a thinking T below the protocol's
    return f"{noise}{scale}, {support}" + (f", thinking T {temperature:g}" if temperature < SAMPLE_TEMPERATURE else "")


def grid_table(
    evals: Mapping[str, Sequence[Mapping[str, Any]]], modes: Sequence[str], ks: Sequence[int], samples: int
) -> str:
    """Markdown table: one row per training row (``evals[row]``: one eval record per seed), columns inference
    mode x pass@k, cells mean ± SE over seeds / SE over problems (``stats.py``); with the own-noise mode, a
    column that names each row's noise."""
    columns = grid_columns(modes, ks)
    headers = ["training \\ inference"]
    if OWN in modes:
        headers.append("own noise")
    headers += [column_header(m, k, samples) for m, k in columns]
    rows = []
    for train, records in evals.items():
        cells = [row_label(train)]
        if OWN in modes:
            cells.append(noise_label(records[0].get("rollout") if records else None))
        for m, k in columns:
            values = values_by_seed(records, m, k)
            cells.append(format_cell(None if values is None else cell_stats(values)))
        rows.append(cells)
    return markdown_table(headers, rows)


def paired_gap(
    evals: Mapping[str, Sequence[Mapping[str, Any]]], row: str, mode: str, k: int, hard_mode: str = HARD_SAMPLE
) -> CellStats | None:
    """Row ``row`` in ``mode`` minus the hard row in ``hard_mode``, at pass@k, paired by seed and problem;
    ``None`` when either is missing or the two were not evaluated on the same problems."""
    soft, hard = evals.get(row) or [], evals.get(HARD_ROW) or []
    if len(soft) != len(hard) or any(a.get("problems") != b.get("problems") for a, b in zip(soft, hard, strict=True)):
        return None
    a, b = values_by_seed(soft, mode, k), values_by_seed(hard, hard_mode, k)
    return None if a is None or b is None else paired_stats(a, b)


def within_one_se(gap: CellStats | None) -> str:
    """The pass@1 target: at least equal to hard within one SE (gap >= -SE)."""
    if gap is None:
        return "–"
    return "yes" if gap.mean >= -gap.se else "no"


def above_hard(gap: CellStats | None) -> str:
    """The pass@k target: above hard (gap > SE), level (|gap| <= SE) or below (gap < -SE)."""
    if gap is None:
        return "–"
    if gap.mean > gap.se:
        return "above"
    return "level" if gap.mean >= -gap.se else "below"


def format_gap(gap: CellStats | None, digits: int = 3) -> str:
    """``"-0.034 ± 0.021 (0.015/0.014)"``: the mean paired gap ± its combined SE (SE over seeds / problems)."""
    if gap is None:
        return "–"
    parts = "/".join("–" if se is None else f"{se:.{digits}f}" for se in (gap.se_seeds, gap.se_problems))
    return f"{gap.mean:+.{digits}f} ± {gap.se:.{digits}f} ({parts})"


def length_collapse(
    records: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
    start: Sequence[Mapping[str, Any]],
    mode: str = HARD_SAMPLE,
) -> str:
    """Whether a row's thinking collapsed: its evaluated thinking length (``mode``) below ``COLLAPSE_RATIO`` of
    the SFT start's, or its RL rollouts' thinking length (soft rows; else the completion length) in the last
    20% of the steps below ``COLLAPSE_RATIO`` of the first 20%. ``"no (22.1 vs 22.5 tokens; RL 1.00)"``."""
    evaluated = [r["summary"][mode]["mean_thinking_tokens"] for r in records if mode in r["summary"]]
    reference = [r["summary"][mode]["mean_thinking_tokens"] for r in start if mode in r["summary"]]
    if not evaluated or not reference:
        return "–"
    ratio = statistics.fmean(evaluated) / max(statistics.fmean(reference), 1e-9)
    series = logged(runs, "soft/thinking_length")
    if not series or not all(series):
        series = logged(runs, "completions/mean_length")
    rl = [last / max(first, 1e-9) for first, last in map(first_last_means, series) if not math.isnan(first)]
    rl_ratio = min(rl) if rl else float("nan")
    collapsed = ratio < COLLAPSE_RATIO or rl_ratio < COLLAPSE_RATIO
    text = f"{statistics.fmean(evaluated):.1f} vs {statistics.fmean(reference):.1f} tokens"
    if rl:
        text += f"; RL last/first {rl_ratio:.2f}"
    return f"{'yes' if collapsed else 'no'} ({text})"


def targets_table(
    evals: Mapping[str, Sequence[Mapping[str, Any]]],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    modes: Sequence[str],
    ks: Sequence[int],
    samples: int,
) -> str:
    """Markdown table of issue 16's targets, per row against the hard row (paired by seed and problem):

    * the pass@1 (mean@samples) gap with hard-sample inference for both, and with the row's own noise against
      hard's hard-sample (each model decoded as it was trained), each with its combined SE and whether the row
      is at least equal to hard within one SE;
    * the pass@max-k gap, the same two ways, and whether the row is above hard (gap > SE), level or below;
    * the length-collapse check (:func:`length_collapse`).
    """
    top = max(ks)
    own = [(HARD_SAMPLE, "hard-sample")] + ([(OWN_NOISE, "own noise")] if OWN in modes else [])
    headers = ["training"]
    for _, label in own:
        headers += [f"pass@1 (mean@{samples}) gap, {label}", "≥ hard − 1 SE"]
    for _, label in own:
        headers += [f"pass@{top} gap, {label}", "vs hard"]
    headers.append("length collapse")
    rows = []
    for train, records in evals.items():
        if train == START:
            continue
        cells = [row_label(train)]
        gaps1 = [None if train == HARD_ROW else paired_gap(evals, train, m, 1) for m, _ in own]
        gapsk = [None if train == HARD_ROW else paired_gap(evals, train, m, top) for m, _ in own]
        for gap in gaps1:
            cells += [format_gap(gap), within_one_se(gap)]
        for gap in gapsk:
            cells += [format_gap(gap), above_hard(gap)]
        cells.append(length_collapse(records, runs.get(train) or [], evals.get(START) or []))
        rows.append(cells)
    return markdown_table(headers, rows)


def drift_table(
    evals: Mapping[str, Sequence[Mapping[str, Any]]],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
) -> str:
    """Markdown table: OOD drift, RL reward, and wall and CPU times per training row."""
    headers = [
        "training",
        "OOD NLL",
        "OOD ΔNLL vs SFT",
        "OOD KL(SFT‖model)",
        "train reward first→last 20%",
        "RL wall s",
        "RL CPU s",
        "eval wall s",
        "eval CPU s",
    ]
    rows = []
    for train, records in evals.items():
        trained = runs.get(train) or []
        reward = first_last([r["rewards"] for r in trained])
        rl_seconds = format_mean_std([r["seconds"] for r in trained], 0)
        cells = [
            row_label(train),
            format_mean_std([r["ood"]["nll"] for r in records], 3),
            format_mean_std([r["ood"]["delta_nll"] for r in records], 3, signed=True),
            format_mean_std([r["ood"]["kl"] for r in records], 3),
            reward,
            rl_seconds,
            format_mean_std([r["cpu_seconds"] for r in trained if "cpu_seconds" in r], 0),
            format_mean_std([r["seconds"] for r in records], 0),
            format_mean_std([r["cpu_seconds"] for r in records if "cpu_seconds" in r], 0),
        ]
        rows.append(cells)
    return markdown_table(headers, rows)


def first_last(series: Sequence[Sequence[float]], digits: int = 2) -> str:
    """``"a ± s → b ± t"``: the mean of each run's series (one value per RL step) over its first and over its
    last 20%, mean ± std over the runs; ``"–"`` without runs or when a run's series is empty."""
    if not series or not all(series):
        return "–"
    firsts, lasts = zip(*map(first_last_means, series), strict=True)
    return f"{format_mean_std(firsts, digits)} → {format_mean_std(lasts, digits)}"


def first_last_means(values: Sequence[float]) -> tuple[float, float]:
    """The mean of the first and of the last 20% of ``values`` (at least one value each; NaN for none)."""
    tail = max(1, len(values) // 5)
    return mean_or_nan(values[:tail]), mean_or_nan(values[-tail:])


def logged(runs: Sequence[Mapping[str, Any]], key: str) -> list[list[float]]:
    """Each run's logged values of ``key`` over its RL steps (NaN and steps that did not log it left out)."""
    return [[h[key] for h in run.get("history", []) if key in h and h[key] == h[key]] for run in runs]


def length_table(
    evals: Mapping[str, Sequence[Mapping[str, Any]]],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    modes: Sequence[str],
) -> str:
    """Markdown table: lengths per training row, to see a length collapse: the RL rollouts' completion and
    thinking lengths (first → last 20% of the steps) and the evaluated thinking / answer tokens of the hard
    inference modes and of the own-noise mode that were run."""
    shown = [m for m in ("hard-greedy", HARD_SAMPLE, OWN_NOISE) if m in map(mode_name, modes)]
    headers = [
        "training",
        "RL completion tokens first→last 20%",
        "RL thinking tokens first→last 20%",
        "RL EOS inside thinking first→last 20%",
        *[f"{m} thinking tokens" for m in shown],
        *[f"{m} answer tokens" for m in shown],
    ]
    rows = []
    for train, records in evals.items():
        trained = runs.get(train) or []
        cells = [
            row_label(train),
            first_last(logged(trained, "completions/mean_length"), 1),
            first_last(logged(trained, "soft/thinking_length"), 1),
            first_last(logged(trained, "soft/eos_in_thinking_rate"), 2),
            *[_token_mean(records, m, "mean_thinking_tokens") for m in shown],
            *[_token_mean(records, m, "mean_answer_tokens") for m in shown],
        ]
        rows.append(cells)
    return markdown_table(headers, rows)


def _token_mean(records: Sequence[Mapping[str, Any]], mode: str, key: str) -> str:
    return format_mean_std([r["summary"][mode][key] for r in records if mode in r["summary"]], 1)


def plot_grid(
    evals: Mapping[str, Sequence[Mapping[str, Any]]],
    modes: Sequence[str],
    ks: Sequence[int],
    samples: int,
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """Grouped bars: one panel per k (bars: mean over seeds, error bars: the combined SE of ``stats.py``), plus
    one panel of OOD drift (error bars: sample std over seeds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * (len(ks) + 1), 4.9), dpi=100)
    FigureCanvasAgg(fig)
    trains = list(evals)
    width = 0.8 / max(len(trains), 1)
    names = [mode_name(m) for m in modes]
    for panel, k in enumerate(ks):
        shown = [m for m in names if k == 1 or m not in DETERMINISTIC]
        ax = fig.add_subplot(1, len(ks) + 1, panel + 1)
        for i, train in enumerate(trains):
            xs, heights, errors = [], [], []
            for j, m in enumerate(shown):
                values = values_by_seed(evals[train], m, k)
                if values is None:
                    continue
                stats = cell_stats(values)
                xs.append(j + (i - (len(trains) - 1) / 2) * width)
                heights.append(stats.mean)
                errors.append(0.0 if math.isnan(stats.se) else stats.se)
            ax.bar(xs, heights, width, yerr=errors, capsize=2, label=row_label(train), color=f"C{i}")
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels(shown, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"pass@{k}" + (f" (mean@{samples})" if k == 1 else ""))
        ax.set_title(f"pass@{k} by inference mode", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    ax = fig.add_subplot(1, len(ks) + 1, len(ks) + 1)
    rl = [t for t in trains if t != START]
    stats = [mean_std([r["ood"]["kl"] for r in evals[t]]) for t in rl]
    ax.bar(
        range(len(rl)),
        [s[0] for s in stats],
        yerr=[s[1] or 0.0 for s in stats],
        capsize=3,
        color=[f"C{trains.index(t)}" for t in rl],
    )
    ax.set_xticks(range(len(rl)))
    ax.set_xticklabels([row_label(t) for t in rl], fontsize=8, rotation=15)
    ax.set_ylabel("mean per-token KL(SFT ‖ model), nats")
    ax.set_title(f"out-of-domain drift ({OOD_TASK})", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    # one legend under the panels, so that it hides no bar however many training rows there are
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=len(trains), fontsize=8, title="training", title_fontsize=8
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


BEGIN, END = "<!-- grid:begin (written by benchmarks/grid.py) -->", "<!-- grid:end -->"


def section_markers(name: str = "") -> tuple[str, str]:
    """The begin / end markers of a generated block: the grid's main block (``name`` empty), or a named one
    (``--section``, e.g. a tuned run next to the main grid)."""
    if not name:
        return BEGIN, END
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"--section {name!r}: use letters, digits, '-' or '_' (it becomes an HTML comment)")
    return f"<!-- grid:{name}:begin (written by benchmarks/grid.py) -->", f"<!-- grid:{name}:end -->"


def merge_section(existing: str | None, section: str, name: str = "") -> str:
    """Replace the text between the markers of block ``name`` (`section_markers`) of ``existing`` by
    ``section`` (appended if absent)."""
    begin, end = section_markers(name)
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if not existing:
        return block + "\n"
    if begin in existing and end in existing:
        head, rest = existing.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    return existing.rstrip() + "\n\n" + block + "\n"


def density_label(config: Mapping[str, Any]) -> str:
    """The score of a row's soft steps: ``soft_density``, with its residual weight where it has one (``"–"``
    for hard rows)."""
    if config.get("soft_rollout", "hard") == "hard":
        return "–"
    residual = config.get("soft_density_residual") or 0.0
    return str(config.get("soft_density", "–")) + (f" + {residual:g} residual" if residual else "")


def rows_table(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Markdown table: what each row trained with, read from its runs' configs (``run.json``)."""
    headers = [
        "training",
        "soft_rollout",
        "soft_density",
        "rollout noise",
        "sampling T",
        "learning rate",
        "beta",
        "advantages",
        "loss",
    ]
    rows = []
    for train, trained in runs.items():
        config = trained[0].get("config", {}) if trained else {}
        rows.append(
            [
                row_label(train),
                str(config.get("soft_rollout", "–")),
                density_label(config),
                noise_label(trained[0].get("rollout_config") if trained else None),
                f"{config['temperature']:g}" if "temperature" in config else "–",
                f"{config['learning_rate']:g}" if "learning_rate" in config else "–",
                f"{config['beta']:g}" if "beta" in config else "–",
                f"{config.get('advantage_estimator', 'grpo')}, scaled by {config.get('scale_rewards', '–')}",
                str(config.get("loss_type", "–")),
            ]
        )
    return markdown_table(headers, rows)


def task_line(settings: GridSettings, task_info: Mapping[str, Any], train_problems: int) -> str:
    """The report's task bullet: the task, an example prompt and SFT completion, the splits."""
    s = settings
    splits = (
        f"{s.test_problems} held-out test problems and {s.dev_problems} dev problems (for SFT stopping and for "
        f"choosing settings), a random partition with the {train_problems} SFT/RL problems of the distinct "
        f"problems among {s.pool_size} draws of the generator (no problem in two splits)"
    )
    if s.task == "chain_sum":
        example = " ".join(["4", "-", "1", "+", "7", "-", "2", "+", "5"][: 2 * s.terms - 1])
        trace, answer = chain_trace(example)
        prompt = "the reasoning-gym question" if s.full_question else f"just the expression, e.g. `{example} =`"
        return (
            f"* Task: reasoning-gym `chain_sum`, {s.terms} single-digit terms (+/-), prompt {prompt}; SFT "
            f"completion `<think>{trace}{THINK_END}{answer}` (one trace per problem). {splits}."
        )
    solutions = countdown_solutions([7, 5, 1], 2)
    prompt = "the reasoning-gym question" if s.full_question else "the numbers and the target, e.g. `7, 5, 1 -> 2`"
    shown = " or ".join(f"`<think>{trace}{THINK_END}{answer}`" for trace, answer in solutions[:2])
    return (
        f"* Task: reasoning-gym `countdown`, {s.terms} numbers in 1..{s.max_value}, target 1..{s.max_target}, "
        f"`+ - *`, each number used once (every step's result positive); prompt {prompt}; the SFT completion "
        f"of a problem is drawn at random from all its solutions each time it is shown, e.g. {shown} (of "
        f"{len(solutions)}). Test problems have {task_info.get('mean_solutions', float('nan')):.2f} solutions on "
        f"average ({task_info.get('multiple_share', float('nan')):.0%} more than one). {splits}."
    )


def start_on_dev(record: Mapping[str, Any] | None, settings: GridSettings) -> str:
    """`` The SFT start on the dev split (300 problems): hard-greedy pass@1 0.40 ± –/0.03, ...``: each inference
    column of the SFT start's dev evaluation, mean ± SE over problems."""
    if record is None:
        return ""
    cells = []
    for mode, k in grid_columns(settings.inference_modes, settings.ks):
        values = values_by_seed([record], mode, k)
        if values is not None:
            cells.append(f"{column_header(mode, k, record['samples'])} {format_cell(cell_stats(values))}")
    problems = len(next(iter(record["correct_counts"].values()), []))
    return f" The SFT start on the dev split ({problems} problems): " + ", ".join(cells) + "."


def report(
    settings: GridSettings,
    sft_info: Mapping[str, Any],
    evals,
    runs,
    total_seconds: float,
    command: str,
    task_info: Mapping[str, Any] | None = None,
    total_cpu_seconds: float | None = None,
    dev_start: Mapping[str, Any] | None = None,
) -> str:
    s = settings
    seeds = ",".join(map(str, s.seeds))
    ks = list(s.ks)
    problems = (
        f"held-out test problems ({s.test_problems})"
        if s.eval_split == "test"
        else f"the dev split ({s.dev_problems} problems; for choosing settings, not the test problems)"
    )
    own = (
        " `own`: each soft-trained model with its own training noise (its row's rollout config: noise kind and "
        "scale, support, sampled stop decisions) at thinking temperature min(0.6, the rollout's), the answer "
        "sampled as hard-sample; rows without soft rollouts have none."
        if OWN in s.inference_modes
        else ""
    )
    lines = [
        f"Command: `{command}`" + (" (smoke settings)" if s.smoke else ""),
        "",
        task_line(s, task_info or {}, sft_info["train_problems"]),
        f"* Model: tiny Llama, hidden {s.hidden}, {s.layers} layers, {s.heads} heads, byte-level vocabulary, "
        f"{sft_info['parameters'] / 1e6:.2f}M parameters, random init.",
        f"* SFT: AdamW lr {s.sft_lr}, batch {s.sft_batch}, {sft_info['steps']} steps "
        f"({sft_info['seconds']:.0f} s), stopped at dev greedy accuracy "
        f"{sft_info['dev_greedy_accuracy']:.2f} (target {s.sft_target})." + start_on_dev(dev_start, s),
        f"* RL: `SoftGRPOTrainer`, full fine-tune, {s.rl_steps} steps x {s.rl_prompts} prompts x "
        f"{s.rl_generations} generations, at most {s.max_new_tokens} new tokens ({s.max_thinking_tokens} "
        f"thinking); seeds {seeds}; reward 1 if reasoning-gym's verifier gives full marks, else 0. Each row's "
        "config is built by `grid_stages/rows.py` (table \"Rows\" below, read from the runs' configs).",
        f"* Evaluation: {s.samples} samples per problem for the sampled modes (T 0.6, top-k 30, top-p 0.95): "
        f"pass@1 is the mean over the {s.samples} samples (mean@{s.samples}), pass@{ks[-1]} the unbiased "
        "estimator; greedy modes decode once (pass@1 only)." + own + f" Thinking budget {s.max_thinking_tokens} "
        "tokens for every mode.",
        f"* Statistics: a cell is `mean ± SE over seeds / SE over problems`: the mean over seeds {seeds}; the SE "
        "of the per-seed means; the SE over problems of the per-problem values averaged over seeds (one model: "
        "the SE over problems). Gaps are paired by seed and problem and shown as `gap ± combined SE (SE over "
        "seeds/SE over problems)`, combined SE = sqrt(SE_seeds² + SE_problems²) (conservative: "
        "`grid_stages/stats.py`).",
        f"* OOD drift: {s.ood_size} reasoning-gym `{OOD_TASK}` question/answer chats (seed 0), "
        "all tokens scored.",
        f"* Wall time of all stages: {total_seconds / 60:.1f} min"
        + ("" if total_cpu_seconds is None else f", CPU time {total_cpu_seconds / 60:.1f} min")
        + " (sums of the stage times recorded by the runs that produced them, splits not included; "
        f"`torch.set_num_threads({s.threads})`; with one thread the CPU time is about the wall time on one quiet "
        "core).",
        "",
        f"**pass@k on {problems}** (mean ± SE over seeds / SE over problems; the SFT row is one model):",
        "",
        grid_table(evals, s.inference_modes, ks, s.samples),
        "",
        f"**Targets** (each row against hard, paired by seed and problem: gap ± combined SE (SE over seeds/SE "
        f"over problems); pass@1 target: gap ≥ −1 SE; pass@{ks[-1]}: above hard when gap > 1 SE; length "
        f"collapse: evaluated hard-sample thinking below {COLLAPSE_RATIO:g} of the SFT start's, or the RL "
        f"thinking length in the last 20% of the steps below {COLLAPSE_RATIO:g} of the first 20%):",
        "",
        targets_table(evals, runs, s.inference_modes, ks, s.samples),
        "",
        "**Rows** (what each row trained with, from its runs' configs):",
        "",
        rows_table(runs),
        "",
        "**Out-of-domain drift, training reward and cost** (mean ± std over seeds):",
        "",
        drift_table(evals, runs),
        "",
        "**Lengths** (a length collapse shows here; mean ± std over seeds; RL columns: the training rollouts, "
        "soft modes only for thinking; the other columns: the evaluation):",
        "",
        length_table(evals, runs, s.inference_modes),
        "",
        f"Plot: `{Path(s.plot).name}` (pass@k bars with combined-SE error bars, and the OOD KL).",
    ]
    return "\n".join(lines)
