"""benchmarks/grid.py: the pure helpers, and the whole grid end to end at smoke size."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

GRID_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "grid.py"


@pytest.fixture(scope="module")
def grid():
    spec = importlib.util.spec_from_file_location("grid_benchmark", GRID_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


def _record(values: dict[str, tuple[float, float]], nll: float = 1.0, kl: float = 0.0, seconds: float = 2.0):
    summary = {
        mode: {"pass@1": p1, "pass@32": p32, "mean_thinking_tokens": 20.0}
        for mode, (p1, p32) in values.items()
    }
    return {"summary": summary, "ood": {"nll": nll, "delta_nll": nll - 1.0, "kl": kl}, "seconds": seconds}


def test_chain_trace(grid):
    assert grid.chain_trace("4 - 1 + 7") == ("4 - 1 = 3, 3 + 7 = 10", "10")
    assert grid.chain_trace("0 - 4") == ("0 - 4 = -4", "-4")
    assert grid.chain_trace("0 - 4 - 8") == ("0 - 4 = -4, -4 - 8 = -12", "-12")
    assert grid.completion_text("2 + 3") == "<think>2 + 3 = 5</think>5<|im_end|>"
    for bad in ("4 -", "4 * 2", "4"):
        with pytest.raises(ValueError):
            grid.chain_trace(bad)


def test_format_mean_std(grid):
    assert grid.format_mean_std([0.4, 0.5, 0.6]) == "0.50 ± 0.10"  # sample std
    assert grid.format_mean_std([0.456]) == "0.46"
    assert grid.format_mean_std([]) == "–"
    assert grid.format_mean_std([0.1, -0.3], 3, signed=True) == "-0.100 ± 0.283"
    assert grid.format_mean_std([12.0, 14.0], 0) == "13 ± 1"
    mean, std = grid.mean_std([1.0])
    assert mean == 1.0 and std is None


def test_grid_table(grid):
    modes = ("hard-greedy", "soft-sample")
    evals = {
        "sft": [_record({"hard-greedy": (0.5, 0.5), "soft-sample": (0.4, 0.7)})],
        "hard": [
            _record({"hard-greedy": (0.6, 0.6), "soft-sample": (0.5, 0.8)}),
            _record({"hard-greedy": (0.8, 0.8), "soft-sample": (0.5, 0.9)}),
        ],
    }
    table = grid.grid_table(evals, modes, [1, 32]).splitlines()
    assert table[0] == (
        "| training \\ inference | hard-greedy pass@1 | hard-greedy pass@32 | soft-sample pass@1 | "
        "soft-sample pass@32 |"
    )
    assert table[1] == "|---|---:|---:|---:|---:|"
    assert table[2] == "| SFT start (no RL) | 0.50 | 0.50 | 0.40 | 0.70 |"
    assert table[3] == "| hard | 0.70 ± 0.14 | 0.70 ± 0.14 | 0.50 ± 0.00 | 0.85 ± 0.07 |"

    runs = {"hard": [{"rewards": [0.1, 0.2, 0.3, 0.4, 0.5], "seconds": 10.0}] * 2}
    drift = grid.drift_table(evals, runs, modes).splitlines()
    assert len(drift) == 4
    assert drift[3].startswith(
        "| hard | 1.000 ± 0.000 | +0.000 ± 0.000 | 0.000 ± 0.000 | 0.10 ± 0.00 → 0.50 ± 0.00 |"
    )


def test_merge_section_keeps_text_outside_markers(grid):
    first = grid.merge_section(None, "table v1")
    assert grid.BEGIN in first and "table v1" in first
    edited = "# Title\n\nintro\n\n" + first + "\n## Discussion\nkept\n"
    merged = grid.merge_section(edited, "table v2")
    assert "table v1" not in merged and "table v2" in merged
    assert merged.startswith("# Title\n\nintro\n\n") and merged.endswith("## Discussion\nkept\n")
    assert merged.count(grid.BEGIN) == 1
    appended = grid.merge_section("no markers yet\n", "t")
    assert appended.startswith("no markers yet\n\n" + grid.BEGIN)


def test_parse_args(grid, tmp_path):
    smoke = grid.parse_args(["--smoke", "--out", str(tmp_path)])
    assert smoke.smoke and smoke.seeds == (0,) and smoke.out == str(tmp_path)
    assert smoke.results == str(tmp_path / "RESULTS_grid.md")  # smoke never overwrites the benchmark's files
    full = grid.parse_args(["--seeds", "0,1", "--train-modes", "hard,fuzzy", "--rl-lr", "1e-4"])
    assert full.seeds == (0, 1) and full.train_modes == ("hard", "fuzzy") and full.rl_lr == 1e-4
    assert full.results.endswith("benchmarks/RESULTS_grid.md") and not full.smoke
    with pytest.raises(SystemExit):
        grid.parse_args(["--train-modes", "gumbel"])
    with pytest.raises(SystemExit):
        grid.parse_args(["--samples", "8", "--ks", "1,32"])
    # stage folders are keyed by the settings they depend on
    base = grid.settings_hash(full, grid.RL_KEYS, "sft-x")
    assert (
        grid.settings_hash(grid.parse_args(["--rl-lr", "1e-4", "--seeds", "5"]), grid.RL_KEYS, "sft-x")
        == base
    )
    assert grid.settings_hash(grid.parse_args(["--rl-lr", "2e-4"]), grid.RL_KEYS, "sft-x") != base


@pytest.mark.slow
def test_smoke_end_to_end(tmp_path):
    out = tmp_path / "grid"
    command = [sys.executable, str(GRID_PATH), "--smoke", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = (out / "RESULTS_grid.md").read_text(encoding="utf-8")
    assert "| SFT start (no RL) |" in results and "| soft (gaussian) |" in results and "| fuzzy |" in results
    assert "fuzzy-sample pass@4" in results and "OOD KL" in results
    png = (out / "grid_results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert len(list((out / "rl").glob("*/run.json"))) == 3
    # a rerun reuses every stage
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reusing") == 1 + 3 + 4
