"""benchmarks/estimator_signal.py: the pair statistics, and the script end to end at smoke size."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "estimator_signal.py"


@pytest.fixture(scope="module")
def signal():
    spec = importlib.util.spec_from_file_location("estimator_signal", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["estimator_signal"] = module
    spec.loader.exec_module(module)
    return module


def test_pair_mean_and_its_jackknife_error_match_a_hand_computation(signal):
    grads = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([-1.0, 0.5])]
    cosines = signal.pair_cosines(grads)
    pairs = {(i, j): float(torch.nn.functional.cosine_similarity(grads[i], grads[j], dim=0))
             for i in range(4) for j in range(i + 1, 4)}
    mean, se = signal.pair_mean_jackknife(cosines)
    assert mean == pytest.approx(sum(pairs.values()) / 6)
    leave_out = [sum(v for (i, j), v in pairs.items() if k not in (i, j)) / 3 for k in range(4)]
    centre = sum(leave_out) / 4
    assert se == pytest.approx(math.sqrt(3 / 4 * sum((v - centre) ** 2 for v in leave_out)))


@pytest.mark.slow
def test_the_script_measures_each_estimator_from_the_grids_smoke_start(signal, tmp_path):
    out = signal.main(["--smoke", "--estimators", "hard,gumbel_max,stht", "--batches", "3", "--grid-out",
                       str(tmp_path / "grid"), "--out", str(tmp_path / "signal")])
    assert list(out["results"]) == ["hard", "gumbel_max", "stht"]
    assert "minus_hard" in out["results"]["stht"] and "minus_hard" not in out["results"]["hard"]
    assert all(len(r["cosines"]) == 3 for r in out["results"].values())
    saved = json.loads((tmp_path / "signal" / "signal.json").read_text())
    assert saved["meta"]["batches"] == 3 and "| gumbel_max |" in out["report"]
    assert out["results"]["stht"]["recipe"] == "stht"
