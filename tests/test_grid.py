"""benchmarks/grid.py: the pure helpers, the stage cache keys, and the whole grid end to end at smoke size."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
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
    drift = grid.drift_table(evals, runs).splitlines()
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


def test_named_section_is_a_block_of_its_own(grid):
    main = grid.merge_section("# Title\n", "main v1")
    both = grid.merge_section(main + "\nhand-written\n", "tuned v1", "tuned")
    begin, end = grid.section_markers("tuned")
    assert begin != grid.BEGIN and both.count(begin) == 1 and both.count(end) == 1
    again = grid.merge_section(both, "tuned v2", "tuned")
    assert "tuned v1" not in again and "tuned v2" in again and "main v1" in again and "hand-written" in again
    assert grid.merge_section(again, "main v2").count("tuned v2") == 1  # the main block leaves it alone
    with pytest.raises(ValueError, match="--section"):
        grid.section_markers("a -->")


def test_length_table(grid):
    evals = {"sft": [_record({"hard-greedy": (0.5, 0.5)})], "gumbel": [_record({"hard-greedy": (0.6, 0.6)})]}
    for records in evals.values():
        records[0]["summary"]["hard-greedy"]["mean_answer_tokens"] = 3.0
    history = [{"completions/mean_length": float(n), "soft/thinking_length": n - 5.0} for n in range(20, 30)]
    runs = {"gumbel": [{"rewards": [0.5] * 10, "seconds": 1.0, "history": history}]}
    table = grid.length_table(evals, runs, ("hard-greedy",)).splitlines()
    assert table[0].startswith("| training | RL completion tokens first→last 20% |")
    assert table[2] == "| SFT start (no RL) | – | – | – | 20.0 | 3.0 |"
    # first and last 2 of 10 steps: (20+21)/2 and (28+29)/2; the EOS rate was not logged
    assert table[3] == "| soft (gumbel) | 20.5 → 28.5 | 15.5 → 23.5 | – | 20.0 | 3.0 |"


def test_parse_args(grid, tmp_path):
    smoke = grid.parse_args(["--smoke", "--out", str(tmp_path)])
    assert smoke.smoke and smoke.seeds == (0,) and smoke.out == str(tmp_path)
    assert smoke.results == str(tmp_path / "RESULTS_grid.md")  # smoke never overwrites the benchmark's files
    full = grid.parse_args(["--seeds", "0,1", "--train-modes", "hard,fuzzy", "--rl-lr", "1e-4"])
    assert full.seeds == (0, 1) and full.train_modes == ("hard", "fuzzy") and full.rl_lr == 1e-4
    assert full.results.endswith("benchmarks/RESULTS_grid.md") and not full.smoke
    assert grid.parse_args([]).train_modes == ("hard", "soft", "fuzzy", "gumbel", "dirichlet")
    assert grid.parse_args(["--train-modes", "gumbel,dirichlet"]).train_modes == ("gumbel", "dirichlet")
    with pytest.raises(SystemExit):
        grid.parse_args(["--train-modes", "hard,gaussian"])  # the grid's label of that rollout is "soft"
    with pytest.raises(SystemExit):
        grid.parse_args(["--samples", "8", "--ks", "1,32"])
    assert grid.parse_args(["--eval-split", "dev"]).eval_split == "dev"
    assert grid.parse_args(["--rl-scale-rewards", "none"]).rl_scale_rewards == "none"
    for flag, bad in (("--eval-split", "train"), ("--rl-scale-rewards", "rloo")):
        with pytest.raises(SystemExit):
            grid.parse_args([flag, bad])
    # stage folders are keyed by the settings they depend on
    base = grid.settings_hash(full, grid.RL_KEYS, "sft-x")
    assert (
        grid.settings_hash(grid.parse_args(["--rl-lr", "1e-4", "--seeds", "5"]), grid.RL_KEYS, "sft-x")
        == base
    )
    assert grid.settings_hash(grid.parse_args(["--rl-lr", "2e-4"]), grid.RL_KEYS, "sft-x") != base


# ------------------------------------------------------------------------------------- stage cache keys


def _settings_read(path: Path) -> set[str]:
    """The ``settings.<name>`` attributes a module reads."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "settings"
    }


def test_each_stage_key_covers_the_settings_the_stage_reads(grid):
    stages = GRID_PATH.parent / "grid_stages"
    where = {"out"}  # the output folder: where, not what
    assert _settings_read(stages / "sft.py") - where <= set(grid.SFT_KEYS)
    assert _settings_read(stages / "rl.py") - where <= set(grid.RL_KEYS)
    assert _settings_read(stages / "evaluate.py") - where <= set(grid.EVAL_KEYS)
    # the splits are made once for all stages (SFT_KEYS; RL and evaluation name the SFT folder), the OOD
    # texts are the evaluation's
    assert _settings_read(stages / "task.py") <= set(grid.SFT_KEYS) | {"ood_size"}
    assert "ood_size" in grid.EVAL_KEYS
    # every setting of the grid is in some key, or is one of those that change where/how fast
    fields = {f.name for f in dataclasses.fields(grid.GridSettings)}
    in_keys = set(grid.SFT_KEYS) | set(grid.RL_KEYS) | set(grid.EVAL_KEYS)
    assert fields - in_keys == {"out", "results", "plot", "section", "threads", "train_modes", "seeds", "smoke"}


def test_evaluation_folder_follows_the_rl_folder_that_made_the_model(grid, tmp_path):
    base = grid.parse_args(["--smoke", "--out", str(tmp_path)])
    sft = grid.sft_run_folder(base)
    rl = grid.rl_run_folder(base, "gumbel", 0, sft)
    evaluation = grid.eval_run_folder(base, "gumbel-s0", rl / "model", sft)
    assert grid.eval_run_folder(base, "gumbel-s0", rl / "model", sft) == evaluation
    for flag, value in [
        ("--rl-max-topk", "1"),
        ("--rl-lr", "3e-4"),
        ("--rl-sigma", "0.5"),
        ("--rl-gumbel-tau", "1.0"),
        ("--rl-steps", "3"),
        ("--rl-scale-rewards", "none"),
    ]:
        changed = grid.parse_args(["--smoke", "--out", str(tmp_path), flag, value])
        assert grid.sft_run_folder(changed) == sft
        rl_changed = grid.rl_run_folder(changed, "gumbel", 0, sft)
        assert rl_changed != rl, flag
        assert grid.eval_run_folder(changed, "gumbel-s0", rl_changed / "model", sft) != evaluation, flag
    # another SFT start changes the RL folder, and so the evaluation of its model
    other = grid.parse_args(["--smoke", "--out", str(tmp_path), "--sft-lr", "1e-3"])
    other_sft = grid.sft_run_folder(other)
    assert other_sft != sft and grid.rl_run_folder(other, "gumbel", 0, other_sft) != rl
    # the rollout of a training mode, and evaluation settings
    assert grid.rl_run_folder(base, "soft", 0, sft).name.split("-")[-1] != rl.name.split("-")[-1]
    batch = grid.parse_args(["--smoke", "--out", str(tmp_path), "--eval-batch", "8"])
    assert grid.eval_run_folder(batch, "sft", sft, sft) != grid.eval_run_folder(base, "sft", sft, sft)
    # the dev split is another evaluation of the same models: the RL run is shared, the evaluation is not
    dev = grid.parse_args(["--smoke", "--out", str(tmp_path), "--eval-split", "dev"])
    assert grid.rl_run_folder(dev, "gumbel", 0, sft) == rl
    assert grid.eval_run_folder(dev, "gumbel-s0", rl / "model", sft) != evaluation
    # where the report goes changes nothing that is computed
    named = grid.parse_args(["--smoke", "--out", str(tmp_path), "--section", "tuned"])
    assert grid.eval_run_folder(named, "gumbel-s0", rl / "model", sft) == evaluation


@pytest.fixture(scope="module")
def fingerprint(grid):
    return importlib.import_module("grid_stages.fingerprint")


def test_stage_code_closures(fingerprint):
    roots = fingerprint.local_roots()
    closures = {
        stage: fingerprint.source_closure(f"grid_stages.{stage}", roots)
        for stage in ("sft", "rl", "evaluate")
    }
    rl_files, rl_libraries = closures["rl"]
    # the trainer package loads its modules by name (importlib): all of it counts
    assert {"hf_softthink.trainer.trainer", "hf_softthink.trainer.config", "hf_softthink.generation"} <= set(
        rl_files
    )
    assert {"trl", "torch", "transformers"} <= rl_libraries
    sft_files, _ = closures["sft"]
    assert {"grid_stages.sft", "grid_stages.task", "hf_softthink.models", "hf_softthink.data"} <= set(
        sft_files
    )
    eval_files, _ = closures["evaluate"]
    assert {
        "hf_softthink.evaluation.run",
        "hf_softthink.evaluation.decoding",
        "hf_softthink.processors",
    } <= set(eval_files)
    for stage in ("sft", "evaluate"):  # hf_softthink's lazy loader of the trainer is not followed
        assert not any(name.startswith("hf_softthink.trainer") for name in closures[stage][0]), stage
    for stage in ("sft", "rl", "evaluate"):  # the report never invalidates a stage
        assert "grid_stages.report" not in closures[stage][0], stage


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_code_digest_changes_exactly_with_the_code_a_stage_runs(fingerprint, tmp_path):
    _write(
        tmp_path / "pkg",
        {
            "__init__.py": "import json\nfrom .base import X\n\ndef __getattr__(name):\n    from . import heavy\n",
            "base.py": "X = 1\n",
            "stage.py": "from pkg.used import f\n\ndef run():\n    from .late import g\n",
            "used.py": "def f():\n    return 1\n",
            "late.py": "def g():\n    return 2\n",
            "heavy.py": "import trl\n",
            "unrelated.py": "Y = 0\n",
            "lazy/__init__.py": "import importlib\n\ndef __getattr__(n):\n    return importlib.import_module('.m', __name__)\n",
            "lazy/m.py": "Z = 0\n",
            "uses_lazy.py": "from pkg.lazy import Z\n",
        },
    )
    roots = {"pkg": tmp_path / "pkg"}
    files, libraries = fingerprint.source_closure("pkg.stage", roots)
    assert set(files) == {"pkg", "pkg.base", "pkg.stage", "pkg.used", "pkg.late"}
    assert libraries == set()  # json is the standard library; heavy (trl) is behind the lazy __getattr__
    assert set(fingerprint.source_closure("pkg.uses_lazy", roots)[0]) >= {"pkg.lazy", "pkg.lazy.m"}

    before = fingerprint.code_digest("pkg.stage", roots)
    (tmp_path / "pkg" / "unrelated.py").write_text("Y = 1\n")
    (tmp_path / "pkg" / "heavy.py").write_text("import trl  # edited\n")
    assert fingerprint.code_digest("pkg.stage", roots) == before
    for edited in ("late.py", "used.py", "base.py", "__init__.py"):
        path = tmp_path / "pkg" / edited
        original = path.read_text()
        path.write_text(original + "# edited\n")
        assert fingerprint.code_digest("pkg.stage", roots) != before, edited
        path.write_text(original)
    assert fingerprint.code_digest("pkg.stage", roots) == before


# ----------------------------------------------------------------------------------- end to end (smoke)


def _run_grid(out: Path, *flags: str) -> str:
    command = [sys.executable, str(GRID_PATH), "--smoke", "--out", str(out), *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit code {done.returncode}\n" + done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory):
    """One smoke-size grid with every training mode (the folder is shared by the tests below)."""
    out = tmp_path_factory.mktemp("grid")
    return out, _run_grid(out)


@pytest.mark.slow
def test_smoke_end_to_end(smoke_grid):
    out, _ = smoke_grid
    results = (out / "RESULTS_grid.md").read_text(encoding="utf-8")
    for label in (
        "SFT start (no RL)",
        "hard",
        "soft (gaussian)",
        "fuzzy",
        "soft (gumbel)",
        "soft (dirichlet)",
    ):
        assert f"| {label} |" in results
    assert "fuzzy-sample pass@4" in results and "OOD KL" in results
    png = (out / "grid_results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    runs = [json.loads(p.read_text()) for p in (out / "rl").glob("*/run.json")]
    assert sorted(r["soft_rollout"] for r in runs) == ["dirichlet", "fuzzy", "gaussian", "gumbel", "hard"]


@pytest.mark.slow
def test_smoke_rerun_reuses_every_stage(smoke_grid):
    out, first = smoke_grid
    again = _run_grid(out)
    modes = ("hard", "soft", "fuzzy", "gumbel", "dirichlet")
    assert first.count("reusing") == 0
    assert again.count("reusing") == 1 + len(modes) + (1 + len(modes)), again  # SFT, RL runs, evaluations
    assert all(f"eval {mode}-s0: reusing" in again for mode in modes)


@pytest.mark.slow
def test_smoke_changed_rl_setting_redoes_rl_and_its_evaluation(smoke_grid):
    out, _ = smoke_grid
    before = json.loads((out / "grid.json").read_text())
    changed = _run_grid(out, "--train-modes", "soft", "--rl-max-topk", "1")
    # the SFT start and its evaluation do not depend on the RL settings: reused
    assert "SFT: reusing" in changed and "eval sft: reusing" in changed
    # the RL run and the evaluation of the model it made are redone
    assert "RL soft seed 0: reusing" not in changed and "eval soft-s0: reusing" not in changed
    assert changed.count("reusing") == 2, changed
    after = json.loads((out / "grid.json").read_text())
    new_eval, old_eval = after["evals"]["soft"][0], before["evals"]["soft"][0]
    assert new_eval["model"] != old_eval["model"] and Path(new_eval["model"]).parent.is_dir()
    assert after["settings"]["rl_max_topk"] == 1
