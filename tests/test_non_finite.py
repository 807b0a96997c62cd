"""Nothing non-finite flows silently through the soft loop (issue 11, class 1).

Two classes are walked: logits processors (and models) that produce NaN / inf / all -inf scores at some
step, in every phase of the loop; and config values at and beyond what float32 represents. Either the
value is refused with an error naming the field, or generation runs and every output is finite.
"""

import math

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from hf_softthink import NonFiniteError, SoftThinkingConfig, enable_soft_thinking
from hf_softthink.models import tiny_model

PROMPT = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])


class Broken(LogitsProcessor):
    """From step `start` on, damages the scores of `rows` as `kind` says."""

    def __init__(self, kind: str, start: int = 0, rows=(0, 1)):
        self.kind, self.start, self.rows, self.calls = kind, start, list(rows), 0

    def __call__(self, input_ids, scores):
        step, self.calls = self.calls, self.calls + 1
        if step < self.start:
            return scores
        scores = scores.clone()
        if self.kind == "all -inf":
            scores[self.rows] = -math.inf
        elif self.kind == "all nan":
            scores[self.rows] = math.nan
        elif self.kind == "one nan":
            scores[self.rows, 3] = math.nan
        elif self.kind == "one +inf":
            scores[self.rows, 3] = math.inf
        return scores


@pytest.fixture(scope="module")
def model():
    return enable_soft_thinking(tiny_model("llama", seed=0))


def generate(model, cfg, processors=(), **kwargs):
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0, **kwargs}
    return model.generate(input_ids=PROMPT, attention_mask=torch.ones_like(PROMPT), soft_thinking=cfg,
                          logits_processor=LogitsProcessorList(processors), return_dict_in_generate=True, **kwargs)


SCENARIOS = {
    "soft greedy": (SoftThinkingConfig(think_end=None), {}),
    "soft sampled, gumbel": (SoftThinkingConfig(think_end=None, noise="gumbel"), {"do_sample": True}),
    "soft, dirichlet": (SoftThinkingConfig(think_end=None, noise="dirichlet"), {}),
    "soft, gaussian": (SoftThinkingConfig(think_end=None, noise="gaussian"), {}),
    "full vocabulary": (SoftThinkingConfig(think_end=None, max_topk=None, top_k=None, top_p=1.0, min_p=0.0), {}),
    "switch mode, sampled": (SoftThinkingConfig(think_end=None, mode="switch", switch_window=1), {"do_sample": True}),
    "answer phase, sampled": (SoftThinkingConfig(think_end=262, max_thinking_tokens=1), {"do_sample": True}),
    "answer phase, greedy": (SoftThinkingConfig(think_end=262, max_thinking_tokens=1), {}),
    "forced think-end step": (SoftThinkingConfig(think_end=262, max_thinking_tokens=2), {}),
}


@pytest.mark.parametrize("kind", ["all -inf", "all nan", "one nan", "one +inf"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_processor_producing_non_finite_scores_fails_at_its_step_naming_it(model, scenario, kind):
    cfg, sampling = SCENARIOS[scenario]
    start = 2
    with pytest.raises(NonFiniteError, match=rf"logits processor Broken .*at generated step {start} \(batch rows \[1\]\)"):
        generate(model, cfg, [Broken(kind, start=start, rows=[1])], **sampling)


@pytest.mark.parametrize("kind", ["all -inf", "all nan", "one +inf"])
def test_plain_sampling_also_fails_on_those_scores(model, kind):
    """The bar soft thinking must meet: plain generate(do_sample=True) raises too."""
    with pytest.raises(RuntimeError, match="probability tensor contains"):
        model.generate(input_ids=PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=3, do_sample=True,
                       logits_processor=LogitsProcessorList([Broken(kind)]), pad_token_id=0)


def test_nan_logits_from_the_model_are_reported_as_such(model):
    def poison(module, args, output):
        output.logits[1, -1, 5] = math.nan
        return output

    handle = model.register_forward_hook(poison)
    try:
        with pytest.raises(NonFiniteError, match="model's logits contain NaN or inf at generated step 0"):
            generate(model, SoftThinkingConfig(think_end=None))
    finally:
        handle.remove()


def test_a_nan_embedding_row_is_caught_before_it_is_fed():
    model = enable_soft_thinking(tiny_model("llama", seed=0))  # untied: the logits stay finite
    first = generate(model, SoftThinkingConfig(think_end=None, max_topk=2), max_new_tokens=1)
    with torch.no_grad():
        model.get_input_embeddings().weight[first.soft_topk_ids[1, 0, 1]] = math.nan
    with pytest.raises(NonFiniteError, match=r"embedding fed back is NaN or inf at generated step 0"):
        generate(model, SoftThinkingConfig(think_end=None, max_topk=2))


EXTREMES = [-1.0, 0.0, 5e-324, 1e-45, 1e-39, 1.1754943508222875e-38, 1e-30, 1e-4, 0.5, 1e30, 3.4e38, 1e39, 1e300,
            math.inf, math.nan]
FIELDS = {
    "temperature": {},
    "gumbel_tau": {"noise": "gumbel"},
    "dirichlet_alpha": {"noise": "dirichlet"},
    "gaussian_sigma": {"noise": "gaussian"},
    "cold_stop_entropy": {"think_end": 262},
}


@pytest.mark.parametrize("value", EXTREMES, ids=[repr(v) for v in EXTREMES])
@pytest.mark.parametrize("field", list(FIELDS))
def test_every_config_value_is_refused_by_name_or_gives_finite_outputs(model, field, value):
    settings = {"think_end": None, **FIELDS[field], field: value}
    try:
        cfg = SoftThinkingConfig(**settings)
    except ValueError as error:
        assert f"SoftThinkingConfig.{field}=" in str(error) and "must be" in str(error)
        return
    try:
        out = generate(model, cfg, do_sample=True, max_new_tokens=4)
    except ValueError as error:  # refused at generate time, against the model's dtype
        assert f"SoftThinkingConfig.{field}=" in str(error) and "Use" in str(error)
        return
    assert torch.isfinite(out.soft_topk_weights).all() and torch.isfinite(out.entropies).all()
    assert torch.allclose(out.soft_topk_weights[out.thinking_mask].sum(-1), torch.ones(int(out.thinking_mask.sum())))
    finite_log = out.soft_topk_log_weights[out.soft_topk_weights > 0]
    assert torch.isfinite(finite_log).all()
    if out.soft_input_embeddings is not None:
        assert torch.isfinite(out.soft_input_embeddings).all()


@pytest.mark.parametrize("dtype,scale,sigma", [(torch.float16, 1.0, 1e6), (torch.float32, 100.0, 1e38)])
def test_gaussian_noise_the_model_dtype_cannot_hold_is_refused_before_decoding(dtype, scale, sigma):
    model = enable_soft_thinking(tiny_model("llama", seed=0))
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(scale)
    model = model.to(dtype)
    cfg = SoftThinkingConfig(think_end=None, noise="gaussian", gaussian_sigma=sigma)
    with pytest.raises(ValueError, match=r"gaussian_sigma=.* too large for this model.*Use gaussian_sigma <="):
        generate(model, cfg)
