"""soft_pass_at_k: pass@k (unbiased estimator) and maj@k over sampled answers.

An ``evaluate`` metric module. Load it offline from its folder::

    import evaluate
    from hf_softthink.evaluation_metrics import SOFT_PASS_AT_K_METRIC  # this folder's path
    metric = evaluate.load(SOFT_PASS_AT_K_METRIC)
    metric.compute(predictions=[["4", "5"], ["x^2+1", "1+x^2"]], references=["4", "x^2+1"], k=[1, 2])
    # {'pass@1': 0.75, 'pass@2': 1.0, 'maj@1': 1.0, 'maj@2': 1.0, 'num_problems': 2, ...}

The scoring lives in ``hf_softthink.evaluation_metrics`` (installed with the package); this
file only adapts it to the ``evaluate`` API.
"""

import datasets
import evaluate

from hf_softthink.evaluation_metrics import grade_completion, summarize

_CITATION = """\
@article{chen2021codex,
  title={Evaluating Large Language Models Trained on Code},
  author={Chen, Mark and Tworek, Jerry and Jun, Heewoo and others},
  journal={arXiv preprint arXiv:2107.03374},
  year={2021}
}
"""

_DESCRIPTION = """\
pass@k is the probability that at least one of k samples is correct, estimated without bias
from n >= k samples per problem with c correct as 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).
maj@k is the accuracy of the majority-voted answer among the first k samples: votes are grouped
by normalised answer string (not by mathematical equivalence), ties go to the answer seen first,
and samples without an answer do not vote. A sample is correct when its final
answer (the content of the last \\boxed{...} or <answer>...</answer> after the last </think>,
else the last number when the reference is a number, else the text itself) matches the reference:
equal after normalisation ("1,000" == "1000", "3.0" == "3"), or mathematically equivalent according
to math_verify (hf_softthink.evaluation_metrics.grade_completion, the package's one grader).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[str]]`): for each problem, the n sampled answers (or full completions).
    references (`list[str]`): for each problem, the gold answer.
    k (`int` or `list[int]`, default `[1]`): the k values; each must be <= the number of samples
        of every problem.
Returns:
    `pass@{k}` and `maj@{k}` for each k (means over problems), `num_problems`, `num_samples`,
    `min_samples_per_problem`.
Examples:
    >>> from hf_softthink.evaluation_metrics import SOFT_PASS_AT_K_METRIC
    >>> metric = evaluate.load(SOFT_PASS_AT_K_METRIC)
    >>> metric.compute(predictions=[["4", "5"]], references=["4"], k=[1, 2])["pass@2"]
    1.0
"""

try:
    _STRING_LIST = datasets.List(datasets.Value("string"))
except AttributeError:  # datasets < 4
    _STRING_LIST = datasets.Sequence(datasets.Value("string"))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SoftPassAtK(evaluate.Metric):
    """pass@k and maj@k over n sampled answers per problem."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": _STRING_LIST, "references": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/2107.03374"],
        )

    def _compute(self, predictions, references, k=None):
        ks = [1] if k is None else ([k] if isinstance(k, int) else list(k))
        if len(predictions) == 0:
            raise ValueError("soft_pass_at_k: no predictions; pass one list of sampled answers per problem")
        records = []
        for samples, gold in zip(predictions, references, strict=True):
            graded = [(None, False) if s is None else grade_completion(s, gold) for s in samples]
            records.append({"correct": [c for _, c in graded], "answers": [a for a, _ in graded]})
        return summarize(records, ks)
