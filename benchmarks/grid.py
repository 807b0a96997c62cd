"""Train x inference grid of "Soft Tokens, Hard Truths" (arXiv:2509.19170) at the scale of a CPU.

    python benchmarks/grid.py                 # the full grid (defaults: under an hour on 2 busy CPU cores)
    python benchmarks/grid.py --smoke         # ~1 minute end-to-end check (used by tests/test_grid.py)
    python benchmarks/grid.py --help          # every knob

What it does, each stage saved under ``--out`` (default ``runs/grid``) and skipped when rerun:

1. **SFT.** A tiny random Llama (byte-level tokenizer with ``<think>``/``</think>`` tokens) is trained with a
   plain torch loop on reasoning-gym ``chain_sum`` problems (three single-digit terms, ``+``/``-``), with a
   chain-of-thought trace written out step by step::

       <|im_start|>user\\n4 - 1 + 7 =<|im_end|>\\n<|im_start|>assistant\\n
       <think>4 - 1 = 3, 3 + 7 = 10</think>10<|im_end|>

   until it is *partly* right: greedy accuracy on a dev split reaches ``--sft-target`` (or
   ``--sft-max-steps``). Held-out problems (the test and dev splits, drawn with seeds 10**6 and 2*10**6) are
   removed from the SFT and RL data, so the evaluation is on problems never trained on.
2. **RL.** From the SFT checkpoint, `SoftGRPOTrainer` (full fine-tune, the model is 0.7M parameters) for the
   same number of steps in each training mode: ``hard`` (plain GRPO), ``soft`` (``soft_rollout="gaussian"``:
   concept tokens at the sampling temperature plus Gaussian noise on the input embedding) and ``fuzzy``
   (``soft_rollout="fuzzy"``: thinking temperature 1e-4 plus the same noise), for each seed. Reward: the
   reasoning-gym verifier (`hf_softthink.rewards.reasoning_gym_reward`).
3. **Evaluation.** Every model (the SFT start and each RL run) with every inference preset of
   `hf_softthink.evaluation` (hard/soft/fuzzy x greedy/sample) on the same held-out problems, ``--samples``
   completions per problem, pass@1 and pass@k (unbiased estimator).
4. **Out-of-domain drift.** Mean token NLL of each model on reasoning-gym ``basic_arithmetic`` question/answer
   chats (another task and format), minus the SFT start's, and the mean per-token KL(SFT || model) there.
5. **Report.** Mean +- sample std over seeds: a Markdown table (rows: training mode, columns: inference mode x
   {pass@1, pass@k}), drift and wall times, written between the markers of ``--results``
   (default ``benchmarks/RESULTS_grid.md``; text outside the markers is kept), and a PNG plot (``--plot``).

Stage folders carry a hash of the settings they depend on, so changing a flag recomputes what it affects and
reuses the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
TASK = "chain_sum"
OOD_TASK = "basic_arithmetic"
THINK_START, THINK_END, EOS = "<think>", "</think>", "<|im_end|>"
TEST_SEED, DEV_SEED = 10**6, 2 * 10**6
#: training modes: grid label -> SoftGRPOConfig.soft_rollout
TRAIN_MODES = {"hard": "hard", "soft": "gaussian", "fuzzy": "fuzzy"}
INFERENCE_MODES = ("hard-greedy", "hard-sample", "soft-greedy", "soft-sample", "fuzzy-greedy", "fuzzy-sample")
START = "sft"  # the row of the SFT start


# --------------------------------------------------------------------------------------------------
# settings


@dataclasses.dataclass
class GridSettings:
    """Every knob of the grid (the CLI flags)."""

    out: str = str(REPO / "runs" / "grid")
    results: str = str(REPO / "benchmarks" / "RESULTS_grid.md")
    plot: str = str(REPO / "benchmarks" / "grid_results.png")
    threads: int = 1
    # task
    terms: int = 3
    full_question: bool = False
    pool_size: int = 8000
    test_problems: int = 64
    dev_problems: int = 100
    # model
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    model_seed: int = 0
    # SFT
    sft_batch: int = 32
    sft_lr: float = 2e-3
    sft_max_steps: int = 1500
    sft_min_steps: int = 200
    sft_eval_every: int = 50
    sft_target: float = 0.4
    # RL
    train_modes: tuple[str, ...] = tuple(TRAIN_MODES)
    seeds: tuple[int, ...] = (0, 1, 2)
    rl_steps: int = 120
    rl_prompts: int = 8
    rl_generations: int = 8
    rl_lr: float = 1e-4
    rl_temperature: float = 1.0
    rl_sigma: float = 0.33
    rl_max_topk: int = 10
    # inference / evaluation
    inference_modes: tuple[str, ...] = INFERENCE_MODES
    samples: int = 32
    ks: tuple[int, ...] = (1, 32)
    eval_batch: int = 128
    max_new_tokens: int = 48
    max_thinking_tokens: int = 40
    eval_seed: int = 0
    # out-of-domain drift
    ood_size: int = 200
    smoke: bool = False

    @property
    def task_config(self) -> dict[str, int]:
        return {"min_terms": self.terms, "max_terms": self.terms, "min_digits": 1, "max_digits": 1}


SMOKE = {
    "terms": 2,
    "pool_size": 400,
    "test_problems": 4,
    "dev_problems": 8,
    "hidden": 32,
    "layers": 1,
    "sft_batch": 16,
    "sft_max_steps": 20,
    "sft_min_steps": 20,
    "sft_eval_every": 10,
    "sft_target": 1.1,
    "seeds": (0,),
    "rl_steps": 2,
    "rl_prompts": 2,
    "rl_generations": 4,
    "samples": 4,
    "ks": (1, 4),
    "eval_batch": 16,
    "max_new_tokens": 24,
    "max_thinking_tokens": 16,
    "ood_size": 8,
}


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _name_list(allowed: Iterable[str]):
    allowed = tuple(allowed)

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in text.split(",") if part.strip())
        bad = [name for name in names if name not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)} (got {text!r})")
        return names

    return parse


def parse_args(argv: Sequence[str] | None = None) -> GridSettings:
    """CLI flags -> `GridSettings` (``--smoke`` first applies the small settings, explicit flags win)."""
    defaults = GridSettings()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny end-to-end run (~1 min); outputs under --out"
    )
    kinds = {int: int, float: float, str: str}
    for f in dataclasses.fields(GridSettings):
        if f.name == "smoke":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name == "train_modes":
            parser.add_argument(
                flag, type=_name_list(TRAIN_MODES), default=None, help=f"default {','.join(default)}"
            )
        elif f.name == "inference_modes":
            parser.add_argument(flag, type=_name_list(INFERENCE_MODES), default=None, help="default: all six")
        elif isinstance(default, tuple):
            parser.add_argument(
                flag, type=_int_list, default=None, help=f"default {','.join(map(str, default))}"
            )
        else:
            parser.add_argument(flag, type=kinds[type(default)], default=None, help=f"default {default}")
    namespace = vars(parser.parse_args(argv))
    values = dataclasses.asdict(defaults)
    if namespace.pop("smoke"):
        values.update(SMOKE, smoke=True, out=str(REPO / "runs" / "grid-smoke"))
        values["results"] = str(Path(namespace["out"] or values["out"]) / "RESULTS_grid.md")
        values["plot"] = str(Path(namespace["out"] or values["out"]) / "grid_results.png")
    values.update({key: value for key, value in namespace.items() if value is not None})
    settings = GridSettings(**values)
    if max(settings.ks) > settings.samples:
        parser.error(f"--ks {settings.ks} has a k larger than --samples {settings.samples}")
    return settings


def settings_hash(settings: GridSettings, keys: Iterable[str], *extra: Any) -> str:
    """Short hash of the named settings (and extra values): the name suffix of a stage folder."""
    payload = {key: getattr(settings, key) for key in keys}
    text = json.dumps([payload, *extra], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


SFT_KEYS = (
    "terms",
    "full_question",
    "pool_size",
    "test_problems",
    "dev_problems",
    "hidden",
    "layers",
    "heads",
    "model_seed",
    "sft_batch",
    "sft_lr",
    "sft_max_steps",
    "sft_min_steps",
    "sft_eval_every",
    "sft_target",
    "max_new_tokens",
)
RL_KEYS = (
    "rl_steps",
    "rl_prompts",
    "rl_generations",
    "rl_lr",
    "rl_temperature",
    "rl_sigma",
    "rl_max_topk",
    "max_new_tokens",
    "max_thinking_tokens",
)
EVAL_KEYS = ("samples", "ks", "max_new_tokens", "max_thinking_tokens", "eval_seed", "ood_size")


# --------------------------------------------------------------------------------------------------
# data


def chain_trace(expression: str) -> tuple[str, str]:
    """The step-by-step trace and the answer of a chain sum.

    ``'4 - 1 + 7'`` -> ``('4 - 1 = 3, 3 + 7 = 10', '10')``.
    """
    tokens = expression.split()
    if len(tokens) < 3 or len(tokens) % 2 == 0:
        raise ValueError(f"not a chain sum: {expression!r}")
    total = int(tokens[0])
    steps = []
    for op, term in zip(tokens[1::2], tokens[2::2], strict=True):
        if op not in "+-":
            raise ValueError(f"unknown operator {op!r} in {expression!r}")
        new = total + int(term) if op == "+" else total - int(term)
        steps.append(f"{total} {op} {term} = {new}")
        total = new
    return ", ".join(steps), str(total)


def completion_text(expression: str) -> str:
    """What the SFT model learns to write after the generation prompt."""
    trace, answer = chain_trace(expression)
    return f"{THINK_START}{trace}{THINK_END}{answer}{EOS}"


def load_problems(settings: GridSettings, size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` chain_sum problems as rows: ``expression``, ``content`` (the user message), ``answer``,
    ``task``, ``entry`` (reasoning-gym's entry, for the verifier)."""
    from hf_softthink.data import decode_entry, reasoning_gym_dataset

    ds = reasoning_gym_dataset(
        TASK, size=size, seed=seed, config=settings.task_config, thinking_instruction=None
    )
    rows = []
    for row in ds:
        expression = decode_entry(row["entry"])["metadata"]["expression"]
        trace_answer = chain_trace(expression)[1]
        if trace_answer != row["answer"]:  # the trace must agree with reasoning-gym's oracle
            raise RuntimeError(f"trace of {expression!r} gives {trace_answer}, reasoning-gym {row['answer']}")
        content = row["question"] if settings.full_question else f"{expression} ="
        rows.append(
            {
                "expression": expression,
                "content": content,
                "answer": row["answer"],
                "task": TASK,
                "entry": row["entry"],
            }
        )
    return rows


def build_splits(settings: GridSettings) -> dict[str, list[dict[str, Any]]]:
    """``train`` (SFT and RL prompts), ``dev`` (SFT stopping) and ``test`` (the grid) problems; no test or dev
    problem (same expression) is in ``train``."""
    test = load_problems(settings, settings.test_problems, TEST_SEED)
    dev = load_problems(settings, settings.dev_problems, DEV_SEED)
    held_out = {row["expression"] for row in test + dev}
    train = [
        row for row in load_problems(settings, settings.pool_size, 0) if row["expression"] not in held_out
    ]
    return {"train": train, "dev": dev, "test": test}


def prompt_text(tokenizer, content: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )


def ood_texts(settings: GridSettings, tokenizer) -> list[str]:
    """Chats of another reasoning-gym task (``basic_arithmetic``: other format, operators, number sizes)."""
    from hf_softthink.data import reasoning_gym_dataset

    ds = reasoning_gym_dataset(OOD_TASK, size=settings.ood_size, seed=0, thinking_instruction=None)
    return [prompt_text(tokenizer, row["question"]) + row["answer"] + EOS for row in ds]


# --------------------------------------------------------------------------------------------------
# helpers


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def log(message: str) -> None:
    print(f"[grid {time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


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


# --------------------------------------------------------------------------------------------------
# stage 1: SFT


def sft_batch(tokenizer, rows: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, labels)``; the loss is on the completion only."""
    ids, labels = [], []
    for row in rows:
        prompt = tokenizer(prompt_text(tokenizer, row["content"]), add_special_tokens=False)["input_ids"]
        completion = tokenizer(completion_text(row["expression"]), add_special_tokens=False)["input_ids"]
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


def run_sft(settings: GridSettings, splits, tokenizer) -> Path:
    """Train (or reuse) the SFT start; returns its folder."""
    from hf_softthink.models import tiny_model

    folder = Path(settings.out) / f"sft-{settings_hash(settings, SFT_KEYS)}"
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
    start = time.perf_counter()
    step = 0
    accuracy = 0.0
    while step < settings.sft_max_steps:
        batch = rng.sample(splits["train"], min(settings.sft_batch, len(splits["train"])))
        input_ids, mask, labels = sft_batch(tokenizer, batch)
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
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            log(f"SFT step {step}: loss {loss.item():.3f}, dev greedy accuracy {accuracy:.2f}")
            if step >= settings.sft_min_steps and accuracy >= settings.sft_target:
                break
    seconds = time.perf_counter() - start
    model.eval()
    tmp = folder.with_name(folder.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_json(
        tmp / "sft.json",
        {
            "steps": step,
            "seconds": seconds,
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


# --------------------------------------------------------------------------------------------------
# stage 2: RL


def rl_dataset(settings: GridSettings, splits, seed: int):
    """``rl_steps * rl_prompts`` training prompts (each used once), shuffled by the seed."""
    import datasets

    rows = list(splits["train"])
    random.Random(1000 + seed).shuffle(rows)
    needed = settings.rl_steps * settings.rl_prompts
    rows = (rows * (needed // max(len(rows), 1) + 1))[:needed]
    return datasets.Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": r["content"]}], "task": r["task"], "entry": r["entry"]}
            for r in rows
        ]
    )


def run_rl(settings: GridSettings, mode: str, seed: int, sft_folder: Path, splits, tokenizer) -> Path:
    """One RL run (or reuse); returns its folder (the trained model and ``run.json``)."""
    from hf_softthink import SoftThinkingConfig
    from hf_softthink.rewards import reasoning_gym_reward
    from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

    tag = settings_hash(settings, RL_KEYS, sft_folder.name)
    folder = Path(settings.out) / "rl" / f"{mode}-s{seed}-{tag}"
    if (folder / "run.json").exists():
        log(f"RL {mode} seed {seed}: reusing {folder}")
        return folder
    model = load_model(sft_folder).train()
    soft = SoftThinkingConfig(
        max_topk=settings.rl_max_topk,
        temperature=settings.rl_temperature,
        top_k=None,
        top_p=1.0,
        gaussian_sigma=settings.rl_sigma,
        think_end=THINK_END,
        max_thinking_tokens=settings.max_thinking_tokens,
    )
    args = SoftGRPOConfig(
        output_dir=str(folder / "trainer"),
        soft_rollout=TRAIN_MODES[mode],
        soft_thinking=soft,
        num_generations=settings.rl_generations,
        per_device_train_batch_size=settings.rl_prompts * settings.rl_generations,
        gradient_accumulation_steps=1,
        max_completion_length=settings.max_new_tokens,
        temperature=settings.rl_temperature,
        learning_rate=settings.rl_lr,
        lr_scheduler_type="constant",
        max_steps=settings.rl_steps,
        beta=0.0,
        seed=seed,
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        gradient_checkpointing=False,
        optim="adamw_torch",
    )
    trainer = SoftGRPOTrainer(
        model=model,
        reward_funcs=[reasoning_gym_reward],
        args=args,
        train_dataset=rl_dataset(settings, splits, seed),
        processing_class=tokenizer,
    )
    log(f"RL {mode} (soft_rollout={TRAIN_MODES[mode]!r}) seed {seed}: {settings.rl_steps} steps")
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tmp = folder / "model.partial"
    trainer.save_model(str(tmp))
    shutil.rmtree(folder / "model", ignore_errors=True)
    tmp.replace(folder / "model")
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    keep = (
        "step",
        "reward",
        "reward_std",
        "loss",
        "grad_norm",
        "entropy",
        "completions/mean_length",
        "soft/frac_soft_steps",
        "soft/mixture_entropy",
        "soft/think_end_rate",
    )
    history = [{k: h[k] for k in keep if k in h} for h in trainer.state.log_history if "reward" in h]
    write_json(
        folder / "run.json",
        {
            "mode": mode,
            "soft_rollout": TRAIN_MODES[mode],
            "seed": seed,
            "seconds": seconds,
            "steps": settings.rl_steps,
            "rewards": rewards,
            "history": history,
        },
    )
    tail = max(1, len(rewards) // 5)
    log(
        f"RL {mode} seed {seed}: {seconds:.0f} s, train reward {_mean(rewards[:tail]):.2f} "
        f"(first {tail} steps) -> {_mean(rewards[-tail:]):.2f} (last {tail})"
    )
    del trainer, model
    return folder


# --------------------------------------------------------------------------------------------------
# stage 3 and 4: evaluation and out-of-domain drift


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


def run_eval(
    settings: GridSettings, name: str, model_folder: Path, sft_folder: Path, splits, tokenizer, ood: list[str]
) -> dict[str, Any]:
    """Evaluate one model in every inference mode (resumable through `evaluate_modes`), plus OOD drift."""
    from transformers import GenerationConfig

    from hf_softthink.evaluation import evaluate_modes

    tag = settings_hash(settings, EVAL_KEYS, settings.inference_modes, model_folder.name, len(splits["test"]))
    folder = Path(settings.out) / "eval" / f"{name}-{tag}"
    if (folder / "grid_eval.json").exists():
        log(f"eval {name}: reusing {folder}")
        return read_json(folder / "grid_eval.json")
    model = load_model(model_folder)
    # the GRPO trainer saves its own generation settings: decode every model with the SFT start's
    model.generation_config = GenerationConfig.from_pretrained(sft_folder)
    rows = [
        {
            "prompt_text": prompt_text(tokenizer, r["content"]),
            "question": r["content"],
            "answer": r["answer"],
            "task": r["task"],
            "entry": r["entry"],
        }
        for r in splits["test"]
    ]
    start = time.perf_counter()
    result = evaluate_modes(
        model,
        tokenizer,
        rows,
        list(settings.inference_modes),
        samples=settings.samples,
        ks=list(settings.ks),
        batch_size=settings.eval_batch,
        max_new_tokens=settings.max_new_tokens,
        max_thinking_tokens=settings.max_thinking_tokens,
        think_end=THINK_END,
        seed=settings.eval_seed,
        output_dir=folder,
        model_name=name,
        task_name=TASK,
        progress=False,
    )
    seconds = time.perf_counter() - start
    reference = load_model(sft_folder)
    drift = ood_drift(model, reference, tokenizer, ood)
    summary = {
        mode: {key: value for key, value in s.items() if key != "mode"} for mode, s in result.summary.items()
    }
    record = {"name": name, "model": str(model_folder), "seconds": seconds, "summary": summary, "ood": drift}
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


# --------------------------------------------------------------------------------------------------
# stage 5: tables and plot (pure helpers)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for fewer than two values)."""
    values = [float(v) for v in values]
    if not values:
        return float("nan"), None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_std(values: Sequence[float], digits: int = 2, signed: bool = False) -> str:
    """``"0.45 ± 0.03"`` (sample std), ``"0.45"`` for one value, ``"–"`` for none."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "–"
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def row_label(mode: str) -> str:
    return {START: "SFT start (no RL)", "hard": "hard", "soft": "soft (gaussian)", "fuzzy": "fuzzy"}.get(
        mode, mode
    )


def grid_table(
    evals: Mapping[str, Sequence[Mapping[str, Any]]], modes: Sequence[str], ks: Sequence[int], digits: int = 2
) -> str:
    """Markdown table: one row per training mode (``evals[mode]``: one eval record per seed), columns
    inference mode x pass@k, cells mean ± std over the records."""
    headers = ["training \\ inference", *[f"{m} pass@{k}" for m in modes for k in ks]]
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for train, records in evals.items():
        cells = [row_label(train)]
        for mode in modes:
            for k in ks:
                cells.append(format_mean_std([r["summary"][mode][f"pass@{k}"] for r in records], digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def drift_table(
    evals: Mapping[str, Sequence[Mapping[str, Any]]],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    modes: Sequence[str],
) -> str:
    """Markdown table: OOD drift, RL reward and wall times per training mode."""
    headers = [
        "training",
        "OOD NLL",
        "OOD ΔNLL vs SFT",
        "OOD KL(SFT‖model)",
        "train reward first→last 20%",
        "RL wall s",
        "eval wall s",
        "mean thinking tokens (hard-sample)",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for train, records in evals.items():
        reward, rl_seconds = "–", "–"
        if runs.get(train):
            tails = [max(1, len(r["rewards"]) // 5) for r in runs[train]]
            first = [_mean(r["rewards"][:t]) for r, t in zip(runs[train], tails, strict=True)]
            last = [_mean(r["rewards"][-t:]) for r, t in zip(runs[train], tails, strict=True)]
            reward = f"{format_mean_std(first)} → {format_mean_std(last)}"
            rl_seconds = format_mean_std([r["seconds"] for r in runs[train]], 0)
        thinking = "–"
        if "hard-sample" in modes:
            thinking = format_mean_std(
                [r["summary"]["hard-sample"]["mean_thinking_tokens"] for r in records], 1
            )
        cells = [
            row_label(train),
            format_mean_std([r["ood"]["nll"] for r in records], 3),
            format_mean_std([r["ood"]["delta_nll"] for r in records], 3, signed=True),
            format_mean_std([r["ood"]["kl"] for r in records], 3),
            reward,
            rl_seconds,
            format_mean_std([r["seconds"] for r in records], 0),
            thinking,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_grid(
    evals: Mapping[str, Sequence[Mapping[str, Any]]],
    modes: Sequence[str],
    ks: Sequence[int],
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """Grouped bars (mean, error bar = sample std over seeds): one panel per k plus one of OOD drift."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * (len(ks) + 1), 4.4), dpi=100)
    FigureCanvasAgg(fig)
    trains = list(evals)
    width = 0.8 / max(len(trains), 1)
    for panel, k in enumerate(ks):
        ax = fig.add_subplot(1, len(ks) + 1, panel + 1)
        for i, train in enumerate(trains):
            stats = [mean_std([r["summary"][m][f"pass@{k}"] for r in evals[train]]) for m in modes]
            xs = [j + (i - (len(trains) - 1) / 2) * width for j in range(len(modes))]
            ax.bar(
                xs,
                [s[0] for s in stats],
                width,
                yerr=[s[1] or 0.0 for s in stats],
                capsize=2,
                label=row_label(train),
            )
        ax.set_xticks(range(len(modes)))
        ax.set_xticklabels(modes, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"pass@{k}")
        ax.set_title(f"pass@{k} by inference mode", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        if panel == 0:
            ax.legend(fontsize=7, title="training", title_fontsize=7)
    ax = fig.add_subplot(1, len(ks) + 1, len(ks) + 1)
    rl = [t for t in trains if t != START]
    stats = [mean_std([r["ood"]["kl"] for r in evals[t]]) for t in rl]
    ax.bar(
        range(len(rl)),
        [s[0] for s in stats],
        yerr=[s[1] or 0.0 for s in stats],
        capsize=3,
        color=[f"C{trains.index(t)}" for t in rl],
    )
    ax.set_xticks(range(len(rl)))
    ax.set_xticklabels([row_label(t) for t in rl], fontsize=8)
    ax.set_ylabel("mean per-token KL(SFT ‖ model), nats")
    ax.set_title(f"out-of-domain drift ({OOD_TASK})", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


BEGIN, END = "<!-- grid:begin (written by benchmarks/grid.py) -->", "<!-- grid:end -->"


def merge_section(existing: str | None, section: str) -> str:
    """Replace the text between the grid markers of ``existing`` by ``section`` (appended if absent)."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    if not existing:
        return block + "\n"
    if BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return existing.rstrip() + "\n\n" + block + "\n"


def report(
    settings: GridSettings, sft_info: Mapping[str, Any], evals, runs, total_seconds: float, command: str
) -> str:
    s = settings
    seeds = ",".join(map(str, s.seeds))
    ks = list(s.ks)
    example = " ".join(["4", "-", "1", "+", "7", "-", "2", "+", "5"][: 2 * s.terms - 1])
    trace, answer = chain_trace(example)
    prompt = "the reasoning-gym question" if s.full_question else f"just the expression, e.g. `{example} =`"
    lines = [
        f"Command: `{command}`" + (" (smoke settings)" if s.smoke else ""),
        "",
        f"* Task: reasoning-gym `{TASK}`, {s.terms} single-digit terms (+/-), prompt {prompt}; "
        "SFT completion "
        f"`<think>{trace}</think>{answer}`. {s.test_problems} held-out test problems (seed 10**6); no test "
        f"or dev ({s.dev_problems}, seed 2*10**6) problem is in the SFT/RL data "
        f"({sft_info['train_problems']} problems).",
        f"* Model: tiny Llama, hidden {s.hidden}, {s.layers} layers, {s.heads} heads, byte-level vocabulary, "
        f"{sft_info['parameters'] / 1e6:.2f}M parameters, random init.",
        f"* SFT: AdamW lr {s.sft_lr}, batch {s.sft_batch}, {sft_info['steps']} steps "
        f"({sft_info['seconds']:.0f} s), stopped at dev greedy accuracy "
        f"{sft_info['dev_greedy_accuracy']:.2f} "
        f"(target {s.sft_target}).",
        f"* RL: `SoftGRPOTrainer`, full fine-tune, {s.rl_steps} steps x {s.rl_prompts} prompts x "
        f"{s.rl_generations} generations, AdamW lr {s.rl_lr} constant, beta 0, TRL's default loss (dapo), "
        f"grad-norm clip 1.0; sampling temperature {s.rl_temperature} for hard tokens and for soft thinking "
        f"(fuzzy: 1e-4), soft mixture over the top {s.rl_max_topk} tokens, Gaussian noise sigma "
        f"{s.rl_sigma} x embedding rms; at most {s.max_new_tokens} new tokens (soft rollouts: at most "
        f"{s.max_thinking_tokens} "
        f"thinking); seeds {seeds}. Reward: reasoning-gym verifier (1 right, 0 wrong).",
        f"* Evaluation: `evaluate_modes` presets, {s.samples} samples per problem, pass@{ks[0]} and "
        f"pass@{ks[-1]} (unbiased estimator); greedy modes without noise (hard-greedy, soft-greedy) decode "
        f"once, so their pass@{ks[-1]} equals their pass@1. Sampled tokens: T 0.6, top-k 30, top-p 0.95; "
        f"soft/fuzzy noise sigma 0.33; thinking budget {s.max_thinking_tokens} tokens for every mode.",
        f"* OOD drift: {s.ood_size} reasoning-gym `{OOD_TASK}` question/answer chats (seed 0), "
        "all tokens scored.",
        f"* Wall time of all stages: {total_seconds / 60:.1f} min (sum of the stage times recorded by the "
        "runs "
        f"that produced them; CPU, `torch.set_num_threads({s.threads})`).",
        "",
        f"**pass@k on held-out problems** (mean ± sample std over seeds {seeds}; the SFT row is one model):",
        "",
        grid_table(evals, s.inference_modes, ks),
        "",
        "**Out-of-domain drift, training reward and cost** (mean ± std over seeds):",
        "",
        drift_table(evals, runs, s.inference_modes),
        "",
        f"Plot: `{Path(s.plot).name}` (pass@k bars with std error bars, and the OOD KL).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# driver


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    settings = parse_args(argv)
    torch.set_num_threads(settings.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hf_softthink.models import tiny_tokenizer

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", dataclasses.asdict(settings))
    tokenizer = tiny_tokenizer()
    log(f"settings: {json.dumps(dataclasses.asdict(settings), default=str)}")
    splits = build_splits(settings)
    sft_folder = run_sft(settings, splits, tokenizer)
    sft_info = read_json(sft_folder / "sft.json")

    runs: dict[str, list[dict[str, Any]]] = {}
    folders: dict[str, list[Path]] = {}
    for mode in settings.train_modes:
        for seed in settings.seeds:
            folder = run_rl(settings, mode, seed, sft_folder, splits, tokenizer)
            runs.setdefault(mode, []).append(read_json(folder / "run.json"))
            folders.setdefault(mode, []).append(folder)

    ood = ood_texts(settings, tokenizer)
    evals: dict[str, list[dict[str, Any]]] = {
        START: [run_eval(settings, START, sft_folder, sft_folder, splits, tokenizer, ood)]
    }
    for mode in settings.train_modes:
        evals[mode] = [
            run_eval(settings, f"{mode}-s{seed}", folder / "model", sft_folder, splits, tokenizer, ood)
            for seed, folder in zip(settings.seeds, folders[mode], strict=True)
        ]

    total = sft_info["seconds"] + sum(r["seconds"] for rs in runs.values() for r in rs)
    total += sum(e["seconds"] for es in evals.values() for e in es)
    command = "python benchmarks/grid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    section = report(settings, sft_info, evals, runs, total, command.strip())
    results = Path(settings.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    existing = results.read_text(encoding="utf-8") if results.exists() else None
    if existing is None:
        existing = '# Train x inference grid ("Soft Tokens, Hard Truths", arXiv:2509.19170, at CPU scale)\n'
    results.write_text(merge_section(existing, section), encoding="utf-8")
    plot_grid(
        evals,
        settings.inference_modes,
        settings.ks,
        settings.plot,
        title=f"tiny Llama on {TASK} ({settings.terms} terms): training mode x inference mode, "
        f"seeds {','.join(map(str, settings.seeds))}",
    )
    write_json(
        out / "grid.json",
        {
            "settings": dataclasses.asdict(settings),
            "sft": sft_info,
            "runs": runs,
            "evals": evals,
            "total_seconds": total,
        },
    )
    log(f"done: {results} and {settings.plot} ({total / 60:.1f} min of stage time)")
    print(section)
    return {"evals": evals, "runs": runs, "sft": sft_info, "total_seconds": total}


if __name__ == "__main__":
    main()
