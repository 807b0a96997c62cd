"""Stage 5: mean +- std over seeds in Markdown tables, the plot, and the generated block of the results file
(pure helpers: they read the stage records, they run nothing)."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import mean_or_nan
from .settings import START, GridSettings
from .task import OOD_TASK, TASK, chain_trace


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


#: how `--rl-scale-rewards` scales the advantages (TRL's GRPOConfig.scale_rewards)
SCALING = {
    "group": "divided by the group's reward std",
    "batch": "divided by the batch's reward std",
    "none": "not scaled (as RLOO / Dr. GRPO)",
}

#: table and legend label of each row (training mode); the soft rollouts name their noise
ROW_LABELS = {
    START: "SFT start (no RL)",
    "hard": "hard",
    "soft": "soft (gaussian)",
    "fuzzy": "fuzzy",
    "gumbel": "soft (gumbel)",
    "dirichlet": "soft (dirichlet)",
}


def row_label(mode: str) -> str:
    return ROW_LABELS.get(mode, mode)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of ``rows`` under ``headers``: the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def grid_table(
    evals: Mapping[str, Sequence[Mapping[str, Any]]], modes: Sequence[str], ks: Sequence[int], digits: int = 2
) -> str:
    """Markdown table: one row per training mode (``evals[mode]``: one eval record per seed), columns
    inference mode x pass@k, cells mean ± std over the records."""
    headers = ["training \\ inference", *[f"{m} pass@{k}" for m in modes for k in ks]]
    rows = [
        [
            row_label(train),
            *[format_mean_std([r["summary"][m][f"pass@{k}"] for r in records], digits) for m in modes for k in ks],
        ]
        for train, records in evals.items()
    ]
    return markdown_table(headers, rows)


def drift_table(
    evals: Mapping[str, Sequence[Mapping[str, Any]]],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
) -> str:
    """Markdown table: OOD drift, RL reward and wall times per training mode."""
    headers = [
        "training",
        "OOD NLL",
        "OOD ΔNLL vs SFT",
        "OOD KL(SFT‖model)",
        "train reward first→last 20%",
        "RL wall s",
        "eval wall s",
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
            format_mean_std([r["seconds"] for r in records], 0),
        ]
        rows.append(cells)
    return markdown_table(headers, rows)


def first_last(series: Sequence[Sequence[float]], digits: int = 2) -> str:
    """``"a ± s → b ± t"``: the mean of each run's series (one value per RL step) over its first and over its
    last 20%, mean ± std over the runs; ``"–"`` without runs or when a run's series is empty."""
    if not series or not all(series):
        return "–"
    tails = [max(1, len(values) // 5) for values in series]
    firsts = [mean_or_nan(values[:tail]) for values, tail in zip(series, tails, strict=True)]
    lasts = [mean_or_nan(values[-tail:]) for values, tail in zip(series, tails, strict=True)]
    return f"{format_mean_std(firsts, digits)} → {format_mean_std(lasts, digits)}"


def logged(runs: Sequence[Mapping[str, Any]], key: str) -> list[list[float]]:
    """Each run's logged values of ``key`` over its RL steps (NaN and steps that did not log it left out)."""
    return [[h[key] for h in run.get("history", []) if key in h and h[key] == h[key]] for run in runs]


def length_table(
    evals: Mapping[str, Sequence[Mapping[str, Any]]],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    modes: Sequence[str],
) -> str:
    """Markdown table: lengths per training mode, to see a length collapse: the RL rollouts' completion and
    thinking lengths (first → last 20% of the steps) and the evaluated thinking / answer tokens of the hard
    inference modes that were run."""
    shown = [m for m in ("hard-greedy", "hard-sample") if m in modes]
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
            *[format_mean_std([r["summary"][m]["mean_thinking_tokens"] for r in records], 1) for m in shown],
            *[format_mean_std([r["summary"][m]["mean_answer_tokens"] for r in records], 1) for m in shown],
        ]
        rows.append(cells)
    return markdown_table(headers, rows)


def plot_grid(
    evals: Mapping[str, Sequence[Mapping[str, Any]]],
    modes: Sequence[str],
    ks: Sequence[int],
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """Grouped bars (mean, error bar = sample std over seeds): one panel per k plus one of OOD drift."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * (len(ks) + 1), 4.9), dpi=100)
    FigureCanvasAgg(fig)
    trains = list(evals)
    width = 0.8 / max(len(trains), 1)
    for panel, k in enumerate(ks):
        ax = fig.add_subplot(1, len(ks) + 1, panel + 1)
        for i, train in enumerate(trains):
            stats = [mean_std([r["summary"][m][f"pass@{k}"] for r in evals[train]]) for m in modes]
            xs = [j + (i - (len(trains) - 1) / 2) * width for j in range(len(modes))]
            ax.bar(
                xs,
                [s[0] for s in stats],
                width,
                yerr=[s[1] or 0.0 for s in stats],
                capsize=2,
                label=row_label(train),
            )
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels(modes, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"pass@{k}")
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
    # one legend under the panels, so that it hides no bar however many training modes there are
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


def report(
    settings: GridSettings, sft_info: Mapping[str, Any], evals, runs, total_seconds: float, command: str
) -> str:
    s = settings
    seeds = ",".join(map(str, s.seeds))
    ks = list(s.ks)
    example = " ".join(["4", "-", "1", "+", "7", "-", "2", "+", "5"][: 2 * s.terms - 1])
    trace, answer = chain_trace(example)
    prompt = "the reasoning-gym question" if s.full_question else f"just the expression, e.g. `{example} =`"
    problems = (
        f"held-out test problems ({s.test_problems})"
        if s.eval_split == "test"
        else f"the dev split ({s.dev_problems} problems, seed 2*10**6; for choosing settings, not the test "
        "problems)"
    )
    lines = [
        f"Command: `{command}`" + (" (smoke settings)" if s.smoke else ""),
        "",
        f"* Task: reasoning-gym `{TASK}`, {s.terms} single-digit terms (+/-), prompt {prompt}; "
        "SFT completion "
        f"`<think>{trace}</think>{answer}`. {s.test_problems} held-out test problems (seed 10**6); no test "
        f"or dev ({s.dev_problems}, seed 2*10**6) problem is in the SFT/RL data "
        f"({sft_info['train_problems']} problems).",
        f"* Model: tiny Llama, hidden {s.hidden}, {s.layers} layers, {s.heads} heads, byte-level vocabulary, "
        f"{sft_info['parameters'] / 1e6:.2f}M parameters, random init.",
        f"* SFT: AdamW lr {s.sft_lr}, batch {s.sft_batch}, {sft_info['steps']} steps "
        f"({sft_info['seconds']:.0f} s), stopped at dev greedy accuracy "
        f"{sft_info['dev_greedy_accuracy']:.2f} "
        f"(target {s.sft_target}).",
        f"* RL: `SoftGRPOTrainer`, full fine-tune, {s.rl_steps} steps x {s.rl_prompts} prompts x "
        f"{s.rl_generations} generations, AdamW lr {s.rl_lr} constant, beta 0, TRL's default loss (dapo), "
        f"grad-norm clip 1.0; sampling temperature {s.rl_temperature} for hard tokens and for soft thinking "
        f"(fuzzy: 1e-4), soft mixture over the top {s.rl_max_topk} tokens; noise of the soft rollouts: "
        f"Gaussian sigma {s.rl_sigma} x embedding rms (soft, fuzzy), Gumbel-Softmax tau {s.rl_gumbel_tau} "
        f"(gumbel), Dirichlet alpha {s.rl_dirichlet_alpha} (dirichlet); advantages: rewards minus the group "
        f"mean, {SCALING[s.rl_scale_rewards]} (`scale_rewards={s.rl_scale_rewards!r}`); "
        f"at most {s.max_new_tokens} new tokens (soft rollouts: at most "
        f"{s.max_thinking_tokens} "
        f"thinking); seeds {seeds}. Reward: reasoning-gym verifier (1 right, 0 wrong).",
        f"* Evaluation: `evaluate_modes` presets, {s.samples} samples per problem, pass@{ks[0]} and "
        f"pass@{ks[-1]} (unbiased estimator); greedy modes without noise (hard-greedy, soft-greedy) decode "
        f"once, so their pass@{ks[-1]} equals their pass@1. Sampled tokens: T 0.6, top-k 30, top-p 0.95; "
        f"soft/fuzzy noise sigma 0.33; thinking budget {s.max_thinking_tokens} tokens for every mode.",
        f"* OOD drift: {s.ood_size} reasoning-gym `{OOD_TASK}` question/answer chats (seed 0), "
        "all tokens scored.",
        f"* Wall time of all stages: {total_seconds / 60:.1f} min (sum of the stage times recorded by the "
        "runs "
        f"that produced them; CPU, `torch.set_num_threads({s.threads})`).",
        "",
        f"**pass@k on {problems}** (mean ± sample std over seeds {seeds}; the SFT row is one model):",
        "",
        grid_table(evals, s.inference_modes, ks),
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
        f"Plot: `{Path(s.plot).name}` (pass@k bars with std error bars, and the OOD KL).",
    ]
    return "\n".join(lines)
