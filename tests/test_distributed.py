"""SoftGRPOTrainer on 2 CPU processes (torchrun, DDP over gloo; and FSDP2) trains exactly as one process on the
same rollouts.

`benchmarks/check_distributed.py` records a 2-process run (each rank's `generate` outputs, the all-reduced
gradients before every optimizer step, the logged loss and grad norm, the final LoRA weights), replays the
recorded rollouts in one process with twice the per-device batch, and compares the two step by step. The setup
makes the soft tensors' journey non-trivial: a GRPO group spans both ranks (rewards and advantages are gathered
and sliced per process), gradient accumulation shuffles and splits each rank's batch, `num_iterations=2` reuses
it with stored old log-probs, and `beta > 0` scores the reference model with the soft tensors too.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "check_distributed.py"


def run_check(out: Path, *flags: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    summary = out / "summary.json"
    report = json.loads(summary.read_text()) if summary.exists() else {}
    return result, report


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    result, report = run_check(out)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out, report


def test_two_process_soft_grpo_matches_one_process_on_the_same_rollouts(two_process_run):
    _, report = two_process_run
    assert report["passed"] and set(report["modes"]) == {"gumbel", "gaussian"}
    for mode, result in report["modes"].items():
        assert result["num_processes"] == 2 and result["distributed_type"] == "DistributedType.MULTI_CPU", (
            mode
        )
        assert len(result["steps"]) == 3
        for step in result["steps"]:
            assert step["grad_norm_multi"] > 0  # a real gradient, not an empty comparison
            assert step["grad_rel_diff"] < 1e-4 and step["rank_grad_rel_diff"] < 1e-4
            assert step["loss_close"] and step["grad_norm_close"]
        assert result["param_rel_diff"] < 1e-4
        assert any(abs(step["loss_multi"]) > 1e-4 for step in result["steps"])  # beta > 0: the loss is not ~0


def test_fsdp2_two_process_soft_grpo_matches_one_process(tmp_path):
    """The same check under FSDP2 (parameters sharded across the 2 processes). accelerate runs FSDP only on GPUs
    and silently falls back to DDP on CPU; `--cpu-fsdp` lifts that gate, and the record says FSDP was used."""
    config = SCRIPT.parents[1] / "examples" / "accelerate" / "fsdp_cpu.yaml"
    launcher = f"{sys.executable} -m accelerate.commands.launch --config_file {config}"
    result, report = run_check(tmp_path / "fsdp", "--cpu-fsdp", "--launcher", launcher)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for mode, result in report["modes"].items():
        assert result["distributed_type"] == "DistributedType.FSDP", mode
        assert result["passed"] and result["param_rel_diff"] < 1e-4, mode


def test_distributed_example_trains_on_two_processes(tmp_path):
    """examples/soft_grpo_distributed.py under torchrun (the README's command, with a tiny model and 1 step)."""
    from hf_softthink.models import tiny_model, tiny_tokenizer

    tiny_model("llama", seed=0).save_pretrained(tmp_path / "tiny")
    tiny_tokenizer().save_pretrained(tmp_path / "tiny")
    example = SCRIPT.parents[1] / "examples" / "soft_grpo_distributed.py"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(example),
        "--model", str(tmp_path / "tiny"), "--max-steps", "1", "--per-device-batch", "4", "--num-generations", "4",
        "--output-dir", str(tmp_path / "out"),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 processes (DistributedType.MULTI_CPU)" in result.stdout
    assert (tmp_path / "out" / "adapter_config.json").exists()


def test_misaligned_soft_tensors_fail_the_comparison(two_process_run, tmp_path):
    """Negative control: the same records replayed with the soft ids / weights / noisy embeddings rolled by one
    row against their completions must not pass."""
    out, _ = two_process_run
    shutil.copytree(out, tmp_path / "dist", dirs_exist_ok=True)
    result, report = run_check(tmp_path / "dist", "--skip-record", "--misalign-soft-rows")
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr[-4000:]
    for mode, result in report["modes"].items():
        assert not result["passed"], mode
        assert max(step["grad_rel_diff"] for step in result["steps"]) > 1e-2, mode
