#!/usr/bin/env python
"""SoftGRPO under the GPU accelerate configs of `examples/accelerate/` (DDP, FSDP2, DeepSpeed ZeRO-2 and ZeRO-3),
bf16, LoRA and full fine-tune: does it train, and does it match one plain process on the same rollouts?

Each (config, LoRA | full) pair runs `benchmarks/check_distributed.py` under `accelerate launch` with that config
(as many processes as there are GPUs; one GPU still runs the DeepSpeed / FSDP code paths) in gumbel and gaussian
mode, and compares it with a single plain process replaying the recorded rollouts (bf16 both: the tolerance is
bf16's). The measured table goes to `OUT/multi_gpu.md` (and the records to `OUT/<config>-<variant>/`); nothing
is written into RESULTS.md until someone merges a measured file:

    # on the GPU machine, repository root (hf_softthink importable: PYTHONPATH=src; deepspeed installed;
    # benchmarks/gpu_wheels.sh prepares the wheels the GPU image lacks)
    python benchmarks/check_multi_gpu.py --out multi_gpu
    # here, with the file that came back
    python benchmarks/check_multi_gpu.py --merge multi_gpu/multi_gpu.md

`--merge` replaces the section between the `multi-gpu` markers of `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "benchmarks" / "check_distributed.py"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
CONFIGS = {
    "ddp": "examples/accelerate/ddp.yaml",
    "fsdp2": "examples/accelerate/fsdp.yaml",
    "zero2": "examples/accelerate/deepspeed_zero2.yaml",
    "zero3": "examples/accelerate/deepspeed_zero3.yaml",
}
START, END = "<!-- multi-gpu:start -->", "<!-- multi-gpu:end -->"


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def run_one(name: str, variant: str, args, processes: int) -> dict:
    out = Path(args.out) / f"{name}-{variant}"
    launcher = (
        f"{shlex.quote(sys.executable)} -m accelerate.commands.launch --config_file {ROOT / CONFIGS[name]} "
        f"--num_processes {processes}"
    )
    command = [sys.executable, str(CHECK), "--out", str(out), "--model", args.model, "--modes", args.modes,
               "--bf16", "--rtol", str(args.rtol), "--launcher", launcher]  # fmt: skip
    if variant == "full":
        command.append("--full-finetune")
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    seconds = time.perf_counter() - start
    (Path(args.out) / f"{name}-{variant}.log").write_text(result.stdout + result.stderr)
    summary = out / "summary.json"
    report = json.loads(summary.read_text()) if summary.exists() else None
    error = None if report else (result.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
    return {"config": name, "variant": variant, "seconds": seconds, "report": report, "error": error}


def markdown(runs: list[dict], header: dict) -> str:
    lines = [
        START,
        "## Multi-GPU training: accelerate configs (measured by `benchmarks/check_multi_gpu.py`)",
        "",
        f"{header['gpu']}, {header['processes']} process(es) per config; torch {header['torch']}, transformers "
        f"{header['transformers']}, trl {header['trl']}, accelerate {header['accelerate']}, deepspeed "
        f"{header['deepspeed']}; model `{header['model']}`, bf16, 3 optimizer steps (2 generation batches, "
        "`num_iterations=2`, `beta=0.1`), compared with one plain process replaying the same rollouts "
        f"(tolerance {header['rtol']}). Measured {header['date']}.",
        "",
        "| config | weights | mode | distributed type | max loss diff | grad norm diff | weights rel. diff "
        "| time (N proc.) | time (replay) | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        if run["report"] is None:
            lines.append(f"| {run['config']} | {run['variant']} | all | - | - | - | - | - | - | "
                         f"FAILED: {run['error']} |")  # fmt: skip
            continue
        for mode, result in run["report"]["modes"].items():
            loss = max(abs(s["loss_multi"] - s["loss_single"]) for s in result["steps"])
            norm = max(
                abs(s["grad_norm_multi"] - s["grad_norm_single"]) / max(abs(s["grad_norm_single"]), 1e-12)
                for s in result["steps"]
            )
            lines.append(
                f"| {run['config']} | {run['variant']} | {mode} | {result['distributed_type'].split('.')[-1]} | "
                f"{loss:.2e} | {norm:.2e} | {result['param_rel_diff']:.2e} | {result['seconds_multi']:.1f} s | "
                f"{result['seconds_single']:.1f} s | {'pass' if result['passed'] else 'FAIL'} |"
            )
    lines += ["", END]
    return "\n".join(lines) + "\n"


def merge(section_file: Path, results: Path = RESULTS) -> None:
    """Replace (or append) the multi-GPU section of RESULTS.md with a measured section file."""
    section = section_file.read_text()
    if START not in section or END not in section:
        raise SystemExit(f"{section_file} is not a section written by check_multi_gpu.py (no markers)")
    text = results.read_text()
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        text = before + section.rstrip("\n") + after
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results.write_text(text)
    print(f"merged {section_file} into {results}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="multi_gpu", help="folder for multi_gpu.md, logs and records")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated: {', '.join(CONFIGS)}")
    parser.add_argument("--variants", default="lora,full", help="lora, full or both")
    parser.add_argument("--modes", default="gumbel,gaussian")
    parser.add_argument("--model", default="tiny", help="'tiny' (fast) or a load_model name / path")
    parser.add_argument("--processes", type=int, default=None, help="processes per run (default: the GPUs)")
    parser.add_argument("--rtol", type=float, default=5e-2, help="bf16 tolerance of the comparison")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per (config, variant) run")
    parser.add_argument(
        "--merge", type=Path, default=None, help="merge a measured multi_gpu.md into RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.merge is not None:
        merge(args.merge)
        return 0

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("check_multi_gpu.py needs a GPU (the CPU checks are tests/test_distributed.py)")
    processes = args.processes or torch.cuda.device_count()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    header = {
        "gpu": f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}",
        "processes": processes,
        "torch": torch.__version__,
        **{name: version(name) for name in ("transformers", "trl", "accelerate", "deepspeed")},
        "model": args.model,
        "rtol": args.rtol,
        "date": time.strftime("%Y-%m-%d") + f" ({platform.node()})",
    }
    runs = []
    for name in args.configs.split(","):
        for variant in args.variants.split(","):
            print(f"== {name} / {variant}", flush=True)
            runs.append(run_one(name, variant, args, processes))
            print(markdown(runs[-1:], header), flush=True)
    text = markdown(runs, header)
    (Path(args.out) / "multi_gpu.md").write_text(text)
    (Path(args.out) / "multi_gpu.json").write_text(json.dumps({"header": header, "runs": runs}, indent=2))
    print(text)
    return 0 if all(r["report"] and r["report"]["passed"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
