"""benchmarks/check_gpu.py: its CPU mode end to end (tiny shapes), the time limits, the merge into RESULTS.md and
the wheel helpers of the bare GPU machine.

The CPU mode runs every part in its own process, as on a GPU: most of its minute is five Pythons importing
torch and transformers (two of them TRL).
"""

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "check_gpu.py"
_spec = importlib.util.spec_from_file_location("check_gpu", SCRIPT)
check_gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_gpu)


def run_check(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--small", "--out", str(tmp_path / "out"),
               "--workdir", str(tmp_path / "work"), *options]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("check_gpu")
    result = run_check(tmp)
    raw = json.loads((tmp / "out" / "gpu_check.json").read_text())
    records = [r for part in raw["parts"] for r in part["records"]]
    return tmp, result, raw, records


def of_kind(records, kind):
    return [r for r in records if r["kind"] == kind]


def test_cpu_mode_runs_every_part_in_order_and_writes_one_report(cpu_run):
    tmp, result, raw, records = cpu_run
    assert result.returncode == 0, result.stdout[-4000:]
    assert [(p["part"], p["status"]) for p in raw["parts"]] == [(name, "ok") for name in check_gpu.PART_LIMITS]
    assert sorted(p.name for p in (tmp / "out").iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]
    report = (tmp / "out" / "gpu_check.md").read_text()
    assert report.startswith(check_gpu.START) and report.rstrip().endswith(check_gpu.END)
    for heading in ("### Targets", "### Parity", "### Decoding speed", "### SoftGRPO step time", "### Distributed"):
        assert heading in report
    assert "on a CPU: its figures test the script" in report
    assert not of_kind(records, "error") and not of_kind(records, "note")
    log = (tmp / "out" / "gpu_check.log").read_text()
    assert all(f"===== {name}: ok" in log for name in check_gpu.PART_LIMITS)


def test_cpu_mode_parity_and_every_variant_finite(cpu_run):
    records = cpu_run[3]
    parity = {r["dtype"]: r for r in of_kind(records, "parity")}
    assert list(parity) == ["fp32", "bf16", "nf4"]
    assert parity["fp32"]["equal"] and parity["fp32"]["first_difference"] is None
    for row in parity.values():  # a difference names its step and whether plain decoding saw a tie there
        assert row["equal"] or (isinstance(row["first_difference"], int) and isinstance(row["tie"], bool))
    variants = of_kind(records, "variant")
    assert len(variants) == 3 * 6 and all(v["finite"] and v["soft_steps"] > 0 for v in variants)


def test_cpu_mode_speed_has_both_shapes_both_engines_and_floors(cpu_run):
    records = cpu_run[3]
    speed = of_kind(records, "speed")
    assert {(r["shape"], r["mode"], r["engine"]) for r in speed} == {
        (shape, mode, engine) for shape in ("8b", "1.7b") for mode in ("plain", "soft", "soft-full")
        for engine in ("eager", "compiled")
    }  # fmt: skip
    assert all(r["tok_s"] > 0 and r["floor_ms"] > 0 for r in speed)
    # tiny float32 models: the static cache (compiled or not) decodes the dynamic cache's tokens
    assert all(r["tokens_vs_eager"] == "yes" for r in speed)
    assert all(r["compile_s"] is not None for r in speed if r["engine"] == "compiled")
    bandwidth = {r["shape"]: r for r in of_kind(records, "bandwidth")}
    untied, tied = bandwidth["8b"], bandwidth["1.7b"]
    assert untied["full_step_bytes"] > untied["step_bytes"] and tied["full_step_bytes"] > tied["step_bytes"]


def test_cpu_mode_trains_with_eager_and_compiled_rollouts(cpu_run):
    train = {(r["weights"], r["engine"]): r for r in of_kind(cpu_run[3], "train")}
    assert list(train) == [("nf4", "eager"), ("fp32", "eager"), ("fp32", "compiled"), ("nf4", "compiled")]
    assert train["fp32", "compiled"]["compiled_forward"] == "yes"
    assert train["fp32", "eager"]["compiled_forward"] == "no"
    assert train["nf4", "compiled"]["compiled_forward"].startswith("no (transformers does not compile")
    assert all(r["finite"] and r["graphs_timed"] == 0 and 0 < r["rollout_s"] < r["step_s"] for r in train.values())


def test_cpu_mode_distributed_smoke(cpu_run):
    (row,) = of_kind(cpu_run[3], "distributed")
    assert row["config"] == "ddp-cpu" and row["passed"] and row["num_processes"] == 1, row


def test_merging_the_report_replaces_the_placeholder_and_is_idempotent(cpu_run, tmp_path):
    results = tmp_path / "RESULTS.md"
    original = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert original.count(check_gpu.START) == 1 and original.count(check_gpu.END) == 1
    results.write_text(original)
    report = cpu_run[0] / "out" / "gpu_check.md"
    check_gpu.merge(report, results)
    merged = results.read_text()
    check_gpu.merge(report, results)
    assert results.read_text() == merged
    assert report.read_text().strip() in merged
    before, after = original.split(check_gpu.START)[0], original.split(check_gpu.END)[1]
    assert merged.startswith(before) and merged.endswith(after)


def test_merge_appends_once_without_markers_and_refuses_other_files(tmp_path):
    results, report, other = tmp_path / "RESULTS.md", tmp_path / "report.md", tmp_path / "other.md"
    results.write_text("# Results\n")
    report.write_text(f"{check_gpu.START}\n## GPU check\nfigures\n{check_gpu.END}\n")
    check_gpu.merge(report, results)
    check_gpu.merge(report, results)
    assert results.read_text() == f"# Results\n\n{check_gpu.START}\n## GPU check\nfigures\n{check_gpu.END}\n"
    other.write_text("## not a report\n")
    with pytest.raises(SystemExit, match="no gpu-check markers"):
        check_gpu.merge(other, results)


def test_merge_option_writes_benchmarks_results(tmp_path, monkeypatch):
    results, report = tmp_path / "RESULTS.md", tmp_path / "gpu_check.md"
    results.write_text(f"# Results\n\n{check_gpu.START}\nnot run yet\n{check_gpu.END}\n\nmore\n")
    report.write_text(f"{check_gpu.START}\nmeasured\n{check_gpu.END}\n")
    monkeypatch.setattr(check_gpu, "RESULTS", results)
    assert check_gpu.main(["--merge", str(report)]) == 0
    assert results.read_text() == f"# Results\n\n{check_gpu.START}\nmeasured\n{check_gpu.END}\n\nmore\n"


def test_a_part_past_its_limit_is_killed_and_the_next_part_still_runs(tmp_path):
    result = run_check(tmp_path, "--parts", "parity,speed-8b", "--limits", "parity=1,speed-8b=1")
    assert result.returncode == 1
    raw = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [(p["part"], p["status"]) for p in raw["parts"]] == [
        ("parity", "timed out at 1 s"), ("speed-8b", "timed out at 1 s")
    ]  # fmt: skip
    assert "| parity | timed out at 1 s |" in (tmp_path / "out" / "gpu_check.md").read_text()


def test_parts_past_the_budget_are_reported_not_run(tmp_path):
    result = run_check(tmp_path, "--parts", "parity,train", "--budget", "5")
    assert result.returncode == 1
    raw = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [p["status"] for p in raw["parts"]] == ["not run (budget spent)"] * 2


def fake_bitsandbytes_wheel(folder: Path) -> Path:
    """A minimal valid wheel shaped like bitsandbytes': one native library per CUDA / ROCm version."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bitsandbytes-0.0.1-py3-none-any.whl"
    files = {
        "bitsandbytes/__init__.py": "VERSION = '0.0.1'\n",
        "bitsandbytes/libbitsandbytes_cuda118.so": "118",
        "bitsandbytes/libbitsandbytes_cuda130.so": "130",
        "bitsandbytes/libbitsandbytes_rocm64.so": "rocm",
        "bitsandbytes-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: bitsandbytes\nVersion: 0.0.1\n",
        "bitsandbytes-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "bitsandbytes-0.0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in {**files, "bitsandbytes-0.0.1.dist-info/RECORD": record}.items():
            wheel.writestr(name, text)
    return path


def test_trimmed_bitsandbytes_wheel_keeps_one_cuda_library_and_installs_with_pip_target(tmp_path):
    wheel = fake_bitsandbytes_wheel(tmp_path / "whl")
    assert check_gpu.trim_bitsandbytes(wheel, "130") == ["libbitsandbytes_cuda130.so"]
    with zipfile.ZipFile(wheel) as trimmed:
        names = set(trimmed.namelist())
        record = {line.split(",")[0] for line in trimmed.read("bitsandbytes-0.0.1.dist-info/RECORD").decode().split()}
    assert record == names and not any("cuda118" in n or "rocm" in n for n in names)
    how = check_gpu.install_wheels(tmp_path / "whl", tmp_path / "site")
    assert how.startswith("pip install --no-index --target")
    assert sorted(p.name for p in (tmp_path / "site" / "bitsandbytes").iterdir()) == [
        "__init__.py", "libbitsandbytes_cuda130.so"
    ]  # fmt: skip
    with pytest.raises(SystemExit, match="no native library"):
        check_gpu.trim_bitsandbytes(wheel, "999")
    assert zipfile.ZipFile(wheel).namelist()  # the wheel is left as it was


def test_wheels_are_unpacked_with_zipfile_where_pip_fails(tmp_path, monkeypatch):
    fake_bitsandbytes_wheel(tmp_path / "whl")
    monkeypatch.setattr(check_gpu.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "no pip"))
    assert check_gpu.install_wheels(tmp_path / "whl", tmp_path / "site").startswith("unpacked with zipfile")
    assert (tmp_path / "site" / "bitsandbytes" / "libbitsandbytes_rocm64.so").read_text() == "rocm"
