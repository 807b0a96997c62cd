"""The grid's task: reasoning-gym chain_sum problems, their step-by-step traces (the SFT completions),
the held-out splits, the chat prompts, and the out-of-domain texts of the drift measurement."""

from __future__ import annotations

from typing import Any

from .settings import GridSettings

TASK = "chain_sum"
OOD_TASK = "basic_arithmetic"
THINK_START, THINK_END, EOS = "<think>", "</think>", "<|im_end|>"
TEST_SEED, DEV_SEED = 10**6, 2 * 10**6


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


def task_config(settings: GridSettings) -> dict[str, int]:
    """reasoning-gym's chain_sum config: ``--terms`` single-digit terms."""
    return {"min_terms": settings.terms, "max_terms": settings.terms, "min_digits": 1, "max_digits": 1}


def load_problems(settings: GridSettings, size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` chain_sum problems as rows: ``expression``, ``content`` (the user message), ``answer``,
    ``task``, ``entry`` (reasoning-gym's entry, for the verifier)."""
    from hf_softthink.data import decode_entry, reasoning_gym_dataset

    ds = reasoning_gym_dataset(
        TASK, size=size, seed=seed, config=task_config(settings), thinking_instruction=None
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
