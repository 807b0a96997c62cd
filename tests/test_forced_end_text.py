"""`SoftThinkingConfig.forced_end_text`: what the decoder writes when it ends thinking itself (budget, Cold Stop,
switch limit), in soft and switch mode; forced steps are marked as such (out of the policy loss)."""

import functools

import pytest
import torch

from hf_softthink import SoftThinkingConfig, enable_soft_thinking, soft_thinking_sample
from hf_softthink.events import StepEvent, forced_mask, thinking_end_reason
from hf_softthink.models import tiny_model, tiny_tokenizer

PROMPT = torch.tensor([[5, 6, 7]])
TEXT = "\n\n</think>\nThe answer is \\boxed{"
THINK_END_ID = 262  # tiny_tokenizer's </think>


@pytest.fixture(scope="module")
def model():
    return enable_soft_thinking(tiny_model("llama", seed=0))


@functools.cache
def text_ids(text: str = TEXT) -> list[int]:
    return tiny_tokenizer().encode(text, add_special_tokens=False)


def generate(model, cfg, new_tokens, confidences=None, **kwargs):
    """Greedy soft-thinking generate; `confidences[k]` (if given) makes step k's logits `c * onehot(10 + k)`."""
    handle = None
    if confidences is not None:
        calls = iter(range(10**6))

        def replace(module, args, output):
            step = min(next(calls), len(confidences) - 1)
            logits = torch.zeros_like(output.logits[:, -1])
            logits[:, 10 + step] = confidences[step]
            output.logits[:, -1] = logits
            return output

        handle = model.register_forward_hook(replace)
    try:
        return model.generate(input_ids=PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=new_tokens,
                              do_sample=False, soft_thinking=cfg, tokenizer=tiny_tokenizer(), pad_token_id=0,
                              eos_token_id=None, return_dict_in_generate=True, **kwargs)
    finally:
        if handle is not None:
            handle.remove()


def check_written(out, start, reason):
    """The text is written from step `start`, forced; thinking ends at its marker; the answer follows freely."""
    ids, events = text_ids(), out.step_events[0].tolist()
    new = out.sequences[0, PROMPT.shape[1]:].tolist()
    assert new[start: start + len(ids)] == ids
    assert events[start] == reason and events[start + 1: start + len(ids)] == [StepEvent.FORCED_SPELLING] * (len(ids) - 1)
    assert forced_mask(out.step_events)[0].tolist() == [start <= t < start + len(ids) for t in range(len(new))]
    assert thinking_end_reason(out.step_events[0]) == (start, reason)
    marker = start + ids.index(THINK_END_ID)
    assert out.thinking_mask[0, marker:].sum() == 0, "thinking ends at the marker inside the text"
    assert set(events[start + len(ids):]) == {StepEvent.ANSWER}


def test_budget_writes_the_forced_end_text(model):
    out = generate(model, SoftThinkingConfig(max_thinking_tokens=3, forced_end_text=TEXT), new_tokens=3 + 30)
    assert out.thinking_mask[0, :3].all()
    check_written(out, 3, StepEvent.FORCED_BUDGET)


def test_cold_stop_writes_the_forced_end_text(model):
    cfg = SoftThinkingConfig(cold_stop_entropy=0.5, cold_stop_patience=2, forced_end_text=TEXT)
    # step 0: entropy high (flat), steps 1-2: confident -> Cold Stop fires on step 2
    out = generate(model, cfg, new_tokens=3 + 30, confidences=[0.0, 30.0, 30.0] + [0.0] * 40)
    check_written(out, 2, StepEvent.FORCED_COLD_STOP)


def test_switch_limit_writes_the_forced_end_text(model):
    cfg = SoftThinkingConfig(mode="switch", temperature=1.0, top_k=None, top_p=1.0, min_p=0.0, max_topk=None,
                             switch_window=1, max_switches=1, forced_end_text=TEXT)
    # step 0 sets the reference, step 1 is more confident: switch to explicit (the limit), the text follows
    out = generate(model, cfg, new_tokens=2 + 30, confidences=[1.0, 2.0] + [0.5] * 40)
    assert out.step_events[0, 1] == StepEvent.SWITCH_TO_EXPLICIT
    check_written(out, 2, StepEvent.FORCED_SWITCH_LIMIT)


def test_a_natural_think_end_is_not_followed_by_the_text(model):
    def draw_think_end(module, args, output):
        output.logits[:, -1, THINK_END_ID] = 1e4
        return output

    handle = model.register_forward_hook(draw_think_end)
    try:
        out = generate(model, SoftThinkingConfig(max_thinking_tokens=5, forced_end_text=TEXT), new_tokens=4)
    finally:
        handle.remove()
    assert out.step_events[0, 0] == StepEvent.THINK_END and not forced_mask(out.step_events).any()


def test_a_multi_token_marker_inside_the_text(model):
    marker = "Done:"
    cfg = SoftThinkingConfig(think_end=marker, max_thinking_tokens=2, forced_end_text=f" {marker} x")
    out = generate(model, cfg, new_tokens=2 + 12)
    ids = tiny_tokenizer().encode(f" {marker} x", add_special_tokens=False)
    assert out.sequences[0, 3 + 2: 3 + 2 + len(ids)].tolist() == ids
    marker_end = 2 + len(tiny_tokenizer().encode(f" {marker}", add_special_tokens=False)) - 1
    assert out.step_events[0, 2] == StepEvent.FORCED_BUDGET
    assert out.thinking_mask[0].tolist() == [True, True] + [False] * 12
    assert (out.step_events[0, marker_end + 1:] != StepEvent.SOFT).all()


@pytest.mark.parametrize("bad", [dict(forced_end_text="no marker"), dict(forced_end_text=""),
                                 dict(think_end=None, forced_end_text="x")])
def test_forced_end_text_is_validated(bad):
    with pytest.raises(ValueError, match="forced_end_text"):
        SoftThinkingConfig(**bad)


def test_a_text_that_does_not_tokenize_the_marker_is_refused(model):
    # think_end as a token id: the text must hold that very token
    cfg = SoftThinkingConfig(think_end=THINK_END_ID, max_thinking_tokens=1, forced_end_text="</thinking>")
    with pytest.raises(ValueError, match="does not contain the think-end marker"):
        generate(model, cfg, new_tokens=3)


def test_the_text_needs_a_tokenizer_on_the_custom_generate_path():
    plain = tiny_model("llama", seed=0)
    cfg = SoftThinkingConfig(think_end=THINK_END_ID, max_thinking_tokens=1, forced_end_text="\n</think>")
    with pytest.raises(ValueError, match="forced_end_text"):
        plain.generate(input_ids=PROMPT, max_new_tokens=3, custom_generate=soft_thinking_sample, soft_thinking=cfg,
                       pad_token_id=0)
