import itertools
import math
import os
import socket
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from hf_softthink.evaluation_metrics import (
    SOFT_PASS_AT_K_METRIC,
    answer_fallback,
    answers_match,
    completion_text,
    extract_answer,
    grade_completion,
    majority_at_k,
    normalize_answer,
    pass_at_k,
    pass_at_k_array,
    summarize,
)

METRIC_DIR = Path(__file__).resolve().parents[1] / "src" / "hf_softthink" / "metrics" / "soft_pass_at_k"


# ------------------------------------------------------------------------------------ pass@k


def _enumerated_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (the first c correct) with a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(any(i < c for i in s) for s in subsets)
    return hits / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_enumerated_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_1_is_the_fraction_correct():
    for n, c in [(1, 0), (1, 1), (10, 3), (2000, 617)]:
        assert pass_at_k(n, c, 1) == pytest.approx(c / n, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("c", [0, 1, 7, 500, 1000, 1990, 1999, 2000])
@pytest.mark.parametrize("k", [1, 10, 100, 1000, 2000])
def test_pass_at_k_large_n_matches_exact_combinatorics(c, k):
    n = 2000
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))  # exact big-int arithmetic
    got = pass_at_k(n, c, k)
    assert math.isfinite(got) and 0.0 <= got <= 1.0
    assert got == pytest.approx(float(exact), rel=1e-10, abs=1e-15)


def test_pass_at_k_tiny_probability_keeps_precision():
    # 1 correct in 10_000, k=1 -> 1e-4 exactly; a naive 1 - prod loses digits, expm1 does not.
    assert pass_at_k(10_000, 1, 1) == pytest.approx(1e-4, rel=1e-12)


def test_pass_at_k_rejects_k_larger_than_n():
    with pytest.raises(ValueError, match="draw at least k=9 samples"):
        pass_at_k(8, 3, 9)


@pytest.mark.parametrize(
    "n,c,k",
    [(5, -1, 1), (5, 6, 1), (0, 0, 1), (5, 2, 0), (5, 2, -3)],
)
def test_pass_at_k_rejects_bad_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_rejects_non_integers():
    with pytest.raises(TypeError):
        pass_at_k(5.0, 2, 1)


def test_pass_at_k_array():
    ns = np.array([[4, 8], [2000, 3]])
    cs = np.array([[1, 0], [10, 3]])
    got = pass_at_k_array(ns, cs, 2)
    assert got.shape == (2, 2)
    for idx in np.ndindex(ns.shape):
        assert got[idx] == pass_at_k(int(ns[idx]), int(cs[idx]), 2)
    with pytest.raises(ValueError, match="same shape"):
        pass_at_k_array([1, 2], [1], 1)


# ------------------------------------------------------------------------- normalise / match


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("1,000", "1000"),
        (" 1,234,567 ", "1234567"),
        ("12.0", "12"),
        ("2.50", "2.5"),
        ("3.05", "3.05"),
        ("42.", "42"),
        ("+5", "5"),
        ("+x", "+x"),
        ("$7$", "7"),
        ("  Paris ", "paris"),
        ("(1, 2)", "(1, 2)"),
        ("1,2345", "1,2345"),
        (None, None),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_thousands_equals_plain():
    assert normalize_answer("1,000") == normalize_answer("1000")


@pytest.mark.parametrize(
    "pred,gold,expected",
    [
        ("1,000", "1000", True),
        ("1000.0", "1000", True),
        ("0.5", "1/2", True),
        ("\\frac{1}{2}", "0.5", True),
        ("1+x^2", "x^2+1", True),
        ("-14282", "-14282", True),
        ("16", "6", False),
        ("sey", "yes", False),  # sympy would call these equal (products of symbols)
        ("Yes", "yes", True),
        (None, "1", False),
        ("", "1", False),
    ],
)
def test_answers_match(pred, gold, expected):
    assert answers_match(pred, gold) is expected


# ------------------------------------------------------------------------- answer extraction


@pytest.mark.parametrize(
    "text,expected",
    [
        ("a \\boxed{1} b </think> so \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),
        ("</think> first \\boxed{3} then \\boxed{4}", "4"),
        ("\\boxed{9} </think> the answer is 12", "12"),
        ("<answer> 42 </answer>", "42"),
        ("</think> <answer>x</answer> \\boxed{7}", "7"),
        ("it is -1,000.5 or maybe 3", "3"),
        ("</think> total: 1,000", "1000"),  # thousands separators removed
        ("</think> 9.36e-18", "9.36e-18"),
        ("no numbers here", None),
        ("12 </think>", None),
        ("\\boxed{15}", "15"),
        ("The answer is 15.", "15"),
        ("I think 3 then 7, so \\boxed{\\frac{1}{2}} and 9", "\\frac{1}{2}"),
        ("\\boxed{x^{2}+1}", "x^{2}+1"),
        ("<answer>3</answer> but \\boxed{5}", "5"),
        ("We have 1,000 apples", "1000"),
        ("costs -2.5 dollars", "-2.5"),
        ("<think>maybe 99</think>It is 7.", "7"),
        ("<think>a</think>b</think>\\boxed{8}", "8"),
        ("\\boxed{}", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_fallbacks():
    assert extract_answer("</think>  Paris \n", fallback="text") == "Paris"
    assert extract_answer("</think> Paris 2", fallback=None) is None
    with pytest.raises(ValueError, match="fallback"):
        extract_answer("x", fallback="bogus")


def test_extract_answer_boxes_and_chat_messages():
    assert extract_answer("\\boxed{5} then \\boxed{6") == "5"  # a truncated last box is skipped
    assert extract_answer("\\boxed {7}") == "7"
    assert extract_answer("\\fbox{8}") == "8"
    assert extract_answer("\\boxed{} <answer>9</answer>") == "9"  # an empty box is no answer
    assert extract_answer("\\boxed{ }") is None
    chat = [{"role": "user", "content": "q 1"}, {"role": "assistant", "content": "</think> 12"}]
    assert extract_answer(chat) == "12"
    assert extract_answer([{"role": "assistant", "content": "15", "reasoning_content": "8+7"}]) == "15"
    assert completion_text({"role": "assistant", "content": "x"}) == "x"


def test_answer_fallback():
    assert answer_fallback("1,000") == "number"
    assert answer_fallback(72) == "number"
    assert answer_fallback("-3.5") == "number"
    assert answer_fallback("x^2+1") == "text"
    assert answer_fallback("3 + 4 * 2") == "text"
    assert answer_fallback(None) == "text"


@pytest.mark.parametrize(
    "completion,gold,answer,correct",
    [
        ("</think> 1,000", "1000", "1000", True),
        ("</think> \\boxed{1,000}", 1000, "1,000", True),
        ("</think> 1000", "1,000", "1000", True),
        ("</think> 1000.0", "1000", "1000.0", True),
        ("</think> \\boxed{+5}", "5", "+5", True),
        ("I get 1,000 </think> 1,001", "1000", "1001", False),
        ("</think> \\boxed{\\frac{1}{2}}", "0.5", "\\frac{1}{2}", True),
        ("</think> x^2+1", "1+x^2", "x^2+1", True),
        ("</think> so 48+24 is 72", "Natalia sold 48+24 #### 72", "72", True),
        ("</think> yes", "sey", "yes", False),
        ("</think>", "4", None, False),
    ],
)
def test_grade_completion(completion, gold, answer, correct):
    assert grade_completion(completion, gold) == (answer, correct)


# ------------------------------------------------------------------------------------ maj@k


def test_majority_at_k_basic():
    answers = ["3", "5", "5", "3", "5"]
    correct = [False, True, True, False, True]
    assert majority_at_k(answers, correct, 5) == 1.0  # 5 wins 3:2
    assert majority_at_k(answers, correct, 1) == 0.0  # only "3" votes


def test_majority_at_k_tie_goes_to_first_occurrence():
    answers = ["3", "5", "5", "3"]
    assert majority_at_k(answers, [False, True, True, False], 4) == 0.0  # 2:2 -> "3" came first
    assert majority_at_k(answers, [True, False, False, True], 4) == 1.0
    assert majority_at_k(["5", "3"], [True, False], 2) == 1.0


def test_majority_at_k_votes_on_normalised_answers():
    answers = ["7", "1,000", "1000", "1000.0"]
    correct = [False, True, True, True]
    assert majority_at_k(answers, correct, 4) == 1.0


def test_majority_at_k_missing_answers_do_not_vote():
    assert majority_at_k([None, None, "4"], [False, False, True], 3) == 1.0
    assert majority_at_k([None, "", None], [False, False, False], 3) == 0.0


def test_majority_at_k_errors():
    with pytest.raises(ValueError, match="draw at least k=3"):
        majority_at_k(["1", "2"], [True, False], 3)
    with pytest.raises(ValueError, match="same length"):
        majority_at_k(["1", "2"], [True], 1)
    with pytest.raises(ValueError, match="k must be"):
        majority_at_k(["1"], [True], 0)


# ------------------------------------------------------------------------------- summarize


def test_summarize_plain_lists():
    out = summarize([[True, False, False, False], [False, False, False, False]], ks=[1, 2])
    assert out["num_problems"] == 2
    assert out["num_samples"] == 8
    assert out["pass@1"] == pytest.approx((0.25 + 0.0) / 2)
    assert out["pass@2"] == pytest.approx((pass_at_k(4, 1, 2) + 0.0) / 2)
    assert "maj@1" not in out and "mean_thinking_tokens" not in out


def test_summarize_with_answers_and_tokens():
    records = [
        {
            "correct": [True, True, False],
            "answers": ["4", "4", "5"],
            "thinking_tokens": [10, 20, 30],
            "answer_tokens": [1, 2, 3],
        },
        {
            "correct": [False, False, True],
            "answers": ["1", "1", "2"],
            "thinking_tokens": [40, 50, 60],
            "answer_tokens": [4, 5, 6],
        },
    ]
    out = summarize(records, ks=3)
    assert out["pass@3"] == 1.0
    assert out["maj@3"] == pytest.approx(0.5)
    assert out["mean_thinking_tokens"] == pytest.approx(35.0)
    assert out["mean_answer_tokens"] == pytest.approx(3.5)


def test_summarize_errors():
    with pytest.raises(ValueError, match="empty"):
        summarize([], ks=[1])
    with pytest.raises(ValueError, match="problem 1 has only 2.*draw at least 4"):
        summarize([[True] * 4, [True, False]], ks=[1, 4])
    with pytest.raises(ValueError, match="no samples"):
        summarize([[True], []], ks=[1])
    with pytest.raises(ValueError, match="'answers' has 1 entries"):
        summarize([{"correct": [True, False], "answers": ["1"]}], ks=[1])
    with pytest.raises(ValueError, match="no 'correct' key"):
        summarize([{"answers": ["1"]}], ks=[1])
    with pytest.raises(ValueError, match=">= 1"):
        summarize([[True]], ks=[0])


# ----------------------------------------------------------------------- evaluate module


def test_evaluate_metric_module_loads_offline(monkeypatch, tmp_path):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True, raising=False)

    def no_network(*args, **kwargs):
        raise OSError("network access attempted during evaluate.load")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert os.path.isfile(METRIC_DIR / "soft_pass_at_k.py")
    assert Path(SOFT_PASS_AT_K_METRIC) == METRIC_DIR
    metric = evaluate.load(SOFT_PASS_AT_K_METRIC)
    out = metric.compute(
        predictions=[
            ["4", "5", "4", "6"],
            ["x^2+1", "2", "x^2+1", "2"],
            ["thinking </think> \\boxed{1,000}", "<answer>999</answer>", "7", "7"],
        ],
        references=["4", "x^2+1", "1000"],
        k=[1, 4],
    )
    assert out["num_problems"] == 3
    assert out["pass@1"] == pytest.approx((2 / 4 + 2 / 4 + 1 / 4) / 3)
    assert out["pass@4"] == 1.0
    # maj@4: "4" wins (correct); "x^2+1" and "2" tie 2:2 -> the first seen ("x^2+1") wins (correct);
    # "7" wins (wrong).
    assert out["maj@4"] == pytest.approx(2 / 3)
    assert out["maj@1"] == 1.0

    # Votes are grouped by normalised string, not by mathematical equivalence:
    # "x^2+1" and "1+x^2" are two different votes, so "2" wins 2:1:1.
    out = metric.compute(predictions=[["x^2+1", "2", "1+x^2", "2"]], references=["x^2+1"], k=4)
    assert out["pass@4"] == 1.0 and out["maj@4"] == 0.0

    with pytest.raises(ValueError, match="draw at least"):
        metric.compute(predictions=[["1"]], references=["1"], k=2)
