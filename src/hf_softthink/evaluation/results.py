"""What an evaluation measured: :class:`EvaluationResult` (per-mode summary, Markdown table, pass@k plot)."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation_metrics import summarize
from .decoding import CUT_THINKING, EMPTY_ANSWER, STOPPED_THINKING
from .modes import DecodingMode
from .records import RECORDS_FILE, _naming

RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
PLOT_FILE = "pass_at_k.png"


@dataclass
class EvaluationResult:
    """What :func:`evaluate_modes` measured.

    Attributes:
        summary: per mode name: pass@k and maj@k for each k, ``mean_thinking_tokens``,
            ``mean_answer_tokens``, ``mean_soft_steps``, ``no_answer_phase`` and ``empty_answers`` (decoded
            completions that ended while thinking / wrote nothing after the think-end marker; ``endings``: the
            count of each code of ``decoding.ENDINGS``), ``wall_seconds`` (the mode's own ``generate``
            calls, summed over its batches; grading is not included; a problem resumed from an earlier run
            keeps that run's time), ``resumed_problems`` (problems whose results an earlier run saved),
            ``num_problems``, ``num_samples``, ``generated_sequences`` and the mode's settings under
            ``"mode"``.
        ks: the k values.
        records: per mode name, one record per problem (problem order): ``correct``, ``scores``,
            ``answers``, ``thinking_tokens``, ``answer_tokens``, ``soft_steps``, ``endings``, ``seconds``,
            ``question``, ``gold_answer`` and, if saved, ``completions``.
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
        headers += ["thinking tokens", "answer tokens", "no answer", "seconds"]
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
                _no_answer_cell(s),
                f"{s.get('wall_seconds', 0.0):.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        problems = next(iter(self.summary.values()))["num_problems"] if self.summary else 0
        lines.append("")
        lines.append(
            f"{problems} problems, {self.settings.get('samples')} samples per problem; pass@k: unbiased "
            "estimator (Chen et al. 2021); tokens: means per sample; no answer: decoded completions that ended "
            "while thinking (no answer phase) or wrote nothing after the think-end marker; seconds: wall time of "
            "the mode's own generate calls (greedy modes without noise decode once per problem; a batch runs "
            "until its longest completion ends)."
        )
        lines += [note + "." for note in self.no_answer_notes()]
        resumed = [
            f"{name} {s['resumed_problems']} of {s['num_problems']}"
            for name, s in self.summary.items()
            if s.get("resumed_problems")
        ]
        if resumed:
            lines.append(
                "Problems resumed from an earlier run, whose seconds that run measured: " + ", ".join(resumed) + "."
            )
        return "\n".join(lines)

    def no_answer_notes(self) -> list[str]:
        """One line per mode whose completions did not all answer: how many ended while thinking (end-of-sequence
        or out of tokens) and how many wrote nothing after the marker."""
        notes = []
        for name, s in self.summary.items():
            if not s.get("no_answer_phase") and not s.get("empty_answers"):
                continue
            endings = s["endings"]
            notes.append(
                f"{name}: {s['no_answer_phase'] + s['empty_answers']} of {s['generated_sequences']} decoded "
                f"completions gave no answer ({endings.get(STOPPED_THINKING, 0)} wrote end-of-sequence while "
                f"thinking, {endings.get(CUT_THINKING, 0)} ran out of tokens while thinking, "
                f"{s['empty_answers']} wrote nothing after the think-end marker)"
            )
        return notes

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
        with _naming(files["results"], "write"):
            files["results"].write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        with _naming(files["table"], "write"):
            files["table"].write_text(self.to_markdown() + "\n", encoding="utf-8")
        with _naming(files["plot"], "write"):
            self.plot(files["plot"])
        files["records"] = out / RECORDS_FILE
        self.files = files
        self.output_dir = out
        return files


def _summarize_mode(mode: DecodingMode, records: list[dict[str, Any]], ks: list[int]) -> dict[str, Any]:
    out = summarize(records, ks)
    steps = [s for r in records for s in r["soft_steps"]]
    out["mean_soft_steps"] = float(sum(steps) / len(steps)) if steps else 0.0
    out["wall_seconds"] = float(sum(r["seconds"] for r in records))
    out["generated_sequences"] = int(sum(r["generated"] for r in records))
    out.update(_ending_counts(records))
    out["mode"] = mode.to_dict()
    return out


def _ending_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How the generated completions ended: ``endings`` (count per code of ``decoding.ENDINGS``),
    ``no_answer_phase`` (ended while thinking) and ``empty_answers`` (nothing after the marker). Empty when a
    record saved by an older version has no ``endings``."""
    if not records or any("endings" not in r for r in records):
        return {}
    counts = Counter(e for r in records for e in r["endings"][: r["generated"]])  # one per decoded sequence
    return {
        "endings": dict(counts),
        "no_answer_phase": counts[STOPPED_THINKING] + counts[CUT_THINKING],
        "empty_answers": counts[EMPTY_ANSWER],
    }


def _no_answer_cell(summary: dict[str, Any]) -> str:
    """``"25%"`` of the decoded completions without an answer (``"-"`` for records without endings)."""
    if "no_answer_phase" not in summary or not summary.get("generated_sequences"):
        return "-"
    return f"{100 * (summary['no_answer_phase'] + summary['empty_answers']) / summary['generated_sequences']:.0f}%"
