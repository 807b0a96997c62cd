"""Soft-thinking decoding inside `model.generate`.

`enable_soft_thinking(model)` gives a model (any causal LM, a `PeftModel`, a 4-bit model) a
`generate(..., soft_thinking=...)`. Without `soft_thinking` (or with `False`) `generate` is untouched.
With it, all of `generate`'s preparation runs as usual (processors, stopping criteria, cache, left
padding, `num_return_sequences`), then the decoding loop of `soft_thinking_sample` runs in place of
`_sample`. One step, per row (the full description, the outputs, the events and the switch state machine
are in the repository's `docs/design.md`):

1. the full-vocabulary entropy H of softmax(z / T) (when Cold Stop, switch mode or the outputs need it);
2. the caller's logits processors; then, for thinking rows, the think-end forcers (budget, switch limit,
   Cold Stop), the top-k candidate reduction, transformers' temperature / top-p / min-p warpers, the
   `max_topk` most probable candidates and the mixture noise;
3. the token: forced, or the mixture's top-1 (soft mode), or drawn with the caller's own settings (answer
   rows, and every thinking step of switch mode);
4. what is fed back: the concept token sum_j w_j embed(id_j) (plus optional Gaussian noise) on soft steps,
   marker blends on SwiReasoning's switch steps, the token's embedding otherwise;
5. checks that nothing non-finite was produced (one host sync per step, shared with the end-of-batch test).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList
from transformers.generation import logits_process
from transformers.generation.stopping_criteria import StopStringCriteria
from transformers.generation.utils import GenerateDecoderOnlyOutput, GenerationMixin, GenerationMode

from .config import GENERATION_CONFIG_ATTRIBUTE, SAVED_SOURCE, SoftThinkingConfig, generation_config_file
from .events import StepEvent, StepEvents
from .mixing import (
    add_gaussian_noise,
    concept_embedding,
    dense_concept_embedding,
    embedding_rms,
    input_embedding_module,
)
from .processors import (
    EntropySwitchLogitsProcessor,
    force_tokens,
    full_entropy,
    math_token_ids,
    mixture_noise,
    shift_to_zero_max,
    think_end_forcers,
    thinking_warpers,
    top_k_candidates,
    top_k_lowest_ids,
)
from .token_ids import EmbeddingSizes, check_token_ids

#: transformers' warpers: they shape the *answer* sampling distribution and are not applied while thinking
ANSWER_WARPER_TYPES = tuple(
    getattr(logits_process, name) for name in dir(logits_process) if name.endswith("LogitsWarper")
)
SUPPORTED_MODES = (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE)
#: ids recorded per step when the mixture is bounded by nothing but the vocabulary (max_topk=None, top_k=None)
RECORDED_IDS_FULL_VOCABULARY = 32
#: mixtures of more ids than this are mixed as one (B, V) @ (V, d) product instead of a (B, K, d) lookup
DENSE_MIXTURE_MIN_IDS = 1024
#: Gaussian embedding noise must stay representable up to this many standard deviations in the model's dtype
NOISE_TAIL_STDS = 8.0


class NonFiniteError(RuntimeError):
    """A NaN or infinite value reached a decision of the soft-thinking loop; the message says where and why."""


@dataclass
class SoftThinkingGenerateOutput(GenerateDecoderOnlyOutput):
    """`GenerateDecoderOnlyOutput` plus what the soft steps were.

    `scores` (with `output_scores=True`) hold, per step, the scores the recorded token was chosen from: at the
    soft steps of `mode="soft"` the final candidate scores of the mixture (after the thinking warpers and
    the mixture noise, `-inf` outside the mixed ids; their softmax is the mixture weights, they are **not**
    log-probabilities), at forced steps scores that allow only the forced token, and in switch mode and the
    answer the caller's processed scores, as `generate` records them.

    Args:
        soft_topk_ids (`torch.LongTensor` of shape `(batch_size, new_tokens, R)`):
            The ids mixed at each step, by decreasing weight; steps that fed no mixture hold their token first.
            `R` is the mixture size `min(max_topk, top_k)` when either bounds it (the whole mixture is recorded),
            else `RECORDED_IDS_FULL_VOCABULARY` (32): a full-vocabulary mixture records its 32 largest weights.
            No output grows with the vocabulary.
        soft_topk_weights (`torch.FloatTensor` of shape `(batch_size, new_tokens, R)`):
            The final mixture weights of those ids (after noise); one-hot on steps that fed a token, zeros once a
            row has finished. They sum to 1 unless a full-vocabulary mixture was cut to `R` ids.
        thinking_mask (`torch.BoolTensor` of shape `(batch_size, new_tokens)`):
            True where the step fed a concept token (a soft step, a switch back to soft included).
        entropies (`torch.FloatTensor` of shape `(batch_size, new_tokens)`):
            Entropy (nats) of softmax(logits / T_thinking) over the full vocabulary at each step.
        soft_topk_log_weights (`torch.FloatTensor` of shape `(batch_size, new_tokens, R)`):
            log of `soft_topk_weights`, from a log-softmax (finite where a Gumbel-Softmax weight underflows
            to 0 in fp32): what the Concrete density scores. `-inf` where the weight is exactly 0.
        soft_input_embeddings (`torch.FloatTensor` of shape `(batch_size, new_tokens, hidden)`):
            With Gaussian noise only: the noisy embedding fed back at each soft step (zeros elsewhere),
            the action whose density the trainer scores.
        step_events (`torch.ByteTensor` of shape `(batch_size, new_tokens)`):
            One `hf_softthink.events.StepEvent` code per step: soft / explicit / switch steps, natural or forced
            think-end (and what forced it), sampled stop decisions, forced marker pieces, answer steps,
            finished-row padding. `hf_softthink.events.forced_mask(step_events)` marks the tokens the decoder
            forced. A `hf_softthink.events.StepEvents` tensor: it prints its codes as event names.
        soft_topk_support (`torch.BoolTensor` of shape `(batch_size, new_tokens, R)`):
            At soft steps and sampled stop decisions: which of `soft_topk_ids` had weight > 0 in the thinking
            distribution w (after the filters, before the noise and before a stop decision removed the stop
            ids). False elsewhere. The trainer's densities are taken over this support.
        stop_decision_mask (`torch.BoolTensor` of shape `(batch_size, new_tokens)`):
            With `SoftThinkingConfig(stop_decision="sample")`: True where a thinking step drew a stop token (EOS
            or the first token of `think_end`) from w. That step feeds its token (one-hot); its `soft_topk_ids`
            hold it first, then the other ids of w.
        soft_topk_perturbed_log_weights (`torch.FloatTensor` of shape `(batch_size, new_tokens, R)`):
            With Gumbel noise only: log w + g of `soft_topk_ids` at soft steps and sampled stop decisions
            (the Gumbel-perturbed log-weights before the division by `gumbel_tau`, the clamp applied; `-inf`
            off the support and at other steps). SofT-GRPO's score (its `topk_gumbels`) reads them.
    """

    soft_topk_ids: torch.LongTensor | None = None
    soft_topk_weights: torch.FloatTensor | None = None
    thinking_mask: torch.BoolTensor | None = None
    entropies: torch.FloatTensor | None = None
    soft_topk_log_weights: torch.FloatTensor | None = None
    soft_input_embeddings: torch.FloatTensor | None = None
    step_events: torch.ByteTensor | None = None
    soft_topk_support: torch.BoolTensor | None = None
    stop_decision_mask: torch.BoolTensor | None = None
    soft_topk_perturbed_log_weights: torch.FloatTensor | None = None


@dataclass
class ThinkEnd:
    """A resolved think-end marker: the token ids that spell it, and how to detect it in the trace."""

    token_ids: tuple[int, ...]
    text: str | None = None
    stop_string: StopStringCriteria | None = None

    def reached(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """(B,) bool: the trace ends with the marker."""
        if self.stop_string is None:
            return input_ids[:, -1] == self.token_ids[0]
        return self.stop_string(input_ids, None)


def resolve_think_end(
    think_end: str | int | None, tokenizer: Any, vocab_size: int, name: str = "think_end"
) -> ThinkEnd | None:
    """Turn `SoftThinkingConfig.think_end` (or another marker field, `name`) into token ids, or raise a
    `ValueError` that names the fix."""
    if think_end is None:
        return None
    if isinstance(think_end, int):
        check_token_ids(None, {f"SoftThinkingConfig.{name}={think_end}": (think_end,)},
                        sizes=EmbeddingSizes(vocab_size, vocab_size))
        return ThinkEnd((think_end,))
    if tokenizer is None:
        alternative = " or `think_end=None` (every step soft)" if name == "think_end" else ""
        raise ValueError(
            f"{name}={think_end!r} is a string, so soft thinking needs a tokenizer to find its tokens: pass "
            "`generate(..., tokenizer=tokenizer)` or `enable_soft_thinking(model, tokenizer=tokenizer)`, or set "
            f"`SoftThinkingConfig({name}=<token id>)`{alternative}."
        )
    vocab = tokenizer.get_vocab()
    if think_end in vocab:
        return ThinkEnd((vocab[think_end],), think_end)
    token_ids = tokenizer.encode(think_end, add_special_tokens=False)
    unk = getattr(tokenizer, "unk_token_id", None)
    decoded = tokenizer.decode(token_ids) if token_ids else ""
    if not token_ids or (unk is not None and unk in token_ids) or decoded.strip() != think_end.strip():
        raise ValueError(
            f"{name}={think_end!r} cannot be produced by this tokenizer (it encodes to {token_ids}, which "
            f"decodes to {decoded!r}). Use a string the tokenizer can spell, a token id, or {name}=None."
        )
    if len(token_ids) == 1:
        return ThinkEnd((token_ids[0],), think_end)
    return ThinkEnd(tuple(token_ids), think_end, StopStringCriteria(tokenizer, [think_end]))


def split_processors(processors: LogitsProcessorList) -> tuple[LogitsProcessorList, ...]:
    """Split `generate`'s prepared processors into (shared prefix, answer-only rest, thinking rest).

    Everything before the first answer warper runs once for all rows. Thinking rows then skip the
    warpers (the thinking phase has its own), answer rows run the whole rest as `_sample` would.
    """
    first_warper = next(
        (i for i, p in enumerate(processors) if isinstance(p, ANSWER_WARPER_TYPES)), len(processors)
    )
    shared = LogitsProcessorList(processors[:first_warper])
    answer_rest = LogitsProcessorList(processors[first_warper:])
    thinking_rest = LogitsProcessorList(p for p in answer_rest if not isinstance(p, ANSWER_WARPER_TYPES))
    return shared, answer_rest, thinking_rest


def check_soft_generation_mode(generation_config: GenerationConfig, assistant_model: Any = None) -> None:
    """Raise a `ValueError` for decoding methods soft thinking does not support (it never falls back)."""
    mode = generation_config.get_generation_mode(assistant_model)
    if mode not in SUPPORTED_MODES:
        raise ValueError(
            f"soft_thinking works with greedy decoding and sampling (num_beams=1), not with {mode.value} "
            f"(num_beams={generation_config.num_beams}, assistant_model={'set' if assistant_model else None}, "
            f"prompt_lookup_num_tokens={generation_config.prompt_lookup_num_tokens}). Remove those settings, "
            "or drop soft_thinking to use them."
        )
    if generation_config.use_cache is False:
        raise ValueError(
            "soft_thinking needs use_cache=True: the concept tokens fed back exist only in the KV cache. "
            "Remove use_cache=False."
        )



def resolve_single_token(name: str, marker: str | int, tokenizer: Any, vocab_size: int, why: str, off: str) -> int:
    """The token id of a marker that must be one token (a blended embedding needs exactly one row of E)."""
    return single_token_id(name, marker, resolve_think_end(marker, tokenizer, vocab_size, name), why, off)


def single_token_id(name: str, marker: str | int, resolved: ThinkEnd, why: str, off: str) -> int:
    """The token id of an already resolved marker (`resolve_think_end`) that must be one token; else a
    `ValueError` that says `why` it must and names `off`, the setting that does without."""
    if len(resolved.token_ids) != 1:
        raise ValueError(
            f"SoftThinkingConfig.{name}={marker!r} is {len(resolved.token_ids)} tokens of this tokenizer "
            f"({list(resolved.token_ids)}), but {why}. Use a marker that is one token (or its token id), or set "
            f"{off}."
        )
    return resolved.token_ids[0]


def missing_tokenizer_error(name: str, value: str | bool) -> ValueError:
    """The error for a setting that needs the tokenizer (a string marker, `explicit_math_tokens=True`) on the
    `custom_generate` path, where transformers drops `tokenizer=`."""
    if isinstance(value, str):
        needs, instead = "is a string, so soft thinking needs a tokenizer to find its tokens", "a token id"
    else:
        needs, instead = "builds its token ids with the tokenizer", f"{name}=False"
    return ValueError(
        f"SoftThinkingConfig.{name}={value!r} {needs}, and transformers does not pass `tokenizer=` on to a "
        "custom_generate callable. Use `custom_generate=functools.partial(soft_thinking_sample, "
        "tokenizer=tokenizer)`, or `enable_soft_thinking(model, tokenizer=tokenizer)` and `generate(..., "
        f"soft_thinking=...)`, or {instead}."
    )


def encode_text(name: str, text: str, tokenizer: Any) -> tuple[int, ...]:
    """The token ids of a text field of the config (`final_answer`, `forced_end_text`) that the decoder forces."""
    if tokenizer is None:
        raise ValueError(
            f"SoftThinkingConfig.{name}={text!r} is text, so soft thinking needs a tokenizer: pass "
            "`generate(..., tokenizer=tokenizer)` or `enable_soft_thinking(model, tokenizer=tokenizer)`, or set "
            f"{name}=None."
        )
    return tuple(tokenizer.encode(text, add_special_tokens=False))


def check_forced_end_text(text: str, token_ids: tuple[int, ...], think_end: ThinkEnd | None, tokenizer: Any) -> None:
    """Raise a `ValueError` unless writing `token_ids` ends thinking: they must spell the think-end marker as the
    decoder detects it (its token, or its text for a multi-token marker)."""
    if think_end is None:  # SoftThinkingConfig already refuses forced_end_text without think_end
        return
    if len(think_end.token_ids) == 1:
        found = think_end.token_ids[0] in token_ids
    else:
        found = think_end.text in tokenizer.decode(token_ids)
    if not found:
        raise ValueError(
            f"SoftThinkingConfig.forced_end_text={text!r} encodes to {list(token_ids)}, which does not contain the "
            f"think-end marker as the decoder detects it (token(s) {list(think_end.token_ids)}), so writing it would "
            "not end thinking. Write the marker so that it tokenizes on its own (e.g. surrounded by whitespace), or "
            "set forced_end_text=None."
        )


def stop_token_ids(eos_token_id: int | list[int] | torch.Tensor | None, think_end: ThinkEnd | None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """The *stop set* S of a thinking step, sorted: the EOS id(s) and the first token of `think_end`.

    The one definition of S: the decoder's sampled stop decisions and `SoftGRPOTrainer`'s scoring of them use it.
    """
    eos = torch.as_tensor(eos_token_id).flatten().tolist() if eos_token_id is not None else []
    ids = set(eos) | ({think_end.token_ids[0]} if think_end is not None else set())
    return torch.tensor(sorted(int(i) for i in ids), dtype=torch.long, device=device)


def sample_stop_decision(
    scores: torch.Tensor, ids: torch.Tensor, stop_ids: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Sample a thinking step's stop decision: $x \sim \mathrm{Categorical}(w)$, $w = \mathrm{softmax}(s)$ over the K ids.

    Every decision that ends thinking or the completion is an action of the policy (`docs/soft_rl.md`): a row
    of `rows` stops when $x$ is in the stop set $S$ (`stop_ids`), with probability $p(S) = \sum_{j \in S} w_j$;
    otherwise it continues with the mixture of $w$ restricted to the non-stop ids and renormalised,
    $w'_j = w_j / (1 - p(S))$, $j \notin S$ (its scores get `-inf` on $S$; the noise comes after).

    Args:
        scores: `(B, K)` thinking scores after the filters (`-inf`: not in the support), before noise.
        ids: `(B, K)` their token ids.
        stop_ids: `(n,)` the stop set S.
        rows: `(B,)` bool, the rows that decide freely this step (thinking, not forced).

    Returns:
        `(stop, index, continue_scores)`: `(B,)` bool rows that stop, `(B,)` the sampled position x in `ids`
        (meaningful where `stop`), and `(B, K)` scores with S removed on the rows that continue.
    """
    is_stop = torch.isin(ids, stop_ids) & (scores > -math.inf)
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    empty = probs.sum(-1, keepdim=True) <= 0
    probs = torch.where(empty, torch.ones_like(probs), probs)  # rows with no support cannot decide anyway
    index = torch.multinomial(probs, num_samples=1)
    stop = rows & is_stop.gather(-1, index)[:, 0]
    # a row whose whole support is S cannot continue: it stops whatever it drew
    continue_scores = torch.where((rows & ~stop)[:, None] & is_stop, -math.inf, scores)
    return stop, index[:, 0], continue_scores


@dataclass
class SoftThinkingPlan:
    """What one `generate` call resolves once: markers, processors, mixture sizes, noise scale, schedules.

    Attributes:
        mixture_size: ids mixed per concept token, `min(max_topk, top_k, V)`.
        recorded: ids recorded per step in the outputs (the whole mixture when the config bounds it).
        dense: mix as a `(B, V) @ (V, d)` product (more than `DENSE_MIXTURE_MIN_IDS` ids) instead of lookups.
        max_new_tokens: the length the marker blends' schedules run over (SwiReasoning's t / max_new_tokens).
        stop_ids: the stop set S sampled at each soft step (`stop_decision="sample"`, `mode="soft"`), else None.
        end_text_ids: the tokens written when the decoder ends thinking (`forced_end_text`, or the marker alone).
        explicit_ids: `(n,)` the tokens a soft step feeds explicitly (`explicit_math_tokens`), else None.

    Token ids: every field named `*_id` / `*_ids` (and `think_end`) holds token ids the loop produces, forces or
    feeds, resolved in `plan_soft_thinking` (the think-end marker, the blended markers, final_answer,
    forced_end_text, the explicit math tokens, the stop set, EOS and pad); `check_plan_token_ids` checks all of
    them against the model before the first step, so a field added here is checked by construction. Embeddings of
    marker ids are looked up only after that check (`embed_markers`).
    """

    config: SoftThinkingConfig
    think_end: ThinkEnd | None
    think_end_marker_id: int | None  # the one-token think-end blended in by switch_beta < 1
    think_start_marker_id: int | None  # the one-token think-start blended in by switch_alpha < 1
    first_step_marker_id: int | None  # the one token blended into the first step by first_step_blend < 1
    final_answer_ids: tuple[int, ...]
    end_text_ids: tuple[int, ...]
    explicit_ids: torch.Tensor | None
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    forcers: LogitsProcessorList
    switch: EntropySwitchLogitsProcessor | None
    warpers: LogitsProcessorList
    noise: LogitsProcessorList
    candidates: int | None
    mixture_size: int
    recorded: int
    dense: bool
    noise_std: float
    needs_entropy: bool
    max_new_tokens: int
    stop_ids: torch.Tensor | None
    think_end_marker: torch.Tensor | None = None  # (1, d) E[think_end], for switch_beta < 1 (`embed_markers`)
    think_start_marker: torch.Tensor | None = None  # (1, d) E[think_start], for switch_alpha < 1
    first_step_marker: torch.Tensor | None = None  # (1, d) E[first_step_marker], for first_step_blend < 1

    def embed_markers(self, embedding: torch.nn.Module, device: torch.device) -> None:
        """Look up the embeddings of the blended markers (after `check_plan_token_ids`)."""
        with torch.no_grad():
            for name in ("think_end_marker", "think_start_marker", "first_step_marker"):
                token_id = getattr(self, f"{name}_id")
                if token_id is not None:
                    setattr(self, name, embedding(torch.tensor([token_id], device=device)))


def _token_id_setting(name: str, value: tuple[int, ...], config: SoftThinkingConfig) -> str:
    """How a message names the setting a plan field's token ids came from."""
    if name in ("think_end", "think_end_marker_id"):
        return f"SoftThinkingConfig.think_end={config.think_end!r}"
    if name == "eos_token_ids":
        return f"generation_config.eos_token_id={list(value)}"
    if name == "pad_token_id":
        return f"generation_config.pad_token_id={value[0]}"
    if name == "stop_ids":
        return "the stop set (generation_config.eos_token_id and the first think-end token)"
    if name == "end_text_ids":
        if config.forced_end_text is None:
            return f"SoftThinkingConfig.think_end={config.think_end!r}"
        return f"SoftThinkingConfig.forced_end_text={config.forced_end_text!r}"
    if name == "explicit_ids":
        return "SoftThinkingConfig.explicit_math_tokens=True (SwiReasoning's math symbols, digits and letters)"
    stem = name.removesuffix("_ids").removesuffix("_id")
    for setting in (stem, stem.removesuffix("_marker")):
        if hasattr(config, setting):
            return f"SoftThinkingConfig.{setting}={getattr(config, setting)!r}"
    return f"the soft-thinking plan's {name}"


def plan_token_ids(plan: SoftThinkingPlan) -> dict[str, tuple[int, ...]]:
    """Every token id of a plan by the setting it came from: `think_end` and each field named `*_id` / `*_ids`."""
    named: dict[str, tuple[int, ...]] = {}
    for item in dataclasses.fields(plan):
        value = getattr(plan, item.name)
        if isinstance(value, ThinkEnd):
            ids = value.token_ids
        elif item.name.endswith(("_id", "_ids")) and value is not None:
            ids = value.flatten().tolist() if isinstance(value, torch.Tensor) else value
            ids = (ids,) if isinstance(ids, int) else tuple(ids)
        else:
            continue
        if ids:
            setting = _token_id_setting(item.name, tuple(ids), plan.config)
            named[setting] = tuple(named.get(setting, ())) + tuple(i for i in ids if i not in named.get(setting, ()))
    return named


def check_plan_token_ids(model: Any, plan: SoftThinkingPlan, tokenizer: Any = None) -> None:
    """The one check of every token id a soft-thinking `generate` resolves (`plan_token_ids`), before its first
    step, against the model's input embedding and output layer (`hf_softthink.token_ids.check_token_ids`); a
    `ValueError` names the setting and the fix."""
    check_token_ids(model, plan_token_ids(plan), tokenizer=tokenizer)


def plan_soft_thinking(
    model: GenerationMixin,
    config: SoftThinkingConfig,
    tokenizer: Any,
    embedding: torch.nn.Module,
    generation_config: GenerationConfig,
    prompt_length: int,
    via_custom_generate: bool,
) -> SoftThinkingPlan:
    """Resolve and validate everything a soft-thinking `generate` needs before its first step."""
    vocab_size = model.config.get_text_config().vocab_size
    switching = config.mode == "switch"
    if tokenizer is None and via_custom_generate:
        markers = {
            "think_end": config.think_end,
            "think_start": config.think_start if switching and config.switch_alpha < 1 else None,
            "first_step_marker": config.first_step_marker if switching and config.first_step_blend < 1 else None,
            "final_answer": config.final_answer if switching else None,
            "forced_end_text": config.forced_end_text,
        }
        for name, value in markers.items():
            if isinstance(value, str):
                raise missing_tokenizer_error(name, value)
        if switching and config.explicit_math_tokens:
            raise missing_tokenizer_error("explicit_math_tokens", True)
    think_end = resolve_think_end(config.think_end, tokenizer, vocab_size)
    think_end_marker_id = think_start_marker_id = first_step_marker_id = None
    # think_end is resolved once (above): the blend and switch_after_think_end only need it to be one token
    if switching and config.switch_beta < 1:
        think_end_marker_id = single_token_id(
            "think_end", config.think_end, think_end,
            f"the switch blend switch_beta={config.switch_beta} needs the embedding of one token",
            "switch_beta=1.0 (no blend)")
    if switching and config.switch_alpha < 1:
        think_start_marker_id = resolve_single_token(
            "think_start", config.think_start, tokenizer, vocab_size,
            f"the switch blend switch_alpha={config.switch_alpha} needs the embedding of one token",
            "switch_alpha=1.0 (no blend)")
    if switching and config.first_step_blend < 1:
        first_step_marker_id = resolve_single_token(
            "first_step_marker", config.first_step_marker, tokenizer, vocab_size,
            f"the first-step blend first_step_blend={config.first_step_blend} needs the embedding of one token",
            "first_step_blend=1.0 (no blend)")
    if switching and config.switch_after_think_end:
        single_token_id("think_end", config.think_end, think_end,
                        "switch_after_think_end=True compares each drawn token with the marker's one token (a row "
                        "that draws it stops switching back to soft)", "switch_after_think_end=False")
    final_answer_ids: tuple[int, ...] = ()
    if switching and config.final_answer is not None:
        final_answer_ids = encode_text("final_answer", config.final_answer, tokenizer)
    end_text_ids = think_end.token_ids if think_end is not None else ()
    if config.forced_end_text is not None:
        end_text_ids = encode_text("forced_end_text", config.forced_end_text, tokenizer)
        check_forced_end_text(config.forced_end_text, end_text_ids, think_end, tokenizer)
    explicit_ids = None
    if switching and config.explicit_math_tokens:
        if tokenizer is None:
            raise ValueError(
                "SoftThinkingConfig.explicit_math_tokens=True builds its token ids with the tokenizer (SwiReasoning's "
                "math symbols, digits and letters): pass `generate(..., tokenizer=tokenizer)` or "
                "`enable_soft_thinking(model, tokenizer=tokenizer)`, or set explicit_math_tokens=False."
            )
        explicit_ids = torch.tensor(math_token_ids(tokenizer), dtype=torch.long, device=model.device)
    forcers = think_end_forcers(config, end_text_ids[0] if end_text_ids else None, prompt_length)
    candidates = config.candidate_count
    mixture_size = min(x for x in (config.max_topk, candidates, vocab_size) if x is not None)
    bounded = config.max_topk is not None or candidates is not None
    noise_std = 0.0
    if config.noise == "gaussian" and config.gaussian_sigma > 0:
        rows = config.gaussian_rms_token_ids
        noise_std = config.gaussian_sigma * embedding_rms(embedding, vocab_size, token_ids=rows)
        dtype_max = torch.finfo(embedding.weight.dtype if hasattr(embedding, "weight") else torch.float32).max
        if not math.isfinite(noise_std) or NOISE_TAIL_STDS * noise_std > dtype_max:
            raise ValueError(
                f"SoftThinkingConfig.gaussian_sigma={config.gaussian_sigma} is too large for this model: the noise "
                f"scale sigma * rms(E) = {noise_std:.3g} overflows its embedding dtype (largest value "
                f"{dtype_max:.3g}) within {NOISE_TAIL_STDS:g} standard deviations. Use gaussian_sigma <= "
                f"{dtype_max / NOISE_TAIL_STDS / (noise_std / config.gaussian_sigma):.3g} (a fraction of rms(E); "
                "around 0.1-1 is typical)."
            )
    max_length = generation_config.max_length or prompt_length + 1
    eos = generation_config.eos_token_id
    pad = generation_config.pad_token_id
    plan = SoftThinkingPlan(
        config=config,
        think_end=think_end,
        think_end_marker_id=think_end_marker_id,
        think_start_marker_id=think_start_marker_id,
        first_step_marker_id=first_step_marker_id,
        final_answer_ids=final_answer_ids,
        end_text_ids=end_text_ids,
        explicit_ids=explicit_ids,
        eos_token_ids=() if eos is None else tuple(int(i) for i in ([eos] if isinstance(eos, int) else eos)),
        pad_token_id=None if pad is None else int(pad),
        forcers=forcers,
        switch=next((f for f in forcers if isinstance(f, EntropySwitchLogitsProcessor)), None),
        warpers=thinking_warpers(config),
        noise=mixture_noise(config),
        candidates=candidates,
        mixture_size=mixture_size,
        recorded=mixture_size if bounded else min(mixture_size, RECORDED_IDS_FULL_VOCABULARY),
        dense=mixture_size > DENSE_MIXTURE_MIN_IDS,
        noise_std=noise_std,
        needs_entropy=(
            config.cold_stop_entropy is not None or switching or bool(generation_config.return_dict_in_generate)
        ),
        max_new_tokens=max(max_length - prompt_length, 1),
        stop_ids=(
            stop_token_ids(generation_config.eos_token_id, think_end, model.device)
            if config.stop_decision == "sample" and not switching
            else None
        ),
    )
    check_plan_token_ids(model, plan, tokenizer)
    plan.embed_markers(embedding, model.device)
    return plan


def check_soft_thinking(
    model: Any, config: SoftThinkingConfig, tokenizer: Any = None, generation_config: GenerationConfig | None = None
) -> SoftThinkingPlan:
    """Resolve and check, without decoding, everything a soft-thinking `generate` with `config` would before its
    first step (markers, every token id, the noise scale): the pre-flight of `evaluate_modes`, the command line
    and `SoftGRPOTrainer`, so a bad setting stops a run before its first batch. Raises what `generate` would
    (a `ValueError` naming the setting); returns the plan."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    generation_config = generation_config if generation_config is not None else target.generation_config
    tokenizer = tokenizer if tokenizer is not None else getattr(target, "_soft_thinking_tokenizer", None)
    return plan_soft_thinking(target, config, tokenizer, input_embedding_module(target), generation_config, 1, False)


@dataclass
class Mixture:
    """One step's concept-token mixture, for every row (rows that feed no mixture ignore it).

    `ids` / `weights` / `log_weights` are `(B, R)`, by decreasing weight: what the outputs record. The
    embedding is mixed from `dense_weights` (`(B, V)`) on the dense path, else from every mixed id
    (`mixed_ids`, `mixed_weights`, `(B, K)`). `scores` / `score_ids` are the final candidate scores (for
    `output_scores`; `score_ids` None: the whole vocabulary in vocabulary order). `support` `(B, R)` marks the
    recorded ids with weight > 0 in w before the noise; `stop` `(B,)` the rows that drew a stop decision
    (`stop_decision="sample"`), whose weights are then one-hot at the stop token. With Gumbel noise,
    `perturbed` `(B, R)` holds log w + g of the recorded ids (before the division by tau), else None.
    """

    ids: torch.Tensor
    weights: torch.Tensor
    log_weights: torch.Tensor
    mixed_ids: torch.Tensor | None
    mixed_weights: torch.Tensor | None
    dense_weights: torch.Tensor | None
    scores: torch.Tensor
    score_ids: torch.Tensor | None
    support: torch.Tensor
    stop: torch.Tensor
    perturbed: torch.Tensor | None = None

    @property
    def total(self) -> torch.Tensor:
        """(B,) the mixture's total weight: 1, or NaN when something non-finite reached it."""
        return (self.dense_weights if self.dense_weights is not None else self.mixed_weights).sum(-1)

    def embed(self, embedding: torch.nn.Module) -> torch.Tensor:
        """(B, d) the concept tokens, through the model's input-embedding module."""
        if self.dense_weights is not None:
            return dense_concept_embedding(embedding, self.dense_weights)
        return concept_embedding(embedding, self.mixed_ids, self.mixed_weights)


def thinking_mixture(
    scores: torch.Tensor, input_ids: torch.LongTensor, plan: SoftThinkingPlan, deciding: torch.Tensor
) -> Mixture:
    """The concept-token mixture of thinking scores: candidates, warpers, `max_topk` cut, stop decision, noise,
    softmax.

    Rows are shifted to a zero maximum before the warpers (same softmax; a tiny temperature cannot overflow).
    The noise comes after the `max_topk` cut, so the fed weights are exactly the noise distribution around the
    renormalised top-K weights (e.g. Dir(alpha w) over the K ids) and the trainer can score them in closed form.
    With `plan.stop_ids` the rows of `deciding` draw their stop decision from w first (`sample_stop_decision`;
    with Gumbel noise the Gumbel-max id is that draw); a row that stops gets one-hot weights at its stop token.
    """
    # ids None: the vocabulary, in vocabulary order. Ties go to the lowest id (as greedy `generate`): in the order
    # of the candidates, and at their boundary when the mixture is all of them (a prefix of them is cut below)
    candidate_scores, candidate_ids = top_k_candidates(
        scores, plan.candidates, settle_boundary=plan.candidates is not None and plan.candidates <= plan.mixture_size)
    candidate_scores = plan.warpers(input_ids, shift_to_zero_max(candidate_scores))
    if candidate_scores.shape[-1] > plan.mixture_size:
        if candidate_ids is None:
            candidate_scores, candidate_ids = top_k_lowest_ids(candidate_scores, plan.mixture_size)
        else:  # candidates are sorted by score and the warpers keep the order
            candidate_scores = candidate_scores[:, : plan.mixture_size]
            candidate_ids = candidate_ids[:, : plan.mixture_size]
    support = candidate_scores > -math.inf
    stop = torch.zeros_like(deciding)
    sampling_stops = plan.stop_ids is not None
    by_gumbel = plan.config.noise == "gumbel"
    if sampling_stops:
        ids = candidate_ids if candidate_ids is not None else torch.arange(
            candidate_scores.shape[-1], device=scores.device).expand_as(candidate_scores)
        if not by_gumbel:
            stop, stop_index, candidate_scores = sample_stop_decision(candidate_scores, ids, plan.stop_ids, deciding)
    perturbed = None
    if by_gumbel:  # keep log w + g: SofT-GRPO's score reads it
        gumbel = plan.noise[0]
        perturbed = gumbel.perturbed_log_weights(candidate_scores)
        candidate_scores = gumbel.scores_from_perturbed(perturbed)
    else:
        candidate_scores = plan.noise(input_ids, candidate_scores)
    log_mixture = torch.log_softmax(candidate_scores, dim=-1)
    if sampling_stops:
        if by_gumbel:  # the Gumbel-max id is already a sample of w
            stop_index = log_mixture.argmax(-1)
            stop = deciding & torch.isin(ids.gather(-1, stop_index[:, None])[:, 0], plan.stop_ids)
        one_hot = torch.full_like(log_mixture, -math.inf).scatter_(-1, stop_index[:, None], 0.0)
        log_mixture = torch.where(stop[:, None], one_hot, log_mixture)

    def ids_at(order: torch.Tensor) -> torch.Tensor:
        return order if candidate_ids is None else candidate_ids.gather(-1, order)

    # positions in candidate order: equal weights keep it (lowest id first among equal scores)
    if plan.dense:  # what is recorded of a dense mixture: its largest weights (the token first); all of it is fed
        log_weights, order = top_k_lowest_ids(log_mixture, plan.recorded, settle_boundary=False)
        if candidate_ids is None:  # the whole vocabulary, in vocabulary order
            dense_weights = log_mixture.exp()
        else:
            dense_weights = torch.zeros_like(scores).scatter_(-1, candidate_ids, log_mixture.exp())
        return Mixture(ids_at(order), log_weights.exp(), log_weights, None, None, dense_weights, candidate_scores,
                       candidate_ids, support.gather(-1, order), stop,
                       perturbed.gather(-1, order) if perturbed is not None else None)
    log_weights, order = log_mixture.sort(dim=-1, descending=True, stable=True)
    mixed_ids, mixed_weights = ids_at(order), log_weights.exp()
    recorded = plan.recorded
    return Mixture(
        mixed_ids[:, :recorded], mixed_weights[:, :recorded], log_weights[:, :recorded], mixed_ids, mixed_weights,
        None, candidate_scores, candidate_ids, support.gather(-1, order)[:, :recorded], stop,
        perturbed.gather(-1, order[:, :recorded]) if perturbed is not None else None,
    )


class ForcedText:
    """Token sequences the decoder writes piece by piece, one per step.

    `END_TEXT`: the text written when the decoder ends thinking (`forced_end_text`, or the think-end marker
    alone), from its second piece (a forcer writes the first); `MARKER`: the rest of a multi-token think-end
    marker whose first piece a sampled stop decision drew; `FINAL_ANSWER`: SwiReasoning's final-answer text.
    Per row: which sequence is being written (`kind`, 0 for none) and the index of its next piece.
    """

    END_TEXT, MARKER, FINAL_ANSWER = 1, 2, 3

    def __init__(self, end_text_ids: tuple[int, ...], think_end_ids: tuple[int, ...],
                 final_answer_ids: tuple[int, ...], batch: int, device):
        texts = (end_text_ids, think_end_ids, final_answer_ids)
        self.table = torch.zeros(4, max(*map(len, texts), 1), dtype=torch.long, device=device)
        for kind, ids in enumerate(texts, start=1):
            self.table[kind, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        self.lengths = torch.tensor([0, *map(len, texts)], device=device)
        self.kind = torch.zeros(batch, dtype=torch.long, device=device)
        self.position = torch.zeros(batch, dtype=torch.long, device=device)

    def writing(self, kind: int | None = None) -> torch.Tensor:
        """(B,) bool: rows writing a sequence (of this kind) on this step."""
        return self.kind > 0 if kind is None else self.kind == kind

    def next_tokens(self) -> torch.Tensor:
        """(B,) the next piece of each row's sequence (meaningless where a row writes none)."""
        return self.table[self.kind, self.position.clamp_max(self.table.shape[1] - 1)]

    def advance(self) -> None:
        """After a step: every row that wrote a piece moves to the next one (or is done with its sequence)."""
        self.position = torch.where(self.kind > 0, self.position + 1, self.position)
        done = (self.kind > 0) & (self.position >= self.lengths[self.kind])
        self.kind = torch.where(done, 0, self.kind)
        self.position = torch.where(done, 0, self.position)

    def start(self, rows: torch.Tensor, kind: int, first_position: int) -> None:
        """From the next step, `rows` write sequence `kind` from piece `first_position` (if it has one); a row
        writing another sequence drops it."""
        starts = rows & (self.lengths[kind] > first_position)
        self.kind = torch.where(starts, kind, torch.where(rows, 0, self.kind))
        self.position = torch.where(starts, first_position, torch.where(rows, 0, self.position))


def choose_tokens(scores: torch.Tensor, do_sample: bool) -> torch.Tensor:
    """(B,) tokens drawn as `_sample` draws them: multinomial over softmax(scores), or argmax."""
    if do_sample:
        return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
    return torch.argmax(scores, dim=-1)


def marker_blend(base: float, step: int, max_new_tokens: int) -> float:
    r"""SwiReasoning's blend weight schedule $\lambda_t = \lambda_0 + (1 - \lambda_0)\, t / T_{max}$ (1 at the end)."""
    return base + (1.0 - base) * min(step / max_new_tokens, 1.0)


class StepRecorder:
    """Collects the per-step outputs of `return_dict_in_generate` and stacks them at the end."""

    def __init__(self, plan: SoftThinkingPlan, pad_token_id: torch.Tensor | None):
        self.plan, self.pad = plan, pad_token_id if pad_token_id is not None else 0
        self.ids, self.weights, self.log_weights, self.soft, self.entropy, self.embeds, self.events = (
            [], [], [], [], [], [], []
        )
        self.support, self.stop, self.perturbed = [], [], []
        self._constants: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _step_constants(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (B, R) weights, log-weights and support of a step fed a single token (weight 1 on column 0):
        made once, read by every step (never written, never stored)."""
        if self._constants is None:
            one_hot = torch.zeros(batch, self.plan.recorded, device=device)
            one_hot[:, 0] = 1.0
            self._constants = one_hot, one_hot.log(), torch.zeros_like(one_hot, dtype=torch.bool)
        return self._constants

    def add(self, live, tokens, mixture, fed_mixture, soft, entropy, fed_embeds, events, stop) -> None:
        """Record one step. `fed_mixture` rows record the mixture; `stop` rows record the ids of w (their
        weights are one-hot at the stop token); the Gaussian action is recorded at both (a stop feeds its
        token's embedding)."""
        weights, log_weights, support = self._step_constants(tokens.shape[0], tokens.device)
        ids = torch.nn.functional.pad(tokens[:, None], (0, self.plan.recorded - 1))  # (B, R): the token, then 0s
        scored = soft | stop  # the thinking steps a trainer scores with the thinking distribution
        if mixture is not None:
            from_mixture = (fed_mixture | stop)[:, None]
            ids = torch.where(from_mixture, mixture.ids, ids)
            weights = torch.where(from_mixture, mixture.weights, weights)
            log_weights = torch.where(from_mixture, mixture.log_weights, log_weights)
            support = mixture.support & scored[:, None]
        if self.plan.config.noise == "gumbel":  # log w + g at the steps a trainer scores
            perturbed = mixture.perturbed if mixture is not None else None
            self.perturbed.append(
                torch.full_like(log_weights, -math.inf) if perturbed is None
                else torch.where((scored & live)[:, None], perturbed, -math.inf)
            )
        self.support.append(support & live[:, None])
        self.stop.append(stop & live)
        self.ids.append(torch.where(live[:, None], ids, self.pad))
        self.weights.append(weights * live[:, None])
        self.log_weights.append(log_weights.masked_fill(~live[:, None], -math.inf))
        self.soft.append(soft)
        self.entropy.append(entropy)
        self.events.append(events.to(torch.uint8))
        if self.plan.noise_std > 0:
            self.embeds.append(fed_embeds.float() * scored[:, None])

    def fields(self) -> dict[str, torch.Tensor | None]:
        return dict(
            soft_topk_ids=torch.stack(self.ids, dim=1),
            soft_topk_weights=torch.stack(self.weights, dim=1),
            soft_topk_log_weights=torch.stack(self.log_weights, dim=1),
            soft_input_embeddings=torch.stack(self.embeds, dim=1) if self.embeds else None,
            thinking_mask=torch.stack(self.soft, dim=1),
            entropies=torch.stack(self.entropy, dim=1),
            step_events=StepEvents.of(torch.stack(self.events, dim=1)),
            soft_topk_support=torch.stack(self.support, dim=1),
            stop_decision_mask=torch.stack(self.stop, dim=1),
            soft_topk_perturbed_log_weights=torch.stack(self.perturbed, dim=1) if self.perturbed else None,
        )


def non_finite_error(
    problems: list[bool], flags: torch.Tensor, step: int, logits: torch.Tensor, input_ids: torch.LongTensor,
    shared: LogitsProcessorList, config: SoftThinkingConfig, noise_std: float,
) -> NonFiniteError:
    """Name what went non-finite, where (step, rows) and what to do about it (runs only once something did)."""
    kind = problems.index(True)
    rows = flags[kind].nonzero().flatten().tolist()
    where = f"at generated step {step} (batch rows {rows})"
    raw_bad = ~torch.isfinite(logits[rows]).all(-1)
    if kind in (0, 1) and raw_bad.any():
        return NonFiniteError(
            f"The model's logits contain NaN or inf {where}, so soft thinking stops here rather than decode from "
            "them. The forward pass overflowed: in float16 try bfloat16 or float32; check the inputs and the "
            "weights for NaN."
        )
    if kind == 0:
        culprit, scores = "the logits processors", logits.clone()
        for processor in shared:
            scores = processor(input_ids, scores)
            if not torch.isfinite(scores[rows].amax(-1)).all():
                culprit = f"the logits processor {type(processor).__name__}"
                break
        return NonFiniteError(
            f"{culprit} returned scores with no finite maximum (all -inf, a NaN or +inf) {where}: no token can be "
            "chosen from them (plain generate(do_sample=True) fails on them too: 'probability tensor contains "
            "either inf, nan or element < 0'). Fix the processor so that every row keeps at least one finite "
            "score and none is NaN or +inf."
        )
    if kind == 1:
        return NonFiniteError(
            f"The full-vocabulary entropy is NaN or inf {where}; it would drive Cold Stop and the switch decisions. "
            "Check the model's logits for NaN/inf."
        )
    if kind == 2:
        return NonFiniteError(
            f"The concept-token weights are NaN or inf {where}, from the thinking filters and noise "
            f"(temperature={config.temperature}, top_k={config.top_k}, top_p={config.top_p}, min_p={config.min_p}, "
            f"noise={config.noise!r}, dirichlet_alpha={config.dirichlet_alpha}, gumbel_tau={config.gumbel_tau}) or "
            "from a logits processor that runs after generate's warpers and left no finite score for a thinking "
            "row. Use config values in their documented ranges, and processors that keep a finite score per row."
        )
    return NonFiniteError(
        f"The embedding fed back is NaN or inf {where} (Gaussian noise scale sigma * rms(E) = {noise_std:.3g}, "
        f"gaussian_sigma={config.gaussian_sigma}). Lower gaussian_sigma, or check the input-embedding weights "
        "for NaN/inf."
    )


def soft_thinking_sample(
    model: GenerationMixin,
    input_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    synced_gpus: bool = False,
    streamer: Any = None,
    soft_thinking: SoftThinkingConfig | dict | bool | None = None,
    tokenizer: Any = None,
    **model_kwargs: Any,
) -> SoftThinkingGenerateOutput | torch.LongTensor:
    """The soft-thinking decoding loop, with the signature of `GenerationMixin._sample`.

    Usable directly as `model.generate(**inputs, custom_generate=soft_thinking_sample, soft_thinking=cfg)`
    on any causal LM, without `enable_soft_thinking` (transformers then does not pass `streamer`, nor
    `tokenizer`: for a string `think_end` use `custom_generate=functools.partial(soft_thinking_sample,
    tokenizer=tokenizer)`). `soft_thinking` defaults to `generation_config.soft_thinking`, then to the defaults.
    """
    if soft_thinking is None:
        soft_thinking = getattr(generation_config, GENERATION_CONFIG_ATTRIBUTE, None) or True
    config = SoftThinkingConfig.coerce(
        soft_thinking, saved=getattr(model.generation_config, GENERATION_CONFIG_ATTRIBUTE, None),
        source=saved_config_source(model) if soft_thinking is True else SAVED_SOURCE,
    )
    if config is None:
        raise ValueError("soft_thinking_sample was called with soft_thinking=False: call generate without it.")
    check_soft_generation_mode(generation_config)
    if model.config.is_encoder_decoder:
        raise ValueError("soft_thinking supports decoder-only causal LMs, not encoder-decoder models.")
    via_custom_generate = not isinstance(model, SoftThinkingGenerationMixin)
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "_soft_thinking_tokenizer", None)
    embedding = input_embedding_module(model)
    batch_size, prompt_length = input_ids.shape
    plan = plan_soft_thinking(model, config, tokenizer, embedding, generation_config, prompt_length, via_custom_generate)
    check_token_ids(model, {"the prompt (input_ids)": sorted({int(input_ids.min()), int(input_ids.max())})},
                    tokenizer=tokenizer)
    think_end, switch = plan.think_end, plan.switch
    think_end_first = think_end.token_ids[0] if think_end is not None else None

    pad_token_id = generation_config._pad_token_tensor
    return_dict = generation_config.return_dict_in_generate
    output_scores = return_dict and generation_config.output_scores
    output_logits = return_dict and generation_config.output_logits
    output_attentions = return_dict and generation_config.output_attentions
    output_hidden_states = return_dict and generation_config.output_hidden_states
    has_eos_stopping_criteria = any(hasattr(c, "eos_token_id") for c in stopping_criteria)
    do_sample = generation_config.do_sample

    device = input_ids.device
    if pad_token_id is not None:
        pad_token_id = pad_token_id.to(device)
    shared, answer_rest, thinking_rest = split_processors(logits_processor)
    forced_text = ForcedText(plan.end_text_ids, think_end.token_ids if think_end else (), plan.final_answer_ids,
                             batch_size, device)
    no_rows = torch.zeros(batch_size, dtype=torch.bool, device=device)

    thinking = torch.ones(batch_size, dtype=torch.bool, device=device)
    unfinished = torch.ones(batch_size, dtype=torch.long, device=device)
    ended_by_switch_limit = no_rows.clone()  # SwiReasoning keeps tracking their entropy in the answer
    # final-answer steps left per row (switch mode): -1 until the row's final answer starts, then counts down to 0
    answer_steps_left = torch.full((batch_size,), -1, dtype=torch.long, device=device)
    recorder = StepRecorder(plan, pad_token_id) if return_dict else None
    scores, raw_logits, attentions, hidden_states = [], [], [], []
    # host-side, from the previous step's single sync: a row thinks / answers / may feed a concept token
    any_thinking, any_answer, any_mixing = True, False, True
    after_end = switch is not None and config.switch_after_think_end  # SwiReasoning: switching never ends

    # the decode steps' forward, chosen as `_sample` chooses it: compiled with a static cache where transformers
    # compiles (docs/design.md §8); every step feeds it (B, 1, d) `inputs_embeds`, so it is traced once, not per step
    model_forward = (
        model.get_compiled_call(generation_config.compile_config)
        if model._valid_auto_compile_criteria(model_kwargs, generation_config)
        else model.__call__
    )
    outputs = model._prefill(input_ids, generation_config, model_kwargs)
    this_peer_finished = False
    fed_embeds = None
    with model._optimize_model_for_decode():
        while model._has_unfinished_sequences(this_peer_finished, synced_gpus, device=device):
            if fed_embeds is not None:
                model_inputs = model.prepare_inputs_for_generation(input_ids, next_sequence_length=1, **model_kwargs)
                model_inputs["input_ids"] = None
                model_inputs["inputs_embeds"] = fed_embeds[:, None, :]
                outputs = model_forward(**model_inputs, return_dict=True)
            model_kwargs = model._update_model_kwargs_for_generation(outputs, model_kwargs)
            if synced_gpus and this_peer_finished:
                continue
            step = input_ids.shape[1] - prompt_length
            logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32, device=device)
            live = unfinished > 0
            thinking_now = thinking & live
            entropy = full_entropy(logits, config.temperature) if plan.needs_entropy else None
            processed = shared(input_ids, logits)
            bad_scores = live & ~torch.isfinite(processed.amax(-1))

            # --- forced tokens: pieces of a text being written, then the think-end forcers
            forced = forced_text.writing()
            forced_tokens = forced_text.next_tokens()
            forced_events = torch.where(
                forced_text.writing(ForcedText.FINAL_ANSWER), int(StepEvent.FORCED_FINAL_ANSWER),
                int(StepEvent.FORCED_SPELLING),
            )
            deciding = thinking_now & ~forced  # thinking rows the forcers may force this step
            answer_scores = None
            if switch is not None:  # every token is drawn with the caller's settings, before the switch decides
                answer_scores = answer_rest(input_ids, processed).masked_fill(bad_scores[:, None], 0.0)
                drawn = choose_tokens(answer_scores, do_sample)
                if after_end:  # SwiReasoning: a row that draws think-end never switches back to soft
                    switch.lock(live & (drawn == think_end_first))
            fired = no_rows  # rows whose thinking a forcer ends on this step
            if any_thinking or switch is not None:
                switching = live if after_end else deciding | (ended_by_switch_limit & live)
                for forcer in plan.forcers:
                    fires = forcer.fires(input_ids, thinking=switching if forcer is switch else deciding, entropy=entropy)
                    forced_events = torch.where(fires & ~fired, int(forcer.forced_event), forced_events)  # first wins
                    fired = fired | fires
                forced = forced | fired
                forced_tokens = torch.where(fired, plan.end_text_ids[0] if plan.end_text_ids else 0, forced_tokens)
            mixture = None
            if any_mixing:
                mixture = thinking_mixture(thinking_rest(input_ids, processed), input_ids, plan, deciding & ~fired)

            # --- the token: forced, mixture top-1 (soft mode), or the caller's own settings
            next_tokens = mixture.ids[:, 0] if mixture is not None else torch.zeros_like(unfinished)
            if switch is not None:
                next_tokens = torch.where(live, drawn, next_tokens)
            elif any_answer:
                answer_scores = answer_rest(input_ids, processed).masked_fill(bad_scores[:, None], 0.0)
                next_tokens = torch.where(live & ~thinking, choose_tokens(answer_scores, do_sample), next_tokens)
            next_tokens = torch.where(forced, forced_tokens, next_tokens)
            if has_eos_stopping_criteria or config.final_answer is not None:  # the final answer can end a row
                next_tokens = next_tokens * unfinished + (pad_token_id if pad_token_id is not None else 0) * (
                    1 - unfinished
                )
            step_input_ids = input_ids
            input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)

            # --- what the step was, and what it feeds back
            reached = think_end.reached(input_ids) if think_end is not None else no_rows
            leaving = thinking_now & reached
            stop = mixture.stop if mixture is not None else no_rows  # a sampled stop decision feeds its token
            to_explicit = to_soft = no_rows
            if switch is None:
                soft = thinking_now & ~forced & ~leaving & ~stop
            else:
                # the steps whose switches show: every live step after SwiReasoning's code, else free thinking steps
                shown = live if after_end else thinking_now & ~forced & ~leaving
                to_explicit, to_soft = switch.to_explicit & shown, switch.to_soft & shown
                soft = shown & ~switch.explicit & ~switch.locked  # locked: drew think-end (after_end only)
                if plan.explicit_ids is not None:  # SwiReasoning's math tokens are fed as tokens
                    soft = soft & ~torch.isin(next_tokens, plan.explicit_ids)
            blend_end = to_explicit if plan.think_end_marker is not None else no_rows
            fed_mixture = soft | blend_end
            fed_embeds = embedding(next_tokens)
            if mixture is not None:
                mixed = mixture.embed(embedding)
                if plan.think_end_marker is not None:
                    beta = marker_blend(config.switch_beta, step, plan.max_new_tokens)
                    blend = beta * mixed + (1 - beta) * plan.think_end_marker
                    fed_embeds = torch.where(blend_end[:, None], blend, fed_embeds)
                if plan.think_start_marker is not None:
                    alpha = marker_blend(config.switch_alpha, step, plan.max_new_tokens)
                    mixed = torch.where(to_soft[:, None], alpha * mixed + (1 - alpha) * plan.think_start_marker, mixed)
                if plan.first_step_marker is not None and step == 0:
                    weight = config.first_step_blend
                    mixed = weight * mixed + (1 - weight) * plan.first_step_marker
                fed_embeds = torch.where(soft[:, None], mixed, fed_embeds)
            if plan.noise_std > 0:
                fed_embeds = add_gaussian_noise(fed_embeds, plan.noise_std, soft)

            events = torch.where(thinking_now, int(StepEvent.SOFT if switch is None else StepEvent.EXPLICIT),
                                 int(StepEvent.ANSWER))
            events = torch.where(soft, int(StepEvent.SOFT), events)
            events = torch.where(to_explicit, int(StepEvent.SWITCH_TO_EXPLICIT), events)
            events = torch.where(to_soft, int(StepEvent.SWITCH_TO_SOFT), events)
            events = torch.where(stop, int(StepEvent.STOP_DECISION), events)
            events = torch.where(leaving & ~forced, int(StepEvent.THINK_END), events)
            events = torch.where(forced, forced_events, events)
            events = torch.where(live, events, int(StepEvent.FINISHED))

            # --- state for the next step
            forced_text.advance()
            forced_text.start(fired, ForcedText.END_TEXT, 1)  # its first piece was this step's token
            # the rest of a multi-token think-end after a sampled first piece
            forced_text.start(stop & (next_tokens == (think_end_first if think_end_first is not None else -1)),
                              ForcedText.MARKER, 1)
            ended_by_switch_limit = ended_by_switch_limit | (events == int(StepEvent.FORCED_SWITCH_LIMIT))
            if switch is not None and config.final_answer is not None:
                # SwiReasoning's final-answer forcing, on a switch to explicit past 2x the switch limit
                if after_end:
                    final_due = to_explicit & (switch.switches > 2 * config.max_switches)
                else:  # a row whose thinking the limit ended, tracked in its answer, once
                    ended_by_switch_limit = ended_by_switch_limit & ~(~thinking_now & reached & ~forced)  # a natural
                    final_due = (ended_by_switch_limit & ~thinking_now & live & (answer_steps_left < 0)
                                 & switch.to_explicit & (switch.switches > 2 * config.max_switches))
                forced_text.start(final_due, ForcedText.FINAL_ANSWER, 0)
                answer_steps_left = torch.where(final_due, config.final_answer_max_tokens, answer_steps_left)
            thinking = thinking & ~leaving

            if recorder is not None:
                recorder.add(live, next_tokens, mixture, fed_mixture, soft, entropy, fed_embeds, events, stop)
                if output_scores:
                    recorded = answer_scores if answer_scores is not None else processed
                    if mixture is not None and switch is None:
                        thinking_full = mixture.scores if mixture.score_ids is None else torch.full_like(
                            processed, -math.inf).scatter_(-1, mixture.score_ids, mixture.scores)
                        recorded = torch.where(thinking_now[:, None], thinking_full, recorded)
                    scores.append(force_tokens(recorded, forced, forced_tokens))
                if output_logits:
                    raw_logits.append(logits)
                if output_attentions:
                    attentions.append(outputs.attentions)
                if output_hidden_states:
                    hidden_states.append(outputs.hidden_states)

            unfinished = unfinished & ~stopping_criteria(input_ids, tuple(scores) if output_scores else None)
            counting = answer_steps_left > 0
            answer_steps_left = torch.where(counting, answer_steps_left - 1, answer_steps_left)
            unfinished = unfinished & ~(counting & (answer_steps_left == 0))
            if streamer is not None:
                streamer.put(next_tokens.cpu())

            # --- one host sync per step: what runs next step, and whether anything went non-finite
            bad_entropy = thinking_now & ~torch.isfinite(entropy) if entropy is not None else no_rows
            bad_mixture = fed_mixture & ~torch.isfinite(mixture.total) if mixture is not None else no_rows
            bad_embeds = live & ~torch.isfinite(fed_embeds).all(-1)
            flags = torch.stack([bad_scores, bad_entropy, bad_mixture, bad_embeds])
            still = unfinished > 0
            if switch is None:
                mixing = still & thinking
            else:  # rows in an explicit block that cannot switch back next step feed no concept token
                mixing = switch.may_feed_mixture(still if after_end else still & thinking)
            status = torch.cat([torch.stack([still.any(), (still & thinking).any(), (still & ~thinking).any(),
                                             mixing.any()]), flags.any(-1)]).tolist()
            any_live, any_thinking, any_answer, any_mixing, problems = status[:4] + [status[4:]]
            if any(problems):
                raise non_finite_error(problems, flags, step, logits, step_input_ids, shared, config, plan.noise_std)
            this_peer_finished = not any_live
            del outputs

    if streamer is not None:
        streamer.end()
    if not return_dict:
        return input_ids
    return SoftThinkingGenerateOutput(
        sequences=input_ids,
        scores=tuple(scores) if output_scores else None,
        logits=tuple(raw_logits) if output_logits else None,
        attentions=tuple(attentions) if output_attentions else None,
        hidden_states=tuple(hidden_states) if output_hidden_states else None,
        cache=model_kwargs.get("cache"),
        **recorder.fields(),
    )


class SoftThinkingGenerationMixin:
    """Adds `soft_thinking=` to `generate`. Put first in the bases of a causal LM class.

    `generate(..., soft_thinking=True | SoftThinkingConfig(...) | dict)` runs the soft-thinking loop;
    `True` uses the config saved in `generation_config.soft_thinking`, or the defaults. Without it, or with
    `False`, `generate` is transformers' own. Decoding methods other than greedy/sampling raise.
    """

    _soft_thinking_tokenizer: Any = None
    #: how errors name the saved `soft_thinking` entry (the file it was read from, when known)
    _soft_thinking_source: str = SAVED_SOURCE
    #: (generation config, tokenizer) whose saved entry `enable_soft_thinking` has read and checked
    _soft_thinking_checked: tuple[Any, Any] | None = None

    def generate(self, inputs: torch.Tensor | None = None, generation_config: GenerationConfig | None = None, **kwargs):
        if not hasattr(self.generation_config, GENERATION_CONFIG_ATTRIBUTE):
            # a generation config assigned after enable_soft_thinking: transformers accepts `soft_thinking=` only
            # as an attribute of the model's generation config
            setattr(self.generation_config, GENERATION_CONFIG_ATTRIBUTE, None)
        saved = getattr(self.generation_config, GENERATION_CONFIG_ATTRIBUTE, None)
        config = SoftThinkingConfig.coerce(
            kwargs.pop(GENERATION_CONFIG_ATTRIBUTE, None), saved=saved, source=self._soft_thinking_source
        )
        if config is None:
            return super().generate(inputs, generation_config, **kwargs)
        if kwargs.get("custom_generate") is not None:
            raise ValueError(
                "soft_thinking replaces the decoding loop, so it cannot be combined with custom_generate. "
                "Drop one of them (soft_thinking_sample is itself usable as custom_generate)."
            )
        merged, _ = self._prepare_generation_config(generation_config, **dict(kwargs))
        check_soft_generation_mode(merged, kwargs.get("assistant_model"))
        if generation_config is None:
            return super().generate(inputs, soft_thinking=config, **kwargs)
        # on the caller's config object, not as a kwarg: transformers warns when both are given
        generation_config = copy.deepcopy(generation_config)
        setattr(generation_config, GENERATION_CONFIG_ATTRIBUTE, config)
        return super().generate(inputs, generation_config, **kwargs)

    def __reduce_ex__(self, protocol):
        # The class is made at run time with the original's name, so pickle cannot find it by name: pickle the
        # original class and rebuild the soft-thinking subclass of it on loading (torch.save, deepcopy).
        function, arguments, *rest = super().__reduce_ex__(protocol)
        if arguments and arguments[0] is type(self):
            original = next(base for base in type(self).__bases__ if base is not SoftThinkingGenerationMixin)
            return (_new_soft_model, (original, function, arguments[1:]), *rest)
        return (function, arguments, *rest)

    def _sample(self, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus=False,
                streamer=None, **model_kwargs):
        config = getattr(generation_config, GENERATION_CONFIG_ATTRIBUTE, None)
        if not isinstance(config, SoftThinkingConfig):  # a saved dict alone does not switch soft thinking on
            return super()._sample(
                input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus, streamer, **model_kwargs
            )
        return soft_thinking_sample(
            self, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus, streamer,
            soft_thinking=config, **model_kwargs,
        )


_SOFT_CLASSES: dict[type, type] = {}


def _soft_class(cls: type) -> type:
    if cls not in _SOFT_CLASSES:
        # Same name as the original, so `save_pretrained` records the real architecture in config.json.
        _SOFT_CLASSES[cls] = type(cls.__name__, (SoftThinkingGenerationMixin, cls), {"__module__": cls.__module__})
    return _SOFT_CLASSES[cls]


def _new_soft_model(original: type, function, arguments: tuple):
    """Unpickling: an empty instance of the soft-thinking subclass of `original` (see `__reduce_ex__`)."""
    return function(_soft_class(original), *arguments)


def saved_config_source(model: Any) -> str:
    """How an error names the `soft_thinking` entry of a model's generation config: with the file it was read
    from when the model's folder (or Hub cache) has one that holds the entry."""
    file = generation_config_file(getattr(getattr(model, "config", None), "_name_or_path", None))
    if file is not None and '"soft_thinking"' in file.read_text(encoding="utf-8", errors="replace"):
        return f"{SAVED_SOURCE} (read from {file})"
    return SAVED_SOURCE


def _read_saved_config(target: Any, tokenizer: Any) -> None:
    """Honour the `soft_thinking` entry of the generation config file the model was loaded from, however it was
    written: transformers drops a custom entry from a file marked `"_from_model_config": true` (as
    `save_pretrained` writes it), so it is read from the file. A saved entry that is broken is refused now, naming
    the file (or `model.generation_config.soft_thinking`) and the field; with a tokenizer, its markers and ids are
    checked too (`check_soft_thinking`). Once per generation config and tokenizer."""
    checked = target._soft_thinking_checked
    if checked is not None and checked[0] is target.generation_config and checked[1] is tokenizer:
        return
    saved = getattr(target.generation_config, GENERATION_CONFIG_ATTRIBUTE, None)
    source = target._soft_thinking_source = saved_config_source(target)
    config = SoftThinkingConfig.from_saved(saved, source)
    if saved is None:
        file = generation_config_file(getattr(target.config, "_name_or_path", None))
        if file is not None:
            from .hub import load_soft_thinking_config

            config = load_soft_thinking_config(file.parent)
            if config is not None:
                config.save_to_generation_config(target.generation_config)
    if config is not None and (tokenizer is not None or not isinstance(config.think_end, str)):
        try:
            check_soft_thinking(target, config, tokenizer)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None
    target._soft_thinking_checked = (target.generation_config, tokenizer)


def enable_soft_thinking(model, tokenizer: Any = None, config: SoftThinkingConfig | None = None):
    """Give `model.generate` the `soft_thinking=` argument, in place; returns the same model.

    Works on any `AutoModelForCausalLM` model, a PEFT `PeftModel` (the wrapped base model is enabled), and
    quantised (bitsandbytes) models. Idempotent. `isinstance(model, OriginalClass)` still holds: the model's
    class becomes a subclass with `SoftThinkingGenerationMixin` first (transformers looks decoding methods up
    on the class, so patching an instance would do nothing).

    Args:
        model: the causal LM (or `PeftModel`).
        tokenizer: optional tokenizer used to resolve a string `think_end` when `generate` gets none.
        config: optional `SoftThinkingConfig` saved into `generation_config.soft_thinking`, which
            `soft_thinking=True` then uses and `save_pretrained` / `push_to_hub` carry.
    """
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(target, GenerationMixin):
        raise ValueError(f"{type(target).__name__} cannot generate: soft thinking needs a causal LM (GenerationMixin).")
    input_embedding_module(target)
    if not isinstance(target, SoftThinkingGenerationMixin):
        target.__class__ = _soft_class(type(target))
    if not hasattr(target.generation_config, GENERATION_CONFIG_ATTRIBUTE):
        setattr(target.generation_config, GENERATION_CONFIG_ATTRIBUTE, None)
    if config is not None:
        config.save_to_generation_config(target.generation_config)
    if tokenizer is not None:
        target._soft_thinking_tokenizer = tokenizer
    _read_saved_config(target, getattr(target, "_soft_thinking_tokenizer", None))
    return model
