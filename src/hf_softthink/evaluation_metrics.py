"""Pure scoring and statistics for evaluating sampled completions (no generation here).

* :func:`pass_at_k` -- the unbiased pass@k estimator of Chen et al. 2021 (arXiv 2107.03374).
* :func:`majority_at_k` -- maj@k (self-consistency / majority voting over the first k samples).
* :func:`completion_text`, :func:`extract_answer` -- the final answer of a completion (the one
  implementation: ``rewards``, ``data``, ``evaluation`` and the ``evaluate`` metric all use it).
* :func:`normalize_answer`, :func:`answers_match`, :func:`grade_completion` -- answer comparison
  (string normalisation, then ``math_verify`` for mathematical equivalence).
* :func:`summarize` -- per-problem sample records -> pass@k, maj@k and mean token counts.

The same scoring is an ``evaluate`` metric module, loadable offline:
``evaluate.load(SOFT_PASS_AT_K_METRIC)``.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "DEFAULT_THINK_END",
    "SOFT_PASS_AT_K_METRIC",
    "answer_fallback",
    "answer_region",
    "answers_match",
    "completion_text",
    "extract_answer",
    "gold_answer_text",
    "grade_completion",
    "is_number",
    "majority_at_k",
    "normalize_answer",
    "pass_at_k",
    "pass_at_k_array",
    "parse_ks",
    "summarize",
]

#: folder of the ``evaluate`` metric module ``soft_pass_at_k``: ``evaluate.load(SOFT_PASS_AT_K_METRIC)``
SOFT_PASS_AT_K_METRIC = str(Path(__file__).resolve().parent / "metrics" / "soft_pass_at_k")


# --------------------------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------------------------


def _check_counts(n: int, c: int, k: int) -> None:
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"pass@k: {name} must be an int, got {type(value).__name__} ({value!r})")
    if n < 1:
        raise ValueError(f"pass@k: n (number of samples) must be >= 1, got n={n}")
    if k < 1:
        raise ValueError(f"pass@k: k must be >= 1, got k={k}")
    if c < 0 or c > n:
        raise ValueError(f"pass@k: c (number of correct samples) must satisfy 0 <= c <= n, got c={c}, n={n}")
    if k > n:
        raise ValueError(
            f"pass@{k} needs at least k samples per problem but only n={n} were drawn: "
            f"draw at least k={k} samples (e.g. num_return_sequences >= {k}) or lower k."
        )


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from ``n`` samples of which ``c`` are correct.

    ``pass@k = 1 - C(n - c, k) / C(n, k)`` (Chen et al. 2021, arXiv 2107.03374): the probability
    that at least one of ``k`` samples drawn without replacement from the ``n`` is correct.
    It is computed in log space as ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``, so it is exact to
    float precision and never overflows, even for ``n`` in the thousands.

    Raises:
        ValueError: ``k > n`` (draw at least ``k`` samples), ``n < 1``, ``k < 1``, ``c`` outside
            ``[0, n]``.
    """
    _check_counts(n, c, k)
    n, c, k = int(n), int(c), int(k)
    if c == 0:
        return 0.0
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    # log C(n-c, k) / C(n, k) = sum_{i=n-c+1}^{n} log(1 - k/i)
    log_fail = math.fsum(math.log1p(-k / i) for i in range(n - c + 1, n + 1))
    return float(-math.expm1(log_fail))


def pass_at_k_array(ns: Sequence[int] | np.ndarray, cs: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Vectorised :func:`pass_at_k`: one estimate per (n, c) pair, as a float64 array."""
    ns_arr = np.asarray(ns)
    cs_arr = np.asarray(cs)
    if ns_arr.shape != cs_arr.shape:
        raise ValueError(
            f"pass_at_k_array: ns and cs must have the same shape, got {ns_arr.shape} and {cs_arr.shape}"
        )
    flat = [pass_at_k(int(n), int(c), k) for n, c in zip(ns_arr.ravel(), cs_arr.ravel(), strict=True)]
    return np.asarray(flat, dtype=np.float64).reshape(ns_arr.shape)


# --------------------------------------------------------------------------------------------
# completions and answers: the one implementation of answer extraction and comparison
# --------------------------------------------------------------------------------------------

DEFAULT_THINK_END = "</think>"

_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_BOXED_START_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
# A number: thousands-grouped ("1,000,000.5") or plain ("-12", "3.25", ".5"), then "e-5" or "/4".
_NUMBER_RE = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+|/\d+)?")
_GROUPED_NUMBER_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL_ZEROS_RE = re.compile(r"^([+-]?\d+)\.(\d*?)0*$")
_WS_RE = re.compile(r"\s+")
_PLAIN_WORDS_RE = re.compile(r"^[a-z][a-z\s'\-]*$", re.IGNORECASE)

Fallback = Literal["number", "text"]


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # multimodal style: [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    raise TypeError(f"Unsupported message content of type {type(content).__name__}.")


def completion_text(completion: Any, think_end: str | None = DEFAULT_THINK_END) -> str:
    """The text of one completion: a string, or a chat message list (assistant turns joined).

    If a message carries its reasoning in a separate field (``reasoning_content`` /
    ``reasoning`` / ``thinking``, as some chat-template parsers produce), it is put back in
    front of the content, closed by ``think_end``, so the text looks like the raw trace.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, Sequence) and all(isinstance(m, Mapping) for m in completion):
        messages = [m for m in completion if m.get("role", "assistant") == "assistant"]
        if not messages:
            messages = list(completion)
        out = []
        for m in messages:
            reasoning = next((m[k] for k in _REASONING_KEYS if isinstance(m.get(k), str) and m[k]), None)
            if reasoning is not None:
                out.append(reasoning + (think_end or "\n"))
            out.append(_content_text(m.get("content")))
        return "".join(out)
    raise TypeError(
        "Each completion must be a string or a list of chat messages like "
        f'[{{"role": "assistant", "content": "..."}}]; got {type(completion).__name__}.'
    )


def answer_region(text: str, think_end: str | None = DEFAULT_THINK_END) -> str:
    """The text after the last ``think_end`` (the whole text when it does not occur or is ``None``)."""
    if think_end and think_end in text:
        return text.rsplit(think_end, 1)[1]
    return text


def _last_boxed(text: str) -> str | None:
    """Stripped content of the last balanced ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces), or None.

    An unbalanced (truncated) last box is skipped in favour of the previous balanced one.
    """
    starts = [m.end() for m in _BOXED_START_RE.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


def is_number(answer: str | None) -> bool:
    """Whether ``answer`` is a plain number: ``-12``, ``1,000``, ``3.50``, ``3/4``, ``9.36e-18``."""
    if answer is None:
        return False
    s = str(answer).strip()
    if _NUMBER_RE.fullmatch(s):
        return True
    try:
        Decimal(s.replace(",", ""))
    except (InvalidOperation, ValueError):
        return False
    return True


def answer_fallback(gold: Any) -> Fallback:
    """The :func:`extract_answer` fallback suited to a gold answer.

    ``"number"`` when the gold is a plain number (the last number of the answer region is taken
    when there is no ``\\boxed{}`` / ``<answer>``), else ``"text"`` (the whole answer region).
    """
    return "number" if gold is not None and not isinstance(gold, bool) and is_number(str(gold)) else "text"


def extract_answer(
    completion: Any,
    think_end: str | None = DEFAULT_THINK_END,
    *,
    fallback: Fallback | None = "number",
) -> str | None:
    r"""The final answer in a completion, or ``None`` if there is none.

    ``completion`` is a string or a chat message list (:func:`completion_text`).

    1. If ``think_end`` occurs, only the text after its **last** occurrence is considered.
    2. The content of the last balanced ``\boxed{...}`` (``\fbox`` too), if non-empty;
    3. else the content of the last ``<answer>...</answer>``, if non-empty;
    4. else ``fallback="number"``: the last number, thousands separators removed
       (``-3``, ``2.5``, ``3/4``, ``9.36e-18``, ``1,000`` -> ``"1000"``);
       ``fallback="text"``: the whole stripped region; ``fallback=None``: nothing.

    Example:
        >>> extract_answer("<think>maybe 3</think>So \\boxed{\\frac{1}{2}}.")
        '\\frac{1}{2}'
        >>> extract_answer("<answer> 42 </answer>")
        '42'
        >>> extract_answer("The total is 1,000 apples.")
        '1000'
        >>> extract_answer("</think> Paris", fallback="text")
        'Paris'
        >>> extract_answer("no idea") is None
        True
    """
    if fallback not in ("number", "text", None):
        raise ValueError(f"fallback must be 'number', 'text' or None, got {fallback!r}")
    region = answer_region(completion_text(completion, think_end), think_end)
    boxed = _last_boxed(region)
    if boxed:
        return boxed
    tagged = [t.strip() for t in _ANSWER_TAG_RE.findall(region)]
    if tagged and tagged[-1]:
        return tagged[-1]
    if fallback == "number":
        numbers = _NUMBER_RE.findall(region)
        return numbers[-1].replace(",", "") if numbers else None
    if fallback == "text":
        return region.strip() or None
    return None


def normalize_answer(answer: str | None) -> str | None:
    """Canonical string form of an answer, for exact comparison and majority voting.

    Strips surrounding whitespace and ``$`` signs, collapses inner whitespace, removes thousands
    separators (``"1,000" -> "1000"``), drops trailing decimal zeros (``"3.0" -> "3"``,
    ``"2.50" -> "2.5"``), a trailing full stop after a number (``"42." -> "42"``) and a leading ``+``
    of a number (``"+5" -> "5"``), and lowercases. ``None`` stays ``None``.
    """
    if answer is None:
        return None
    s = str(answer).strip().strip("$").strip()
    s = _WS_RE.sub(" ", s)
    s = _THOUSANDS_RE.sub("", s)
    if s.endswith(".") and re.fullmatch(r"[+-]?\d+(\.\d+)?\.", s):
        s = s[:-1]
    m = _DECIMAL_ZEROS_RE.match(s)
    if m:
        s = m.group(1) + ("." + m.group(2) if m.group(2) else "")
    if s.startswith("+") and _NUMBER_RE.fullmatch(s):
        s = s[1:]
    return s.lower()


def _math_verify_timeout() -> int | None:
    # math_verify's timeouts use signal.alarm, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse_math(text: str) -> list:
    from math_verify import parse

    timeout = _math_verify_timeout()
    text = text.strip()
    if _GROUPED_NUMBER_RE.fullmatch(text):
        text = text.replace(",", "")
    try:
        if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
            return parse(text, parsing_timeout=timeout)
        # A bare answer: wrap it so LaTeX extraction sees it ("x^2+1" is not found otherwise).
        return parse(f"${text}$", parsing_timeout=timeout) or parse(text, parsing_timeout=timeout)
    except Exception:  # math_verify raises on pathological input despite raise_on_error=False
        return []


def answers_match(prediction: str | None, gold: str | None) -> bool:
    """True when ``prediction`` is the same answer as ``gold``.

    First the normalised strings are compared (:func:`normalize_answer`); then ``math_verify``
    decides mathematical equivalence (``"1/2"`` vs ``"0.5"``, ``"\\frac{1}{2}"``, ``"1+x^2"`` vs
    ``"x^2+1"``). Answers that are plain words (``"yes"``, ``"Paris"``) are compared as strings
    only: sympy would read them as commutative products of symbols (``"yes" == "sey"``).
    """
    if prediction is None or gold is None:
        return False
    p, g = normalize_answer(prediction), normalize_answer(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    if _PLAIN_WORDS_RE.match(p) or _PLAIN_WORDS_RE.match(g):
        return False
    from math_verify import verify

    gold_parsed = _parse_math(str(gold))
    pred_parsed = _parse_math(str(prediction))
    if not gold_parsed or not pred_parsed:
        return False
    try:
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=_math_verify_timeout()))
    except Exception:  # math_verify raises on pathological input or timeout: not a match
        return False


def gold_answer_text(gold: Any) -> str:
    """The gold answer as a string; a GSM8K-style solution ``"... #### 72"`` is reduced to ``"72"``."""
    text = str(gold)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    return text.strip()


def grade_completion(
    completion: Any, gold: Any, *, think_end: str | None = DEFAULT_THINK_END
) -> tuple[str | None, bool]:
    """``(answer, correct)`` for one completion against a gold answer (math-verify comparison).

    The answer is :func:`extract_answer` with the fallback that suits the gold
    (:func:`answer_fallback`: the last number for numeric golds, the whole answer region
    otherwise); ``correct`` is :func:`answers_match` against :func:`gold_answer_text` of ``gold``.
    So ``"1,000"`` == ``1000``, ``\\frac{1}{2}`` == ``0.5``, ``"15.0"`` == ``15``; numbers inside the
    thinking (before the last ``think_end``) do not count.
    """
    gold_text = gold_answer_text(gold)
    answer = extract_answer(completion, think_end, fallback=answer_fallback(gold_text))
    return answer, answers_match(answer, gold_text)


# --------------------------------------------------------------------------------------------
# maj@k
# --------------------------------------------------------------------------------------------


def majority_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """maj@k for one problem: majority vote over the first ``k`` samples.

    Definition: take the first ``k`` samples, normalise their answers with
    :func:`normalize_answer`, and pick the most common normalised answer; ties go to the answer
    that occurs first. Samples with no answer (``None`` or empty) do not vote. The result is
    ``1.0`` if the winning answer is correct (the ``correct`` flag of its first occurrence),
    else ``0.0`` (also ``0.0`` when none of the k samples has an answer).

    Args:
        answers: one extracted answer per sample (``None`` when nothing could be extracted).
        correct: one correctness flag per sample, aligned with ``answers``.
        k: how many samples (from the start) take part in the vote.
    """
    if len(answers) != len(correct):
        raise ValueError(
            f"maj@k: answers and correct must have the same length, got {len(answers)} and {len(correct)}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"maj@k: k must be an int >= 1, got {k!r}")
    if k > len(answers):
        raise ValueError(
            f"maj@{k} needs at least k samples but only {len(answers)} were given: "
            f"draw at least k={k} samples or lower k."
        )
    normalised = [normalize_answer(a) for a in answers[:k]]
    votes: Counter[str] = Counter()
    first_index: dict[str, int] = {}
    for i, a in enumerate(normalised):
        if not a:
            continue
        votes[a] += 1
        first_index.setdefault(a, i)
    if not votes:
        return 0.0
    top = max(votes.values())
    winner = min((a for a, v in votes.items() if v == top), key=first_index.__getitem__)
    return 1.0 if bool(correct[first_index[winner]]) else 0.0


# --------------------------------------------------------------------------------------------
# summary over problems
# --------------------------------------------------------------------------------------------


def parse_ks(ks: int | str | Iterable[int], samples: int | None = None) -> list[int]:
    """The k values of pass@k / maj@k (an int, ``"1,8,32"`` or a list), sorted and deduplicated.

    With ``samples``, every k is checked against the number of samples per problem.

    Raises:
        ValueError: a k that is not a positive integer, or larger than ``samples`` (pass@k needs at least
            k samples per problem).
    """
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    if isinstance(ks, str):
        try:
            values = [int(part) for part in ks.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"k values must be integers separated by commas (e.g. 1,8,32), got {ks!r}"
            ) from None
    elif isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        values = [int(ks)]
    else:
        values = [int(k) for k in ks]
    if not values:
        raise ValueError("No k values given; pass e.g. ks=[1, 8]")
    bad = [k for k in values if k < 1]
    if bad:
        raise ValueError(f"k values must be >= 1, got {bad}")
    too_large = [k for k in values if samples is not None and k > samples]
    if too_large:
        raise ValueError(
            f"k={max(too_large)} is larger than the number of samples per problem ({samples}): pass@k "
            f"needs at least k samples. Draw more samples (samples >= {max(too_large)}, --samples on the "
            "command line) or lower k."
        )
    return sorted(set(values))


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarize(
    records: Sequence[Sequence[bool] | Mapping[str, Any]],
    ks: int | Iterable[int] = (1,),
) -> dict[str, Any]:
    """Aggregate per-problem sample results into pass@k, maj@k and token statistics.

    Args:
        records: one entry per problem. Either a list of per-sample correctness flags, or a
            mapping with keys

            * ``"correct"`` (required): list of bools, one per sample;
            * ``"answers"`` (optional): list of extracted answers (``str | None``) -> maj@k;
            * ``"thinking_tokens"`` / ``"answer_tokens"`` (optional): lists of ints, one per
              sample (tokens spent thinking / after the think-end token).
        ks: the k values (an int or an iterable of ints).

    Returns:
        ``{"num_problems", "num_samples" (total), "min_samples_per_problem",
        "pass@k" for each k (mean over problems of the unbiased estimator),
        "maj@k" for each k (only if every record has "answers"),
        "mean_thinking_tokens", "mean_answer_tokens" (over all samples; only if present)}``.

    Raises:
        ValueError: no records, a problem with no samples, a k larger than a problem's number
            of samples (the message names the problem and the fix), mismatched list lengths.
    """
    if records is None or len(records) == 0:
        raise ValueError(
            "summarize: records is empty; pass one entry (list of per-sample correctness) per problem"
        )
    ks_list = parse_ks(ks)

    norm: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        if isinstance(rec, Mapping):
            if "correct" not in rec:
                raise ValueError(
                    f"summarize: record {i} has no 'correct' key (keys: {sorted(rec)}); "
                    "each record needs 'correct': list of per-sample bools"
                )
            entry = dict(rec)
        else:
            entry = {"correct": rec}
        correct = [bool(x) for x in entry["correct"]]
        if not correct:
            raise ValueError(f"summarize: problem {i} has no samples")
        entry["correct"] = correct
        for key in ("answers", "thinking_tokens", "answer_tokens"):
            if entry.get(key) is not None and len(entry[key]) != len(correct):
                raise ValueError(
                    f"summarize: problem {i}: '{key}' has {len(entry[key])} entries but 'correct' has "
                    f"{len(correct)}; give one per sample"
                )
        norm.append(entry)

    min_n = min(len(e["correct"]) for e in norm)
    if max(ks_list) > min_n:
        worst = min(range(len(norm)), key=lambda j: len(norm[j]["correct"]))
        raise ValueError(
            f"summarize: pass@{max(ks_list)} needs at least {max(ks_list)} samples per problem, but problem "
            f"{worst} has only {min_n}: draw at least {max(ks_list)} samples per problem or lower k"
        )

    out: dict[str, Any] = {
        "num_problems": len(norm),
        "num_samples": sum(len(e["correct"]) for e in norm),
        "min_samples_per_problem": min_n,
    }
    for k in ks_list:
        out[f"pass@{k}"] = float(np.mean([pass_at_k(len(e["correct"]), sum(e["correct"]), k) for e in norm]))
    if all(e.get("answers") is not None for e in norm):
        for k in ks_list:
            out[f"maj@{k}"] = float(np.mean([majority_at_k(e["answers"], e["correct"], k) for e in norm]))
    for key in ("thinking_tokens", "answer_tokens"):
        values = [float(t) for e in norm if e.get(key) is not None for t in e[key]]
        if values:
            out[f"mean_{key}"] = _mean_or_none(values)
    return out
