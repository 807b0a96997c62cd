#!/usr/bin/env python
"""One GPU check: parity, eager vs compiled speed beside the bandwidth floor, SoftGRPO with eager and compiled
rollouts, and a one-process smoke of the multi-GPU configs, in one Markdown report.

On a bare GPU machine given only the wheels of `benchmarks/gpu_wheels.sh` (the device tool: carry `.whl`):

    PYTHONUNBUFFERED=1 python3 benchmarks/check_gpu.py --wheels .whl --out "$OUT"

and here, with the report that came back (replaces the section between the `gpu-check` markers of
`benchmarks/RESULTS.md`; merging the same report twice changes nothing):

    python benchmarks/check_gpu.py --merge gpu_check/gpu_check.md

On CPU with tiny shapes, in seconds (what `tests/test_check_gpu.py` runs):

    python benchmarks/check_gpu.py --device cpu --small --out gpu_check

The parts, each in its own subprocess under its own time limit (a part that fails or hangs loses only itself;
what it measured before the limit is kept, as each result is written the moment it is measured), all under one
budget (default 480 s, counted from the start, the wheel install included):

* **parity** (1.7B-shaped model; fp32, bf16 and NF4): `max_topk=1` soft decoding against plain greedy
  `generate` on a left-padded batch, token for token, and at the first difference whether plain decoding's top
  two logits were exactly tied; every soft variant (top-10, full vocabulary, Dirichlet, Gumbel, Gaussian,
  switch) decodes with finite entropies and mixture weights.
* **speed-8b**, **speed-1.7b** (Qwen3-8B- and SmolLM2-1.7B-shaped models, bf16): plain, soft top-10 and soft
  full-vocabulary decoding at batch 1 and 32, eager (dynamic cache) and compiled (static cache, transformers'
  compiled forward; each batch size compiled afresh), the modes' repeats interleaved, batch 1 first and eager
  before compiled, so a part stopped in a compilation keeps what it measured. Each figure is shown beside the
  bandwidth floor: the bytes of the weights a decode step reads (all parameters but an untied input-embedding
  table, of which a step reads B rows; plus one pass over the embedding table for the full-vocabulary mixture)
  over the copy bandwidth measured on the device.
* **train** (1.7B shape, LoRA r16, gumbel SoftGRPO, 8 completions x 64 tokens): step time, rollout time and
  peak memory with NF4 (QLoRA) and bf16 weights, each with eager and with compiled rollouts (QLoRA eager, bf16
  eager, bf16 compiled, QLoRA compiled)
  (`cache_implementation="static"` + a `compile_config` in `generation_kwargs`); whether the compiled forward
  ran (transformers does not compile bitsandbytes 4-bit models) and how many graphs the timed steps traced.
* **distributed**: one process of SoftGRPO (tiny model, LoRA, gumbel, 2 steps) under each of
  `examples/accelerate/` ddp.yaml, fsdp.yaml and deepspeed_zero2.yaml (`accelerate launch --num_processes 1`),
  run side by side; on CPU `accelerate launch --cpu`.

The random-weight models are built on the device from configs of the real shapes (nothing is downloaded). The
report (`OUT/gpu_check.md`), the raw records (`OUT/gpu_check.json`) and every part's output
(`OUT/gpu_check.log`) are the only files written to `--out`; models and scratch go to `--workdir`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
import traceback
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
START, END = "<!-- gpu-check:start -->", "<!-- gpu-check:end -->"

#: parts in the order they run (most wanted first), with their time limits in seconds on a GPU
PART_LIMITS = {"parity": 75, "speed-8b": 190, "train": 110, "distributed": 45, "speed-1.7b": 60}
#: time limit of each part with --small (tiny shapes: seconds of work; most of it is importing torch / trl)
SMALL_PART_LIMIT = 240
#: seconds kept back from the budget for writing the report
REPORT_MARGIN = 5

#: (label, model type, config fields) of the random-weight models; special ids match `tiny_tokenizer`
SHAPES = {
    "1.7b": ("SmolLM2-1.7B", "llama", dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192,
        rms_norm_eps=1e-5)),
    "8b": ("Qwen3-8B", "qwen3", dict(
        hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=False,
        max_position_embeddings=40960, rms_norm_eps=1e-6)),
}  # fmt: skip
#: the same families, tiny (--small): tied / untied embeddings as above, vocabularies past the dense-mixture size
SMALL_SHAPES = {
    "1.7b": ("tiny Llama (tied)", "llama", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        vocab_size=2048, tie_word_embeddings=True, max_position_embeddings=512)),
    "8b": ("tiny Qwen3 (untied)", "qwen3", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, vocab_size=4096, tie_word_embeddings=False, max_position_embeddings=512)),
}  # fmt: skip

#: measurement sizes: full (GPU) and --small (CPU test); command-line options override some
SETTINGS = {
    False: dict(new_tokens=64, prompt_tokens=32, batches=(1, 32), repeats=3, parity_tokens=48, variant_tokens=24,
                completions=8, train_tokens=64, thinking_tokens=48, warmup_steps=1, timed_steps=2, lora_r=16,
                dist_steps=2),
    True: dict(new_tokens=8, prompt_tokens=8, batches=(1,), repeats=1, parity_tokens=12, variant_tokens=6,
               completions=4, train_tokens=8, thinking_tokens=4, warmup_steps=1, timed_steps=1, lora_r=4,
               dist_steps=1),
}  # fmt: skip

#: weights of the parity part
PARITY_WEIGHTS = ("fp32", "bf16", "nf4")
#: vendor memory bandwidth (bytes/s) of GPUs this check is meant for, shown beside the measured copy bandwidth
NOMINAL_BANDWIDTH = {"H200": 4.8e12, "H100 80GB HBM3": 3.35e12}

#: accelerate configs of the distributed smoke (GPU) and the CPU stand-in
DIST_CONFIGS = {
    "ddp": "examples/accelerate/ddp.yaml",
    "fsdp2": "examples/accelerate/fsdp.yaml",
    "zero2": "examples/accelerate/deepspeed_zero2.yaml",
}
CPU_DIST_CONFIGS = {"ddp-cpu": None}
DIST_PORT = 29511


# =============================================================================================== the driver
def install_wheels(wheels: Path, site: Path) -> str:
    """Install every wheel of `wheels` into `site` (`pip install --no-index --no-deps --target`; without pip,
    the wheels are unpacked with zipfile, which is what installing a wheel amounts to). Returns how."""
    files = sorted(wheels.glob("*.whl"))
    if not files:
        raise SystemExit(f"--wheels {wheels}: no .whl files there (benchmarks/gpu_wheels.sh prepares them)")
    site.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, files)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return f"pip install --no-index --target {site} ({len(files)} wheels)"
    print(f"pip install failed ({result.stderr.strip().splitlines()[-1:]}); unpacking with zipfile", flush=True)
    for path in files:
        with zipfile.ZipFile(path) as wheel:
            wheel.extractall(site)
    return f"unpacked with zipfile into {site} ({len(files)} wheels)"


def trim_bitsandbytes(path: Path, keep_cuda: str) -> list[str]:
    """Drop the native libraries of a bitsandbytes wheel for every CUDA / ROCm version but `keep_cuda` (e.g.
    "130,132"), in place, and rewrite its RECORD to match. bitsandbytes ships one library per version (43 MB in
    0.50.2) and loads the one of torch's CUDA version; the device tool carries at most 64 MiB. Returns the names
    of the libraries kept (an error if none is)."""
    keep = {f"cuda{version.strip()}" for version in keep_cuda.split(",")}
    library = re.compile(r"libbitsandbytes_((?:cuda|rocm)\d+)\.(?:so|dll|dylib)$")

    def dropped(name: str) -> bool:
        match = library.search(name)
        return match is not None and match.group(1) not in keep

    trimmed_path = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(trimmed_path, "w", zipfile.ZIP_DEFLATED) as trimmed:
        for info in source.infolist():
            if dropped(info.filename):
                continue
            data = source.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not dropped(line.split(",", 1)[0])).encode()
            trimmed.writestr(info, data)
    with zipfile.ZipFile(trimmed_path) as wheel:
        kept = sorted(name.rsplit("/", 1)[-1] for name in wheel.namelist() if library.search(name))
    if not kept:
        trimmed_path.unlink()
        raise SystemExit(f"{path.name}: no native library of CUDA {sorted(keep)} in it; choose versions it has")
    os.replace(trimmed_path, path)
    return kept


def part_environment(args) -> dict[str, str]:
    paths = ([str(args.site)] if args.wheels else []) + [str(ROOT / "src")]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
    )  # fmt: skip


def worker_arguments(args) -> list[str]:
    flags = ["--device", args.device, "--workdir", str(args.workdir), "--compile-backend", args.compile_backend]
    for name in ("new_tokens", "repeats", "batches"):
        if getattr(args, name) is not None:
            flags += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return flags + (["--small"] if args.small else [])


def run_part(name: str, args, timeout: float, env: dict) -> dict:
    """Run one part in its own process group; kill the group at the time limit. Returns its status."""
    records, log = args.workdir / f"{name}.jsonl", args.workdir / f"{name}.log"
    records.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--part", name, *worker_arguments(args)]
    start = time.perf_counter()
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                   start_new_session=True)  # fmt: skip
        try:
            returncode = process.wait(timeout=timeout)
            status = "ok" if returncode == 0 else f"failed (exit {returncode})"
        except subprocess.TimeoutExpired:
            kill_tree(process.pid)
            process.wait()
            status = f"timed out at {timeout:.0f} s"
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in records.read_text().splitlines()] if records.exists() else []
    errors = [r["text"] for r in rows if r.get("kind") == "error"]
    if status != "ok" and not errors:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        errors = tail[-1:]
    return {"part": name, "status": status, "seconds": seconds, "limit": timeout, "records": rows,
            "errors": errors, "log": log.read_text(errors="replace")}  # fmt: skip


def kill_tree(pid: int) -> None:
    """Kill a part: its process group, and every process it started that left the group (torchrun starts its
    workers in sessions of their own)."""
    try:
        import psutil

        descendants = psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - without psutil (or if the part just ended) the group is all we know
        descendants = []
    os.killpg(pid, signal.SIGKILL)
    for process in descendants:
        try:
            process.kill()
        except Exception:  # noqa: BLE001 - already gone
            pass


def drive(args) -> int:
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    install = None
    if args.wheels:
        install = install_wheels(args.wheels, args.site)
        print(f"wheels: {install} in {time.perf_counter() - started:.0f} s", flush=True)
    env = part_environment(args)
    parts = args.parts.split(",")
    unknown = [p for p in parts if p not in PART_LIMITS]
    if unknown:
        raise SystemExit(f"--parts: unknown {unknown}; choose from {', '.join(PART_LIMITS)}")
    limits = dict(PART_LIMITS) if not args.small else dict.fromkeys(PART_LIMITS, SMALL_PART_LIMIT)
    for item in filter(None, (args.limits or "").split(",")):
        part, _, seconds = item.partition("=")
        limits[part] = float(seconds)
    results = []
    for name in parts:
        left = args.budget - (time.perf_counter() - started) - REPORT_MARGIN
        if left < 5:
            results.append({"part": name, "status": "not run (budget spent)", "seconds": 0.0, "limit": 0.0,
                            "records": [], "errors": [], "log": ""})  # fmt: skip
            continue
        print(f"== {name} (limit {min(limits[name], left):.0f} s)", flush=True)
        results.append(run_part(name, args, min(limits[name], left), env))
        print(f"   {results[-1]['status']} in {results[-1]['seconds']:.0f} s" +
              (f": {results[-1]['errors'][0]}" if results[-1]["errors"] else ""), flush=True)  # fmt: skip
    total = time.perf_counter() - started
    command = "python3 benchmarks/check_gpu.py " + shlex.join(sys.argv[1:])
    report = markdown(results, args, total, command, install)
    (args.out / "gpu_check.md").write_text(report)
    raw = [{k: v for k, v in r.items() if k != "log"} for r in results]
    (args.out / "gpu_check.json").write_text(json.dumps({"seconds": total, "budget": args.budget,
                                                         "command": command, "parts": raw}, indent=1))  # fmt: skip
    with open(args.out / "gpu_check.log", "w") as log:
        for r in results:
            log.write(f"\n===== {r['part']}: {r['status']} in {r['seconds']:.1f} s\n{r['log']}")
    print(report, flush=True)
    if args.merge == "":
        merge(args.out / "gpu_check.md")
    return 0 if all(r["status"] == "ok" for r in results) else 1


def merge(report_file: Path, results: Path | None = None) -> None:
    """Put a report between the `gpu-check` markers of RESULTS.md (appended once if the markers are missing)."""
    results = results or RESULTS
    section = report_file.read_text().strip("\n")
    if not section.startswith(START) or not section.endswith(END):
        raise SystemExit(f"{report_file} is not a report written by check_gpu.py (no gpu-check markers)")
    text = results.read_text()
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results.write_text(text)
    print(f"merged {report_file} into {results}")


# ============================================================================================== the report
def cell(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def quantity(value: float, unit: str) -> str:
    """`value` with three significant digits and a decimal prefix: 8.19 G, 16.4 GB, 4.31 TB/s."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def table(header: list[str], rows: list[list]) -> list[str]:
    """Markdown table lines; cells are made safe (an error message may hold `|` or line breaks)."""

    def safe(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(map(safe, row)) + " |" for row in rows
    ]


def markdown(results: list[dict], args, total: float, command: str, install: str | None) -> str:
    records = [r for result in results for r in result["records"]]
    meta = next((r for r in records if r["kind"] == "meta"), {})
    bandwidth = {r["shape"]: r for r in records if r["kind"] == "bandwidth"}

    def rows(kind: str) -> list[dict]:
        return [r for r in records if r["kind"] == kind]

    lines = [START, "## GPU check (`benchmarks/check_gpu.py`)", ""]
    if not meta:
        lines.append("No part reported its environment (see `gpu_check.log`).")
    else:
        versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        lines.append(f"{meta['device_name']}; {versions}. Measured {meta['date']} in {total:.0f} s "
                     f"(budget {args.budget:.0f} s{', wheels ' + install if install else ''}).")  # fmt: skip
    lines += ["", f"    {command}", ""]
    if meta and meta["device_name"].startswith("CPU"):
        lines += ["This run is on a CPU: its figures test the script, not the GPU targets.", ""]
    lines += table(["part", "status", "time", "limit", "first error"], [
        [r["part"], r["status"], f"{r['seconds']:.0f} s", f"{r['limit']:.0f} s", (r["errors"] or ["–"])[0][:160]]
        for r in results
    ])  # fmt: skip

    speed = rows("speed")
    if speed:
        lines += ["", *targets(speed, bandwidth)]
    parity = rows("parity")
    if parity:
        lines += ["", "### Parity: `max_topk=1` soft decoding vs plain greedy `generate`", "",
                  "A left-padded batch of 4 random prompts, greedy, every step soft (`think_end=None`), EOS "
                  "suppressed. At the first differing step: whether plain decoding's two largest logits for that "
                  "row were exactly equal (a tie; transformers' argmax takes the lower id).", ""]  # fmt: skip
        lines += table(["weights", "model", "steps", "tokens equal", "rows differing", "first difference at step",
                        "tie there"], [
            [r["dtype"], r["model"], r["steps"], "yes" if r["equal"] else "**no**", r["rows_differing"],
             cell(r["first_difference"]), cell(r["tie"])] for r in parity
        ])  # fmt: skip
    variants = rows("variant")
    if variants:
        lines += ["", "Every variant, sampled (`do_sample=True`), entropies and mixture weights finite:", ""]
        by_dtype: dict[str, dict] = {}
        for r in variants:
            by_dtype.setdefault(r["dtype"], {})[r["variant"]] = r
        names = list(dict.fromkeys(r["variant"] for r in variants))
        lines += table(["weights", *names], [
            [dtype, *(("finite" if v[n]["finite"] else f"**{v[n]['error'] or 'not finite'}**") if n in v else "–"
                      for n in names)] for dtype, v in by_dtype.items()
        ])  # fmt: skip
    if speed:
        lines += ["", *speed_table(speed, bandwidth, meta)]
    train = rows("train")
    if train:
        lines += ["", "### SoftGRPO step time with eager and compiled rollouts", "",
                  f"{train[0]['model']}, LoRA r{train[0]['lora_r']} (all linear layers), gumbel rollouts, "
                  f"{train[0]['completions']} completions x {train[0]['tokens']} tokens (EOS suppressed; "
                  f"{train[0]['thinking']} soft thinking steps, then the answer); {train[0]['warmup']} warm-up "
                  "step(s), then the median of the timed steps. Compiled rollouts: "
                  "`cache_implementation=\"static\"` and `generation_kwargs={\"compile_config\": ...}`; "
                  "\"compiled forward\" says whether the decode steps ran transformers' compiled call.", ""]  # fmt: skip
        lines += table(["weights", "rollouts", "compiled forward", "s/step", "rollout s/step", "rollout share",
                        "peak memory", "graphs traced in timed steps", "loss finite"], [
            [r["weights"], r["engine"], r["compiled_forward"], cell(r["step_s"]), cell(r["rollout_s"]),
             cell(r["rollout_s"] / r["step_s"] if r["step_s"] else None), f"{r['peak_gib']:.2f} GiB",
             r["graphs_timed"], "yes" if r["finite"] else "**no**"] for r in train
        ])  # fmt: skip
    dist = rows("distributed")
    if dist:
        lines += ["", "### Distributed configs, one process each (smoke)", ""]
        lines += table(["config", "launch", "distributed type", "processes", "steps", "losses", "grad norms",
                        "train s", "result"], [
            [r["config"], f"`{r['launch']}`", r.get("distributed_type", "–"), r.get("num_processes", "–"),
             r.get("steps", "–"), cell(r.get("losses")), cell(r.get("grad_norms")), cell(r.get("seconds")),
             "pass" if r["passed"] else f"**FAIL**: {r.get('error', '')[:160]}"] for r in dist
        ])  # fmt: skip
    notes = rows("note")
    if notes:
        lines += ["", *[f"* {r['text']}" for r in notes]]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def _speed_index(speed: list[dict]) -> dict:
    return {(r["shape"], r["batch"], r["mode"], r["engine"]): r for r in speed}


def targets(speed: list[dict], bandwidth: dict) -> list[str]:
    """The issue's targets, each measured figure beside the bandwidth floor."""
    index = _speed_index(speed)
    lines = ["### Targets", "",
             "Compiled = static cache + transformers' compiled forward; ms/step is the median wall time of a "
             "whole `generate` over its new tokens (the prefill of the short prompt included); the floor is the "
             "weight bytes a step reads over the measured copy bandwidth.", ""]  # fmt: skip
    rows = []
    for (shape, batch, mode, engine), r in index.items():
        if mode != "soft" or engine != "compiled" or (shape, batch, "plain", "compiled") not in index:
            continue
        plain = index[shape, batch, "plain", "compiled"]
        ratio = plain["ms_step"] / r["ms_step"]
        rows.append([f"compiled soft top-10 / compiled plain, {r['model']}, batch {batch}", "≥ 0.95",
                     f"{ratio:.3f}", f"{plain['ms_step']:.2f} vs {r['ms_step']:.2f} ms/step; floor "
                     f"{plain['floor_ms']:.2f} ms ({plain['ms_step'] / plain['floor_ms']:.1f}x / "
                     f"{r['ms_step'] / r['floor_ms']:.1f}x)", "yes" if ratio >= 0.95 else "**no**"])  # fmt: skip
    for (shape, batch, mode, engine), r in index.items():
        if shape != "8b" or batch != 1 or engine != "compiled" or (shape, batch, mode, "eager") not in index:
            continue
        eager = index[shape, batch, mode, "eager"]
        ratio = eager["ms_step"] / r["ms_step"]
        rows.append([f"compiled / eager, {mode}, {r['model']}, batch 1", "≥ 3", f"{ratio:.2f}",
                     f"{eager['ms_step']:.2f} → {r['ms_step']:.2f} ms/step; floor {r['floor_ms']:.2f} ms "
                     f"({eager['ms_step'] / r['floor_ms']:.1f}x → {r['ms_step'] / r['floor_ms']:.1f}x)",
                     "yes" if ratio >= 3 else "**no**"])  # fmt: skip
    if not rows:
        return lines + ["No compiled figure was measured, so no target could be checked."]
    return lines + table(["target", "wanted", "measured", "beside the floor", "met"], rows)


def speed_table(speed: list[dict], bandwidth: dict, meta: dict) -> list[str]:
    index = _speed_index(speed)
    lines = ["### Decoding speed: eager vs compiled", ""]
    for b in bandwidth.values():
        nominal = b.get("nominal")
        lines.append(f"* {b['model']}: {quantity(b['parameters'], '')} parameters, {b['dtype']}; a decode step "
                     f"reads {quantity(b['step_bytes'], 'B')} of weights ({quantity(b['full_step_bytes'], 'B')} with "
                     f"the full-vocabulary mixture); copy bandwidth measured {quantity(b['copy_bandwidth'], 'B/s')}"
                     + (f" (nominal {quantity(nominal, 'B/s')})" if nominal else "") + ".")  # fmt: skip
    lines += ["", f"{speed[0]['new_tokens']} new tokens after a {speed[0]['prompt_tokens']}-token prompt, greedy; "
              f"median of {speed[0]['repeats']} runs per (mode, engine), the three modes interleaved; per batch "
              "size the eager engine, then the compiled one from no compiled code. Compile: the compiled engine's "
              "warm-up run (it compiles; soft and full-vocabulary share one graph).", ""]  # fmt: skip
    rows = []
    for (shape, batch, mode, engine), r in index.items():
        if engine != "eager":
            continue
        c = index.get((shape, batch, mode, "compiled"))
        plain_c = index.get((shape, batch, "plain", "compiled"))
        rows.append([
            r["model"], batch, mode, f"{r['tok_s']:.0f}", f"{r['ms_step']:.2f}",
            f"{c['tok_s']:.0f}" if c else "–", f"{c['ms_step']:.2f}" if c else "–", f"{r['floor_ms']:.2f}",
            f"{r['ms_step'] / r['floor_ms']:.1f}x", f"{c['ms_step'] / c['floor_ms']:.1f}x" if c else "–",
            f"{r['ms_step'] / c['ms_step']:.2f}" if c else "–",
            f"{plain_c['ms_step'] / c['ms_step']:.3f}" if c and plain_c and mode != "plain" else "–",
            cell(c.get("compile_s"), ".0f") if c else "–", c.get("tokens_vs_eager", "–") if c else "–",
        ])  # fmt: skip
    lines += table(["model", "batch", "mode", "eager tok/s", "eager ms/step", "compiled tok/s", "compiled ms/step",
                    "floor ms/step", "eager x floor", "compiled x floor", "compiled / eager speed",
                    "compiled mode / compiled plain speed", "compile s", "compiled tokens = eager"], rows)  # fmt: skip
    return lines


# ============================================================================================== the workers
class Recorder:
    """Appends one JSON object per line to the part's record file, flushed at once (a killed part keeps them)."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, kind: str, **fields) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, **fields}, default=float) + "\n")


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "deepspeed"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"
    threads = torch.get_num_threads()
    return f"CPU ({platform.machine()}, {threads} torch thread{'s' if threads != 1 else ''})"


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def dtype_of(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def shape_config(shape: str, small: bool):
    from transformers import AutoConfig

    _, family, fields = (SMALL_SHAPES if small else SHAPES)[shape]
    return AutoConfig.for_model(family, bos_token_id=1, eos_token_id=2, pad_token_id=0, **fields)


def build_model(shape: str, args, dtype, enable: bool = True):
    """A random-weight model of `shape`, built directly on the device in `dtype` (seeded)."""
    import torch
    from transformers import AutoModelForCausalLM

    from hf_softthink import enable_soft_thinking

    torch.manual_seed(0)
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(shape_config(shape, args.small), dtype=dtype)
    model.eval()
    return enable_soft_thinking(model) if enable else model


def nf4_model(shape: str, args):
    """The model of `shape` in 4-bit NF4 (bitsandbytes), quantised from a saved copy of its random weights."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from hf_softthink import enable_soft_thinking

    cuda = args.device.startswith("cuda")
    path = args.workdir / f"model-{shape}{'-small' if args.small else ''}"
    if not (path / "config.json").exists():
        model = build_model(shape, args, torch.bfloat16 if cuda else torch.float32, enable=False)
        model.save_pretrained(path)
        del model
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=quantization, device_map={"": args.device} if cuda else None
    )
    return enable_soft_thinking(model.eval())


def settings(args) -> dict:
    values = dict(SETTINGS[args.small])
    if args.new_tokens:
        values["new_tokens"] = args.new_tokens
    if args.repeats:
        values["repeats"] = args.repeats
    if args.batches:
        values["batches"] = tuple(int(b) for b in args.batches.split(","))
    return values


def compile_config(args):
    """The engine's `CompileConfig`: transformers' defaults (inductor, CUDA graphs through "reduce-overhead"),
    flagged to compile on any device (transformers compiles by itself only on GPUs; docs/design.md §8)."""
    from transformers import CompileConfig

    config = CompileConfig(backend=args.compile_backend,
                           mode="reduce-overhead" if args.compile_backend == "inductor" else None)  # fmt: skip
    config._compile_all_devices = True
    return config


def unique_graphs() -> int:
    import torch._dynamo.utils

    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


# ---------------------------------------------------------------------------------------------------- parity
def part_parity(args, record: Recorder) -> None:
    import torch

    from hf_softthink import SoftThinkingConfig
    from hf_softthink.models import tiny_tokenizer

    s = settings(args)
    label = (SMALL_SHAPES if args.small else SHAPES)["1.7b"][0]
    tokenizer = tiny_tokenizer()
    variants = {
        "top-10": SoftThinkingConfig(think_end=None),
        "full vocabulary": SoftThinkingConfig(think_end=None, max_topk=None, top_k=None, top_p=1.0, min_p=0.0),
        "dirichlet": SoftThinkingConfig(think_end=None, noise="dirichlet"),
        "gumbel": SoftThinkingConfig(think_end=None, noise="gumbel"),
        "gaussian": SoftThinkingConfig(think_end=None, noise="gaussian"),
        # the preset's first-step marker is the vocabulary token spelled backslash + n, which the byte-level test
        # tokenizer lacks: blend a line break instead
        "switch": SoftThinkingConfig.swireasoning(first_step_marker="\n"),
    }
    for name in PARITY_WEIGHTS:
        model = nf4_model("1.7b", args) if name == "nf4" else build_model("1.7b", args, dtype_of(name))
        inputs = left_padded_batch(model.config.vocab_size, args.device)
        prompt = inputs["input_ids"].shape[1]
        common = dict(do_sample=False, max_new_tokens=s["parity_tokens"], min_new_tokens=s["parity_tokens"],
                      pad_token_id=0)  # fmt: skip
        plain = model.generate(**inputs, **common, output_scores=True, return_dict_in_generate=True)
        soft = model.generate(**inputs, **common, soft_thinking=SoftThinkingConfig(max_topk=1, think_end=None))
        differs = plain.sequences[:, prompt:] != soft[:, prompt:]
        first, tie = None, None
        if differs.any():
            steps = [int(row.nonzero()[0]) if row.any() else 10**9 for row in differs]
            first = min(steps)
            row = steps.index(first)
            top2 = plain.scores[first][row].float().topk(2).values
            tie = bool(top2[0] == top2[1])
        record("parity", dtype=name, model=label, steps=s["parity_tokens"], equal=not bool(differs.any()),
               rows_differing=int(differs.any(1).sum()), first_difference=first, tie=tie)  # fmt: skip
        for variant, config in variants.items():
            torch.manual_seed(0)
            try:
                out = model.generate(**inputs, do_sample=True, max_new_tokens=s["variant_tokens"],
                                     min_new_tokens=s["variant_tokens"], pad_token_id=0, tokenizer=tokenizer,
                                     soft_thinking=config, return_dict_in_generate=True)  # fmt: skip
                soft_steps = out.thinking_mask
                finite = bool(torch.isfinite(out.entropies[soft_steps]).all()
                              and torch.isfinite(out.soft_topk_weights).all())  # fmt: skip
                record("variant", dtype=name, variant=variant, finite=finite, error=None,
                       soft_steps=int(soft_steps.sum()))  # fmt: skip
            except Exception as error:  # noqa: BLE001 - the report says which variant failed and how
                record("variant", dtype=name, variant=variant, finite=False,
                       error=f"{type(error).__name__}: {error}"[:200], soft_steps=0)  # fmt: skip
        del model
        free(args)


def left_padded_batch(vocab_size: int, device: str, rows: int = 4, length: int = 16) -> dict:
    import torch

    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab_size, (rows, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for row, pad in enumerate((0, 5, 9, 2)[:rows]):
        input_ids[row, :pad], attention_mask[row, :pad] = 0, 0
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def free(args) -> None:
    import gc

    import torch

    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------- speed
def copy_bandwidth(device: str, small: bool) -> float:
    """Bytes per second of a device-to-device copy, counting the bytes read and written."""
    import torch

    size = 2**26 if small else 2**31
    source = torch.empty(size, dtype=torch.uint8, device=device).fill_(1)
    target = torch.empty_like(source)
    target.copy_(source)
    synchronize(device)
    repeats = 3 if small else 10
    start = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    synchronize(device)
    return 2 * size * repeats / (time.perf_counter() - start)


def step_bytes(model) -> tuple[int, int, int]:
    """(parameters, bytes a plain / top-K decode step reads, bytes a full-vocabulary step reads)."""
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings().weight
    parameters = sum(p.numel() for p in model.parameters())
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    table = embedding.numel() * embedding.element_size()
    plain = total - (0 if embedding is output else table)  # an untied input table: only B rows are read
    return parameters, plain, plain + table  # the full mixture is one more pass over the table


def part_speed(shape: str, args, record: Recorder) -> None:
    """Eager vs compiled decoding of one shape. Per batch size: the eager engine (modes interleaved), then the
    compiled one (its warm-up compiles; modes interleaved), so a part stopped during a compilation keeps the eager
    rows. Each batch size starts from no compiled code (static shapes, as a process running only that batch)."""
    import torch

    from hf_softthink import SoftThinkingConfig

    s = settings(args)
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    label = (SMALL_SHAPES if args.small else SHAPES)[shape][0]
    bandwidth = copy_bandwidth(args.device, args.small)
    model = build_model(shape, args, dtype)
    parameters, plain_bytes, full_bytes = step_bytes(model)
    nominal = next((v for k, v in NOMINAL_BANDWIDTH.items() if cuda and k in torch.cuda.get_device_name(0)), None)
    record("bandwidth", shape=shape, model=label, dtype=str(dtype).split(".")[-1], parameters=parameters,
           step_bytes=plain_bytes, full_step_bytes=full_bytes, copy_bandwidth=bandwidth, nominal=nominal)  # fmt: skip
    modes = {
        "plain": None,
        "soft": SoftThinkingConfig(think_end=None),
        "soft-full": SoftThinkingConfig(think_end=None, max_topk=None, top_k=None, top_p=1.0, min_p=0.0),
    }
    engines = {"eager": {}, "compiled": {"cache_implementation": "static", "compile_config": compile_config(args)}}
    new = s["new_tokens"]

    def decode(inputs, mode, engine, tokens=new):
        kwargs = dict(do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=0,
                      **engines[engine])  # fmt: skip
        if modes[mode] is not None:
            kwargs["soft_thinking"] = modes[mode]
        synchronize(args.device)
        start = time.perf_counter()
        out = model.generate(**inputs, **kwargs)
        synchronize(args.device)
        return out, time.perf_counter() - start

    generator = torch.Generator().manual_seed(1)
    for batch in s["batches"]:
        torch._dynamo.reset()
        for attribute in ("_compiled_call", "_last_compile_config"):
            if hasattr(model, attribute):
                delattr(model, attribute)
        ids = torch.randint(5, model.config.vocab_size, (batch, s["prompt_tokens"]), generator=generator)
        inputs = {"input_ids": ids.to(args.device), "attention_mask": torch.ones_like(ids).to(args.device)}
        outputs = {}
        for engine in engines:
            warm_up = {}
            for mode in modes:  # the compiled engine compiles here, at the timed runs' cache length
                warm_up[mode] = decode(inputs, mode, engine, new if engine == "compiled" else min(new, 8))[1]
            if engine == "compiled" and not hasattr(model, "_compiled_call"):
                record("note", text=f"{label} batch {batch}: the compiled engine ran eagerly (transformers did not "
                                    "compile; docs/design.md §8 lists its criteria)")  # fmt: skip
            graphs = unique_graphs()
            times = {mode: [] for mode in modes}
            for _ in range(s["repeats"]):
                for mode in modes:
                    outputs[mode, engine], seconds = decode(inputs, mode, engine)
                    times[mode].append(seconds)
            if unique_graphs() > graphs:
                record("note", text=f"{label} batch {batch} {engine}: {unique_graphs() - graphs} graph(s) traced "
                                    "during the timed runs")  # fmt: skip
            for mode, seconds in times.items():
                median = statistics.median(seconds)
                floor = (full_bytes if mode == "soft-full" else plain_bytes) / bandwidth * 1000
                same = first_difference(outputs[mode, engine], outputs[mode, "eager"], s["prompt_tokens"])
                record("speed", shape=shape, model=label, batch=batch, mode=mode, engine=engine, runs=seconds,
                       tok_s=batch * new / median, ms_step=1000 * median / new, floor_ms=floor,
                       compile_s=warm_up[mode] if engine == "compiled" else None, tokens_vs_eager=same,
                       new_tokens=new, prompt_tokens=s["prompt_tokens"], repeats=s["repeats"])  # fmt: skip


def first_difference(tokens, reference, prompt: int) -> str:
    differs = (tokens[:, prompt:] != reference[:, prompt:]).any(0).nonzero()
    return "yes" if differs.numel() == 0 else f"from step {int(differs[0])}"


# ----------------------------------------------------------------------------------------------------- train
def part_train(args, record: Recorder) -> None:
    import torch

    unquantized = "bf16" if args.device.startswith("cuda") else "fp32"
    # QLoRA eager first; the compiled NF4 run last: transformers does not compile bitsandbytes 4-bit models,
    # so it runs the static cache eagerly and tells the least
    for weights, engine in (("nf4", "eager"), (unquantized, "eager"), (unquantized, "compiled"), ("nf4", "compiled")):
        record("train", **train_once(args, weights, engine))
        free(args)
        torch._dynamo.reset()


def train_once(args, weights: str, engine: str) -> dict:
    import resource

    import datasets
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback

    from hf_softthink import SoftThinkingConfig
    from hf_softthink.models import tiny_tokenizer
    from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

    s = settings(args)
    cuda = args.device.startswith("cuda")
    model = nf4_model("1.7b", args) if weights == "nf4" else build_model("1.7b", args, dtype_of(weights))
    questions = [f"What is {a} + {b}?" for a in range(1, 10) for b in range(1, 10)]
    dataset = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": q}] for q in questions]})

    def even_tokens(completions, completion_ids, **kwargs):
        return [sum(i % 2 == 0 for i in ids) / max(len(ids), 1) for ids in completion_ids]

    generation = {"min_new_tokens": s["train_tokens"]}
    compiled = {}
    if engine == "compiled":
        generation["compile_config"] = compile_config(args)
        compiled["cache_implementation"] = "static"
    config = SoftGRPOConfig(
        output_dir=str(args.workdir / f"train-{weights}-{engine}"), use_cpu=not cuda, bf16=cuda,
        per_device_train_batch_size=s["completions"], num_generations=s["completions"],
        max_completion_length=s["train_tokens"], generation_kwargs=generation, **compiled,
        max_steps=s["warmup_steps"] + s["timed_steps"], learning_rate=1e-5, logging_steps=1, report_to=[],
        save_strategy="no", disable_tqdm=True, seed=0, soft_rollout="gumbel",
        soft_thinking=SoftThinkingConfig(max_topk=10, max_thinking_tokens=s["thinking_tokens"]),
    )  # fmt: skip
    steps, rollouts, graphs = [], [], []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            synchronize(args.device)
            self.start = time.perf_counter()
            if len(steps) == s["warmup_steps"]:
                graphs.append(unique_graphs())
                if cuda:
                    torch.cuda.reset_peak_memory_stats()

        def on_step_end(self, *a, **k):
            synchronize(args.device)
            steps.append(time.perf_counter() - self.start)

    trainer = SoftGRPOTrainer(model=model, reward_funcs=even_tokens, args=config, train_dataset=dataset,
                              processing_class=tiny_tokenizer(), callbacks=[StepTimer()],
                              peft_config=LoraConfig(r=s["lora_r"], lora_alpha=2 * s["lora_r"],
                                                     target_modules="all-linear"))  # fmt: skip
    rollout = trainer._generate_single_turn

    def timed_rollout(*a, **k):
        synchronize(args.device)
        start = time.perf_counter()
        result = rollout(*a, **k)
        synchronize(args.device)
        rollouts.append(time.perf_counter() - start)
        return result

    trainer._generate_single_turn = timed_rollout
    trainer.train()
    timed = steps[s["warmup_steps"] :]
    base = trainer.accelerator.unwrap_model(trainer.model)
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    used = hasattr(base, "_compiled_call")
    why = " (transformers does not compile bitsandbytes 4-bit)" if engine == "compiled" and weights == "nf4" else ""
    logs = [h for h in trainer.state.log_history if "loss" in h]
    peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    label = (SMALL_SHAPES if args.small else SHAPES)["1.7b"][0]
    return dict(weights=weights, engine=engine, model=label, compiled_forward=("yes" if used else "no") + why,
                step_s=statistics.median(timed), rollout_s=statistics.median(rollouts[s["warmup_steps"]:]),
                steps=timed, peak_gib=peak / 2**30, graphs_timed=unique_graphs() - graphs[0],
                finite=all(math.isfinite(h["loss"]) for h in logs), lora_r=s["lora_r"],
                completions=s["completions"], tokens=s["train_tokens"], thinking=s["thinking_tokens"],
                warmup=s["warmup_steps"])  # fmt: skip


# ----------------------------------------------------------------------------------------------- distributed
def _check_distributed():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_distributed", ROOT / "benchmarks" / "check_distributed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dist_options(args, name: str) -> argparse.Namespace:
    """The settings of benchmarks/check_distributed.py's trainer for the smoke of config `name` (tiny Llama, LoRA,
    no KL), with a folder of its own (the configs run side by side)."""
    return argparse.Namespace(out=str(args.workdir / "dist" / name), model="tiny", bf16=args.device.startswith("cuda"),
                              grad_accum=1, num_generations=4, num_iterations=1, beta=0.0,
                              steps=settings(args)["dist_steps"], full_finetune=False)  # fmt: skip


def part_distributed(args, record: Recorder) -> None:
    configs = CPU_DIST_CONFIGS if not args.device.startswith("cuda") else DIST_CONFIGS
    launches = {}
    for offset, (name, config) in enumerate(configs.items()):
        (Path(dist_options(args, name).out) / "result.json").unlink(missing_ok=True)
        launch = ["-m", "accelerate.commands.launch", *(["--config_file", config] if config else ["--cpu"]),
                  "--num_processes", "1", "--main_process_port", str(DIST_PORT + offset)]  # fmt: skip
        command = [sys.executable, *launch, str(Path(__file__).resolve()), "--dist-worker", name,
                   *worker_arguments(args)]  # fmt: skip
        log = open(args.workdir / f"dist-{name}.log", "w")
        launches[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log, launch)
    for name, (process, log, launch) in launches.items():  # side by side; the driver's limit bounds the wait
        code = process.wait()
        log.close()
        result = Path(dist_options(args, name).out) / "result.json"
        row = {"config": name, "launch": "accelerate launch " + " ".join(launch[2:])}
        if code == 0 and result.exists():
            row.update(json.loads(result.read_text()))
        else:
            tail = [x for x in (args.workdir / f"dist-{name}.log").read_text(errors="replace").splitlines() if x]
            row.update(passed=False, error=f"exit {code}: " + (tail[-1] if tail else "(no output)"))
        record("distributed", **row)


def dist_worker(name: str, args) -> None:
    """One process of the smoke, under `accelerate launch`: train, and write what happened (rank 0)."""
    from accelerate import PartialState

    options = dist_options(args, name)
    check_distributed = _check_distributed()
    if PartialState().is_main_process:
        check_distributed.save_tiny_model(Path(options.out) / "tiny_model")
    PartialState().wait_for_everyone()
    trainer = check_distributed.build_trainer(options, "gumbel", 4, Path(options.out) / "trainer")
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    logs = [h for h in trainer.state.log_history if "loss" in h]
    if trainer.accelerator.is_main_process:
        losses = [h["loss"] for h in logs]
        norms = [float(h["grad_norm"]) for h in logs]
        (Path(options.out) / "result.json").write_text(json.dumps({
            "distributed_type": str(trainer.accelerator.distributed_type).split(".")[-1],
            "num_processes": trainer.accelerator.num_processes, "steps": len(logs),
            "losses": ", ".join(f"{x:.4g}" for x in losses), "grad_norms": ", ".join(f"{x:.3g}" for x in norms),
            "seconds": seconds,
            "passed": len(logs) == options.steps and all(map(math.isfinite, losses + norms)),
        }))  # fmt: skip


def worker(args) -> int:
    record = Recorder(args.workdir / f"{args.part}.jsonl")
    try:
        if args.part != "distributed":  # that one only launches processes: no torch to import
            import torch

            torch.backends.cuda.matmul.allow_tf32 = False  # fp32 parity means fp32 arithmetic
            record("meta", device_name=device_name(args.device), versions=versions(),
                   date=time.strftime("%Y-%m-%d %H:%M") + f" ({platform.node()})")  # fmt: skip
        if args.part == "parity":
            part_parity(args, record)
        elif args.part.startswith("speed-"):
            part_speed(args.part.split("-", 1)[1], args, record)
        elif args.part == "train":
            part_train(args, record)
        elif args.part == "distributed":
            part_distributed(args, record)
        return 0
    except Exception as error:  # noqa: BLE001 - recorded for the report, then the part fails
        traceback.print_exc()
        record("error", text=f"{type(error).__name__}: {error}"[:300])
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--small", action="store_true", help="tiny shapes and sizes (the CPU test of this script)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"), help="folder for the report and log")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch: saved models, per-part records (default /tmp/hf_softthink_check)")
    parser.add_argument("--wheels", type=Path, default=None, help="install these wheels first (gpu_wheels.sh)")
    parser.add_argument("--site", type=Path, default=Path("/tmp/hf_softthink_site"), help="where --wheels go")
    parser.add_argument("--parts", default=",".join(PART_LIMITS), help=f"comma-separated: {', '.join(PART_LIMITS)}")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for everything, the install included")
    parser.add_argument("--limits", default=None, help="per-part limits, e.g. 'speed-8b=200,train=90'")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend of the compiled engine (default inductor; eager with --small)")
    parser.add_argument("--new-tokens", type=int, default=None, help="new tokens per speed run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per (mode, engine)")
    parser.add_argument("--batches", default=None, help="speed batch sizes, e.g. 1,32")
    parser.add_argument("--merge", nargs="?", const="", default=None, metavar="REPORT",
                        help="merge REPORT into benchmarks/RESULTS.md and stop; without REPORT: run, then merge")
    parser.add_argument("--trim-bitsandbytes", type=Path, default=None, metavar="WHEEL",
                        help="trim a bitsandbytes wheel to the --keep-cuda libraries and stop (gpu_wheels.sh)")
    parser.add_argument("--keep-cuda", default="130,132", help="CUDA versions --trim-bitsandbytes keeps")
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dist-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.merge:
        merge(Path(args.merge))
        return 0
    if args.trim_bitsandbytes:
        print("bitsandbytes libraries kept:", ", ".join(trim_bitsandbytes(args.trim_bitsandbytes, args.keep_cuda)))
        return 0
    args.compile_backend = args.compile_backend or ("eager" if args.small else "inductor")
    args.workdir = (args.workdir or Path("/tmp/hf_softthink_check")).resolve()
    args.out = args.out.resolve()
    if args.dist_worker:
        dist_worker(args.dist_worker, args)
        return 0
    if args.part:
        return worker(args)
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
