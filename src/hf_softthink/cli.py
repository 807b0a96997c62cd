"""The `hf-softthink` command: soft thinking for transformers models, offline on a packaged model by default.

`hf-softthink demo` (the README's first command) compares standard decoding, ordinary thinking and soft
thinking on built-in questions with known answers; `generate` thinks about one question; `eval` measures
pass@k across decoding modes on a task, resumably; `train` RL-trains a LoRA adapter with soft-thinking rollouts.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shlex
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch

from .checks import check_model_path, prepare_output_dir
from .config import NOISE_KINDS, SoftThinkingConfig

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
  hf-softthink eval --task chain_sum --modes hard-sample,soft-sample --samples 8 --out eval_out
  hf-softthink train --max-steps 30 --output-dir runs/additions"""


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
    group.add_argument("--noise", choices=NOISE_KINDS, default=defaults.noise, help=_config_help("noise"))
    group.add_argument("--dirichlet-alpha", type=float, default=defaults.dirichlet_alpha, metavar="ALPHA",
                       help=_config_help("dirichlet_alpha", "with --noise dirichlet"))
    group.add_argument("--gumbel-tau", type=float, default=defaults.gumbel_tau, metavar="TAU",
                       help=_config_help("gumbel_tau", "with --noise gumbel"))
    group.add_argument("--gaussian-sigma", type=float, default=defaults.gaussian_sigma, metavar="SIGMA",
                       help=_config_help("gaussian_sigma", "with --noise gaussian"))
    group.add_argument("--logistic-normal-sigma", type=float, default=defaults.logistic_normal_sigma, metavar="S",
                       help=_config_help("logistic_normal_sigma", "with --noise logistic_normal"))
    group.add_argument("--gumbel-noise-clamp", type=float, nargs=2, default=defaults.gumbel_noise_clamp,
                       metavar=("LOW", "HIGH"), help=_config_help("gumbel_noise_clamp", "with --noise gumbel"))
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
    group.add_argument("--forced-end-text", default=defaults.forced_end_text, metavar="TEXT",
                       help=_config_help("forced_end_text"))
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
        gaussian_sigma=args.gaussian_sigma, logistic_normal_sigma=args.logistic_normal_sigma,
        gumbel_noise_clamp=tuple(args.gumbel_noise_clamp) if args.gumbel_noise_clamp else None,
        forced_end_text=args.forced_end_text, cold_stop_entropy=args.cold_stop_entropy or None,
        cold_stop_patience=args.cold_stop_patience, think_end=think_end,
        max_thinking_tokens=args.max_thinking_tokens, mode=args.mode, switch_window=args.switch_window,
        max_switches=args.max_switches, switch_beta=args.switch_beta, switch_alpha=args.switch_alpha,
        think_start=int(args.think_start) if str(args.think_start).isdigit() else args.think_start,
        final_answer=args.final_answer, final_answer_max_tokens=args.final_answer_max_tokens,
    )


#: the integer flags and their ranges: counts fit a 32-bit index, torch seeds are unsigned 64-bit integers
INT_FLAG_RANGES = {
    "seed": (0, 2**64 - 1),
    "threads": (1, 2**31 - 1),
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


THREADS_HELP = ("torch CPU threads (default on a CPU: one per core the load average leaves idle; a warning says "
                "when the machine is busier than its cores)")


def use_cpu_threads(threads: int | None, *, on_gpu: bool = False) -> int:
    """Set torch's CPU threads for a command (`hf_softthink.threads.configure_cpu_threads`: `--threads`, else a
    load-aware default on a CPU), print its busy-machine warning, and return the thread count."""
    from .threads import configure_cpu_threads

    chosen, warning = configure_cpu_threads(threads, on_gpu=on_gpu)
    if warning:
        print(f"hf-softthink: warning: {warning}", file=sys.stderr)
    return chosen


def command_demo(args: argparse.Namespace) -> int:
    """`hf-softthink demo`: standard decoding, ordinary and soft thinking on the built-in questions."""
    from .demo import run_demo
    from .models import load_model

    _check_int_flags(args)
    use_cpu_threads(args.threads)
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
    use_cpu_threads(args.threads)
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
        use_cpu_threads(args.threads)
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

    from ._version import __version__

    return f"hf-softthink {__version__} (transformers {transformers.__version__}, torch {torch.__version__})"


# ------------------------------------------------------------------------------------------------ train
#: the quickstart's task, trained when neither --task nor --dataset is given: single-digit additions
QUICKSTART_TASK = "basic_arithmetic"
QUICKSTART_TASK_CONFIG = {
    "min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"],
    "allow_parentheses": False, "allow_negation": False,
}
#: `hf-softthink train`'s defaults: the quickstart's (examples/soft_grpo_quickstart.py), sized for a small model on
#: a CPU. Flags default to None (not given) and take these values when the flag, the --config file and a recipe
#: leave them unset.
TRAIN_DEFAULTS: dict[str, object] = {
    "model_name_or_path": DEFAULT_MODEL,
    "num_problems": 512,
    "task_seed": 0,
    "dataset_train_split": "train",
    "soft_rollout": "gumbel",
    "max_steps": 30,
    "learning_rate": 1e-4,
    "num_generations": 8,
    "max_completion_length": 32,
    "temperature": 0.7,
    "max_topk": 10,
    "max_thinking_tokens": 16,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_target_modules": ["all-linear"],
    "save_steps": 0,
    "report_to": ["none"],
    "seed": 0,
}
#: `SoftGRPOConfig.soft_rollout`'s values (`hf_softthink.trainer.SOFT_ROLLOUTS`, which imports TRL: slow to load
#: for every command's parser)
SOFT_ROLLOUT_CHOICES = ("hard", "gaussian", "fuzzy", "gumbel", "dirichlet", "logistic_normal")
#: `SoftGRPOConfig.soft_density`'s values (`hf_softthink.trainer.config.SOFT_DENSITIES`)
SOFT_DENSITY_CHOICES = ("exact", "soft_grpo", "gumbel_max")
#: the command's score of a Gumbel soft step when --soft-density is not given: log p of the step's Gumbel-max id,
#: the soft row with the best dev pass@1 of the issue-16 grid (benchmarks/RESULTS_grid.md); other rollouts: "exact"
GUMBEL_SOFT_DENSITY = "gumbel_max"
#: `--recipe`'s values (`hf_softthink.trainer.config.RECIPES`): the presets `SoftGRPOConfig.softgrpo()`, `.stht()` and
#: `.stht(fuzzy=True)`
RECIPE_CHOICES = ("softgrpo", "stht", "stht-fuzzy")
#: the command's defaults that size a run (kept under a --recipe, which sets the algorithm's settings)
_RUN_SIZE_DEFAULTS = ("max_steps", "max_completion_length", "per_device_train_batch_size", "seed")
_RUN_SIZE_SOFT_DEFAULTS = ("max_thinking_tokens", "think_end")
#: SoftGRPOConfig settings the command chooses beyond its flags (a --config file may set them too)
TRAIN_CONFIG_DEFAULTS: dict[str, object] = {"lr_scheduler_type": "constant"}
#: flag -> SoftThinkingConfig field (the rollouts' decoder settings)
_SOFT_FLAGS = {
    "max_topk": "max_topk", "max_thinking_tokens": "max_thinking_tokens", "thinking_temperature": "temperature",
    "gumbel_tau": "gumbel_tau", "gaussian_sigma": "gaussian_sigma", "dirichlet_alpha": "dirichlet_alpha",
    "think_end": "think_end",
}
#: flag -> SoftGRPOConfig field, for the flags that are one
_TRAINING_FLAGS = (
    "soft_rollout", "soft_density", "max_steps", "learning_rate", "num_generations", "per_device_train_batch_size",
    "max_completion_length", "temperature", "seed",
)
_REWARDS = ("math_answer_reward", "reasoning_gym_reward", "format_reward")
_TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "comet_ml": "comet-ml",
                     "mlflow": "mlflow", "clearml": "clearml"}


def _train_value(args: argparse.Namespace, name: str):
    """A train option: the flag (or --config file) value when given, else the command's default."""
    value = getattr(args, name, None)
    return TRAIN_DEFAULTS.get(name) if value is None else value


class ConfigFileAction(argparse.Action):
    """`--config FILE.yaml`, as TRL's `--config`: the file's keys are flag names (`max_steps` or `max-steps`; TRL's
    names such as `model_name_or_path`, `dataset_name`, `load_in_4bit` work too) or any other `SoftGRPOConfig`
    field (`beta`, `loss_type`, `soft_thinking: {cold_stop_entropy: 0.1}`, ...); an `env:` mapping sets
    environment variables. Flags given on the command line override the file, wherever `--config` stands."""

    def __call__(self, parser, namespace, values, option_string=None):
        import os

        import yaml

        try:
            with open(values, encoding="utf-8") as handle:
                content = yaml.safe_load(handle)
        except OSError as error:
            raise argparse.ArgumentError(self, f"cannot read {values!r}: {error.strerror or error}") from None
        except yaml.YAMLError as error:
            raise argparse.ArgumentError(self, f"{values} is not valid YAML: {error}") from None
        if content is None:
            content = {}
        if not isinstance(content, dict):
            raise argparse.ArgumentError(self, f"{values} must hold a YAML mapping of settings, not {content!r}")
        flags = {
            option.lstrip("-").replace("-", "_"): action
            for action in parser._actions
            for option in action.option_strings
            if action.dest not in ("help", "config")
        }
        environment = content.pop("env", None) or {}
        if not isinstance(environment, dict):
            raise argparse.ArgumentError(self, f"{values}: env must be a mapping of variable: value, not {environment!r}")
        for key, value in environment.items():
            os.environ[str(key)] = str(value)
        settings = dict(getattr(namespace, "config_settings", None) or {})
        fields = None
        for raw_key, value in content.items():
            key = str(raw_key).replace("-", "_")
            action = flags.get(key)
            if action is None:
                if fields is None:
                    from .trainer import SoftGRPOConfig

                    fields = {f.name for f in dataclasses.fields(SoftGRPOConfig) if f.init}
                if key not in fields:
                    import difflib

                    close = difflib.get_close_matches(key, [*flags, *fields], n=3)
                    hint = f" Did you mean {', '.join(close)}?" if close else ""
                    raise argparse.ArgumentError(
                        self, f"{values}: {raw_key!r} is neither a flag of `hf-softthink train` nor a SoftGRPOConfig "
                        f"field.{hint}"
                    )
                settings[key] = value
                continue
            if getattr(namespace, action.dest, None) is None:  # a flag given before --config wins
                setattr(namespace, action.dest, self._convert(action, raw_key, value, values))
        namespace.config_settings = settings
        setattr(namespace, self.dest, values)

    def _convert(self, action, key, value, path):
        where = f"{path}: {key}"
        if action.nargs == 0:  # a switch
            if not isinstance(value, bool):
                raise argparse.ArgumentError(self, f"{where} must be true or false, got {value!r}")
            return value
        values = value if isinstance(value, list) else [value]
        if action.nargs not in ("+", "*") and isinstance(value, list):
            raise argparse.ArgumentError(self, f"{where} takes one value, got the list {value!r}")
        converted = []
        for item in values:
            if action.type is not None and item is not None and not isinstance(item, bool):
                try:
                    item = action.type(str(item) if action.type is not float else item)
                except (TypeError, ValueError) as error:
                    raise argparse.ArgumentError(self, f"{where}: {error}") from None
            if action.choices is not None and item not in action.choices:
                raise argparse.ArgumentError(
                    self, f"{where}: {item!r} is not one of {', '.join(map(str, action.choices))}"
                )
            converted.append(item)
        return converted if action.nargs in ("+", "*") else converted[0]


def add_train_command(commands: argparse._SubParsersAction) -> None:
    """The `train` subcommand's parser (its flags are named as TRL's `trl grpo` names them where TRL has one;
    the TRL spelling works too)."""
    d = TRAIN_DEFAULTS
    train = commands.add_parser(
        "train", formatter_class=HelpFormatter,
        help="RL-train a LoRA adapter with soft-thinking rollouts (SoftGRPOTrainer) on a reasoning-gym task or "
        "your dataset; progress bar with reward and ETA; Ctrl-C saves",
        description=f"""\
Trains with SoftGRPOTrainer (GRPO, via TRL, whose rollouts think in concept tokens) and saves the LoRA adapter,
its soft-thinking config, a model card (every setting, reward curve, final metrics, versions, citations) and
reward_curve.png in --output-dir, at the end and at every checkpoint. A progress bar shows the steps, the ETA
and the last reward; one line per step gives reward, loss, gradient norm and lengths. Ctrl-C finishes the
step, saves a resumable checkpoint and the adapter, and says where (twice: stop at once, unsaved).

Without --task or --dataset it trains the quickstart (examples/soft_grpo_quickstart.py): single-digit
additions from reasoning-gym's {QUICKSTART_TASK}, which SmolLM2-135M half-solves, so the reward can rise.
The defaults suit that small model on a CPU (10-15 s per step with one thread on an idle core); raise
--max-completion-length and --max-thinking-tokens for a reasoning model. Flags are named as in TRL's
`trl grpo` where TRL has one, and TRL's spelling works too (--learning_rate, --model_name_or_path,
--load_in_4bit, ...). --config FILE.yaml sets any flag or any other SoftGRPOConfig field (beta,
loss_type, gradient_accumulation_steps, soft_thinking: {{...}}); flags on the command line override it.""",
    )
    model = train.add_argument_group("model and data")
    model.add_argument("--config", action=ConfigFileAction, metavar="FILE.yaml",
                       help="a YAML file of settings: flag names (max_steps: 30) or any SoftGRPOConfig field; "
                       "command-line flags override it")
    model.add_argument("--model", "--model_name_or_path", dest="model_name_or_path", metavar="MODEL",
                       help="the chat model to train: the packaged smollm2-135m (SmolLM2-135M-Instruct), a local "
                       "folder, or a Hub id such as Qwen/Qwen3-0.6B (needs network the first time) "
                       f"(default: {d['model_name_or_path']})")
    model.add_argument("--task", metavar="NAME",
                       help="a reasoning-gym task (basic_arithmetic, chain_sum, gsm_symbolic, countdown, ...), scored "
                       "by its own verifier (default, with neither --task nor --dataset: the quickstart's "
                       "single-digit additions)")
    model.add_argument("--task-config", metavar="JSON",
                       help='reasoning-gym task config as JSON, e.g. \'{"min_terms": 2, "max_terms": 2}\'')
    model.add_argument("--num-problems", type=int, metavar="N",
                       help=f"reasoning-gym problems to generate for training (default: {d['num_problems']})")
    model.add_argument("--task-seed", type=int, metavar="SEED",
                       help="reasoning-gym seed of the training problems (evaluate on far-away seeds: `hf-softthink "
                       f"eval` uses 1000000) (default: {d['task_seed']})")
    model.add_argument("--dataset", "--dataset_name", dest="dataset_name", metavar="PATH_OR_ID",
                       help="a JSONL/JSON file or a Hub dataset with a question (or prompt) column and an answer "
                       "column; answers are checked with math-verify")
    model.add_argument("--dataset-config", "--dataset_config", dest="dataset_config", metavar="NAME",
                       help="the Hub dataset's configuration name")
    model.add_argument("--dataset-train-split", "--dataset_train_split", dest="dataset_train_split", metavar="SPLIT",
                       help=f"the Hub dataset's split to train on (default: {d['dataset_train_split']})")
    model.add_argument("--question-column", metavar="NAME",
                       help="the --dataset column holding the problem (default: question, else prompt)")
    model.add_argument("--answer-column", metavar="NAME",
                       help="the --dataset column holding the gold answer (default: answer)")
    model.add_argument("--system", metavar="TEXT",
                       help="a system prompt for every problem (default: none, as in the quickstart)")
    model.add_argument("--reward-funcs", "--reward_funcs", dest="reward_funcs", nargs="+", metavar="NAME",
                       help=f"reward functions: {', '.join(_REWARDS)} (hf_softthink.rewards) or a dotted import "
                       "path, e.g. my_rewards.length_penalty (default: reasoning_gym_reward for a task or a saved "
                       "reasoning-gym dataset, math_answer_reward for other data)")

    training = train.add_argument_group("training (SoftGRPOConfig)")
    training.add_argument("--recipe", choices=RECIPE_CHOICES,
                          help="a paper's recipe as a preset, its settings overridable by the other flags: softgrpo "
                          "(SofT-GRPO: SoftGRPOConfig.softgrpo), stht or stht-fuzzy (Soft Tokens, Hard Truths: "
                          "SoftGRPOConfig.stht); the command's run-size defaults (steps, lengths, batch, thinking "
                          "budget) still apply, the algorithm's settings (rollout, learning rate, temperatures, "
                          "support, noise, KL) are the recipe's (default: none, the flags' own defaults)")
    training.add_argument("--soft-rollout", "--soft_rollout", dest="soft_rollout", choices=SOFT_ROLLOUT_CHOICES,
                          help="the rollouts' thinking: hard (plain GRPO), gumbel (Gumbel-Softmax weights, SofT-GRPO), "
                          "dirichlet, gaussian (noisy concept-token embeddings, Soft Tokens Hard Truths), fuzzy "
                          f"(default: {d['soft_rollout']}, the soft mode that raised the quickstart's reward)")
    training.add_argument("--soft-density", "--soft_density", dest="soft_density", choices=SOFT_DENSITY_CHOICES,
                          help="the loss's score of a soft thinking step: exact (the density of the fed mixture), "
                          "gumbel_max (gumbel only: log p of the step's Gumbel-max id; lower variance, biased when "
                          "the mixture weights and not only the chosen ids move the reward), soft_grpo (gumbel only: "
                          f"SofT-GRPO's clamped score) (default: {GUMBEL_SOFT_DENSITY} for gumbel rollouts, the best "
                          "soft row on the dev split of benchmarks/RESULTS_grid.md; exact for the others)")
    training.add_argument("--max-steps", "--max_steps", dest="max_steps", type=int, metavar="N",
                          help=f"training steps (default: {d['max_steps']})")
    training.add_argument("--learning-rate", "--learning_rate", dest="learning_rate", type=float, metavar="LR",
                          help=f"peak learning rate (default: {d['learning_rate']})")
    training.add_argument("--num-generations", "--num_generations", dest="num_generations", type=int, metavar="G",
                          help=f"completions per prompt, the group GRPO compares (default: {d['num_generations']})")
    training.add_argument("--per-device-train-batch-size", "--per_device_train_batch_size",
                          dest="per_device_train_batch_size", type=int, metavar="B",
                          help="completions per device and step (default: --num-generations, one prompt per step)")
    training.add_argument("--max-completion-length", "--max_completion_length", dest="max_completion_length",
                          type=int, metavar="N",
                          help=f"tokens per completion, thinking and answer (default: {d['max_completion_length']})")
    training.add_argument("--temperature", type=float, metavar="T",
                          help="sampling temperature of the answer (and of hard thinking), GRPO's "
                          f"(default: {d['temperature']})")
    training.add_argument("--seed", type=int, help=f"training seed (default: {d['seed']})")

    soft = train.add_argument_group("soft-thinking rollouts (SoftThinkingConfig)")
    soft.add_argument("--max-topk", type=int, metavar="K",
                      help=f"tokens mixed into each concept token (default: {d['max_topk']})")
    soft.add_argument("--max-thinking-tokens", type=int, metavar="N",
                      help="thinking budget: the think-end marker is forced after N thinking tokens "
                      f"(default: {d['max_thinking_tokens']})")
    soft.add_argument("--thinking-temperature", type=float, metavar="T",
                      help="temperature of the thinking distribution (default: SoftThinkingConfig's, 0.6; fuzzy "
                      "sets 1e-4)")
    soft.add_argument("--gumbel-tau", type=float, metavar="TAU", help="Gumbel-Softmax temperature (gumbel rollouts)")
    soft.add_argument("--gaussian-sigma", type=float, metavar="SIGMA",
                      help="embedding noise, a fraction of the embedding rms (gaussian / fuzzy rollouts)")
    soft.add_argument("--dirichlet-alpha", type=float, metavar="ALPHA",
                      help="Dirichlet concentration scale (dirichlet rollouts)")
    soft.add_argument("--think-end", metavar="MARKER", help="the think-end marker (default: </think>)")

    adapter = train.add_argument_group("adapter (PEFT)")
    adapter.add_argument("--lora-r", "--lora_r", dest="lora_r", type=int, metavar="R",
                         help=f"LoRA rank; 0 trains every weight instead (default: {d['lora_r']})")
    adapter.add_argument("--lora-alpha", "--lora_alpha", dest="lora_alpha", type=int, metavar="ALPHA",
                         help=f"LoRA alpha (default: {d['lora_alpha']})")
    adapter.add_argument("--lora-target-modules", "--lora_target_modules", dest="lora_target_modules", nargs="+",
                         metavar="NAME", help="modules LoRA adapts (default: all-linear)")
    adapter.add_argument("--qlora", "--load_in_4bit", dest="load_in_4bit", action="store_true", default=None,
                         help="QLoRA: load the base model in 4-bit NF4 (bitsandbytes) and train the LoRA adapter on it")

    output = train.add_argument_group("output")
    output.add_argument("--output-dir", "--output_dir", dest="output_dir", metavar="DIR",
                        help="where the adapter, model card, reward curve and checkpoints go (default: "
                        "MODEL-SoftGRPO)")
    output.add_argument("--save-steps", "--save_steps", dest="save_steps", type=int, metavar="N",
                        help="also save a resumable checkpoint every N steps (0: only at the end and on Ctrl-C) "
                        f"(default: {d['save_steps']})")
    output.add_argument("--resume-from-checkpoint", "--resume_from_checkpoint", dest="resume_from_checkpoint",
                        metavar="DIR", help="continue a run from one of its checkpoints (DIR/checkpoint-N)")
    output.add_argument("--push-to-hub", "--push_to_hub", dest="push_to_hub", action="store_true", default=None,
                        help="upload the adapter and its card to the Hub (at every save and at the end; needs "
                        "`hf auth login`)")
    output.add_argument("--hub-model-id", "--hub_model_id", dest="hub_model_id", metavar="ORG/NAME",
                        help="the Hub repository of --push-to-hub (default: the output folder's name)")
    output.add_argument("--report-to", "--report_to", dest="report_to", nargs="+", metavar="TRACKER",
                        help="experiment trackers: tensorboard, wandb, trackio, ... (installed separately), or none "
                        "(default: none)")
    output.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    output.add_argument("--no-progress", action="store_true", default=None,
                        help="no progress bar (the per-step log lines stay)")
    train.set_defaults(handler=command_train, config_settings={})


def _report_to(args: argparse.Namespace) -> list[str]:
    """The trackers of --report-to, each checked to be known and installed (before the model loads)."""
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = [name.strip() for value in _train_value(args, "report_to") for name in str(value).split(",")]
    names = [name for name in names if name]
    if names in ([], ["none"]):
        return []
    if names == ["all"]:
        return ["all"]
    installed = get_available_reporting_integrations()
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise ValueError(
                f"--report-to {name}: unknown tracker; choose from none, all, {', '.join(INTEGRATION_TO_CALLBACK)}."
            )
        if name not in installed:
            package = _TRACKER_PACKAGES.get(name, name)
            raise ImportError(
                f"--report-to {name}: {name} is not installed. Install it (pip install {package}) or drop the flag "
                f"(--report-to none). Installed trackers: {', '.join(installed) or 'none'}."
            )
    return names


def _train_settings(args: argparse.Namespace, *, on_gpu: bool) -> tuple[dict, dict, dict]:
    """The SoftGRPOConfig keyword arguments of the flags, in three parts: how and where the run goes (device,
    output, logging, trackers), the command's defaults for what was not given, and what the user gave
    (flags and the --config file). Later parts win."""
    given = {name: getattr(args, name) for name in _TRAINING_FLAGS if getattr(args, name, None) is not None}
    given.update(args.config_settings or {})
    soft = given.pop("soft_thinking", None) or {}
    if not isinstance(soft, dict):
        raise ValueError(f"--config: soft_thinking must be a mapping of SoftThinkingConfig fields, got {soft!r}")
    soft = dict(soft)
    soft.update({field: getattr(args, flag) for flag, field in _SOFT_FLAGS.items() if getattr(args, flag) is not None})
    if isinstance(soft.get("think_end"), str) and soft["think_end"].isdigit():
        soft["think_end"] = int(soft["think_end"])
    if soft:
        given["soft_thinking"] = soft
    defaults = {name: TRAIN_DEFAULTS[name] for name in _TRAINING_FLAGS if name in TRAIN_DEFAULTS}
    defaults.update(TRAIN_CONFIG_DEFAULTS)
    defaults["soft_thinking"] = {field: TRAIN_DEFAULTS[flag] for flag, field in _SOFT_FLAGS.items()
                                 if flag in TRAIN_DEFAULTS}
    generations = given.get("num_generations", defaults["num_generations"])
    defaults["per_device_train_batch_size"] = generations  # one prompt group per step
    save_steps = _train_value(args, "save_steps")
    run = {
        "output_dir": args.output_dir or f"{str(_train_value(args, 'model_name_or_path')).rstrip('/').split('/')[-1]}"
                                         "-SoftGRPO",
        "logging_steps": 1,
        "disable_tqdm": True,  # the command shows its own bar and log lines (RewardProgressCallback)
        "report_to": _report_to(args),
        "save_strategy": "steps" if save_steps else "no",
        "push_to_hub": bool(args.push_to_hub),
        "hub_model_id": args.hub_model_id,
    }
    if save_steps:
        run["save_steps"] = save_steps
    if not on_gpu:
        run.update(use_cpu=True, bf16=False, activation_checkpointing=False)  # fp32; checkpointing costs CPU time
    else:
        run["bf16"] = torch.cuda.is_bf16_supported()
    run = {key: value for key, value in run.items() if key not in given}
    return run, defaults, given


def train_config_from_arguments(args: argparse.Namespace, *, on_gpu: bool = False):
    """The `SoftGRPOConfig` of `hf-softthink train`'s flags and --config file (validated: bad values raise
    `ValueError` naming the field)."""
    from .trainer import SoftGRPOConfig

    run, defaults, given = _train_settings(args, on_gpu=on_gpu)
    soft = given.get("soft_thinking", {})
    if args.recipe:  # the preset's algorithm, the command's run size, the user's flags over both
        sizes = {name: value for name, value in defaults.items() if name in _RUN_SIZE_DEFAULTS}
        soft = {**{name: value for name, value in defaults["soft_thinking"].items()
                   if name in _RUN_SIZE_SOFT_DEFAULTS}, **soft}
        presets = {"softgrpo": SoftGRPOConfig.softgrpo, "stht": SoftGRPOConfig.stht,
                   "stht-fuzzy": functools.partial(SoftGRPOConfig.stht, fuzzy=True)}
        return presets[args.recipe](**{**run, **sizes, **given, "soft_thinking": soft})
    if given.get("soft_rollout", defaults["soft_rollout"]) == "gumbel":
        defaults["soft_density"] = GUMBEL_SOFT_DENSITY
    return SoftGRPOConfig(**{**run, **defaults, **given, "soft_thinking": {**defaults["soft_thinking"], **soft}})


def _question_column(args: argparse.Namespace, columns: Sequence[str]) -> str:
    if args.question_column:
        return args.question_column
    return "prompt" if "question" not in columns and "prompt" in columns else "question"


def train_dataset_from_arguments(args: argparse.Namespace):
    """The prompts of --task (a reasoning-gym task), --dataset (a file or a Hub dataset), or the quickstart's."""
    import os

    from .data import load_prompts, reasoning_gym_dataset

    instruction = args.system or None
    if args.dataset_name:
        for flag, value in (("--task", args.task), ("--task-config", args.task_config)):
            if value:
                raise ValueError(f"{flag} and --dataset both name the training data: give one of them.")
        answer_column = args.answer_column or "answer"
        name = args.dataset_name
        if name.endswith((".jsonl", ".json")) or os.path.isfile(name):
            from .data import _read_json_table

            columns = list(_read_json_table(name).columns)
            source = name
        else:  # a Hub dataset, or a local folder that `datasets.load_dataset` reads
            import datasets

            source = datasets.load_dataset(name, args.dataset_config, split=_train_value(args, "dataset_train_split"))
            columns = source.column_names
        return load_prompts(source, question_column=_question_column(args, columns), answer_column=answer_column,
                            thinking_instruction=instruction)
    for flag, value in (("--question-column", args.question_column), ("--answer-column", args.answer_column),
                        ("--dataset-config", args.dataset_config)):
        if value:
            raise ValueError(f"{flag} applies to --dataset, which is not given: drop it, or give --dataset.")
    task, config = args.task, args.task_config
    if task is None:
        if config:
            raise ValueError("--task-config configures a reasoning-gym task: give --task NAME too.")
        task, config = QUICKSTART_TASK, QUICKSTART_TASK_CONFIG
    elif isinstance(config, str):
        config = _task_config(config)
    return reasoning_gym_dataset(task, size=_train_value(args, "num_problems"), seed=_train_value(args, "task_seed"),
                                 thinking_instruction=instruction, config=config)


def train_rewards_from_arguments(args: argparse.Namespace, dataset, think_end) -> list:
    """The reward functions of --reward-funcs (names or dotted paths), by default the one that suits the data."""
    import importlib
    import os

    from . import rewards
    from .evaluation_metrics import DEFAULT_THINK_END

    names = args.reward_funcs
    if not names:
        scored_by_task = {"task", "entry"} <= set(dataset.column_names) and any(e is not None for e in dataset["entry"])
        names = ["reasoning_gym_reward" if scored_by_task else "math_answer_reward"]
    funcs = []
    for name in names:
        if name in _REWARDS:
            func = getattr(rewards, name)
            if isinstance(think_end, str) and think_end != DEFAULT_THINK_END:
                func = rewards.configure_reward(func, think_end=think_end)
        elif "." in name:
            module_name, attribute = name.rsplit(".", 1)
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # as TRL does: a module next to the user
            try:
                func = getattr(importlib.import_module(module_name), attribute)
            except (ImportError, AttributeError) as error:
                raise ValueError(f"--reward-funcs {name}: cannot import it ({error}).") from None
        else:
            raise ValueError(
                f"--reward-funcs {name}: unknown reward; choose from {', '.join(_REWARDS)} or give a dotted import "
                "path such as my_rewards.my_reward."
            )
        funcs.append(func)
    return funcs


#: TRL 1.16 toggles gradient checkpointing around generation through transformers' deprecated names: a
#: FutureWarning per run that the user cannot act on (also filtered in the tests, pyproject.toml)
_TRL_DEPRECATION = r"`(is_gradient_checkpointing|gradient_checkpointing_enable|gradient_checkpointing_disable)` is deprecated"


def command_train(args: argparse.Namespace) -> int:
    """`hf-softthink train`: SoftGRPO training from the command line; saves adapter, card and reward curve."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TRL_DEPRECATION, category=FutureWarning)
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    import importlib.util

    from .hub import reward_summary

    # everything that can be checked without the model is checked first (loading takes seconds to minutes)
    on_gpu = torch.cuda.is_available() and not (args.config_settings or {}).get("use_cpu")
    config = train_config_from_arguments(args, on_gpu=on_gpu)
    model_name = str(_train_value(args, "model_name_or_path"))
    check_model_path(model_name, "--model")
    lora_r = _train_value(args, "lora_r")
    if lora_r < 0:
        raise ValueError(f"--lora-r must be at least 0 (0: train every weight), got {lora_r}")
    if args.load_in_4bit:
        if not lora_r:
            raise ValueError("--qlora trains a LoRA adapter on the 4-bit model: give --lora-r R > 0.")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ImportError("--qlora needs bitsandbytes: pip install 'hf-softthink[quant]'.")
    if args.resume_from_checkpoint and not Path(args.resume_from_checkpoint).is_dir():
        raise FileNotFoundError(
            f"--resume-from-checkpoint {args.resume_from_checkpoint!r}: no such folder; give a checkpoint folder a run "
            "saved (OUTPUT_DIR/checkpoint-N)."
        )
    threads = use_cpu_threads(args.threads, on_gpu=on_gpu)
    dataset = train_dataset_from_arguments(args)
    think_end = config.rollout_config().think_end if config.soft_rollout != "hard" else "</think>"
    reward_funcs = train_rewards_from_arguments(args, dataset, think_end)
    prepare_output_dir(config.output_dir, "--output-dir")

    from transformers import PrinterCallback, ProgressCallback

    from .models import load_model
    from .trainer import SoftGRPOTrainer
    from .trainer.callbacks import InterruptCallback, RewardProgressCallback

    quantization = None
    if args.load_in_4bit:
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if on_gpu else torch.float32,
        )
    model, tokenizer = load_model(model_name, device="cuda" if on_gpu else None, quantization_config=quantization)
    from .completion import has_chat_template

    if not has_chat_template(tokenizer):
        raise ValueError(
            f"--model {model_name}: its tokenizer has no chat template, and training prompts are chat messages "
            "(TRL applies the template). Train a chat model (smollm2-135m, Qwen/Qwen3-0.6B, ...) or give a folder "
            "whose tokenizer_config.json has a chat_template."
        )
    peft_config = None
    if lora_r:
        from peft import LoraConfig

        targets = _train_value(args, "lora_target_modules")
        peft_config = LoraConfig(r=lora_r, lora_alpha=_train_value(args, "lora_alpha"), task_type="CAUSAL_LM",
                                 target_modules=targets[0] if len(targets) == 1 else list(targets))
    trainer = SoftGRPOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=peft_config)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(RewardProgressCallback(progress=not args.no_progress))
    interrupt = InterruptCallback()
    trainer.add_callback(interrupt)

    prompts = config.per_device_train_batch_size * config.gradient_accumulation_steps // config.num_generations
    adapter_text = f"LoRA r{lora_r}" + (" on the 4-bit model" if args.load_in_4bit else "") if lora_r else "every weight"
    device = "GPU" if on_gpu else f"CPU, {threads} torch thread{'s' if threads != 1 else ''}"
    print(f"hf-softthink train: {model_name}, {config.soft_rollout} rollouts, {adapter_text}, {config.max_steps} steps "
          f"of {prompts} prompt{'s' if prompts != 1 else ''} x {config.num_generations} completions, {len(dataset)} "
          f"training problems; {device}; saving to {config.output_dir}", file=sys.stderr)
    try:
        with interrupt.catch_sigint():
            trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    except KeyboardInterrupt:
        from .trainer.checkpoints import newest_complete_checkpoint

        try:  # a second Ctrl-C often lands in a save: the newest checkpoint folder may be incomplete
            saved = f"the last complete checkpoint, {newest_complete_checkpoint(config.output_dir)[0]}"
        except ValueError:  # no checkpoint, or none complete
            saved = "nothing"
        print(f"\nhf-softthink: stopped at once by a second Ctrl-C, unsaved; saved before: {saved}", file=sys.stderr)
        return 130
    trainer.save_model(config.output_dir)  # with --push-to-hub, also uploads the folder
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    print(f"reward: {reward_summary(rewards)}")
    kind = "LoRA adapter" if lora_r else "model"
    print(f"saved in {config.output_dir}: the {kind}, its soft-thinking config (generation_config.json), the model "
          "card (README.md) and reward_curve.png; generate with hf_softthink.hub.load_soft_adapter"
          f"({str(config.output_dir)!r})")
    if config.push_to_hub:
        print(f"pushed to the Hub: https://huggingface.co/{getattr(trainer, 'hub_model_id', None) or config.hub_model_id}")
    if interrupt.stopped_at_step is not None:
        checkpoint = Path(config.output_dir) / f"checkpoint-{interrupt.stopped_at_step}"
        print(f"hf-softthink: stopped by Ctrl-C after step {interrupt.stopped_at_step} of {config.max_steps}; "
              f"resumable checkpoint: {checkpoint} (continue with the same command plus --resume-from-checkpoint "
              f"{checkpoint})", file=sys.stderr)
        return 130
    return 0


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
    demo.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
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
    generate.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
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
    evaluate.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    evaluate.set_defaults(handler=command_eval)
    add_train_command(commands)

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
