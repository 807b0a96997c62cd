"""Stage 1: supervised fine-tuning of a tiny random Llama on the task's traces (a countdown problem's trace
drawn at random from its solutions each time), until its greedy dev accuracy reaches ``--sft-target`` (or
``--sft-max-steps``)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

from .common import clock, log, since, write_json
from .fingerprint import stage_code_digest
from .settings import SFT_KEYS, GridSettings, settings_hash
from .task import THINK_END, completion_text, prompt_text


def greedy_accuracy(model, tokenizer, rows: list[dict[str, Any]], settings: GridSettings) -> float:
    """Greedy accuracy (plain `generate`, reasoning-gym verifier) on ``rows``."""
    from hf_softthink.data import grade_sample

    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(rows), settings.eval_batch):
            chunk = rows[start : start + settings.eval_batch]
            enc = tokenizer(
                [prompt_text(tokenizer, r["content"]) for r in chunk],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            out = model.generate(
                **enc,
                max_new_tokens=settings.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            correct += sum(
                grade_sample(r, t, think_end=THINK_END).correct for r, t in zip(chunk, texts, strict=True)
            )
    model.train(was_training)
    return correct / len(rows)


def sft_batch(
    tokenizer, rows: list[dict[str, Any]], rng: random.Random | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, labels)``; the loss is on the completion only (each row's
    completion drawn from its solutions with ``rng``; the first without one)."""
    ids, labels = [], []
    for row in rows:
        prompt = tokenizer(prompt_text(tokenizer, row["content"]), add_special_tokens=False)["input_ids"]
        completion = tokenizer(completion_text(row, rng), add_special_tokens=False)["input_ids"]
        ids.append(prompt + completion)
        labels.append([-100] * len(prompt) + completion)
    length = max(map(len, ids))
    input_ids = torch.full((len(ids), length), tokenizer.pad_token_id)
    label_ids = torch.full((len(ids), length), -100)
    mask = torch.zeros(len(ids), length, dtype=torch.long)
    for i, (seq, lab) in enumerate(zip(ids, labels, strict=True)):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        label_ids[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(seq)] = 1
    return input_ids, mask, label_ids


def sft_run_folder(settings: GridSettings) -> Path:
    """The SFT stage's folder: ``sft-<hash of SFT_KEYS and the stage's code>``."""
    return Path(settings.out) / f"sft-{settings_hash(settings, SFT_KEYS, stage_code_digest('sft'))}"


def run_sft(settings: GridSettings, splits, tokenizer) -> Path:
    """Train (or reuse) the SFT start; returns its folder."""
    from hf_softthink.models import tiny_model

    folder = sft_run_folder(settings)
    if (folder / "sft.json").exists():
        log(f"SFT: reusing {folder}")
        return folder
    model = tiny_model(
        "llama",
        seed=settings.model_seed,
        hidden_size=settings.hidden,
        intermediate_size=2 * settings.hidden,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads,
        num_key_value_heads=settings.heads,
    ).train()
    params = sum(p.numel() for p in model.parameters())
    log(f"SFT: {params / 1e6:.2f}M parameters, {len(splits['train'])} training problems")
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.sft_lr, weight_decay=0.0)
    warmup = 20
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    rng = random.Random(settings.model_seed)
    torch.manual_seed(settings.model_seed)
    curve = []
    start = clock()
    step = 0
    accuracy = 0.0
    while step < settings.sft_max_steps:
        batch = rng.sample(splits["train"], min(settings.sft_batch, len(splits["train"])))
        input_ids, mask, labels = sft_batch(tokenizer, batch, rng)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % settings.sft_eval_every == 0 or step == settings.sft_max_steps:
            accuracy = greedy_accuracy(model, tokenizer, splits["dev"], settings)
            curve.append(
                {
                    "step": step,
                    "loss": round(loss.item(), 4),
                    "dev_greedy_accuracy": accuracy,
                    "seconds": round(since(start)[0], 1),
                }
            )
            log(f"SFT step {step}: loss {loss.item():.3f}, dev greedy accuracy {accuracy:.2f}")
            if step >= settings.sft_min_steps and accuracy >= settings.sft_target:
                break
    seconds, cpu_seconds = since(start)
    model.eval()
    tmp = folder.with_name(folder.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_json(
        tmp / "sft.json",
        {
            "steps": step,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "code": stage_code_digest("sft"),
            "parameters": params,
            "dev_greedy_accuracy": accuracy,
            "curve": curve,
            "train_problems": len(splits["train"]),
        },
    )
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    log(f"SFT: {step} steps in {seconds:.0f} s, dev greedy accuracy {accuracy:.2f} -> {folder}")
    return folder
