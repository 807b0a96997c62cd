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


def _record(
    counts: dict[str, list[int]], samples: int = 4, nll: float = 1.0, kl: float = 0.0, seconds: float = 2.0, **extra
):
    """An evaluation record: per mode, the number of correct samples of each problem."""
    summary = {mode: {"mean_thinking_tokens": 20.0, "mean_answer_tokens": 3.0} for mode in counts}
    return {
        "summary": summary,
        "samples": samples,
        "problems": "p",
        "correct_counts": counts,
        "ood": {"nll": nll, "delta_nll": nll - 1.0, "kl": kl},
        "seconds": seconds,
        **extra,
    }


def test_chain_trace(grid):
    assert grid.chain_trace("4 - 1 + 7") == ("4 - 1 = 3, 3 + 7 = 10", "10")
    assert grid.chain_trace("0 - 4") == ("0 - 4 = -4", "-4")
    assert grid.chain_trace("0 - 4 - 8") == ("0 - 4 = -4, -4 - 8 = -12", "-12")
    assert grid.completion_text({"solutions": [("2 + 3 = 5", "5")]}) == "<think>2 + 3 = 5</think>5<|im_end|>"
    for bad in ("4 -", "4 * 2", "4"):
        with pytest.raises(ValueError):
            grid.chain_trace(bad)


def test_countdown_solutions_are_every_way_and_the_verifier_accepts_them(grid):
    from hf_softthink.data import grade_sample, reasoning_gym_dataset

    assert grid.countdown_solutions([7, 5, 1], 2) == [
        ("5 * 1 = 5, 7 - 5 = 2", "7 - (5 * 1)"),
        ("7 * 1 = 7, 7 - 5 = 2", "(7 * 1) - 5"),
        ("7 - 5 = 2, 2 * 1 = 2", "(7 - 5) * 1"),
    ]
    assert grid.countdown_solutions([3, 4, 5], 35) == [("4 + 3 = 7, 7 * 5 = 35", "(4 + 3) * 5")]
    # every step's result is positive (Countdown's rule): 2 from [3, 5, 4], never through 3 - 5 = -2
    solutions = grid.countdown_solutions([3, 5, 4], 2)
    assert ("4 + 3 = 7, 7 - 5 = 2", "(4 + 3) - 5") in solutions
    assert all(int(step.split(" = ")[1]) > 0 for trace, _ in solutions for step in trace.split(", "))
    assert grid.countdown_solutions([2, 2], 5) == []
    settings = grid.parse_args(["--smoke"])
    config = {"min_numbers": 3, "max_numbers": 3, "min_value": 1, "max_value": 9, "min_target": 1,
              "max_target": 99, "operators": ("+", "-", "*")}
    for row in reasoning_gym_dataset("countdown", size=40, seed=3, config=config, thinking_instruction=None):
        problem = grid.problem_row(settings, row)
        assert problem["solutions"], problem["content"]
        for trace, answer in problem["solutions"]:
            assert grade_sample(problem, f"<think>{trace}</think>{answer}", think_end="</think>").correct


def test_sft_completion_is_drawn_from_every_solution(grid):
    import random

    row = {"solutions": grid.countdown_solutions([7, 5, 1], 2)}
    rng = random.Random(0)
    drawn = {grid.completion_text(row, rng) for _ in range(60)}
    assert drawn == {f"<think>{t}</think>{a}<|im_end|>" for t, a in row["solutions"]}


def test_splits_are_a_partition_of_distinct_problems(grid):
    settings = grid.parse_args(["--smoke"])
    splits = grid.build_splits(settings)
    keys = {name: [row["key"] for row in rows] for name, rows in splits.items()}
    assert len(keys["test"]) == settings.test_problems and len(keys["dev"]) == settings.dev_problems
    everything = keys["test"] + keys["dev"] + keys["train"]
    assert len(everything) == len(set(everything))  # distinct, and no problem in two splits
    assert grid.build_splits(settings)["test"] == splits["test"]  # seeded
    with pytest.raises(ValueError, match="--pool-size"):
        grid.build_splits(dataclasses.replace(settings, test_problems=10_000))


def test_format_mean_std(grid):
    assert grid.format_mean_std([0.4, 0.5, 0.6]) == "0.50 ± 0.10"  # sample std
    assert grid.format_mean_std([0.456]) == "0.46"
    assert grid.format_mean_std([]) == "–"
    assert grid.format_mean_std([0.1, -0.3], 3, signed=True) == "-0.100 ± 0.283"
    assert grid.format_mean_std([12.0, 14.0], 0) == "13 ± 1"
    mean, std = grid.mean_std([1.0])
    assert mean == 1.0 and std is None


# ------------------------------------------------------------------------------------------ statistics


def test_cell_standard_errors_against_a_hand_computation(grid):
    # 3 seeds x 4 problems
    x = [[1.0, 0.5, 0.0, 0.5], [0.75, 0.5, 0.25, 0.5], [1.0, 1.0, 0.0, 0.25]]
    stats = grid.cell_stats(x)
    # per-seed means 0.5, 0.5, 0.5625: mean 0.520833; sd = 0.0360844; SE = sd / sqrt(3) = 0.0208333
    assert stats.per_seed == pytest.approx((0.5, 0.5, 0.5625))
    assert stats.mean == pytest.approx(0.5208333333)
    assert stats.se_seeds == pytest.approx(0.0208333333)
    # per-problem means over seeds 11/12, 8/12, 1/12, 5/12 (mean 25/48): squared deviations sum to 0.3802083,
    # sd = sqrt(0.3802083 / 3) = 0.3560002; SE = sd / sqrt(4)
    assert stats.se_problems == pytest.approx(0.1780001, rel=1e-6)
    assert stats.se == pytest.approx((0.0208333333**2 + 0.1780001**2) ** 0.5, rel=1e-6)
    one = grid.cell_stats([[1.0, 0.0, 0.0, 1.0]])  # one model: SE over problems only
    assert one.se_seeds is None and one.se_problems == pytest.approx(0.5773503 / 2) and one.se == one.se_problems
    with pytest.raises(ValueError):
        grid.cell_stats([[1.0, 0.0], [1.0]])


def test_paired_gap_against_a_hand_computation(grid):
    soft = [[1.0, 0.5, 0.0], [0.5, 0.5, 0.5]]
    hard = [[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]]
    gap = grid.paired_stats(soft, hard)
    # differences [[0.5, 0, -0.5], [-0.5, 0.5, 0.5]]: per seed 0 and 1/6 -> mean 1/12, sd 0.117851, SE / sqrt 2
    assert gap.mean == pytest.approx(1 / 12)
    assert gap.se_seeds == pytest.approx(0.117851130 / 2**0.5)
    # per problem 0, 0.25, 0: sd 0.1443376, SE / sqrt 3
    assert gap.se_problems == pytest.approx(0.1443376 / 3**0.5)
    with pytest.raises(ValueError):
        grid.paired_stats(soft, hard[:1])


def test_pass_at_1_is_the_mean_over_the_samples_per_problem(grid):
    # mean@32: a problem with 8 of 32 correct counts 0.25; pass@32 of it is 1; of 0 correct 0
    assert grid.per_problem_pass_at_k([8, 0, 32], 32, 1) == pytest.approx([0.25, 0.0, 1.0])
    assert grid.per_problem_pass_at_k([8, 0, 32], 32, 32) == pytest.approx([1.0, 0.0, 1.0])
    assert grid.per_problem_pass_at_k([1], 4, 2) == [pytest.approx(0.5)]  # 1 - C(3,2)/C(4,2)


def test_grid_table(grid):
    modes = ("hard-greedy", "hard-sample", "own")
    evals = {
        "sft": [_record({"hard-greedy": [0, 4], "hard-sample": [1, 3]})],
        "hard": [
            _record({"hard-greedy": [4, 4], "hard-sample": [2, 4]}),
            _record({"hard-greedy": [0, 4], "hard-sample": [2, 2]}),
        ],
        "gumbel": [
            _record({"hard-greedy": [4, 4], "hard-sample": [2, 4], "own-noise": [4, 0]}, rollout=_GUMBEL),
            _record({"hard-greedy": [4, 4], "hard-sample": [2, 4], "own-noise": [4, 4]}, rollout=_GUMBEL),
        ],
    }
    table = grid.grid_table(evals, modes, [1, 4], 4).splitlines()
    assert table[0] == (
        "| training \\ inference | own noise | hard-greedy pass@1 | hard-sample pass@1 (mean@4) | hard-sample pass@4 | "
        "own-noise pass@1 (mean@4) | own-noise pass@4 |"
    )
    assert table[1] == "|---|---:|---:|---:|---:|---:|---:|"
    # the SFT start: one model, SE over problems only: hard-sample per problem 0.25, 0.75 -> 0.5 ± 0.25
    assert table[2] == "| SFT start (no RL) | – | 0.500 ± –/0.500 | 0.500 ± –/0.250 | 1.000 ± –/0.000 | – | – |"
    # hard, hard-sample pass@1: seeds (0.5+1)/2 = 0.75 and 0.5: SE over seeds 0.125; per problem 0.5, 0.75:
    # SE over problems 0.125
    assert table[3].startswith("| hard | – | 0.750 ± 0.250/0.250 | 0.625 ± 0.125/0.125 | 1.000 ± 0.000/0.000 |")
    assert table[4].startswith("| soft (gumbel) | gumbel tau 0.3, top-10 |")
    assert table[4].endswith("| 0.750 ± 0.250/0.250 | 0.750 ± 0.250/0.250 |")  # 0 of 4 right: pass@4 is 0

    runs = {"hard": [{"rewards": [0.1, 0.2, 0.3, 0.4, 0.5], "seconds": 10.0}] * 2}
    drift = grid.drift_table(evals, runs).splitlines()
    assert len(drift) == 5
    assert drift[3].startswith(
        "| hard | 1.000 ± 0.000 | +0.000 ± 0.000 | 0.000 ± 0.000 | 0.10 ± 0.00 → 0.50 ± 0.00 |"
    )


_GUMBEL = {"noise": "gumbel", "gumbel_tau": 0.3, "max_topk": 10, "temperature": 1.0}


def test_targets_block(grid):
    hard = [_record({"hard-sample": [2, 2, 4]}), _record({"hard-sample": [2, 0, 4]})]
    soft = [
        _record({"hard-sample": [2, 2, 4], "own-noise": [4, 2, 4]}, rollout=_GUMBEL),
        _record({"hard-sample": [0, 2, 4], "own-noise": [4, 2, 4]}, rollout=_GUMBEL),
    ]
    evals = {"sft": [_record({"hard-sample": [1, 1, 1]})], "hard": hard, "gumbel": soft}
    history = [{"completions/mean_length": 30.0, "soft/thinking_length": 20.0}] * 5
    runs = {"hard": [{"history": history}] * 2, "gumbel": [{"history": history}] * 2}
    # pass@1 gap with hard-sample inference: d = [[0,0,0],[-0.5,0.5,0]]: per seed 0, 0 -> mean 0, SE_s 0;
    # per problem -0.25, 0.25, 0 -> sd 0.25, SE_p 0.144338
    gap = grid.paired_gap(evals, "gumbel", "hard-sample", 1)
    assert gap.mean == pytest.approx(0.0) and gap.se_seeds == pytest.approx(0.0)
    assert gap.se_problems == pytest.approx(0.25 / 3**0.5)
    # own noise vs hard's hard-sample: d = [[0.5,0,0],[0.5,0.5,0]] -> per seed 1/6, 1/3: mean 0.25
    own = grid.paired_gap(evals, "gumbel", "own-noise", 1)
    assert own.mean == pytest.approx(0.25)
    assert grid.within_one_se(gap) == "yes" and grid.above_hard(own) == "above"
    table = grid.targets_table(evals, runs, ("hard-sample", "own"), [1, 4], 4).splitlines()
    assert table[0].startswith("| training | pass@1 (mean@4) gap, hard-sample | ≥ hard − 1 SE | pass@1 (mean@4) gap, own")
    assert len(table) == 4  # header, rule, hard, gumbel: the SFT start has no targets
    assert table[2].startswith("| hard | – | – | – | – | – | – | – | – | no (20.0 vs 20.0 tokens")
    cells = [c.strip() for c in table[3].split("|")[1:-1]]
    assert cells[0] == "soft (gumbel)"
    assert cells[1] == f"+0.000 ± {gap.se:.3f} (0.000/{gap.se_problems:.3f})" and cells[2] == "yes"
    assert cells[3].startswith("+0.250 ± ") and cells[4] == ("yes" if own.mean >= -own.se else "no")
    assert cells[-1].startswith("no (")
    # a row below hard by more than one SE misses the target; a thinking length that halves is a collapse
    worse = [_record({"hard-sample": [0, 0, 2]}), _record({"hard-sample": [0, 0, 2]})]
    short = [{"history": [{"soft/thinking_length": 20.0}] * 5 + [{"soft/thinking_length": 5.0}] * 5}]
    assert grid.within_one_se(grid.paired_gap({**evals, "worse": worse}, "worse", "hard-sample", 1)) == "no"
    assert grid.length_collapse(worse, short, evals["sft"]).startswith("yes")
    # evaluations on other problems are not paired
    other = [dict(r, problems="q") for r in soft]
    assert grid.paired_gap({**evals, "gumbel": other}, "gumbel", "hard-sample", 1) is None


def test_rows_table_names_each_rows_score_and_learning_rate(grid):
    run = {"rollout_config": None, "config": {"soft_rollout": "hard", "learning_rate": 1e-4, "temperature": 1.0}}
    residual = {
        "rollout_config": {"noise": "gumbel", "gumbel_tau": 0.5, "max_topk": 10, "temperature": 1.0},
        "config": {"soft_rollout": "gumbel", "soft_density": "gumbel_max", "soft_density_residual": 0.1,
                   "learning_rate": 3e-5, "beta": 0.0, "scale_rewards": "group", "loss_type": "dapo"},
    }
    table = grid.rows_table({"hard": [run], "gumbel-max-r0.1": [residual]}).splitlines()
    assert table[2].startswith("| hard | hard | – | – | 1 | 0.0001 |")
    assert table[3].startswith("| soft (gumbel, gumbel_max + 0.1 residual) | gumbel | gumbel_max + 0.1 residual | "
                               "gumbel tau 0.5, top-10 | – | 3e-05 | 0 | grpo, scaled by group | dapo |")


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
    evals = {
        "sft": [_record({"hard-greedy": [1]})],
        "gumbel": [_record({"hard-greedy": [1], "own-noise": [1]})],
    }
    evals["gumbel"][0]["summary"]["own-noise"]["mean_thinking_tokens"] = 12.0
    history = [{"completions/mean_length": float(n), "soft/thinking_length": n - 5.0} for n in range(20, 30)]
    runs = {"gumbel": [{"rewards": [0.5] * 10, "seconds": 1.0, "history": history}]}
    table = grid.length_table(evals, runs, ("hard-greedy", "own")).splitlines()
    assert table[0].startswith("| training | RL completion tokens first→last 20% |")
    assert table[2] == "| SFT start (no RL) | – | – | – | 20.0 | – | 3.0 | – |"
    # first and last 2 of 10 steps: (20+21)/2 and (28+29)/2; the EOS rate was not logged
    assert table[3] == "| soft (gumbel) | 20.5 → 28.5 | 15.5 → 23.5 | – | 20.0 | 12.0 | 3.0 | 3.0 |"


def test_parse_args(grid, tmp_path):
    smoke = grid.parse_args(["--smoke", "--out", str(tmp_path)])
    assert smoke.smoke and smoke.seeds == (0,) and smoke.out == str(tmp_path)
    assert smoke.results == str(tmp_path / "RESULTS_grid.md")  # smoke never overwrites the benchmark's files
    full = grid.parse_args(["--seeds", "0,1", "--train-modes", "hard,fuzzy", "--rl-lr", "1e-4"])
    assert full.seeds == (0, 1) and full.train_modes == ("hard", "fuzzy") and full.rl_lr == 1e-4
    assert full.results.endswith("benchmarks/RESULTS_grid.md") and not full.smoke
    assert grid.parse_args([]).train_modes == (
        "hard", "softgrpo", "stht", "stht-fuzzy", "gumbel-max", "logistic-normal"
    )
    assert grid.parse_args([]).rl_lr is None  # each row's own, chosen on dev
    assert grid.parse_args([]).inference_modes == ("hard-greedy", "hard-sample", "own")
    assert grid.parse_args([]).task == "countdown" and grid.parse_args([]).test_problems >= 500
    assert grid.parse_args(["--train-modes", "gumbel,dirichlet"]).train_modes == ("gumbel", "dirichlet")
    with pytest.raises(SystemExit):
        grid.parse_args(["--train-modes", "hard,soft"])  # not a row of grid_stages/rows.py
    with pytest.raises(SystemExit):
        grid.parse_args(["--task", "sudoku"])
    with pytest.raises(SystemExit):
        grid.parse_args(["--inference-modes", "own"])  # nothing to decode the SFT start and hard with
    assert grid.parse_args(["--task", "chain_sum"]).task == "chain_sum"
    with pytest.raises(SystemExit):
        grid.parse_args(["--samples", "8", "--ks", "1,32"])
    assert grid.parse_args(["--eval-split", "dev"]).eval_split == "dev"
    assert grid.parse_args(["--rl-scale-rewards", "none"]).rl_scale_rewards == "none"
    for flag, bad in (("--eval-split", "train"), ("--rl-scale-rewards", "rloo")):
        with pytest.raises(SystemExit):
            grid.parse_args([flag, bad])
    # stage folders are keyed by the settings they depend on
    base = grid.settings_hash(full, grid.RL_KEYS, "sft-x")
    assert grid.settings_hash(grid.parse_args(["--seeds", "5"]), grid.RL_KEYS, "sft-x") == base
    assert grid.settings_hash(grid.parse_args(["--rl-steps", "7"]), grid.RL_KEYS, "sft-x") != base


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
    # the row table builds the run's config from the run sizes and the shared recipe; the config is in the RL
    # key, the recipe flags reach a run only through it (no stage reads them)
    assert _settings_read(stages / "rows.py") <= set(grid.RL_KEYS) | set(grid.RECIPE_KEYS)
    for stage in ("sft.py", "rl.py", "evaluate.py", "task.py"):
        assert not _settings_read(stages / stage) & set(grid.RECIPE_KEYS), stage
    assert _settings_read(stages / "evaluate.py") - where <= set(grid.EVAL_KEYS)
    # the splits are made once for all stages (SFT_KEYS; RL and evaluation name the SFT folder), the OOD
    # texts are the evaluation's
    assert _settings_read(stages / "task.py") <= set(grid.SFT_KEYS) | {"ood_size"}
    assert "ood_size" in grid.EVAL_KEYS
    # every setting of the grid is in some key, or is one of those that change where/how fast
    fields = {f.name for f in dataclasses.fields(grid.GridSettings)}
    in_keys = set(grid.SFT_KEYS) | set(grid.RL_KEYS) | set(grid.EVAL_KEYS) | set(grid.RECIPE_KEYS)
    assert fields - in_keys == {"out", "results", "plot", "section", "threads", "train_modes", "seeds", "smoke"}


def _rl_folder(grid, settings, row, seed, sft):
    return grid.rl_run_folder(settings, row, seed, sft, grid.training_config(settings, row, seed))


def test_evaluation_folder_follows_the_rl_folder_that_made_the_model(grid, tmp_path):
    base = grid.parse_args(["--smoke", "--out", str(tmp_path)])
    sft = grid.sft_run_folder(base)
    rl = _rl_folder(grid, base, "gumbel", 0, sft)
    assert rl.parent == tmp_path / "rl" and rl.name.startswith("gumbel-s0-")
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
        rl_changed = _rl_folder(grid, changed, "gumbel", 0, sft)
        assert rl_changed != rl, flag
        assert grid.eval_run_folder(changed, "gumbel-s0", rl_changed / "model", sft) != evaluation, flag
    # another SFT start changes the RL folder, and so the evaluation of its model
    other = grid.parse_args(["--smoke", "--out", str(tmp_path), "--sft-lr", "1e-3"])
    other_sft = grid.sft_run_folder(other)
    assert other_sft != sft and _rl_folder(grid, other, "gumbel", 0, other_sft) != rl
    # the task is an SFT setting
    assert grid.sft_run_folder(grid.parse_args(["--smoke", "--task", "chain_sum"])) != grid.sft_run_folder(
        grid.parse_args(["--smoke"])
    )
    # the rollout of a row, and evaluation settings
    assert _rl_folder(grid, base, "gaussian", 0, sft).name.split("-")[-1] != rl.name.split("-")[-1]
    batch = grid.parse_args(["--smoke", "--out", str(tmp_path), "--eval-batch", "8"])
    assert grid.eval_run_folder(batch, "sft", sft, sft) != grid.eval_run_folder(base, "sft", sft, sft)
    # the dev split is another evaluation of the same models: the RL run is shared, the evaluation is not
    dev = grid.parse_args(["--smoke", "--out", str(tmp_path), "--eval-split", "dev"])
    assert _rl_folder(grid, dev, "gumbel", 0, sft) == rl
    assert grid.eval_run_folder(dev, "gumbel-s0", rl / "model", sft) != evaluation
    # the own-noise mode decodes with the run's rollout config: another config, another evaluation
    rollout = grid.training_config(base, "gumbel", 0).rollout_config().to_dict()
    own = grid.eval_run_folder(base, "gumbel-s0", rl / "model", sft, rollout)
    assert own != evaluation
    assert grid.eval_run_folder(base, "gumbel-s0", rl / "model", sft, {**rollout, "gumbel_tau": 0.1}) != own
    # where the report goes changes nothing that is computed
    named = grid.parse_args(["--smoke", "--out", str(tmp_path), "--section", "tuned"])
    assert grid.eval_run_folder(named, "gumbel-s0", rl / "model", sft) == evaluation


def test_a_row_is_keyed_by_the_config_it_builds(grid, tmp_path, monkeypatch):
    """Adding or editing one row reruns that row only; the row table is in no stage's code digest."""
    settings = grid.parse_args(["--smoke", "--out", str(tmp_path)])
    sft = grid.sft_run_folder(settings)
    before = {row: _rl_folder(grid, settings, row, 0, sft) for row in ("hard", "gumbel")}
    assert before["hard"] != before["gumbel"]
    gumbel = grid.ROWS["gumbel"].build
    tuned = grid.Row("gumbel, tau 0.1", lambda run, recipe: gumbel(
        run, {**recipe, "soft_thinking": {**recipe["soft_thinking"], "gumbel_tau": 0.1}}
    ))
    monkeypatch.setitem(grid.ROWS, "gumbel", tuned)
    monkeypatch.setitem(grid.ROWS, "gumbel_copy", grid.Row("copy", grid.ROWS["hard"].build))
    assert _rl_folder(grid, settings, "hard", 0, sft) == before["hard"]
    assert _rl_folder(grid, settings, "gumbel", 0, sft) != before["gumbel"]
    # the same config under another row name: another folder (the name is in it), the same key
    copy = _rl_folder(grid, settings, "gumbel_copy", 0, sft)
    assert copy.name.split("-")[-1] == before["hard"].name.split("-")[-1]
    # the task's limits are set whatever the builder does, and a bad one is refused at build time
    args = grid.training_config(settings, "gumbel", 0)
    assert args.soft_thinking["think_end"] == "</think>"
    assert args.soft_thinking["max_thinking_tokens"] == settings.max_thinking_tokens
    with pytest.raises(KeyError, match="grid_stages/rows.py"):
        grid.training_config(settings, "no-such-row", 0)


#: the learning rate of each of issue 16's rows, chosen on the dev split (RESULTS_grid.md, "Issue 16: learning
#: rates chosen on the dev split": the best dev hard-sample mean@32 of 3e-5, 1e-4 and 3e-4, seed 0)
DEV_CHOSEN_LR = {
    "hard": 1e-4, "softgrpo": 3e-5, "stht": 3e-5, "stht-fuzzy": 3e-5, "gumbel-max": 1e-4, "logistic-normal": 1e-4,
}


def test_issue16_rows_build_their_recipes_with_the_dev_chosen_learning_rates(grid, tmp_path):
    from hf_softthink.trainer import SoftGRPOConfig

    settings = grid.parse_args(["--out", str(tmp_path)])
    assert settings.train_modes == tuple(DEV_CHOSEN_LR)
    limits = {"think_end": "</think>", "max_thinking_tokens": settings.max_thinking_tokens}
    run = grid.run_kwargs(settings, 0)

    def settings_of(args):
        return {k: v for k, v in args.to_dict().items() if k not in ("output_dir", "logging_dir", "run_name")}

    configs = {row: grid.training_config(settings, row, 0) for row in DEV_CHOSEN_LR}
    for row, args in configs.items():
        assert args.learning_rate == DEV_CHOSEN_LR[row], row
        assert (args.max_steps, args.per_device_train_batch_size, args.num_generations) == (120, 64, 8)
    # a preset row is its preset with the grid's run size, the task's limits and the row's learning rate only
    presets = {
        "softgrpo": SoftGRPOConfig.softgrpo,
        "stht": SoftGRPOConfig.stht,
        "stht-fuzzy": lambda **kw: SoftGRPOConfig.stht(fuzzy=True, **kw),
    }
    for row, preset in presets.items():
        expected = preset(**run, learning_rate=DEV_CHOSEN_LR[row], soft_thinking=limits)
        assert settings_of(configs[row]) == settings_of(expected), row
    softgrpo = configs["softgrpo"].rollout_config()
    assert configs["softgrpo"].soft_density == "soft_grpo" and configs["softgrpo"].beta == 0.001
    assert (softgrpo.max_topk, softgrpo.gumbel_tau, softgrpo.gumbel_noise_clamp) == (5, 0.1, (-1.5, 3.0))
    stht, fuzzy = configs["stht"].rollout_config(), configs["stht-fuzzy"].rollout_config()
    assert stht.max_topk is None and stht.temperature == 0.5 and configs["stht"].advantage_estimator == "rloo"
    assert configs["stht-fuzzy"].soft_rollout == "fuzzy" and fuzzy.temperature == 1e-4 and fuzzy.max_topk is None
    # the lower-variance estimators on the grid's recipe (top-10, T 1, GRPO advantages, beta 0)
    gumbel_max, logistic = configs["gumbel-max"], configs["logistic-normal"]
    assert (gumbel_max.soft_rollout, gumbel_max.soft_density) == ("gumbel", "gumbel_max")
    assert gumbel_max.rollout_config().gumbel_tau == settings.rl_gumbel_tau
    assert logistic.soft_rollout == "logistic_normal" and logistic.rollout_config().logistic_normal_sigma == 3.0
    for args in (configs["hard"], gumbel_max, logistic):
        assert (args.beta, args.scale_rewards, args.lr_scheduler_type) == (0.0, "group", "constant")
    for args in (gumbel_max, logistic):
        rollout = args.rollout_config()
        assert (rollout.max_topk, rollout.temperature, rollout.think_end) == (10, 1.0, "</think>")
    # --rl-lr sets every row's learning rate (a sweep on dev); at a row's own value it names the same RL folder,
    # so the dev sweep's seed-0 run of the chosen value is the grid's
    sft = grid.sft_run_folder(settings)
    for row, lr in DEV_CHOSEN_LR.items():
        swept = grid.parse_args(["--out", str(tmp_path), "--rl-lr", "3e-4"])  # a value no row chose
        assert grid.training_config(swept, row, 0).learning_rate == 3e-4
        same = grid.parse_args(["--out", str(tmp_path), "--rl-lr", repr(lr)])
        assert _rl_folder(grid, same, row, 0, sft) == _rl_folder(grid, settings, row, 0, sft), row
        assert _rl_folder(grid, swept, row, 0, sft) != _rl_folder(grid, settings, row, 0, sft), row


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
    for stage in ("sft", "rl", "evaluate"):  # the report, the rows and the command line invalidate no stage
        for module in ("grid_stages.report", "grid_stages.rows", "grid_stages.cli"):
            assert module not in closures[stage][0], (stage, module)


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


#: the rows of the smoke grid (the default rows) and the noise each soft-trained model is decoded with
SMOKE_ROWS = ("hard", "softgrpo", "stht", "stht-fuzzy", "gumbel-max", "logistic-normal")
ROLLOUT_NOISE = {
    "hard": None, "softgrpo": "gumbel", "stht": "gaussian", "stht-fuzzy": "gaussian", "gumbel-max": "gumbel",
    "logistic-normal": "logistic_normal",
}


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory):
    """One smoke-size grid with every training mode (the folder is shared by the tests below)."""
    out = tmp_path_factory.mktemp("grid")
    return out, _run_grid(out)


@pytest.mark.slow
def test_smoke_end_to_end(grid, smoke_grid):
    out, _ = smoke_grid
    results = (out / "RESULTS_grid.md").read_text(encoding="utf-8")
    for row in ("sft", *SMOKE_ROWS):
        assert f"| {grid.row_label(row)} |" in results
    assert "own-noise pass@1 (mean@4)" in results and "**Targets**" in results and "OOD KL" in results
    assert "The SFT start on the dev split (8 problems): hard-greedy pass@1" in results
    png = (out / "grid_results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    runs = [json.loads(p.read_text()) for p in (out / "rl").glob("*/run.json")]
    assert {r["mode"]: r["soft_rollout"] for r in runs} == {
        "hard": "hard", "softgrpo": "gumbel", "stht": "gaussian", "stht-fuzzy": "fuzzy", "gumbel-max": "gumbel",
        "logistic-normal": "logistic_normal",
    }


@pytest.mark.slow
def test_smoke_rerun_reuses_every_stage(smoke_grid):
    out, first = smoke_grid
    again = _run_grid(out)
    modes = SMOKE_ROWS
    assert first.count("reusing") == 0
    # SFT, RL runs, evaluations (the SFT start on test and on dev, and each RL model)
    assert again.count("reusing") == 1 + len(modes) + (2 + len(modes)), again
    assert all(f"eval {mode}-s0: reusing" in again for mode in modes)


@pytest.mark.slow
def test_smoke_changed_rl_setting_redoes_rl_and_its_evaluation(smoke_grid):
    out, _ = smoke_grid
    before = json.loads((out / "grid.json").read_text())
    changed = _run_grid(out, "--train-modes", "gumbel-max,stht", "--rl-max-topk", "1")
    # the SFT start and its evaluation do not depend on the RL settings: reused
    assert "SFT: reusing" in changed and "eval sft: reusing" in changed and "eval sft-dev: reusing" in changed
    # the RL run of a row on the grid's recipe and the evaluation of the model it made are redone
    assert "RL gumbel-max seed 0: reusing" not in changed and "eval gumbel-max-s0: reusing" not in changed
    # a preset row keeps its own support: the flag changes nothing it builds, so it is reused
    assert "RL stht seed 0: reusing" in changed and "eval stht-s0: reusing" in changed
    assert changed.count("reusing") == 5, changed
    after = json.loads((out / "grid.json").read_text())
    new_eval, old_eval = after["evals"]["gumbel-max"][0], before["evals"]["gumbel-max"][0]
    assert new_eval["model"] != old_eval["model"] and Path(new_eval["model"]).parent.is_dir()
    assert after["settings"]["rl_max_topk"] == 1 and after["runs"]["gumbel-max"][0]["rollout_config"]["max_topk"] == 1


@pytest.mark.slow
def test_smoke_own_noise_and_mean_at_k_records(smoke_grid):
    """Each soft-trained model is decoded with its own training noise; pass@1 is the mean over the samples."""
    out, _ = smoke_grid
    result = json.loads((out / "grid.json").read_text())
    folders = {}  # (name, model) -> evaluation folder
    for path in (out / "eval").glob("*/grid_eval.json"):
        saved = json.loads(path.read_text())
        folders[(saved["name"], saved["model"])] = path.parent
    for row, runs in result["runs"].items():
        for run, record in zip(runs, result["evals"][row], strict=True):
            folder = Path(record["model"]).parent
            evaluation = folders[(record["name"], record["model"])]
            evaluated = json.loads((evaluation / "results.json").read_text())["modes"]
            if run["rollout_config"] is None:  # hard: no own noise
                assert row == "hard" and "own-noise" not in evaluated and "own-noise" not in record["correct_counts"]
                continue
            mode = evaluated["own-noise"]["mode"]
            rollout = run["rollout_config"]
            assert mode["soft_thinking"]["noise"] == rollout["noise"] == ROLLOUT_NOISE[row]
            for key in (
                "gumbel_tau", "gaussian_sigma", "dirichlet_alpha", "logistic_normal_sigma", "gumbel_noise_clamp",
                "max_topk", "top_k", "top_p", "min_p",
            ):
                assert mode["soft_thinking"][key] == rollout[key], (row, key)
            assert mode["soft_thinking"]["temperature"] == min(rollout["temperature"], 0.6)
            assert mode["do_sample"] and mode["temperature"] == 0.6
            assert json.loads((folder / "run.json").read_text())["rollout_config"] == rollout
    start = result["evals"]["sft"][0]
    assert "own-noise" not in start["correct_counts"]
    # mean@samples: the summary's pass@1 is the mean over problems of (correct samples / samples), and the
    # counts kept for the standard errors are those of the saved per-sample records
    eval_folder = folders[(start["name"], start["model"])]
    saved = [json.loads(line) for line in (eval_folder / "samples.jsonl").read_text().splitlines() if line]
    for mode, counts in start["correct_counts"].items():
        per_problem = {r["problem"]: sum(r["correct"]) for r in saved if r["mode"] == mode}
        assert counts == [per_problem[i] for i in range(len(counts))]
        assert start["summary"][mode]["pass@1"] == pytest.approx(sum(counts) / (len(counts) * start["samples"]))
