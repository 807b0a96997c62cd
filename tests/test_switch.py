"""mode="switch" as SwiReasoning (arXiv:2510.05069) publishes it, pinned with scripted logits.

`Scripted` replaces the model's last-position logits step by step, so the entropy of every step (and with it
every switch) is chosen by the test, and records the embedding fed back after each step.
"""

import pytest
import torch

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.events import StepEvent, forced_mask
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.processors import EntropySwitchLogitsProcessor

S, E, TE, TS, THINK_END, ANSWER, FORCED_SWITCH_LIMIT, SPELLING, FINAL, FINISHED = (
    StepEvent.SOFT, StepEvent.EXPLICIT, StepEvent.SWITCH_TO_EXPLICIT, StepEvent.SWITCH_TO_SOFT,
    StepEvent.THINK_END, StepEvent.ANSWER, StepEvent.FORCED_SWITCH_LIMIT, StepEvent.FORCED_SPELLING,
    StepEvent.FORCED_FINAL_ANSWER, StepEvent.FINISHED,
)
THINK_START_ID, THINK_END_ID = 261, 262  # tiny_tokenizer's <think>, </think>
#: full softmax at T = 1 over the whole vocabulary, as the reference mixes and measures entropy
FULL_T1 = dict(mode="switch", temperature=1.0, top_k=None, top_p=1.0, min_p=0.0, max_topk=None)


class Scripted:
    """Step k's logits become `confidence[k] * onehot(token[k])` (lower entropy for higher confidence)."""

    def __init__(self, model, confidences, tokens=None):
        self.model, self.confidences, self.calls, self.fed = model, confidences, 0, []
        self.tokens = tokens or [10 + k for k in range(len(confidences))]
        self.handles = [
            model.register_forward_pre_hook(self.record_input, with_kwargs=True),
            model.register_forward_hook(self.replace_logits),
        ]

    def record_input(self, module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            self.fed.append(kwargs["inputs_embeds"][:, -1].clone())

    def replace_logits(self, module, args, output):
        step = min(self.calls, len(self.confidences) - 1)
        self.calls += 1
        logits = torch.zeros_like(output.logits[:, -1])
        logits[:, self.tokens[step]] = self.confidences[step]
        output.logits[:, -1] = logits
        return output

    def remove(self):
        for handle in self.handles:
            handle.remove()

    def mixture(self, step):
        """The full-vocabulary concept token of step `step` at T = 1: softmax(logits) @ E."""
        logits = torch.zeros(self.model.config.vocab_size)
        logits[self.tokens[step]] = self.confidences[step]
        return torch.softmax(logits, -1) @ self.model.get_input_embeddings().weight


@pytest.fixture
def model():
    return enable_soft_thinking(tiny_model("llama", seed=0))


def generate(model, cfg, confidences, new_tokens, tokens=None, **kwargs):
    prompt = torch.tensor([[5, 6, 7]])
    script = Scripted(model, confidences, tokens)
    try:
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                             do_sample=False, soft_thinking=cfg, tokenizer=tiny_tokenizer(),
                             return_dict_in_generate=True, pad_token_id=0, **kwargs)
    finally:
        script.remove()
    return out, script


def test_switch_points_window_limit_blends_and_no_return_to_soft(model):
    cfg = SoftThinkingConfig(**FULL_T1, switch_window=2, max_switches=2, switch_beta=0.7, switch_alpha=0.5)
    # step:       0    1    2    3    4    5    6    7    8    9
    confidence = [1.0, 0.5, 2.0, 1.0, 0.5, 0.8, 0.1, 3.0, 0.1, 3.0]
    out, script = generate(model, cfg, confidence, new_tokens=10)
    events = out.step_events[0].tolist()
    # 0: reference; 1: higher entropy, stays soft; 2: lower -> explicit (switch 1); 3: only 1 step into the
    # window of 2; 4: 2 steps in and entropy above the reference -> soft (not counted); 5: lower -> explicit
    # (switch 2 = the limit); 6: think-end forced on the following step; then the answer, never soft again
    assert events == [S, S, TE, E, TS, TE, FORCED_SWITCH_LIMIT, ANSWER, ANSWER, ANSWER]
    assert out.thinking_mask[0].tolist() == [True, True, False, False, True] + [False] * 5
    new = out.sequences[0, 3:].tolist()
    assert new[6] == THINK_END_ID and new[:6] == [10, 11, 12, 13, 14, 15] and new[7:] == [17, 18, 19]
    assert forced_mask(out.step_events)[0].tolist() == [False] * 6 + [True] + [False] * 3

    E_ = model.get_input_embeddings().weight
    fed = torch.cat(script.fed)  # fed[k]: what step k fed back
    assert torch.allclose(fed[0], script.mixture(0), atol=1e-6), "a soft step feeds softmax(z) @ E"
    beta_2, beta_5 = 0.7 + 0.3 * 2 / 10, 0.7 + 0.3 * 5 / 10
    assert torch.allclose(fed[2], beta_2 * script.mixture(2) + (1 - beta_2) * E_[THINK_END_ID], atol=1e-6)
    assert torch.allclose(fed[5], beta_5 * script.mixture(5) + (1 - beta_5) * E_[THINK_END_ID], atol=1e-6)
    alpha_4 = 0.5 + 0.5 * 4 / 10
    assert torch.allclose(fed[4], alpha_4 * script.mixture(4) + (1 - alpha_4) * E_[THINK_START_ID], atol=1e-6)
    assert torch.equal(fed[3], E_[13]) and torch.equal(fed[6], E_[THINK_END_ID]) and torch.equal(fed[7], E_[17])


def test_without_blends_a_switch_step_feeds_its_token(model):
    cfg = SoftThinkingConfig(**FULL_T1, switch_window=2)
    out, script = generate(model, cfg, [1.0, 2.0, 0.5], new_tokens=3)
    assert out.step_events[0].tolist() == [S, TE, E]
    assert torch.equal(script.fed[1][0], model.get_input_embeddings().weight[11])


def test_natural_think_end_in_switch_mode_ends_thinking_for_good(model):
    cfg = SoftThinkingConfig(**FULL_T1, switch_window=1)
    tokens = [10, THINK_END_ID, 12, 13, 14, 15]
    out, _ = generate(model, cfg, [1.0, 0.5, 2.0, 0.1, 2.0, 0.1], new_tokens=6, tokens=tokens)
    assert out.step_events[0].tolist() == [S, THINK_END, ANSWER, ANSWER, ANSWER, ANSWER]
    assert not out.thinking_mask[0, 1:].any()


def test_switch_limit_spells_a_multi_token_think_end(model):
    marker = "Done:"
    pieces = tiny_tokenizer().encode(marker, add_special_tokens=False)
    cfg = SoftThinkingConfig(**FULL_T1, switch_window=1, max_switches=1, think_end=marker)
    out, _ = generate(model, cfg, [1.0, 2.0] + [0.5] * 8, new_tokens=2 + len(pieces) + 2)
    events = out.step_events[0].tolist()
    assert events == [S, TE, FORCED_SWITCH_LIMIT] + [SPELLING] * (len(pieces) - 1) + [ANSWER, ANSWER]
    assert out.sequences[0, 3 + 2 : 3 + 2 + len(pieces)].tolist() == pieces


def test_final_answer_is_forced_past_twice_the_limit_then_the_answer_is_cut(model):
    tok = tiny_tokenizer()
    text = tok.encode("ok", add_special_tokens=False)
    cfg = SoftThinkingConfig(**FULL_T1, switch_window=1, max_switches=1, final_answer="ok",
                             final_answer_max_tokens=3)
    # 1: switch 1 (the limit); 2: think-end forced; in the answer the entropy keeps switching:
    # 3: explicit (switch 2), 4: soft, 5: explicit (switch 3 > 2 x 1) -> "ok" on 6-7; the row ends 3 steps after
    # the switch step, that step included (SwiReasoning's count)
    confidence = [1.0, 2.0, 0.5, 2.0, 0.5, 2.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    out, _ = generate(model, cfg, confidence, new_tokens=12)
    events = out.step_events[0].tolist()
    assert events == [S, TE, FORCED_SWITCH_LIMIT, ANSWER, ANSWER, ANSWER, FINAL, FINAL]
    assert out.sequences[0, 3 + 6 : 3 + 8].tolist() == text
    # with only two switches in the answer, nothing is forced and the answer runs to max_new_tokens
    out, _ = generate(model, cfg, [1.0, 2.0, 0.5, 2.0] + [0.5] * 8, new_tokens=12)
    assert FINAL not in out.step_events[0].tolist() and out.sequences.shape[1] == 3 + 12


def test_final_answer_cut_pads_a_finished_row_while_others_go_on(model):
    cfg = SoftThinkingConfig(**FULL_T1, switch_window=1, max_switches=1, final_answer="ok",
                             final_answer_max_tokens=2)
    script = Scripted(model, [1.0, 2.0, 0.5, 2.0, 0.5, 2.0, 0.5, 0.5, 0.5, 0.5])
    prompt = torch.tensor([[5, 6, 7], [5, 6, 7]])
    original = script.replace_logits

    def second_row_never_switches(module, args, output):
        output = original(module, args, output)
        output.logits[1, -1] = 0.0  # uniform: constant entropy, no switch ever
        return output

    script.handles[1].remove()
    script.handles[1] = model.register_forward_hook(second_row_never_switches)
    try:
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=10,
                             do_sample=False, soft_thinking=cfg, tokenizer=tiny_tokenizer(), pad_token_id=0,
                             return_dict_in_generate=True)
    finally:
        script.remove()
    events = out.step_events[0].tolist()
    assert events[:7] == [S, TE, FORCED_SWITCH_LIMIT, ANSWER, ANSWER, ANSWER, FINAL]
    assert events[7:] == [FINISHED] * 3 and out.sequences[0, 3 + 7 :].tolist() == [0] * 3
    assert (out.step_events[1] == S).all()


@pytest.mark.parametrize("bad", [dict(switch_beta=1.5), dict(switch_alpha=-0.1), dict(switch_alpha=0.5, think_start=None),
                                 dict(final_answer="x"), dict(final_answer_max_tokens=0),
                                 dict(switch_beta=0.5, think_end=None)])
def test_switch_knobs_are_validated(bad):
    with pytest.raises(ValueError, match="SoftThinkingConfig"):
        SoftThinkingConfig(mode="switch", **bad)


def test_marker_blend_needs_a_one_token_marker(model):
    cfg = SoftThinkingConfig(**FULL_T1, switch_beta=0.7, think_end="Done:")
    with pytest.raises(ValueError, match="needs the embedding of one token"):
        generate(model, cfg, [1.0], new_tokens=2)
    cfg = SoftThinkingConfig(**FULL_T1, switch_after_think_end=True, think_end="Done:")
    with pytest.raises(ValueError, match=r"switch_after_think_end=True compares each drawn token with the marker's one "
                                         r"token.*or set switch_after_think_end=False\.$"):
        generate(model, cfg, [1.0], new_tokens=2)


def test_swireasoning_preset_is_the_published_method():
    cfg = SoftThinkingConfig.swireasoning(alpha=0.6, max_switches=2)
    assert (cfg.mode, cfg.temperature, cfg.max_topk, cfg.top_k, cfg.top_p, cfg.min_p) == ("switch", 1.0, None, None,
                                                                                         1.0, 0.0)
    assert (cfg.switch_window, cfg.switch_beta, cfg.switch_alpha, cfg.max_switches) == (512, 0.7, 0.6, 2)
    assert cfg.final_answer == "</think>\n\nThe final answer is" and cfg.final_answer_max_tokens == 32
    assert (cfg.first_step_blend, cfg.first_step_marker, cfg.explicit_math_tokens, cfg.switch_after_think_end) == (
        0.9, "\\n", True, True)
    assert cfg.forced_end_text is None, "the reference writes the marker alone for Qwen models"
    assert SoftThinkingConfig.swireasoning().final_answer is None
    assert "\b" not in SoftThinkingConfig.swireasoning.__doc__ and "\a" not in SoftThinkingConfig.swireasoning.__doc__
    assert SoftThinkingConfig.from_json(cfg.to_json()) == cfg


def test_math_tokens_through_custom_generate_without_a_tokenizer_name_the_partial():
    """transformers does not pass `tokenizer=` on to a custom_generate callable: the fix is functools.partial."""
    import functools

    from hf_softthink.generation import soft_thinking_sample

    model, tokenizer = tiny_model("llama", seed=0), tiny_tokenizer()
    cfg = SoftThinkingConfig.swireasoning(think_end=THINK_END_ID, first_step_blend=1.0)
    prompt = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match=r"explicit_math_tokens=True builds its token ids.*does not pass `tokenizer=` "
                                         r"on to a custom_generate callable.*functools.*explicit_math_tokens=False"):
        model.generate(input_ids=prompt, max_new_tokens=2, custom_generate=soft_thinking_sample, soft_thinking=cfg,
                       tokenizer=tokenizer)
    out = model.generate(input_ids=prompt, max_new_tokens=2, soft_thinking=cfg,
                         custom_generate=functools.partial(soft_thinking_sample, tokenizer=tokenizer))
    assert out.shape == (1, 5)


def test_explicit_steps_follow_the_callers_sampling_settings():
    """Random tiny model: high entropy, so rows switch; explicit tokens are drawn as generate would."""
    model = enable_soft_thinking(tiny_model("llama", seed=1))
    prompt = torch.tensor([[5, 6, 7, 8]] * 2)
    cfg = SoftThinkingConfig(**FULL_T1, switch_window=1, think_end=None)

    def run(seed, **sampling):
        torch.manual_seed(seed)
        return model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24,
                              soft_thinking=cfg, return_dict_in_generate=True, pad_token_id=0, **sampling)

    sampled = [run(seed, do_sample=True) for seed in (0, 1, 2)]
    assert all((o.step_events != S).any() for o in sampled), "some steps are explicit"
    traces = {tuple(o.sequences.flatten().tolist()) for o in sampled}
    assert len(traces) == 3, "three seeds, three different traces"
    greedy = [run(seed, do_sample=False).sequences for seed in (0, 1)]
    assert torch.equal(greedy[0], greedy[1])
    top1 = [run(seed, do_sample=True, top_k=1).sequences for seed in (0, 1)]
    assert torch.equal(top1[0], greedy[0]), "the caller's top_k=1 makes every drawn token the argmax"


def run_switch_processor(entropies, lock_at=None, **kwargs):
    switch = EntropySwitchLogitsProcessor(switch_window=1, think_end_token_id=9, **kwargs)
    row, fired, modes = torch.tensor([True]), [], []
    for step, h in enumerate(entropies):
        if step == lock_at:
            switch.lock(row)
        fired.append(bool(switch.fires(None, thinking=row, entropy=torch.tensor([h]))))
        modes.append("E" if switch.explicit.item() else "S")
    return fired, "".join(modes)


def test_limit_repeats_forces_after_every_switch_up_to_twice_the_limit():
    # switches to explicit at steps 1, 3, 5 and 7 (the 1st to 4th); back to soft at 2, 4 and 6
    entropies = [1.0, 0.5, 0.9, 0.4, 0.8, 0.3, 0.7, 0.6]
    fired, modes = run_switch_processor(entropies, max_switches=1, limit_repeats=True)
    assert modes == "SESESESE"
    assert fired == [False, False, True, False, True, False, False, False], "after the 1st and 2nd, not the 3rd or 4th"
    fired, _ = run_switch_processor(entropies, max_switches=1)
    assert fired == [False, False, True] + [False] * 5, "without repeats: once"


def test_a_locked_row_never_switches_back_to_soft_but_still_switches_to_explicit():
    fired, modes = run_switch_processor([1.0, 0.5, 0.9, 0.4], lock_at=2, max_switches=1, limit_repeats=True)
    assert modes == "SEEE", "locked on step 2, when it would have gone back to soft"
    fired, modes = run_switch_processor([1.0, 1.2, 0.5], lock_at=1, max_switches=1, limit_repeats=True)
    assert modes == "SSE" and fired == [False] * 3, "a locked soft row still switches to explicit, and counts"


def test_mixture_skipped_only_where_no_row_can_feed_it():
    switch = EntropySwitchLogitsProcessor(switch_window=3)
    rows = torch.tensor([True, True])
    assert switch.may_feed_mixture(rows).tolist() == [True, True], "before the first step every row is soft"
    for h in ([1.0, 1.0], [0.5, 1.1], [0.4, 1.2]):  # row 0 goes explicit at step 1, row 1 stays soft
        switch.fires(None, thinking=rows, entropy=torch.tensor(h))
    assert switch.may_feed_mixture(rows).tolist() == [False, True], "row 0: 2 steps into a window of 3"
    switch.fires(None, thinking=rows, entropy=torch.tensor([0.3, 1.3]))
    assert switch.may_feed_mixture(rows).tolist() == [True, True], "row 0 may switch back on the next step"
    switch.lock(torch.tensor([True, False]))
    assert switch.may_feed_mixture(rows).tolist() == [False, True], "locked in an explicit block: never soft again"
