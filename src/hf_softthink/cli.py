"""The `hf-softthink` command: soft thinking for transformers models, offline on a packaged model by default.

`hf-softthink demo` (the README's first command) compares standard decoding, ordinary thinking and soft
thinking on built-in questions with known answers; `generate` thinks about one question; `eval` measures
pass@k across decoding modes on a task, resumably.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import textwrap
from collections.abc import Sequence

import torch

from .checks import check_model_path, prepare_output_dir
from .config import SoftThinkingConfig

DEFAULT_MODEL = "smollm2-135m"
MODEL_HELP = (
    "the model: a packaged one (smollm2-135m: SmolLM2-135M-Instruct; gemma3-270m: Gemma-3-270m base, "
    "prompted completion-style as it has no chat template), a local folder, or a Hub id such as "
    "Qwen/Qwen3-0.6B (needs network the first time)"
)
DESCRIPTION = """\
Soft thinking lets a language model think in concept tokens, probability-weighted mixtures of its token
embeddings, instead of one sampled token per step (Soft Thinking, arXiv:2505.15778); after the think-end
marker (</think>) it answers with ordinary tokens. Every command runs offline on the packaged
SmolLM2-135M-Instruct unless --model names another model; `hf-softthink COMMAND --help` describes a
command and all its options."""
EPILOG = """\
examples:
  hf-softthink demo
  hf-softthink generate "What is 8 + 7?" --compare --html trace.html
  hf-softthink eval --task chain_sum --modes hard-sample,soft-sample --samples 8 --out eval_out"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; every option with a real default shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" in text
            or not action.option_strings
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


def _config_help(name: str, extra: str = "") -> str:
    """The help of a `SoftThinkingConfig` field, for its flag (argparse-escaped)."""
    text = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(SoftThinkingConfig)}[name]
    return (text.rstrip(".") + (f"; {extra}" if extra else "")).replace("%", "%%")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per `SoftThinkingConfig` field, defaulting to the config's own default, except the thinking
    budget and Cold Stop, which default to the demo's (chosen for small models, see `hf_softthink.demo`),
    and the think-end marker, which defaults to the one the prompt style needs."""
    from .demo import DEMO_COLD_STOP_ENTROPY, DEMO_COLD_STOP_PATIENCE, DEMO_MAX_THINKING_TOKENS

    defaults = SoftThinkingConfig()
    group = parser.add_argument_group("soft thinking (SoftThinkingConfig)")
    group.add_argument("--max-topk", type=int, default=defaults.max_topk, metavar="K",
                       help="tokens mixed into each concept token (0: every token the filters keep)")
    group.add_argument("--temperature", type=float, default=defaults.temperature, metavar="T",
                       help=_config_help("temperature"))
    group.add_argument("--top-k", type=int, default=defaults.top_k, metavar="K",
                       help="thinking-phase top-k filter (0: off)")
    group.add_argument("--top-p", type=float, default=defaults.top_p, metavar="P", help=_config_help("top_p"))
    group.add_argument("--min-p", type=float, default=defaults.min_p, metavar="P", help=_config_help("min_p"))
    group.add_argument("--noise", choices=["none", "dirichlet", "gumbel", "gaussian"], default=defaults.noise,
                       help=_config_help("noise"))
    group.add_argument("--dirichlet-alpha", type=float, default=defaults.dirichlet_alpha, metavar="ALPHA",
                       help=_config_help("dirichlet_alpha", "with --noise dirichlet"))
    group.add_argument("--gumbel-tau", type=float, default=defaults.gumbel_tau, metavar="TAU",
                       help=_config_help("gumbel_tau", "with --noise gumbel"))
    group.add_argument("--gaussian-sigma", type=float, default=defaults.gaussian_sigma, metavar="SIGMA",
                       help=_config_help("gaussian_sigma", "with --noise gaussian"))
    group.add_argument("--cold-stop-entropy", type=float, default=DEMO_COLD_STOP_ENTROPY, metavar="NATS",
                       help="Cold Stop: force the think-end marker once the entropy of the next-token "
                       "distribution stays below this many nats for --cold-stop-patience steps (0: off; "
                       "SoftThinkingConfig's default is off)")
    group.add_argument("--cold-stop-patience", type=int, default=DEMO_COLD_STOP_PATIENCE, metavar="STEPS",
                       help=_config_help("cold_stop_patience", f"SoftThinkingConfig's default is "
                                         f"{defaults.cold_stop_patience}"))
    group.add_argument("--think-end", default=None, metavar="MARKER",
                       help="end-of-thinking marker: a string or a token id (default: </think> for a chat "
                       "model, a newline and 'Answer:' for a model without a chat template)")
    group.add_argument("--max-thinking-tokens", type=int, default=DEMO_MAX_THINKING_TOKENS, metavar="N",
                       help="thinking budget: the think-end marker is forced after N thinking tokens, so a "
                       "small model that never ends its thinking still answers")
    group.add_argument("--mode", choices=["soft", "switch"], default=defaults.mode, help=_config_help("mode"))
    group.add_argument("--switch-window", type=int, default=defaults.switch_window, metavar="STEPS",
                       help=_config_help("switch_window"))
    group.add_argument("--max-switches", type=int, default=defaults.max_switches, metavar="N",
                       help="switch mode: the think-end marker is forced after N switches (default: unlimited)")
    group.add_argument("--switch-beta", type=float, default=defaults.switch_beta, metavar="BETA",
                       help="switch mode: beta_0 of the think-end blend fed on a switch to explicit steps "
                       "(SwiReasoning: 0.7; 1: no blend)")
    group.add_argument("--switch-alpha", type=float, default=defaults.switch_alpha, metavar="ALPHA",
                       help="switch mode: alpha_0 of the think-start blend fed on a switch back to soft steps "
                       "(1: no blend)")
    group.add_argument("--think-start", default=defaults.think_start, metavar="MARKER",
                       help="switch mode: the thinking-start marker blended in by --switch-alpha")
    group.add_argument("--final-answer", default=defaults.final_answer, metavar="TEXT",
                       help="switch mode: text forced when a row keeps switching past twice --max-switches "
                       "(default: none)")
    group.add_argument("--final-answer-max-tokens", type=int, default=defaults.final_answer_max_tokens,
                       metavar="N", help="switch mode: the answer is cut N tokens after --final-answer starts")


def config_from_arguments(args: argparse.Namespace, tokenizer=None) -> SoftThinkingConfig:
    """The `SoftThinkingConfig` of the flags; without --think-end, the marker suits the tokenizer's prompts."""
    think_end = args.think_end
    if think_end is None:
        from .completion import default_think_end

        think_end = default_think_end(tokenizer)
    if isinstance(think_end, str) and think_end.isdigit():
        think_end = int(think_end)
    return SoftThinkingConfig(
        max_topk=args.max_topk or None, temperature=args.temperature, top_k=args.top_k or None, top_p=args.top_p,
        min_p=args.min_p, noise=args.noise, dirichlet_alpha=args.dirichlet_alpha, gumbel_tau=args.gumbel_tau,
        gaussian_sigma=args.gaussian_sigma, cold_stop_entropy=args.cold_stop_entropy or None,
        cold_stop_patience=args.cold_stop_patience, think_end=think_end,
        max_thinking_tokens=args.max_thinking_tokens, mode=args.mode, switch_window=args.switch_window,
        max_switches=args.max_switches, switch_beta=args.switch_beta, switch_alpha=args.switch_alpha,
        think_start=int(args.think_start) if str(args.think_start).isdigit() else args.think_start,
        final_answer=args.final_answer, final_answer_max_tokens=args.final_answer_max_tokens,
    )


#: the integer flags and their ranges: counts fit a 32-bit index, torch seeds are unsigned 64-bit integers
INT_FLAG_RANGES = {
    "seed": (0, 2**64 - 1),
    "samples": (1, 2**31 - 1),
    "batch_size": (1, 2**31 - 1),
    "num_problems": (1, 2**31 - 1),
    "max_new_tokens": (1, 2**31 - 1),
    "max_thinking_tokens": (0, 2**31 - 1),
    "max_topk": (0, 2**31 - 1),
    "top_k": (0, 2**31 - 1),
    "cold_stop_patience": (1, 2**31 - 1),
    "switch_window": (1, 2**31 - 1),
    "max_switches": (1, 2**31 - 1),
    "final_answer_max_tokens": (1, 2**31 - 1),
}


def _check_int_flags(args: argparse.Namespace) -> None:
    """Refuse an integer flag outside its range (`INT_FLAG_RANGES`), naming it: a seed beyond 64 bits was torch's
    "Overflow when unpacking long long", a count of 0 an empty run."""
    for name, (low, high) in INT_FLAG_RANGES.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if value < low:
            raise ValueError(f"{flag} must be at least {low}, got {value}")
        if value > high:
            raise ValueError(f"{flag} must be at most {high}, got {value}")


def _check_token_ids(model, tokenizer, config: SoftThinkingConfig) -> None:
    """Every token id of the run, once the model is loaded and before the first step: the tokenizer fits the
    model, and everything the soft-thinking `generate` resolves (`hf_softthink.token_ids`)."""
    from .generation import check_soft_thinking
    from .token_ids import check_tokenizer_fits

    check_tokenizer_fits(model, tokenizer)
    check_soft_thinking(model, config, tokenizer)


def command_demo(args: argparse.Namespace) -> int:
    """`hf-softthink demo`: standard decoding, ordinary and soft thinking on the built-in questions."""
    from .demo import run_demo
    from .models import load_model

    _check_int_flags(args)
    model, tokenizer = load_model(args.model)
    config = config_from_arguments(args, tokenizer)
    _check_token_ids(model, tokenizer, config)
    report = run_demo(model, tokenizer, config=config, prompt=args.system or None,
                      max_new_tokens=args.max_new_tokens, model_name=args.model, progress=not args.no_progress)
    print(report.to_text())
    return 0


def command_generate(args: argparse.Namespace) -> int:
    """`hf-softthink generate`: soft thinking on one question (and, with --compare, ordinary thinking)."""
    from .demo import decode_hard, prompt_inputs, trace_soft_thinking
    from .generation import enable_soft_thinking
    from .models import load_model

    _check_int_flags(args)
    config_from_arguments(args)  # bad flags fail before the model loads
    check_model_path(args.model, "--model")
    torch.manual_seed(args.seed)
    model, tokenizer = load_model(args.model)
    config = config_from_arguments(args, tokenizer)
    enable_soft_thinking(model, tokenizer=tokenizer)
    _check_token_ids(model, tokenizer, config)
    inputs = prompt_inputs(tokenizer, args.question, args.system or None)
    soft = trace_soft_thinking(model, tokenizer, inputs, config, args.max_new_tokens)
    print(f"=== soft thinking ({args.model}; max_topk={config.max_topk}, noise={config.noise}, "
          f"budget {config.max_thinking_tokens}) ===")
    print(f"[thinking, {soft.describe_thinking(config)}; ⟨a|b p⟩: runner-up b had weight p]\n{soft.trace}")
    print(f"[answer, {soft.answer_tokens} tokens]\n{soft.answer or '(empty)'}")
    if args.gold_answer is not None:
        print(_verdict(soft, args.gold_answer))
    hard = None
    think_end = config.think_end if isinstance(config.think_end, str) else None
    if args.compare:
        torch.manual_seed(args.seed)
        hard = decode_hard(model, tokenizer, inputs, args.max_new_tokens, think_end=think_end,
                           max_thinking_tokens=config.max_thinking_tokens, output_logits=bool(args.html))
    if args.html or args.plot:
        from .trace import SoftThinkingTrace

        trace = SoftThinkingTrace.from_generate_output(soft.output, tokenizer, show_prompt=True,
                                                       gold_answers=args.gold_answer)
        if args.html:
            title = f"Soft-thinking trace: {args.question}"
            compare = None
            if hard is not None and think_end is not None:
                compare = SoftThinkingTrace.from_ordinary_output(
                    hard.output, tokenizer, prompt_length=inputs["input_ids"].shape[1], think_end=think_end,
                    max_thinking_tokens=config.max_thinking_tokens, temperature=config.temperature,
                    show_prompt=True, gold_answers=args.gold_answer,
                )
            print(f"trace: {trace.save_html(args.html, title=title, compare=compare)}", file=sys.stderr)
        if args.plot:
            trace.plot(args.plot)
            print(f"entropy plot: {args.plot}", file=sys.stderr)
    if hard is not None:
        print("\n=== ordinary tokens (same prompt and budget, greedy) ===")
        print(f"[thinking, {hard.describe_thinking(config, soft=False)}]\n{hard.trace}")
        print(f"[answer, {hard.answer_tokens} tokens]\n{hard.answer or '(empty)'}")
        if args.gold_answer is not None:
            print(_verdict(hard, args.gold_answer))
        print("\n| decoding | thinking tokens | answer tokens | total | seconds | tokens/s |")
        print("|---|---|---|---|---|---|")
        for name, result in (("soft thinking", soft), ("ordinary tokens", hard)):
            rate = result.tokens / result.seconds if result.seconds else float("nan")
            print(f"| {name} | {result.thinking_tokens} | {result.answer_tokens} | {result.tokens} | "
                  f"{result.seconds:.2f} | {rate:.1f} |")
        print("\nOne question is an anecdote: `hf-softthink demo` measures accuracy on 16 questions, "
              "`hf-softthink eval` on a task.")
    return 0


def _verdict(result, gold: str) -> str:
    """``graded: right (answer 15, gold 15)``: the answer graded as ``hf-softthink eval`` grades it."""
    from .evaluation_metrics import grade_completion

    if result.end_event is None:
        return f"graded: wrong (no answer: thinking never ended; gold {gold})"
    answer, correct = grade_completion(result.answer, gold, think_end=None)
    shown = answer if answer is not None else "none found"
    return f"graded: {'right' if correct else 'wrong'} (answer {shown}, gold {gold})"


def command_eval(args: argparse.Namespace) -> int:
    """`hf-softthink eval`: pass@k / maj@k / token cost of decoding modes on a task; resumable."""
    import os

    from .data import DEFAULT_THINKING_INSTRUCTION, load_prompts, reasoning_gym_dataset
    from .evaluation import evaluate_modes, parse_ks, resolve_modes

    # everything that can be checked without the model is checked first (loading takes seconds)
    _check_int_flags(args)
    ks = parse_ks(args.k if args.k is not None else f"1,{args.samples}", args.samples)
    # the marker only completes the configs of this check; the real one may depend on the tokenizer
    resolve_modes(
        args.modes, max_thinking_tokens=args.max_thinking_tokens, think_end=args.think_end or "</think>"
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
            config=_task_config(args.task_config), progress=not args.no_progress,
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


def version_text() -> str:
    """``hf-softthink 0.1.0 (transformers 5.24.0, torch 2.13.0)``."""
    import transformers

    from . import __version__

    return f"hf-softthink {__version__} (transformers {transformers.__version__}, torch {torch.__version__})"


def build_parser() -> argparse.ArgumentParser:
    from .demo import (
        DEMO_ANSWER_TOKENS,
        DEMO_COLD_STOP_ENTROPY,
        DEMO_COLD_STOP_PATIENCE,
        DEMO_MAX_THINKING_TOKENS,
        DEMO_QUESTIONS,
        DEMO_THINKING_PROMPT,
    )
    from .evaluation.modes import PRESET_DESCRIPTIONS

    parser = argparse.ArgumentParser(prog="hf-softthink", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the versions of hf-softthink, transformers and torch, and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", formatter_class=HelpFormatter,
        help="start here: standard decoding, ordinary thinking and soft thinking on 16 built-in questions "
        "with known answers; accuracy, tokens and time side by side, and one concept-token trace",
        description=f"""\
Decodes {len(DEMO_QUESTIONS)} built-in arithmetic questions with known answers three ways, each in one batch:
  standard       the question alone, greedy decoding
  hard thinking  a thinking prompt and a thinking budget, ordinary tokens, greedy
  soft thinking  the same prompt and budget, concept tokens while thinking, then a greedy answer
and prints how many each got right, their mean thinking/answer tokens and seconds, every answer, and
the concept-token trace of the first question. All figures are measured in the run (about a minute on
a 2-core CPU with the default model). The thinking settings (the prompt, a budget of
{DEMO_MAX_THINKING_TOKENS} tokens, Cold Stop at {DEMO_COLD_STOP_ENTROPY} nats for {DEMO_COLD_STOP_PATIENCE} steps) were chosen on other
questions (benchmarks/demo_settings.py); the flags below change them.""",
    )
    demo.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    demo.add_argument("--system", default=DEMO_THINKING_PROMPT, metavar="TEXT",
                      help="thinking prompt (system message) of the two thinking modes")
    demo.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                      help="tokens per answer, thinking included, in every mode (default: the thinking "
                      f"budget + {DEMO_ANSWER_TOKENS})")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_arguments(demo)
    demo.set_defaults(handler=command_demo)

    generate = commands.add_parser(
        "generate", formatter_class=HelpFormatter,
        help="think about one question with concept tokens and answer it (--compare: also with ordinary tokens)",
        description="""\
Answers QUESTION with soft thinking: while thinking, each step feeds the model a concept token (a mixture
of its top tokens' embeddings) instead of one token; the printed trace shows each concept token's top
token, and ⟨a|b p⟩ where the runner-up b had weight p. After the think-end marker (written by the model,
or forced by the thinking budget) the answer is ordinary greedy decoding. --compare decodes the same
prompt with ordinary tokens and the same budget, and prints both side by side (--html: the two traces side by
side on one page). The text says how long each thinking ran and what ended it (the model's own marker, the
thinking budget, Cold Stop, the switch limit); a forced marker of several tokens is counted in the thinking.""",
    )
    generate.add_argument("question", help="the question, in quotes")
    generate.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    generate.add_argument("--compare", action="store_true",
                          help="also decode with ordinary tokens (same prompt and budget) and compare")
    generate.add_argument("--max-new-tokens", type=int, default=160, metavar="N",
                          help="tokens to generate, thinking and answer together")
    generate.add_argument("--system", default=DEMO_THINKING_PROMPT, metavar="TEXT",
                          help="system prompt of a chat model ('' for none)")
    generate.add_argument("--seed", type=int, default=0,
                          help="torch seed (matters only with --noise, which randomises the concept tokens)")
    generate.add_argument("--html", default=None, metavar="PATH",
                          help="write the soft-thinking trace as a self-contained HTML page (hover a step: its "
                          "mixture)")
    generate.add_argument("--plot", default=None, metavar="PATH", help="write a PNG of entropy and mode per step")
    generate.add_argument("--gold-answer", default=None, metavar="ANSWER",
                          help="the right answer: each decoding's answer is graded against it (as eval grades), "
                          "in the text and the trace page")
    add_config_arguments(generate)
    generate.set_defaults(handler=command_generate)

    presets = "\n".join(
        textwrap.fill(text, 104, initial_indent=f"  {name:<13} ", subsequent_indent=" " * 16)
        for name, text in PRESET_DESCRIPTIONS.items()
    )
    evaluate = commands.add_parser(
        "eval", formatter_class=HelpFormatter,
        help="pass@k / maj@k / token cost of hard, soft and fuzzy decoding modes on a reasoning-gym task "
        "or a JSONL file (resumable)",
        description=f"""\
Decodes every problem --samples times in each decoding mode, grades the answers (reasoning-gym's scorer
for its tasks, math-verify against the answer column of a file), and prints a Markdown table of pass@k
(unbiased estimator), maj@k, mean thinking/answer tokens, the share of completions with no answer (ended
while thinking, or nothing after the think-end marker; a warning when that is most of a mode) and
generation seconds per mode. --out gets results.json, results.md, pass_at_k.png and samples.jsonl, the resume
log (per mode and problem: the question, the gold answer, the completions, their answers and grades, how each
ended): each (mode, problem) result is saved as soon as it is done, and rerunning the same command skips what
is saved (Ctrl-C loses nothing saved).

Decoding modes (--modes); "hard" is ordinary decoding, "soft" thinks in concept tokens, "fuzzy" in
near-one-hot concept tokens; "greedy"/"sample" is how the answer (and hard thinking) is decoded. Every
mode gets the same thinking budget (--max-thinking-tokens):
{presets}""",
    )
    evaluate.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP)
    evaluate.add_argument("--task", default="chain_sum",
                          help="a reasoning-gym task (chain_sum, basic_arithmetic, gsm_symbolic, countdown, "
                          "...) or a JSONL/JSON file of problems")
    evaluate.add_argument("--task-config", default=None, metavar="JSON",
                          help='reasoning-gym task config as JSON, e.g. \'{"min_terms": 2, "max_terms": 2}\'')
    evaluate.add_argument("--data-seed", type=int, default=1_000_000,
                          help="reasoning-gym seed of the problems (far from the training seeds 0, 1, ...)")
    evaluate.add_argument("--question-column", default="question", help="question column of a JSONL file")
    evaluate.add_argument("--answer-column", default="answer", help="gold-answer column of a JSONL file")
    evaluate.add_argument("--num-problems", type=int, default=None, metavar="N",
                          help="number of problems (default: 20 for a reasoning-gym task, every row of a file)")
    evaluate.add_argument("--modes", default="hard-greedy,soft-greedy",
                          help="comma-separated decoding modes (listed above)")
    evaluate.add_argument("--samples", type=int, default=8, metavar="N",
                          help="completions per problem (the n of pass@k; greedy modes decode once)")
    evaluate.add_argument("--k", default=None, metavar="K,K",
                          help="comma-separated k values of pass@k / maj@k (default: 1 and --samples)")
    evaluate.add_argument("--out", required=True, metavar="DIR",
                          help="output folder: results.json, results.md, pass_at_k.png, samples.jsonl "
                          "(a rerun resumes from it)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the sampled modes")
    evaluate.add_argument("--max-new-tokens", type=int, default=128, metavar="N",
                          help="tokens per completion, thinking + answer")
    evaluate.add_argument("--max-thinking-tokens", type=int, default=64, metavar="N",
                          help="thinking budget of every mode: the think-end marker is forced after N tokens")
    evaluate.add_argument("--think-end", default=None, metavar="MARKER",
                          help="end-of-thinking marker, matched on the text (default: </think> for a chat "
                          "model, a newline and 'Answer:' for a model without a chat template)")
    evaluate.add_argument("--batch-size", type=int, default=16, metavar="N", help="sequences per generate call")
    evaluate.add_argument("--system", default=None, metavar="TEXT",
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


LM_EVAL_INSTALL = "pip install 'hf-softthink[lm-eval]'"
LM_EVAL_HELP = f"""\
usage: hf-softthink lm-eval [lm_eval options] --model hf-softthink --model_args pretrained=MODEL[,ARG=VALUE...]

Runs lm-evaluation-harness's own command line (lm_eval) with the `hf-softthink` model registered: the
harness's `hf` model whose generate_until tasks (gsm8k-style) decode with soft thinking; the harness's
filters see the answer after the think-end marker. Every lm_eval option works. Model arguments: every
argument of the harness's `hf` model; pretrained may be a packaged short name (smollm2-135m, gemma3-270m);
soft_thinking=True|False|JSON|FILE; soft_<field>=VALUE sets one SoftThinkingConfig field (soft_max_topk=10,
soft_max_thinking_tokens=64, soft_noise=gumbel, ...).

lm-evaluation-harness is not installed: it is an optional extra. Install it with
  {LM_EVAL_INSTALL}
(from a clone of the repository: pip install -e ".[lm-eval]"); then `hf-softthink lm-eval --help` lists
all of lm_eval's own options.

example:
  hf-softthink lm-eval --model hf-softthink --model_args pretrained=smollm2-135m,soft_max_topk=10 \\
      --tasks gsm8k --device cpu --batch_size 8 --limit 20"""


def command_lm_eval(arguments: Sequence[str]) -> int:
    """`hf-softthink lm-eval ARGS`: `lm_eval ARGS` after registering the `hf-softthink` model. Without the
    lm-eval extra, `--help` (or no argument) describes the command and how to install the extra."""
    try:
        from .lm_eval_harness import main as lm_eval_main
    except ImportError:
        if not arguments or {"-h", "--help"} & set(arguments):
            print(LM_EVAL_HELP)
            return 0
        raise
    return lm_eval_main(list(arguments))


def main(argv: Sequence[str] | None = None) -> int:
    from .evaluation import EvaluationInterrupted

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lm-eval"]:  # every later argument is lm_eval's own, options included
        handler, args = command_lm_eval, argv[1:]
    else:
        args = parser.parse_args(argv)
        handler = args.handler
    try:
        return handler(args)
    except (ValueError, ImportError, OSError) as error:  # OSError: paths, HubModelUnavailableError
        print(f"hf-softthink: error: {error}", file=sys.stderr)
        return 2
    except EvaluationInterrupted as interrupt:
        hint = f" (rerun `hf-softthink {shlex.join(argv)}`)" if interrupt.saved else ""
        print(f"\nhf-softthink: {interrupt}{hint}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\nhf-softthink: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
