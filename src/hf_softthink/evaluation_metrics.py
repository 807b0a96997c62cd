"""Pure scoring and statistics for evaluating sampled completions (no generation here).

* :func:`pass_at_k` -- the unbiased pass@k estimator of Chen et al. 2021 (arXiv 2107.03374).
* :func:`majority_at_k` -- maj@k (self-consistency / majority voting over the first k samples).
* :func:`normalize_answer` and :func:`answers_match` -- answer comparison (string normalisation,
  then ``math_verify`` for mathematical equivalence).
* :func:`summarize` -- per-problem sample records -> pass@k, maj@k and mean token counts.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "pass_at_k",
    "pass_at_k_array",
    "majority_at_k",
    "normalize_answer",
    "answers_match",
    "summarize",
]


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
# answer normalisation and comparison
# --------------------------------------------------------------------------------------------

_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL_ZEROS_RE = re.compile(r"^([+-]?\d+)\.(\d*?)0*$")
_WS_RE = re.compile(r"\s+")
_PLAIN_WORDS_RE = re.compile(r"^[a-z][a-z\s'\-]*$", re.IGNORECASE)


def normalize_answer(answer: str | None) -> str | None:
    """Canonical string form of an answer, for exact comparison and majority voting.

    Strips surrounding whitespace and ``$`` signs, collapses inner whitespace, removes thousands
    separators (``"1,000" -> "1000"``), drops trailing decimal zeros (``"3.0" -> "3"``,
    ``"2.50" -> "2.5"``) and a trailing full stop after a number (``"42." -> "42"``), and lowercases.
    ``None`` stays ``None``.
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
    return s.lower()


def _math_verify_timeout() -> int | None:
    # math_verify's timeouts use signal.alarm, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse_math(text: str) -> list:
    from math_verify import parse

    timeout = _math_verify_timeout()
    if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
        parsed = parse(text, parsing_timeout=timeout)
    else:
        # A bare answer: wrap it so LaTeX extraction sees it ("x^2+1" is not found otherwise).
        parsed = parse(f"${text}$", parsing_timeout=timeout)
        if not parsed:
            parsed = parse(text, parsing_timeout=timeout)
    return parsed


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

    try:
        gold_parsed = _parse_math(str(gold))
        pred_parsed = _parse_math(str(prediction))
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=_math_verify_timeout()))
    except Exception:  # math_verify raises on pathological input or timeout: not a match
        return False


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


def _as_ks(ks: int | Iterable[int]) -> list[int]:
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        out = [int(ks)]
    else:
        out = [int(k) for k in ks]
    if not out:
        raise ValueError("summarize: ks is empty; pass e.g. ks=[1, 8]")
    bad = [k for k in out if k < 1]
    if bad:
        raise ValueError(f"summarize: every k must be >= 1, got {bad}")
    return sorted(set(out))


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
    ks_list = _as_ks(ks)

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
