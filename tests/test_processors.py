"""Each processor's effect on known scores."""

import math

import pytest
import torch
from transformers import LogitsProcessorList

from hf_softthink import (
    ColdStopLogitsProcessor,
    DirichletNoiseLogitsProcessor,
    EntropySwitchLogitsProcessor,
    GumbelSoftmaxNoiseLogitsProcessor,
    SoftThinkingConfig,
    ThinkingBudgetLogitsProcessor,
)
from hf_softthink.processors import (
    force_tokens,
    full_entropy,
    think_end_forcers,
    thinking_warpers,
    top_k_candidates,
)


def kept(scores: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(scores[0])).flatten().tolist())


def test_full_entropy_is_log_vocab_for_uniform_and_zero_for_one_hot():
    assert full_entropy(torch.zeros(2, 50)).tolist() == pytest.approx([math.log(50)] * 2, rel=1e-5)
    one_hot = torch.full((1, 10), -math.inf)
    one_hot[0, 3] = 0.0
    assert full_entropy(one_hot).item() == 0.0


def test_full_entropy_uses_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    p = torch.softmax(logits / 0.5, -1)
    assert full_entropy(logits, 0.5).item() == pytest.approx(-(p * p.log()).sum().item(), rel=1e-6)


def test_top_k_candidates_sorted_and_full_vocabulary_when_off():
    scores = torch.tensor([[0.1, 3.0, 2.0, -1.0]])
    values, ids = top_k_candidates(scores, 2)
    assert ids.tolist() == [[1, 2]] and values.tolist() == [[3.0, 2.0]]
    values, ids = top_k_candidates(scores, None)
    assert ids is None and torch.equal(values, scores)


def test_thinking_filters_keep_same_tokens_on_candidates_as_on_full_vocabulary():
    torch.manual_seed(0)
    logits = torch.randn(4, 1000) * 3
    config = SoftThinkingConfig(top_k=30, top_p=0.8, min_p=0.05, temperature=0.7)
    from transformers.generation.logits_process import TopKLogitsWarper

    full = LogitsProcessorList([TopKLogitsWarper(30)])(None, logits / 1.0)
    full = thinking_warpers(config)(None, full)
    values, ids = top_k_candidates(logits, 30)
    reduced = thinking_warpers(config)(None, values)
    for row in range(4):
        assert set(ids[row][torch.isfinite(reduced[row])].tolist()) == set(
            torch.nonzero(torch.isfinite(full[row])).flatten().tolist()
        )
        assert torch.allclose(reduced[row].softmax(-1).sort().values[-5:], full[row].softmax(-1).sort().values[-5:])


def test_top_p_then_min_p_on_known_probabilities():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.04, 0.01]])
    config = SoftThinkingConfig(temperature=1.0, top_p=0.9, min_p=0.0)
    assert kept(thinking_warpers(config)(None, probs.log())) == {0, 1, 2}
    config = SoftThinkingConfig(temperature=1.0, top_p=1.0, min_p=0.1)  # drops p < 0.05
    assert kept(thinking_warpers(config)(None, probs.log())) == {0, 1, 2}
    config = SoftThinkingConfig(temperature=1.0, top_p=1.0, min_p=0.5)  # drops p < 0.25
    assert kept(thinking_warpers(config)(None, probs.log())) == {0, 1}


def test_temperature_sharpens_before_top_p():
    probs = torch.tensor([[0.4, 0.35, 0.25]])
    loose = thinking_warpers(SoftThinkingConfig(temperature=1.0, top_p=0.7, min_p=0.0))(None, probs.log())
    sharp = thinking_warpers(SoftThinkingConfig(temperature=0.1, top_p=0.7, min_p=0.0))(None, probs.log())
    assert kept(loose) == {0, 1} and kept(sharp) == {0}


def test_dirichlet_noise_mean_matches_weights_and_keeps_zeros():
    torch.manual_seed(0)
    weights = torch.tensor([0.6, 0.3, 0.1, 0.0])
    scores = weights.log().expand(20000, 4)
    samples = DirichletNoiseLogitsProcessor(alpha=2.0)(None, scores).softmax(-1)
    assert torch.allclose(samples.mean(0), weights, atol=0.01)
    assert (samples[:, 3] == 0).all()
    # Var[y_i] = w_i (1 - w_i) / (alpha + 1) for Dir(alpha w) with sum(w) = 1
    assert samples[:, 0].var().item() == pytest.approx(0.6 * 0.4 / 3.0, rel=0.05)


def test_dirichlet_noise_keeps_forced_row_one_hot():
    scores = torch.tensor([[-math.inf, 0.0, -math.inf]])
    assert DirichletNoiseLogitsProcessor(1.0)(None, scores).softmax(-1).tolist() == [[0.0, 1.0, 0.0]]


def test_gumbel_noise_argmax_is_a_sample_of_the_weights():
    torch.manual_seed(0)
    weights = torch.tensor([0.5, 0.3, 0.2])
    noisy = GumbelSoftmaxNoiseLogitsProcessor(tau=0.5)(None, weights.log().expand(30000, 3))
    frequencies = torch.bincount(noisy.argmax(-1), minlength=3).float() / 30000
    assert torch.allclose(frequencies, weights, atol=0.01)
    assert torch.allclose(noisy.softmax(-1).sum(-1), torch.ones(30000))


def test_gumbel_noise_is_reproducible_with_a_seed_and_keeps_minus_inf():
    scores = torch.tensor([[1.0, 0.0, -math.inf]])
    torch.manual_seed(3)
    first = GumbelSoftmaxNoiseLogitsProcessor(0.5)(None, scores)
    torch.manual_seed(3)
    second = GumbelSoftmaxNoiseLogitsProcessor(0.5)(None, scores)
    assert torch.equal(first, second) and first[0, 2] == -math.inf


def run_cold_stop(entropies, patience, threshold=0.5, thinking=True):
    stop = ColdStopLogitsProcessor(think_end_token_id=4, entropy_threshold=threshold, patience=patience)
    fired = []
    for h in entropies:
        forced = torch.zeros(1, dtype=torch.bool)
        out = stop(None, torch.zeros(1, 6), thinking=torch.tensor([thinking]), entropy=torch.tensor([h]), forced=forced)
        fired.append(bool(forced))
        if forced:
            assert out.argmax(-1).item() == 4 and torch.isinf(out).sum().item() == 5
    return fired


def test_cold_stop_fires_after_exactly_patience_low_entropy_steps():
    assert run_cold_stop([0.1, 0.1, 0.1], patience=3) == [False, False, True]
    assert run_cold_stop([0.1] * 5, patience=1) == [True] * 5


def test_cold_stop_counter_resets_on_a_high_entropy_step():
    assert run_cold_stop([0.1, 0.1, 0.9, 0.1, 0.1, 0.1], patience=3) == [False] * 5 + [True]
    assert run_cold_stop([0.1, 0.9] * 5, patience=2) == [False] * 10


def test_cold_stop_ignores_rows_not_thinking():
    assert run_cold_stop([0.0] * 4, patience=2, thinking=False) == [False] * 4


def test_thinking_budget_forces_think_end_at_the_budget():
    budget = ThinkingBudgetLogitsProcessor(think_end_token_id=2, max_thinking_tokens=3, prompt_length=5)
    thinking, entropy = torch.tensor([True, False]), torch.ones(2)
    for generated, expect in [(0, False), (2, False), (3, True), (4, True)]:
        forced = torch.zeros(2, dtype=torch.bool)
        out = budget(torch.zeros(2, 5 + generated, dtype=torch.long), torch.zeros(2, 4), thinking=thinking,
                     entropy=entropy, forced=forced)
        assert forced.tolist() == [expect, False]
        assert (out[0].argmax().item() == 2 and torch.isinf(out[0]).sum() == 3) == expect
        assert torch.equal(out[1], torch.zeros(4))


def run_switch(entropies, window=2, max_switches=None):
    switch = EntropySwitchLogitsProcessor(switch_window=window, max_switches=max_switches, think_end_token_id=9)
    modes, switches, fired = [], [], []
    for h in entropies:
        forced = torch.zeros(1, dtype=torch.bool)
        out = switch(None, torch.zeros(1, 10), thinking=torch.tensor([True]), entropy=torch.tensor([h]), forced=forced)
        modes.append("explicit" if switch.explicit.item() else "soft")
        switches.append(int(switch.switches))
        fired.append(bool(forced))
        if forced:
            assert out.argmax(-1).item() == 9 and torch.isinf(out).sum().item() == 9
    return modes, switches, fired


def test_entropy_switch_goes_explicit_below_reference_and_back_after_window():
    modes, _, _ = run_switch([1.0, 1.2, 0.5, 0.9, 0.4, 0.6, 0.7, 0.1])
    # ref=1.0; 1.2 stays soft; 0.5 < 1.0 -> explicit (ref 0.5); 0.9: 1 step in the block, stays;
    # 0.4: 2 steps but below ref; 0.6 > 0.5 after 3 steps -> soft (ref 0.6); 0.7 stays; 0.1 -> explicit
    assert modes == ["soft", "soft", "explicit", "explicit", "explicit", "soft", "soft", "explicit"]


def test_entropy_switch_window_counts_steps_since_the_switch():
    # window 3: after the switch at 0.5, 0.9 and 0.8 come 1 and 2 steps in; 0.7 at 3 steps switches back
    modes, _, _ = run_switch([1.0, 0.5, 0.9, 0.8, 0.7], window=3)
    assert modes == ["soft", "explicit", "explicit", "explicit", "soft"]


def test_switch_limit_counts_soft_to_explicit_only_and_forces_think_end_on_the_next_step():
    entropies = [1.0, 1.2, 0.5, 0.9, 0.4, 0.6, 0.7, 0.1, 0.3, 0.2]
    modes, switches, fired = run_switch(entropies, max_switches=2)
    assert switches == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2], "the explicit -> soft switch at 0.6 is not counted"
    assert fired == [False] * 8 + [True, False], "think-end is forced once, on the step after the 2nd switch"


def test_switch_state_of_rows_not_thinking_is_frozen():
    switch = EntropySwitchLogitsProcessor(switch_window=1)
    forced = torch.zeros(2, dtype=torch.bool)
    for h in [1.0, 0.2]:
        switch(None, torch.zeros(2, 4), thinking=torch.tensor([True, False]), entropy=torch.tensor([h, h]),
               forced=forced)
    assert switch.explicit.tolist() == [True, False] and switch.switches.tolist() == [1, 0]


def test_force_tokens_only_touches_selected_rows():
    scores = torch.zeros(2, 4)
    out = force_tokens(scores, torch.tensor([True, False]), torch.tensor([3, 1]))
    assert out[0].tolist() == [-math.inf, -math.inf, -math.inf, 0.0] and out[1].tolist() == [0.0] * 4


def test_think_end_forcers_follow_the_config():
    assert len(think_end_forcers(SoftThinkingConfig(), 5, 3)) == 0
    forcers = think_end_forcers(
        SoftThinkingConfig(max_thinking_tokens=4, cold_stop_entropy=0.1, mode="switch"), 5, 3
    )
    assert [type(f).__name__ for f in forcers] == [
        "ThinkingBudgetLogitsProcessor", "EntropySwitchLogitsProcessor", "ColdStopLogitsProcessor"
    ]


def test_dirichlet_draws_that_underflow_stay_on_the_support():
    torch.manual_seed(0)
    weights = torch.tensor([0.999998, 0.000001, 0.000001, 0.0])
    out = DirichletNoiseLogitsProcessor(alpha=0.01)(None, weights.log().expand(2000, 4))
    assert torch.isfinite(out[:, :3]).all() and (out[:, 3] == -math.inf).all()
