"""`SoftThinkingConfig.swireasoning()` against an oracle: a port of SwiReasoning's published decoding loop.

`reference_swireasoning` below is a minimal port, written for this test from a reading of the reference code
(GitHub sdc17/SwiReasoning: `generation_utils.generate_swir`, the settings of `run.py`), one row at a time:
the same per-step order of decisions (draw the token; lock the row if it drew `</think>`; pop an injected
token; measure the entropy; switch; choose what to feed; schedule injections), in plain Python. Our decoder
must match it on tiny Qwen3 and Llama models (made peaky, so the entropy varies and rows switch often), greedy
and with seeded sampling, switch windows 512 and 4, switch limits none / 1 / 2, and with a natural `</think>`
made certain by a logit edit inside a soft block and on a switch step: tokens and switch steps equal,
entropies and fed embeddings equal to float32 rounding.

Where the maths is the same, the port rounds as the decoder does (the prefill's last-position logits only,
softmax as exp(log_softmax(z - max z)), the concept token as a (1, V) @ (V, d) product): a soft trace feeds its
rounding back into the next step, and on these deliberately sensitive models a 1e-7 difference grows to a
different token within some 30 steps. So any difference left is one of method, not of rounding.
"""

from __future__ import annotations

import functools
import itertools

import pytest
import torch
import torch.nn.functional as F

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.events import StepEvent
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.processors import EntropySwitchLogitsProcessor, math_token_ids

NEW_TOKENS = 48
#: the reference's sampling defaults (run.py); greedy runs keep them, as the reference filters before its argmax
SAMPLING = dict(temperature=0.6, top_k=20, top_p=0.95)
#: the reference's termination words (generate_swir's default) and a shorter answer budget than its 32, so that
#: rows end by it within NEW_TOKENS
TERMINATION, TERMINATION_TOKENS = "</think>\n\nThe final answer is", 12
#: run.py writes "</think>" after the switch limit for Qwen models and "\n\n</think>\n\n" for the others
CONVERGENCE = {"qwen3": "</think>", "llama": "\n\n</think>\n\n"}
PROMPTS = {"qwen3": "Why is the sky blue?", "llama": "Name a prime."}
ALPHA = 0.6


@functools.cache
def tokenizer():
    """`tiny_tokenizer` plus the vocabulary token spelled backslash + n, which Qwen3's and Llama 3's vocabularies
    hold and which the reference looks up for its first-step blend (`convert_tokens_to_ids("\\\\n")`)."""
    tok = tiny_tokenizer()
    tok.add_tokens(["\\n"])
    return tok


@functools.cache
def model(arch: str):
    # initializer_range 0.3: entropies that move from step to step (the default gives ~log V, flat); a vocabulary
    # of 1536 ids (more than the tokenizer's), so the full-vocabulary mixture is one (1, V) @ (V, d) product as
    # on real vocabularies (`DENSE_MIXTURE_MIN_IDS`)
    return enable_soft_thinking(tiny_model(arch, seed=5, vocab_size=1536, initializer_range=0.3))


def reference_filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """The reference's sampling filter: keep the top-k values (ties kept); drop a token once the probability
    mass of the tokens before it, in descending order, exceeds top_p (its min-p is off in run.py)."""
    logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[-1], float("-inf"))
    ordered, order = torch.sort(logits, descending=True)
    mass_before = torch.cumsum(F.softmax(ordered, dim=-1), dim=-1) - F.softmax(ordered, dim=-1)
    drop = torch.zeros_like(logits, dtype=torch.bool).scatter(0, order, mass_before > top_p)
    return logits.masked_fill(drop, float("-inf"))


@torch.no_grad()
def reference_swireasoning(lm, tok, prompt_ids, *, window, max_switches, convergence, do_sample, edit=None):
    """SwiReasoning's loop for one row (batch 1, so no padding and no removal of finished rows).

    Returns the new tokens, the per-step entropies, the embedding fed after each step, the switch steps as
    (step, "explicit" | "soft"), and the set of the loop's branches the run took (for the coverage test).
    """
    E = lm.get_input_embeddings().weight
    think, end = tok.convert_tokens_to_ids("<think>"), tok.convert_tokens_to_ids("</think>")
    line_break = E[tok.convert_tokens_to_ids("\\n")]
    math_ids = set(math_token_ids(tok))
    soft, locked, stay, switches, reference_entropy = True, False, 0, 0, None
    queue, budget = [], -1
    tokens, entropies, fed, switch_steps, branches = [], [], [], [], set()
    cache, attention, last = None, torch.ones_like(prompt_ids), None
    for step in range(NEW_TOKENS):
        if cache is None:
            out = lm(input_ids=prompt_ids, attention_mask=attention, use_cache=True, logits_to_keep=1)
        else:
            attention = torch.cat([attention, attention.new_ones(1, 1)], dim=1)
            out = lm(inputs_embeds=last[None, None], attention_mask=attention, cache=cache, use_cache=True)
        cache = out.cache
        logits = out.logits[0, -1]
        if edit is not None:
            logits = edit(step, logits)
        p = F.log_softmax(logits - logits.max(), dim=-1).exp()  # softmax, rounded as the decoder rounds it
        q = F.softmax(reference_filter(logits / SAMPLING["temperature"], SAMPLING["top_k"], SAMPLING["top_p"]), -1)
        token = int(torch.multinomial(q, 1)) if do_sample else int(q.argmax())
        locked = locked or token == end  # the drawn token, before an injection replaces it
        if queue:
            token = queue.pop(0)
        entropy = -(p * p.clamp(min=1e-12).log()).sum()
        to_explicit = to_soft = False
        if step == 0:
            reference_entropy = entropy
        else:
            stay += 1
            to_explicit = soft and bool(entropy < reference_entropy)
            to_soft = not soft and bool(entropy > reference_entropy) and stay >= window and not locked
            if to_explicit or to_soft:
                soft, stay, reference_entropy = not soft, 0, entropy
                switch_steps.append((step, "explicit" if to_explicit else "soft"))
            switches += to_explicit
        concept = (p[None] @ E)[0]
        if step == 0:
            concept = 0.9 * concept + 0.1 * line_break
        elif to_soft:
            alpha = ALPHA + (1 - ALPHA) * step / NEW_TOKENS
            concept = alpha * concept + (1 - alpha) * E[think]
        token_embedding = E[token]
        if step > 0 and to_explicit:
            beta = 0.7 + (1 - 0.7) * step / NEW_TOKENS
            token_embedding = beta * concept + (1 - beta) * E[end]
        feeds_token = not soft or locked or token in math_ids
        last = token_embedding if feeds_token else concept
        ended = end in tokens  # a </think> was written before this step
        branches |= {name for name, taken in (
            ("math token fed in a soft block", soft and not locked and token in math_ids),
            ("switch to explicit after a drawn </think>", to_explicit and locked and token != end),
            ("</think> drawn on a switch to explicit", to_explicit and token == end and not queue),
            ("soft step after a written </think>", ended and not feeds_token),
            ("injected piece fed as a concept token", bool(queue) and not feeds_token),
        ) if taken}
        if max_switches is not None and to_explicit:
            if max_switches <= switches <= 2 * max_switches:
                queue = tok.encode(convergence, add_special_tokens=False)
                branches.add("end text forced again" if switches > max_switches else "end text forced")
            elif switches > 2 * max_switches:
                queue, budget = tok.encode(TERMINATION, add_special_tokens=False), TERMINATION_TOKENS
                branches.add("final answer forced")
        if budget >= 0:
            budget -= 1
        tokens.append(token)
        entropies.append(float(entropy))
        fed.append(last)
        if token == tok.eos_token_id or budget == 0:
            branches.add("ended by EOS" if budget else "ended by the answer budget")
            break
    return tokens, entropies, torch.stack(fed), switch_steps, branches


class LogitEdit:
    """Replaces the model's last-position logits at one generated step (the prefill is step 0)."""

    def __init__(self, step: int, strong: bool):
        self.step, self.strong = step, strong

    def __call__(self, step: int, logits: torch.Tensor) -> torch.Tensor:
        if step != self.step:
            return logits
        end = tokenizer().convert_tokens_to_ids("</think>")
        if self.strong:  # a near-certain </think>: entropy ~0, below any reference (a switch to explicit)
            return logits.clone().index_fill_(-1, torch.tensor([end]), float(logits.max()) + 30.0)
        # </think> far above the 19 next tokens (certain under top-k 20, T 0.6, top-p 0.95) while the full
        # distribution stays wide (~5 nats): the step stays inside its soft block when its reference is lower
        edited = torch.full_like(logits, -0.01)
        order = torch.argsort(logits, descending=True)
        edited[order[:19]] = 0.0
        edited[end] = 4.0
        return edited


def hook_edit(lm, edit: LogitEdit | None):
    calls = iter(itertools.count())

    def replace(module, args, output):
        step = next(calls)
        output.logits[:, -1] = edit(step, output.logits[0, -1])
        return output

    return lm.register_forward_hook(replace) if edit is not None else None


def run_ours(arch, *, window, max_switches, do_sample, edit, seed):
    lm, tok = model(arch), tokenizer()
    prompt = tok(PROMPTS[arch], return_tensors="pt")
    cfg = SoftThinkingConfig.swireasoning(
        alpha=ALPHA, max_switches=max_switches, switch_window=window,
        forced_end_text=None if CONVERGENCE[arch] == "</think>" else CONVERGENCE[arch],
        final_answer_max_tokens=TERMINATION_TOKENS)
    fed, switches = [], []

    def record_fed(module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            fed.append(kwargs["inputs_embeds"][0, -1].clone())

    original = EntropySwitchLogitsProcessor.fires

    def record_switches(self, *args, **kwargs):  # the switch decisions of every step, hidden or not by its event
        forced = original(self, *args, **kwargs)
        switches.append((bool(self.to_explicit[0]), bool(self.to_soft[0])))
        return forced

    EntropySwitchLogitsProcessor.fires = record_switches
    handles = [lm.register_forward_pre_hook(record_fed, with_kwargs=True), hook_edit(lm, edit)]
    sampling = dict(do_sample=True, **SAMPLING) if do_sample else dict(do_sample=False)
    try:
        torch.manual_seed(seed)
        out = lm.generate(**prompt, max_new_tokens=NEW_TOKENS, soft_thinking=cfg, tokenizer=tok,
                          return_dict_in_generate=True, pad_token_id=0, **sampling)
    finally:
        for handle in handles:
            if handle is not None:
                handle.remove()
        EntropySwitchLogitsProcessor.fires = original
    switch_steps = [(step, "explicit" if e else "soft") for step, (e, s) in enumerate(switches) if e or s]
    return out, fed, switch_steps


def run_reference(arch, *, window, max_switches, do_sample, edit, seed):
    lm, tok = model(arch), tokenizer()
    prompt = tok(PROMPTS[arch], return_tensors="pt").input_ids
    torch.manual_seed(seed)
    return reference_swireasoning(lm, tok, prompt, window=window, max_switches=max_switches,
                                  convergence=CONVERGENCE[arch], do_sample=do_sample, edit=edit)


def soft_block_steps(tokens, switch_steps):
    """Steps (after the first) inside a soft block, before any </think>, with no switch on them."""
    end = tokenizer().convert_tokens_to_ids("</think>")
    switched, soft, steps = dict(switch_steps), True, []
    for step in range(1, len(tokens)):
        if step in switched:
            soft = switched[step] == "soft"
            continue
        if tokens[step - 1] == end:
            break
        if soft:
            steps.append(step)
    return steps


CASES = [(arch, sampled, window, limit) for arch in ("qwen3", "llama") for sampled in (False, True)
         for window in (512, 4) for limit in (None, 1, 2)]


@functools.cache
def edits(arch, sampled, window, limit):
    """The edits of a case: none, a certain </think> inside a soft block, and one on a switch to explicit."""
    tokens, _, _, switch_steps, _ = run_reference(arch, window=window, max_switches=limit, do_sample=sampled,
                                                  edit=None, seed=11)
    candidates = soft_block_steps(tokens, switch_steps)
    chosen = {"none": None}
    end = tokenizer().convert_tokens_to_ids("</think>")
    for kind, strong in (("soft block", False), ("switch step", True)):
        for step in candidates:
            edit = LogitEdit(step, strong)
            tokens, _, _, switches, _ = run_reference(arch, window=window, max_switches=limit, do_sample=sampled,
                                                      edit=edit, seed=11)
            switched = dict(switches).get(step)
            if tokens[step] == end and switched == ("explicit" if strong else None):
                chosen[kind] = edit
                break
    return chosen


@functools.cache
def compare(arch, sampled, window, limit, kind):
    """Run one scenario through the port and through `generate`; returns what differs, and the port's branches."""
    settings = dict(window=window, max_switches=limit, do_sample=sampled, edit=edits(arch, sampled, window, limit)[kind],
                    seed=11)
    tokens, entropies, fed, switch_steps, branches = run_reference(arch, **settings)
    out, ours_fed, ours_switches = run_ours(arch, **settings)
    prompt_length = out.sequences.shape[1] - out.entropies.shape[1]
    steps, fed_steps = min(out.entropies.shape[1], len(entropies)), min(len(ours_fed), len(fed))
    return dict(
        tokens=(out.sequences[0, prompt_length:].tolist(), tokens),
        switch_steps=(ours_switches, switch_steps),
        entropy=float((out.entropies[0, :steps] - torch.tensor(entropies[:steps])).abs().max()),
        fed_steps=(len(ours_fed), len(tokens) - 1),
        fed=float((torch.stack(ours_fed)[:fed_steps] - fed[:fed_steps]).abs().max()),
        events=set(out.step_events[0].tolist()),
    ), branches


@pytest.mark.parametrize("arch, sampled, window, limit", CASES)
def test_swireasoning_preset_matches_the_reference_loop(arch, sampled, window, limit):
    assert set(edits(arch, sampled, window, limit)) == {"none", "soft block", "switch step"}, (
        "each case has both natural-</think> scenarios")
    for kind in ("none", "soft block", "switch step"):
        result, _ = compare(arch, sampled, window, limit, kind)
        ours, reference = result["tokens"]
        assert ours == reference, kind
        assert result["switch_steps"][0] == result["switch_steps"][1], kind
        assert result["fed_steps"][0] == result["fed_steps"][1], kind
        assert result["entropy"] <= 1e-6 and result["fed"] <= 1e-6, (kind, result["entropy"], result["fed"])


def test_the_comparison_covers_every_branch_of_the_reference_loop():
    """The cases above are only a check where they take the reference's branches: each is taken somewhere."""
    taken, events = set(), set()
    for case in CASES:
        for kind in ("none", "soft block", "switch step"):
            result, branches = compare(*case, kind)
            taken |= branches
            events |= result["events"]
    assert taken >= {
        "math token fed in a soft block", "switch to explicit after a drawn </think>",
        "</think> drawn on a switch to explicit", "soft step after a written </think>", "end text forced",
        "end text forced again", "final answer forced", "ended by the answer budget",
    }, taken
    assert {StepEvent.FORCED_SWITCH_LIMIT, StepEvent.FORCED_SPELLING, StepEvent.FORCED_FINAL_ANSWER,
            StepEvent.THINK_END, StepEvent.SWITCH_TO_SOFT} <= events
