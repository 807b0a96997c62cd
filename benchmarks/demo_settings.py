"""How the thinking settings of `hf-softthink demo` were chosen: candidates measured on held-out questions.

    python benchmarks/demo_settings.py [--model smollm2-135m] [--questions 32] [--seed 0] [--threads 1]
    python benchmarks/demo_settings.py --forced-end-only --threads 1   # stage 3 alone, at the demo's settings

The demo compares soft thinking (`soft-greedy`) with ordinary thinking (`hard-greedy`) at the same prompt
and thinking budget, plus standard decoding without a thinking prompt. Its settings are chosen here, on
questions generated from templates of the same kinds as the demo's (sums, differences, products, short
word problems) with other numbers, names and objects; a question that is also in the demo's set is
dropped, so nothing is tuned on the questions the demo reports.

Selection, in two stages fixed before measuring:

1. every (prompt, budget) of `PROMPTS` x `BUDGETS` runs hard-greedy and soft-greedy; the pair with the
   best *mean* accuracy of the two modes wins (ties: fewer thinking tokens). The mean, not soft thinking's
   own accuracy, so the settings suit the model rather than one mode;
2. at that pair, each Cold Stop candidate of `COLD_STOPS` runs soft-greedy (Cold Stop is a soft-thinking
   feature); one is kept only if it beats no Cold Stop (ties with off: off; ties between candidates: the
   first listed);
3. at those settings, each text of `FORCED_END_TEXTS` is what a forced end of thinking writes (the marker
   alone, or the marker and an answer prefix, so a small model that stops right after a forced marker is led
   into its answer): hard-greedy forces it through the hard budget (`DecodingMode.forced_end_text`),
   soft-greedy through the soft decoder's `SoftThinkingConfig.forced_end_text`. The best mean accuracy of the
   two wins (ties: the first listed, the marker alone).

Standard decoding (no thinking prompt, no budget, the same total token limit) is measured once as a
reference. Everything prints as Markdown tables; figures are from this run only. The result, and the settings
`hf_softthink.demo` took from it, are in `benchmarks/RESULTS_demo.md`.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from hf_softthink import SoftThinkingConfig
from hf_softthink.data import DEFAULT_THINKING_INSTRUCTION
from hf_softthink.demo import (
    DEMO_COLD_STOP_ENTROPY,
    DEMO_COLD_STOP_PATIENCE,
    DEMO_MAX_THINKING_TOKENS,
    DEMO_QUESTIONS,
    DEMO_THINKING_PROMPT,
)
from hf_softthink.evaluation import DecodingMode, evaluate_modes
from hf_softthink.models import load_model

#: candidate thinking prompts (system messages)
PROMPTS = {
    "careful": "You are a careful assistant. Think about the question step by step, then write </think> "
    "and give the final answer.",
    "boxed": DEFAULT_THINKING_INSTRUCTION,
    "brief": "Think briefly about the question, then write </think> and give the final answer.",
}
#: candidate thinking budgets (tokens; </think> is forced after them)
BUDGETS = (16, 32, 64)
#: candidate Cold Stop settings (entropy threshold in nats, patience in steps); None: off
COLD_STOPS = (None, (0.1, 4), (0.3, 8))
#: answer tokens allowed after the thinking budget
ANSWER_TOKENS = 48
#: candidate texts of a forced end of thinking (stage 3): None is the marker alone
FORCED_END_TEXTS = (None, "</think>\n\n", "</think>\nThe answer is ", "</think>\nThe answer is \\boxed{",
                    "</think>\n\\boxed{")

NAMES = ("Lena", "Omar", "Priya", "Jonas", "Mei", "Carlos", "Ines", "Kofi")
TEMPLATES = (
    lambda r, n: (f"What is {(a := r.randint(2, 19))} + {(b := r.randint(2, 19))}?", a + b),
    lambda r, n: (f"What is {(a := r.randint(10, 60))} - {(b := r.randint(2, 9))}?", a - b),
    lambda r, n: (f"What is {(a := r.randint(2, 9))} times {(b := r.randint(2, 9))}?", a * b),
    lambda r, n: (f"What is half of {(a := 2 * r.randint(3, 30))}?", a // 2),
    lambda r, n: (
        f"{n} has {(a := r.randint(2, 12))} marbles and finds {(b := r.randint(2, 9))} more. "
        f"How many marbles does {n} have now?",
        a + b,
    ),
    lambda r, n: (
        f"A box holds {(a := r.randint(2, 9))} pencils. How many pencils are in {(b := r.randint(2, 5))} boxes?",
        a * b,
    ),
    lambda r, n: (
        f"{n} had {(a := r.randint(8, 20))} sweets and ate {(b := r.randint(2, 7))}. How many sweets are left?",
        a - b,
    ),
    lambda r, n: (
        f"A bus has {(a := r.randint(10, 30))} people. {(b := r.randint(2, 9))} more get on. "
        "How many people are on the bus?",
        a + b,
    ),
)


def tuning_questions(count: int, seed: int) -> list[dict[str, str]]:
    """``count`` template questions (cycling through the templates), none of them in the demo's set."""
    rng = random.Random(seed)
    demo = {question for question, _ in DEMO_QUESTIONS}
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < count:
        question, answer = TEMPLATES[len(rows) % len(TEMPLATES)](rng, rng.choice(NAMES))
        if question in demo or question in seen:
            continue
        seen.add(question)
        rows.append({"question": question, "answer": str(answer)})
    return rows


def measure(model, tokenizer, rows, modes, *, prompt: str | None, budget: int | None, max_new_tokens: int):
    result = evaluate_modes(
        model, tokenizer, rows, modes, samples=1, batch_size=len(rows), max_new_tokens=max_new_tokens,
        max_thinking_tokens=budget, thinking_instruction=prompt, progress=False,
    )
    return {
        name: {
            "accuracy": s["pass@1"],
            "thinking": s["mean_thinking_tokens"],
            "answer": s["mean_answer_tokens"],
            "no_answer": s["no_answer_phase"] + s["empty_answers"],
            "seconds": s["wall_seconds"],
        }
        for name, s in result.summary.items()
    }


def stage_forced_end(model, tokenizer, rows, *, prompt: str, budget: int, cold_stop) -> str | None:
    """Stage 3: hard-greedy and soft-greedy with each forced end text; prints a table and returns the chosen
    text (None: the marker alone)."""
    entropy, patience = cold_stop or (None, SoftThinkingConfig().cold_stop_patience)
    print("## Stage 3: what a forced end of thinking writes (hard-greedy and soft-greedy)\n")
    print("| forced end text | hard acc. | soft acc. | mean | hard / soft no answer | hard / soft think/answer tok. |")
    print("|---|---:|---:|---:|---|---|")
    stage3 = {}
    for rank, text in enumerate(FORCED_END_TEXTS):
        modes = [
            DecodingMode("hard", forced_end_text=text),
            DecodingMode("soft", SoftThinkingConfig(cold_stop_entropy=entropy, cold_stop_patience=patience,
                                                    forced_end_text=text)),
        ]
        m = measure(model, tokenizer, rows, modes, prompt=prompt, budget=budget,
                    max_new_tokens=budget + ANSWER_TOKENS)
        hard, soft = m["hard"], m["soft"]
        mean = (hard["accuracy"] + soft["accuracy"]) / 2
        stage3[text] = (mean, -rank)
        label = "(the marker alone)" if text is None else repr(text)
        print(f"| {label} | {hard['accuracy']:.3f} | {soft['accuracy']:.3f} | {mean:.3f} | {hard['no_answer']} / "
              f"{soft['no_answer']} | {hard['thinking']:.1f} / {hard['answer']:.1f}, {soft['thinking']:.1f} / "
              f"{soft['answer']:.1f} |", flush=True)
    chosen = max(stage3, key=stage3.get)
    print(f"\nchosen: forced end text {'(the marker alone)' if chosen is None else repr(chosen)}\n")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="seed of the template questions")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--forced-end-only", action="store_true",
                        help="run stage 3 alone, at the demo's prompt, budget and Cold Stop")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    rows = tuning_questions(args.questions, args.seed)
    print(f"{len(rows)} held-out questions, e.g. {rows[0]['question']!r} -> {rows[0]['answer']}; "
          f"{args.model}, {torch.get_num_threads()} torch thread(s)\n")
    start = time.perf_counter()
    if args.forced_end_only:
        stage_forced_end(model, tokenizer, rows, prompt=DEMO_THINKING_PROMPT, budget=DEMO_MAX_THINKING_TOKENS,
                         cold_stop=(DEMO_COLD_STOP_ENTROPY, DEMO_COLD_STOP_PATIENCE))
        print(f"total {time.perf_counter() - start:.0f} s")
        return

    print("## Stage 1: prompt x thinking budget (hard-greedy and soft-greedy)\n")
    print("| prompt | budget | hard acc. | soft acc. | mean | hard think/answer tok. | soft think/answer tok. |")
    print("|---|---:|---:|---:|---:|---|---|")
    stage1 = {}
    for prompt_name, prompt in PROMPTS.items():
        for budget in BUDGETS:
            m = measure(model, tokenizer, rows, ["hard-greedy", "soft-greedy"], prompt=prompt, budget=budget,
                        max_new_tokens=budget + ANSWER_TOKENS)
            hard, soft = m["hard-greedy"], m["soft-greedy"]
            mean = (hard["accuracy"] + soft["accuracy"]) / 2
            stage1[(prompt_name, budget)] = (mean, -(hard["thinking"] + soft["thinking"]))
            print(f"| {prompt_name} | {budget} | {hard['accuracy']:.3f} | {soft['accuracy']:.3f} | {mean:.3f} | "
                  f"{hard['thinking']:.1f} / {hard['answer']:.1f} | {soft['thinking']:.1f} / {soft['answer']:.1f} |",
                  flush=True)
    prompt_name, budget = max(stage1, key=stage1.get)
    print(f"\nchosen: prompt {prompt_name!r}, budget {budget}\n")

    print("## Stage 2: Cold Stop (soft-greedy at that prompt and budget)\n")
    print("| Cold Stop (entropy nats, patience) | soft acc. | soft think/answer tok. |")
    print("|---|---:|---|")
    stage2 = {}
    for cold_stop in COLD_STOPS:
        entropy, patience = cold_stop or (None, SoftThinkingConfig().cold_stop_patience)
        mode = DecodingMode("soft", SoftThinkingConfig(cold_stop_entropy=entropy, cold_stop_patience=patience))
        s = measure(model, tokenizer, rows, [mode], prompt=PROMPTS[prompt_name], budget=budget,
                    max_new_tokens=budget + ANSWER_TOKENS)["soft"]
        stage2[cold_stop] = (s["accuracy"], cold_stop is None)
        label = "off" if cold_stop is None else f"{entropy}, {patience}"
        print(f"| {label} | {s['accuracy']:.3f} | {s['thinking']:.1f} / {s['answer']:.1f} |", flush=True)
    cold_stop = max(stage2, key=stage2.get)
    print(f"\nchosen: Cold Stop {'off' if cold_stop is None else cold_stop}\n")

    stage_forced_end(model, tokenizer, rows, prompt=PROMPTS[prompt_name], budget=budget, cold_stop=cold_stop)

    print("## Reference: standard decoding (no thinking prompt, no budget)\n")
    s = measure(model, tokenizer, rows, ["hard-greedy"], prompt=None, budget=None,
                max_new_tokens=budget + ANSWER_TOKENS)["hard-greedy"]
    print(f"accuracy {s['accuracy']:.3f}, {s['answer'] + s['thinking']:.1f} tokens per answer\n")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
