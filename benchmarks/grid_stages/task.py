"""The grid's task: reasoning-gym problems (``countdown`` by default, or ``chain_sum``), their step-by-step
traces (the SFT completions), the held-out splits, the chat prompts, and the out-of-domain texts of the drift
measurement.

Two tasks (``--task``):

* ``countdown`` (default): make a target from ``--terms`` numbers in 1..``--max-value``, each used once, with
  ``+ - *``; e.g. ``7, 5, 1 -> 2``. Its thinking has real alternatives: a problem usually has several
  solutions (which pair to combine first, which operator), and the SFT trace of a problem is drawn at random
  from all of them every time it is shown, so the SFT model learns a distribution over first steps, and
  choosing the step that reaches the target is the hard part::

      <think>7 - 5 = 2, 2 * 1 = 2</think>(7 - 5) * 1

* ``chain_sum`` (the grid before issue 16): a chain of single-digit additions and subtractions, whose trace
  is one fixed chain of digits (nearly deterministic thinking)::

      <think>4 - 1 = 3, 3 + 7 = 10</think>10

Problems come from reasoning-gym's own generators and are graded by its verifiers (``score_answer``); the
distinct problems of one pool are split at random into test, dev and train, so no test or dev problem is in the
training data and the three follow one distribution (drawing the held-out splits first would give them the
generator's most frequent problems).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from .settings import TASKS as TASKS
from .settings import GridSettings

OOD_TASK = "basic_arithmetic"
THINK_START, THINK_END, EOS = "<think>", "</think>", "<|im_end|>"
#: seeds the partition of the distinct problems into test, dev and train
TEST_SEED = 10**6


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


def countdown_solutions(numbers: list[int], target: int) -> list[tuple[str, str]]:
    """Every way to make ``target`` from ``numbers`` (each used once) with ``+ - *``, as Countdown's rules
    have it (every step's result a positive integer): ``(trace, expression)`` pairs, sorted.

    A step combines two of the numbers left (given or made) into one; the trace writes the steps out, the
    expression is the answer reasoning-gym grades. Commutative steps are written once, larger operand first.

    ``[7, 5, 1], 2`` -> ``[('5 * 1 = 5, 7 - 5 = 2', '7 - (5 * 1)'), ('7 * 1 = 7, 7 - 5 = 2', '(7 * 1) - 5'),
    ('7 - 5 = 2, 2 * 1 = 2', '(7 - 5) * 1')]``.
    """
    found: set[tuple[str, str]] = set()

    def wrap(expression: str) -> str:
        return f"({expression})" if " " in expression else expression

    def search(items: list[tuple[int, str]], steps: list[str]) -> None:
        if len(items) == 1:
            if items[0][0] == target:
                found.add((", ".join(steps), items[0][1]))
            return
        for i, j in itertools.permutations(range(len(items)), 2):
            (a, left), (b, right) = items[i], items[j]
            rest = [item for k, item in enumerate(items) if k not in (i, j)]
            for op, value in (("+", a + b), ("-", a - b), ("*", a * b)):
                if (op != "-" and a < b) or value <= 0:
                    continue
                search(rest + [(value, f"{wrap(left)} {op} {wrap(right)}")], steps + [f"{a} {op} {b} = {value}"])

    if len(numbers) < 2:
        raise ValueError(f"countdown needs at least two numbers, got {numbers!r}")
    search([(n, str(n)) for n in numbers], [])
    return sorted(found)


def task_config(settings: GridSettings) -> dict[str, Any]:
    """reasoning-gym's config of the task: ``--terms`` numbers (terms), their range, the target range."""
    if settings.task == "chain_sum":
        return {"min_terms": settings.terms, "max_terms": settings.terms, "min_digits": 1, "max_digits": 1}
    return {
        "min_numbers": settings.terms,
        "max_numbers": settings.terms,
        "min_value": 1,
        "max_value": settings.max_value,
        "min_target": 1,
        "max_target": settings.max_target,
        "operators": ("+", "-", "*"),
    }


def problem_row(settings: GridSettings, row: dict[str, Any]) -> dict[str, Any]:
    """A reasoning-gym row -> the grid's problem: ``key`` (what makes two problems the same), ``content``
    (the user message), ``answer``, ``task``, ``entry`` (for the verifier) and ``solutions`` (the
    ``(trace, answer)`` pairs an SFT completion is drawn from)."""
    from hf_softthink.data import decode_entry

    metadata = decode_entry(row["entry"])["metadata"]
    if settings.task == "chain_sum":
        expression = metadata["expression"]
        trace, answer = chain_trace(expression)
        if answer != row["answer"]:  # the trace must agree with reasoning-gym's oracle
            raise RuntimeError(f"trace of {expression!r} gives {answer}, reasoning-gym {row['answer']}")
        key, content, solutions = expression, f"{expression} =", [(trace, answer)]
    else:
        numbers, target = list(metadata["numbers"]), int(metadata["target"])
        solutions = countdown_solutions(numbers, target)
        if not solutions:
            raise RuntimeError(f"countdown {numbers} -> {target} has no solution under the grid's rules")
        key = f"{sorted(numbers)}->{target}"
        content = f"{', '.join(map(str, numbers))} -> {target}"
    return {
        "key": key,
        "content": row["question"] if settings.full_question else content,
        "answer": row["answer"],
        "task": settings.task,
        "entry": row["entry"],
        "solutions": solutions,
    }


def completion_text(row: dict[str, Any], rng: random.Random | None = None) -> str:
    """What the SFT model learns to write after the generation prompt: one of the row's solutions, drawn with
    ``rng`` (the first without one)."""
    solutions = row["solutions"]
    trace, answer = solutions[0] if rng is None else rng.choice(solutions)
    return f"{THINK_START}{trace}{THINK_END}{answer}{EOS}"


def load_problems(settings: GridSettings, size: int, seed: int) -> list[dict[str, Any]]:
    """The distinct problems (by ``key``) among ``size`` draws of reasoning-gym's generator from ``seed`` on,
    in the order first drawn."""
    from hf_softthink.data import reasoning_gym_dataset

    ds = reasoning_gym_dataset(
        settings.task, size=size, seed=seed, config=task_config(settings), thinking_instruction=None
    )
    rows: dict[str, dict[str, Any]] = {}
    for raw in ds:
        row = problem_row(settings, raw)
        rows.setdefault(row["key"], row)
    return list(rows.values())


def check_solutions(rows: list[dict[str, Any]]) -> None:
    """Grade every solution of ``rows`` with reasoning-gym's verifier: the traces must agree with the oracle."""
    from hf_softthink.data import grade_sample

    for row in rows:
        for trace, answer in row["solutions"]:
            text = f"{THINK_START}{trace}{THINK_END}{answer}"
            if not grade_sample(row, text, think_end=THINK_END).correct:
                raise RuntimeError(f"{row['content']!r}: reasoning-gym rejects the solution {answer!r}")


def build_splits(settings: GridSettings) -> dict[str, list[dict[str, Any]]]:
    """``test`` (the grid), ``dev`` (SFT stopping, choosing settings) and ``train`` (SFT and RL prompts): a
    random partition (seeded) of the distinct problems among ``--pool-size`` draws of the generator, so the
    three splits follow one distribution and share no problem (same ``key``)."""
    pool = load_problems(settings, settings.pool_size, 0)
    random.Random(TEST_SEED).shuffle(pool)
    held_out = settings.test_problems + settings.dev_problems
    if len(pool) <= held_out:
        raise ValueError(
            f"--pool-size {settings.pool_size} gave {len(pool)} distinct {settings.task} problems, not more than "
            f"the {held_out} held out (--test-problems {settings.test_problems}, --dev-problems "
            f"{settings.dev_problems}): draw more (--pool-size), hold out fewer, or widen the task (--max-value, "
            "--max-target, --terms)"
        )
    test, dev, train = pool[: settings.test_problems], pool[settings.test_problems : held_out], pool[held_out:]
    check_solutions(test + dev)
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
