"""The `hf-softthink` command.

`hf-softthink generate "What is 8 + 7?" --compare` runs soft thinking (and, with `--compare`, standard
decoding) on the embedded SmolLM2-135M-Instruct default, fully offline.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .checks import check_model_path, prepare_output_dir
from .config import SoftThinkingConfig

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_SYSTEM_PROMPT = (
    "You are a careful assistant. Think about the question step by step, then write </think> "
    "and give the final answer."
)
#: a mixture whose top weight is below this is shown with its runner-up in the trace
UNCERTAIN_TOP_WEIGHT = 0.6


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per `SoftThinkingConfig` field, defaulting to the config's own default."""
    defaults = SoftThinkingConfig()
    parser.add_argument("--max-topk", type=int, default=defaults.max_topk, help="tokens mixed per concept token")
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="thinking temperature")
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="thinking top-k (0: off)")
    parser.add_argument("--top-p", type=float, default=defaults.top_p, help="thinking top-p")
    parser.add_argument("--min-p", type=float, default=defaults.min_p, help="thinking min-p")
    parser.add_argument("--noise", choices=["none", "dirichlet", "gumbel", "gaussian"], default=defaults.noise)
    parser.add_argument("--dirichlet-alpha", type=float, default=defaults.dirichlet_alpha)
    parser.add_argument("--gumbel-tau", type=float, default=defaults.gumbel_tau)
    parser.add_argument("--gaussian-sigma", type=float, default=defaults.gaussian_sigma)
    parser.add_argument("--cold-stop-entropy", type=float, default=defaults.cold_stop_entropy,
                        help="Cold Stop entropy threshold in nats (default: off)")
    parser.add_argument("--cold-stop-patience", type=int, default=defaults.cold_stop_patience)
    parser.add_argument("--think-end", default=defaults.think_end, help="string or token id ending the thinking")
    parser.add_argument("--max-thinking-tokens", type=int, default=96,
                        help="thinking budget (the CLI default keeps a small model from thinking forever)")
    parser.add_argument("--mode", choices=["soft", "switch"], default=defaults.mode)
    parser.add_argument("--switch-window", type=int, default=defaults.switch_window)
    parser.add_argument("--max-switches", type=int, default=defaults.max_switches)
    parser.add_argument("--switch-beta", type=float, default=defaults.switch_beta,
                        help="switch mode: beta_0 of the think-end blend on a switch to explicit (SwiReasoning 0.7)")
    parser.add_argument("--switch-alpha", type=float, default=defaults.switch_alpha,
                        help="switch mode: alpha_0 of the think-start blend on a switch back to soft")
    parser.add_argument("--think-start", default=defaults.think_start, help="switch mode: thinking-start marker")
    parser.add_argument("--final-answer", default=defaults.final_answer,
                        help="switch mode: text forced past twice the switch limit")
    parser.add_argument("--final-answer-max-tokens", type=int, default=defaults.final_answer_max_tokens)


def config_from_arguments(args: argparse.Namespace) -> SoftThinkingConfig:
    think_end = args.think_end
    if isinstance(think_end, str) and think_end.isdigit():
        think_end = int(think_end)
    return SoftThinkingConfig(
        max_topk=args.max_topk, temperature=args.temperature, top_k=args.top_k or None, top_p=args.top_p,
        min_p=args.min_p, noise=args.noise, dirichlet_alpha=args.dirichlet_alpha, gumbel_tau=args.gumbel_tau,
        gaussian_sigma=args.gaussian_sigma, cold_stop_entropy=args.cold_stop_entropy,
        cold_stop_patience=args.cold_stop_patience, think_end=think_end,
        max_thinking_tokens=args.max_thinking_tokens, mode=args.mode, switch_window=args.switch_window,
        max_switches=args.max_switches, switch_beta=args.switch_beta, switch_alpha=args.switch_alpha,
        think_start=int(args.think_start) if str(args.think_start).isdigit() else args.think_start,
        final_answer=args.final_answer, final_answer_max_tokens=args.final_answer_max_tokens,
    )


@dataclass
class DecodeResult:
    """What one decoding of the prompt produced, for printing."""

    trace: str
    answer: str
    thinking_tokens: int
    answer_tokens: int
    seconds: float
    output: Any = None  # the generate output (soft thinking: for the trace views)

    @property
    def tokens(self) -> int:
        return self.thinking_tokens + self.answer_tokens


def render_trace(tokenizer, ids: torch.Tensor, weights: torch.Tensor, soft: torch.Tensor) -> str:
    """The thinking trace; an uncertain mixture shows as `⟨top|runner-up 0.42⟩`."""
    pieces = []
    for step in range(ids.shape[0]):
        top = tokenizer.decode(ids[step, :1])
        if soft[step] and ids.shape[1] > 1 and weights[step, 0] < UNCERTAIN_TOP_WEIGHT:
            runner_up = tokenizer.decode(ids[step, 1:2]).strip()
            pieces.append(f"⟨{top}|{runner_up} {weights[step, 1]:.2f}⟩")
        else:
            pieces.append(top)
    return "".join(pieces)


def run_soft(model, tokenizer, inputs, config: SoftThinkingConfig, max_new_tokens: int) -> DecodeResult:
    start = time.perf_counter()
    out = model.generate(
        **inputs, do_sample=False, max_new_tokens=max_new_tokens, soft_thinking=config, tokenizer=tokenizer,
        return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
    )
    seconds = time.perf_counter() - start
    prompt_length = inputs["input_ids"].shape[1]
    new = out.sequences[0, prompt_length:]
    soft = out.thinking_mask[0]
    thinking_steps = int(soft.sum())
    # the trace runs up to and including think-end; every later step is the answer
    thinking_end = int(soft.nonzero().max()) + 1 if thinking_steps else 0
    end_marker = config.think_end if isinstance(config.think_end, str) else ""
    while thinking_end < len(new) and end_marker and not tokenizer.decode(new[:thinking_end]).endswith(end_marker):
        thinking_end += 1
    if end_marker and not tokenizer.decode(new[:thinking_end]).endswith(end_marker):
        thinking_end = len(new)  # never reached think-end: everything is thinking
    trace = render_trace(tokenizer, out.soft_topk_ids[0, :thinking_end], out.soft_topk_weights[0, :thinking_end],
                         soft[:thinking_end])
    answer = tokenizer.decode(new[thinking_end:], skip_special_tokens=True)
    return DecodeResult(trace, answer.strip(), thinking_end, len(new) - thinking_end, seconds, out)


def run_standard(model, tokenizer, inputs, max_new_tokens: int) -> DecodeResult:
    start = time.perf_counter()
    out = model.generate(
        **inputs, do_sample=False, max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
    )
    seconds = time.perf_counter() - start
    new = out[0, inputs["input_ids"].shape[1]:]
    return DecodeResult("", tokenizer.decode(new, skip_special_tokens=True).strip(), 0, len(new), seconds)


def chat_inputs(tokenizer, question: str, system: str | None):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
    return tokenizer(question, return_tensors="pt")


def command_generate(args: argparse.Namespace) -> int:
    from .generation import enable_soft_thinking
    from .models import load_model

    config = config_from_arguments(args)
    check_model_path(args.model, "--model")
    torch.manual_seed(args.seed)
    model, tokenizer = load_model(args.model)
    enable_soft_thinking(model, tokenizer=tokenizer)
    inputs = chat_inputs(tokenizer, args.question, args.system)
    soft = run_soft(model, tokenizer, inputs, config, args.max_new_tokens)
    print(f"=== soft thinking ({args.model}; max_topk={config.max_topk}, noise={config.noise}) ===")
    print(f"[thinking, {soft.thinking_tokens} tokens; ⟨a|b p⟩ marks an uncertain mixture]\n{soft.trace}")
    print(f"[answer, {soft.answer_tokens} tokens]\n{soft.answer}")
    if args.html or args.plot:
        from .trace import SoftThinkingTrace

        trace = SoftThinkingTrace.from_generate_output(soft.output, tokenizer, show_prompt=True)
        if args.html:
            print(f"trace: {trace.save_html(args.html, title=f'Soft-thinking trace: {args.question}')}", file=sys.stderr)
        if args.plot:
            trace.plot(args.plot)
            print(f"entropy plot: {args.plot}", file=sys.stderr)
    if args.compare:
        torch.manual_seed(args.seed)
        standard = run_standard(model, tokenizer, inputs, args.max_new_tokens)
        print("\n=== standard decoding (greedy) ===")
        print(standard.answer)
        print("\n| decoding | thinking tokens | answer tokens | total | seconds | tokens/s |")
        print("|---|---|---|---|---|---|")
        for name, result in (("soft thinking", soft), ("standard", standard)):
            rate = result.tokens / result.seconds if result.seconds else float("nan")
            print(f"| {name} | {result.thinking_tokens} | {result.answer_tokens} | {result.tokens} | "
                  f"{result.seconds:.2f} | {rate:.1f} |")
    return 0


def command_eval(args: argparse.Namespace) -> int:
    """`hf-softthink eval`: pass@k / maj@k / token cost of decoding modes on a task; resumable."""
    import os

    from .data import DEFAULT_THINKING_INSTRUCTION, load_prompts, reasoning_gym_dataset
    from .evaluation import evaluate_modes, parse_ks, resolve_modes

    # everything that can be checked without the model is checked first (loading takes seconds)
    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1, got {args.samples}")
    ks = parse_ks(args.k if args.k is not None else f"1,{args.samples}", args.samples)
    resolve_modes(args.modes, max_thinking_tokens=args.max_thinking_tokens, think_end=args.think_end)
    if args.num_problems is not None and args.num_problems < 1:
        raise ValueError(
            f"--num-problems must be at least 1, got {args.num_problems}: the dataset would be empty"
        )
    instruction = DEFAULT_THINKING_INSTRUCTION if args.system is None else (args.system or None)
    is_file = args.task.endswith((".jsonl", ".json")) or os.path.isfile(args.task)
    _check_task_flags(args, is_file)
    check_model_path(args.model, "--model")
    if is_file:
        try:
            dataset = load_prompts(
                args.task, question_column=args.question_column, answer_column=args.answer_column,
                thinking_instruction=instruction,
            )
        except FileNotFoundError as error:
            raise ValueError(
                f"{error}: --task names neither a reasoning-gym task nor an existing file"
            ) from None
        except ValueError as error:
            if "_column=" not in str(error):
                raise
            raise ValueError(
                f"{error} (command line: --question-column NAME, --answer-column NAME)"
            ) from None
        if args.num_problems is not None:
            dataset = dataset.select(range(min(args.num_problems, len(dataset))))
    else:
        dataset = reasoning_gym_dataset(
            args.task, size=args.num_problems or 20, seed=args.data_seed, thinking_instruction=instruction,
            config=_task_config(args.task_config),
        )
    if instruction is None:
        print("hf-softthink: note: no system prompt, so the model is not told to write </think>",
              file=sys.stderr)

    from .evaluation.lock import output_folder_lock
    from .models import load_model

    out = prepare_output_dir(args.out, "--out")
    with output_folder_lock(out):  # a second run on the same --out stops here, before loading the model
        model, tokenizer = load_model(args.model)
        result = evaluate_modes(
            model, tokenizer, dataset, args.modes, samples=args.samples, ks=ks, batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens, max_thinking_tokens=args.max_thinking_tokens,
            think_end=args.think_end, seed=args.seed, output_dir=out, model_name=args.model,
            task_name=args.task,
            progress=not args.no_progress,
        )
    print(result.to_markdown())
    for label, path in result.files.items():
        print(f"{label}: {path}", file=sys.stderr)
    return 0


def _check_task_flags(args: argparse.Namespace, is_file: bool) -> None:
    """Refuse flags that do not apply to the kind of --task given (they would be ignored silently)."""
    if is_file and args.task_config:
        raise ValueError(
            f"--task-config configures a reasoning-gym task, but --task {args.task!r} is a file: drop "
            "--task-config, or give a reasoning-gym task name."
        )
    if not is_file:
        for flag, value, default in (
            ("--question-column", args.question_column, "question"),
            ("--answer-column", args.answer_column, "answer"),
        ):
            if value != default:
                raise ValueError(
                    f"{flag} names a column of a JSONL/JSON file, but --task {args.task!r} is a reasoning-gym "
                    f"task: drop {flag}, or give the path of your file."
                )
        _task_config(args.task_config)


def _task_config(text: str | None) -> dict | None:
    """The --task-config JSON object (None when not given)."""
    import json

    if not text:
        return None
    example = '\'{"max_terms": 2}\''
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--task-config must be a JSON object, e.g. {example} ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(
            f"--task-config must be a JSON object of the task's settings, e.g. {example}; got {text!r}."
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-softthink", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="soft-thinking generation on one question")
    generate.add_argument("question")
    generate.add_argument("--model", default=DEFAULT_MODEL,
                          help="short name (smollm2-135m, gemma3-270m), Hub id or local path")
    generate.add_argument("--compare", action="store_true", help="also run standard decoding and compare")
    generate.add_argument("--max-new-tokens", type=int, default=160)
    generate.add_argument("--system", default=DEFAULT_SYSTEM_PROMPT, help="system prompt ('' for none)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--html", default=None, metavar="PATH",
                          help="write the soft-thinking trace as a self-contained HTML page (hover a step: its mixture)")
    generate.add_argument("--plot", default=None, metavar="PATH", help="write a PNG of entropy and mode per step")
    add_config_arguments(generate)
    generate.set_defaults(handler=command_generate)

    evaluate = commands.add_parser(
        "eval", help="pass@k / maj@k / token cost of hard, soft and fuzzy decoding on a task (resumable)"
    )
    evaluate.add_argument("--model", default=DEFAULT_MODEL,
                          help="short name (smollm2-135m, gemma3-270m), Hub id or local path")
    evaluate.add_argument("--task", default="chain_sum",
                          help="a reasoning-gym task (chain_sum, basic_arithmetic, gsm_symbolic, countdown, "
                          "...) or a JSONL/JSON file of problems")
    evaluate.add_argument("--task-config", default=None,
                          help='reasoning-gym task config as JSON, e.g. \'{"min_terms": 2, "max_terms": 2}\'')
    evaluate.add_argument("--data-seed", type=int, default=1_000_000,
                          help="reasoning-gym seed of the problems (default far from training seeds 0..)")
    evaluate.add_argument("--question-column", default="question", help="question column of a JSONL file")
    evaluate.add_argument("--answer-column", default="answer", help="gold-answer column of a JSONL file")
    evaluate.add_argument("--num-problems", type=int, default=None,
                          help="number of problems (reasoning-gym default 20; a file: its first N rows)")
    evaluate.add_argument("--modes", default="hard-greedy,soft-greedy",
                          help="comma-separated presets: hard-greedy, hard-sample, soft-greedy, soft-sample, "
                          "fuzzy-greedy, fuzzy-sample")
    evaluate.add_argument("--samples", type=int, default=8, help="completions per problem (n of pass@k)")
    evaluate.add_argument("--k", default=None, help="comma-separated k values (default: 1,SAMPLES)")
    evaluate.add_argument("--out", required=True,
                          help="output folder: results.json, results.md, pass_at_k.png, samples.jsonl "
                          "(a rerun resumes from it)")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling seed")
    evaluate.add_argument("--max-new-tokens", type=int, default=128,
                          help="tokens per completion, thinking + answer")
    evaluate.add_argument("--max-thinking-tokens", type=int, default=64,
                          help="thinking budget of every mode: </think> is forced after this many tokens")
    evaluate.add_argument("--think-end", default="</think>",
                          help="end-of-thinking marker (matched on the text)")
    evaluate.add_argument("--batch-size", type=int, default=16, help="sequences per generate call")
    evaluate.add_argument("--system", default=None,
                          help="system prompt (default: the package's thinking instruction; '' for none)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=command_eval)

    commands.add_parser(
        "lm-eval",
        add_help=False,
        help="lm-evaluation-harness's command line with the hf-softthink model registered (needs the lm-eval "
        "extra): hf-softthink lm-eval --model hf-softthink --model_args pretrained=...,soft_max_topk=10 ...",
    )
    return parser


def command_lm_eval(arguments: Sequence[str]) -> int:
    """`hf-softthink lm-eval ARGS`: `lm_eval ARGS` after registering the `hf-softthink` model."""
    from .lm_eval_harness import main as lm_eval_main

    return lm_eval_main(list(arguments))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lm-eval"]:  # every later argument is lm_eval's own, options included
        handler, args = command_lm_eval, argv[1:]
    else:
        args = parser.parse_args(argv)
        handler = args.handler
    try:
        return handler(args)
    except (ValueError, ImportError, OSError) as error:
        print(f"hf-softthink: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
