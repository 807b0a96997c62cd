"""Stages 3 and 4: the inference modes on the held-out problems (``eval_split``: the test problems, or the dev
split to choose settings on; through `evaluate_modes`, resumable), and the out-of-domain drift of each model
from the SFT start.

Inference modes (``--inference-modes``): the presets of `hf_softthink.evaluation`, and ``own``: a soft-trained
model decoded with its own training noise (:func:`own_noise_mode`). Each evaluation also keeps, per mode, the
number of correct samples of every problem (in problem order), from which the report computes pass@k per
problem, standard errors and paired differences.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .common import clock, load_model, log, read_json, since, write_json
from .fingerprint import stage_code_digest
from .settings import EVAL_KEYS, OWN, GridSettings, settings_hash
from .task import THINK_END, prompt_text

#: the name of the own-noise mode in evaluation records
OWN_NOISE = "own-noise"


def own_noise_mode(rollout: dict[str, Any]):
    """The `DecodingMode` that decodes a soft-trained model with its own training noise: the rollout config
    of its run (``SoftGRPOConfig.rollout_config()``: noise kind and scale, e.g. Gumbel at the training tau or
    Gaussian at the training sigma, the support, the thinking budget, sampled stop decisions), at the
    evaluation protocol's temperature (T 0.6, or the rollout's own thinking temperature where that is lower, as
    fuzzy's 1e-4), with the answer sampled as the ``hard-sample`` preset (T 0.6, top-k 30, top-p 0.95)."""
    from hf_softthink.config import SoftThinkingConfig
    from hf_softthink.evaluation import SAMPLE_TEMPERATURE, SAMPLE_TOP_K, SAMPLE_TOP_P, DecodingMode

    values = dict(rollout)
    values["temperature"] = min(float(values["temperature"]), SAMPLE_TEMPERATURE)
    return DecodingMode(
        OWN_NOISE,
        soft_thinking=SoftThinkingConfig.from_dict(values),
        do_sample=True,
        temperature=SAMPLE_TEMPERATURE,
        top_k=SAMPLE_TOP_K,
        top_p=SAMPLE_TOP_P,
    )


@torch.no_grad()
def token_logprobs(
    model, tokenizer, texts: list[str], batch: int = 32
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per text: the (T-1, V) next-token log-probabilities (fp32) and the (T-1,) next tokens."""
    out = []
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        logits = model(**enc).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        for i in range(len(chunk)):
            valid = enc["attention_mask"][i, 1:].bool() & enc["attention_mask"][i, :-1].bool()
            out.append((logp[i][valid], enc["input_ids"][i, 1:][valid]))
    return out


def ood_drift(model, reference, tokenizer, texts: list[str]) -> dict[str, float]:
    """Mean token NLL of ``model`` and ``reference`` on ``texts``; mean per-token KL(reference || model)."""
    ours, theirs = token_logprobs(model, tokenizer, texts), token_logprobs(reference, tokenizer, texts)
    nll = ref_nll = kl = 0.0
    count = 0
    for (logp, targets), (ref_logp, _) in zip(ours, theirs, strict=True):
        nll -= logp.gather(1, targets[:, None]).sum().item()
        ref_nll -= ref_logp.gather(1, targets[:, None]).sum().item()
        kl += (ref_logp.exp() * (ref_logp - logp)).sum().item()
        count += targets.numel()
    return {
        "nll": nll / count,
        "reference_nll": ref_nll / count,
        "delta_nll": (nll - ref_nll) / count,
        "kl": kl / count,
        "tokens": count,
    }


def problems_digest(problems: list[dict[str, Any]]) -> str:
    """A digest of the problems an evaluation decoded, in order: two evaluations are paired problem by problem
    only when theirs are equal."""
    keys = json.dumps([row["key"] for row in problems])
    return hashlib.sha1(keys.encode()).hexdigest()[:12]


def eval_run_folder(
    settings: GridSettings, name: str, model_folder: Path, sft_folder: Path, rollout: dict[str, Any] | None = None
) -> Path:
    """One model's evaluation folder: ``eval/<name>-<hash>`` of EVAL_KEYS, the path of the stage folder that
    made the model (its name holds that stage's key: for an RL model every RL setting, the row's config, the SFT
    start and the trainer code), the SFT folder (the OOD reference and the test problems), the rollout config
    the own-noise mode decodes with, and the stage's code."""
    made_by = model_folder.resolve().relative_to(Path(settings.out).resolve()).as_posix()
    tag = settings_hash(settings, EVAL_KEYS, made_by, sft_folder.name, rollout, stage_code_digest("evaluate"))
    return Path(settings.out) / "eval" / f"{name}-{tag}"


def run_eval(
    settings: GridSettings,
    name: str,
    model_folder: Path,
    sft_folder: Path,
    splits,
    tokenizer,
    ood: list[str],
    rollout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one model in every inference mode (resumable through `evaluate_modes`), plus OOD drift.

    ``rollout``: the rollout config (``SoftThinkingConfig.to_dict()``) the model was trained with, for the
    ``own`` mode; ``None`` (the SFT start, hard RL) leaves that mode out."""
    from transformers import GenerationConfig

    from hf_softthink.evaluation import evaluate_modes

    folder = eval_run_folder(settings, name, model_folder, sft_folder, rollout)
    if (folder / "grid_eval.json").exists():
        log(f"eval {name}: reusing {folder}")
        return read_json(folder / "grid_eval.json")
    model = load_model(model_folder)
    # the GRPO trainer saves its own generation settings: decode every model with the SFT start's
    model.generation_config = GenerationConfig.from_pretrained(sft_folder)
    problems = splits[settings.eval_split]
    modes = [m for m in settings.inference_modes if m != OWN]
    if OWN in settings.inference_modes and rollout is not None:
        modes.append(own_noise_mode(rollout))
    rows = [
        {
            "prompt_text": prompt_text(tokenizer, r["content"]),
            "question": r["content"],
            "answer": r["answer"],
            "task": r["task"],
            "entry": r["entry"],
        }
        for r in problems
    ]
    start = clock()
    result = evaluate_modes(
        model,
        tokenizer,
        rows,
        modes,
        samples=settings.samples,
        ks=list(settings.ks),
        batch_size=settings.eval_batch,
        max_new_tokens=settings.max_new_tokens,
        max_thinking_tokens=settings.max_thinking_tokens,
        think_end=THINK_END,
        seed=settings.eval_seed,
        output_dir=folder,
        model_name=name,
        task_name=problems[0]["task"],
        progress=False,
    )
    seconds, cpu_seconds = since(start)
    reference = load_model(sft_folder)
    drift = ood_drift(model, reference, tokenizer, ood)
    summary = {
        mode: {key: value for key, value in s.items() if key != "mode"} for mode, s in result.summary.items()
    }
    record = {
        "name": name,
        "model": str(model_folder),
        "code": stage_code_digest("evaluate"),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "summary": summary,
        "samples": settings.samples,
        "problems": problems_digest(problems),
        "correct_counts": {
            mode: [sum(map(bool, r["correct"])) for r in records] for mode, records in result.records.items()
        },
        "rollout": rollout,
        "ood": drift,
    }
    write_json(folder / "grid_eval.json", record)
    cells = ", ".join(
        f"{m} {s[f'pass@{settings.ks[0]}']:.2f}/{s[f'pass@{settings.ks[-1]}']:.2f}"
        for m, s in summary.items()
    )
    log(
        f"eval {name}: {seconds:.0f} s; pass@{settings.ks[0]}/pass@{settings.ks[-1]}: {cells}; "
        f"OOD dNLL {drift['delta_nll']:+.4f}, KL {drift['kl']:.4f}"
    )
    return record
