"""The embedding rms that sets Gaussian soft-token noise ("Soft Tokens, Hard Truths": sigma = 0.33 x rms), over every
row of the embedding matrix and over the rows a task uses, on the grid's SFT start and on SmolLM2-135M-Instruct.

    python benchmarks/embedding_rms.py            # the grid's SFT start (built or reused) and SmolLM2
    python benchmarks/embedding_rms.py --smoke    # the grid's smoke SFT only

The rms is per coordinate, sqrt(mean(E^2)) over the chosen rows of the effective embedding matrix (what
``hf_softthink.mixing.embedding_rms`` computes; ``SoftThinkingConfig.gaussian_rms_token_ids`` picks the rows).
"The rows a task uses": the token ids of the grid's chain_sum problems (prompt, trace, answer) and of
reasoning-gym ``gsm_symbolic`` questions and answers (a word-problem task), tokenised by each model's tokenizer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the grid_stages package next to this script
from grid_stages.cli import parse_args  # noqa: E402
from grid_stages.common import load_model  # noqa: E402
from grid_stages.sft import run_sft  # noqa: E402
from grid_stages.task import build_splits, completion_text, prompt_text  # noqa: E402


def task_ids(tokenizer, texts: list[str]) -> list[int]:
    return sorted({i for text in texts for i in tokenizer(text, add_special_tokens=False)["input_ids"]})


def rms_row(name: str, model, tokenizer, texts: dict[str, list[str]]) -> list[str]:
    from hf_softthink.mixing import embedding_rms, input_embedding_module

    module = input_embedding_module(model)
    vocab = model.config.get_text_config().vocab_size
    everything = embedding_rms(module, vocab)
    lines = [f"| {name} | all {vocab} rows | {everything:.4f} | 1.00 |"]
    for label, chunk in texts.items():
        ids = task_ids(tokenizer, chunk)
        used = embedding_rms(module, vocab, token_ids=ids)
        lines.append(f"| {name} | the {len(ids)} rows of {label} | {used:.4f} | {used / everything:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the grid's smoke SFT only (no SmolLM2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from hf_softthink.data import reasoning_gym_dataset
    from hf_softthink.models import load_model as load_packaged
    from hf_softthink.models import tiny_tokenizer

    settings = parse_args(["--smoke"] if args.smoke else [])
    tokenizer = tiny_tokenizer()
    splits = build_splits(settings)
    sft = load_model(run_sft(settings, splits, tokenizer))
    rows = splits["train"][:2000]
    gsm = reasoning_gym_dataset("gsm_symbolic", size=200, seed=0, thinking_instruction=None)
    gsm_texts = [row["question"] + " " + row["answer"] for row in gsm]

    def task_texts(tok):
        return [prompt_text(tok, r["content"]) + completion_text(r) for r in rows]

    lines = ["| model | rows | rms | / all rows |", "|---|---|---:|---:|"]
    lines += rms_row("grid SFT start", sft, tokenizer, {settings.task: task_texts(tokenizer)})
    if not args.smoke:
        model, tok = load_packaged("smollm2-135m")
        tok.chat_template = tok.chat_template or tokenizer.chat_template
        lines += rms_row("SmolLM2-135M-Instruct", model, tok, {settings.task: task_texts(tok), "gsm_symbolic": gsm_texts})
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    main()
