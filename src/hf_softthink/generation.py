"""Soft-thinking decoding inside `model.generate`.

`enable_soft_thinking(model)` gives a model (any causal LM, a `PeftModel`, a 4-bit model) a
`generate(..., soft_thinking=...)`. Without `soft_thinking` (or with `False`) `generate` is untouched.
With it, all of `generate`'s preparation runs as usual (processors, stopping criteria, cache, left
padding, `num_return_sequences`), then the decoding loop of `soft_thinking_sample` runs in place of
`_sample`: DESIGN.md section 3, one step:

1. entropy H of softmax(z / T) over the full vocabulary;
2. the caller's logits processors, then (thinking rows) the think-end forcers, the top-k candidate
   reduction, transformers' temperature / top-p / min-p warpers, the `max_topk` most probable
   candidates and the mixture noise;
3. thinking rows feed the concept token sum_j w_j embed(id_j) (plus optional Gaussian noise) and record
   argmax_j w_j in `sequences`; answer rows decode exactly as `generate` would.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList
from transformers.generation import logits_process
from transformers.generation.stopping_criteria import StopStringCriteria
from transformers.generation.utils import GenerateDecoderOnlyOutput, GenerationMixin, GenerationMode

from .config import GENERATION_CONFIG_ATTRIBUTE, SoftThinkingConfig
from .mixing import add_gaussian_noise, concept_embedding, embedding_rms, input_embedding_module
from .processors import (
    force_tokens,
    full_entropy,
    mixture_noise,
    think_end_forcers,
    thinking_warpers,
    top_k_candidates,
)

#: transformers' warpers: they shape the *answer* sampling distribution and are not applied while thinking
ANSWER_WARPER_TYPES = tuple(
    getattr(logits_process, name) for name in dir(logits_process) if name.endswith("LogitsWarper")
)
SUPPORTED_MODES = (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE)


@dataclass
class SoftThinkingGenerateOutput(GenerateDecoderOnlyOutput):
    """`GenerateDecoderOnlyOutput` plus what the soft steps were.

    Args:
        soft_topk_ids (`torch.LongTensor` of shape `(batch_size, new_tokens, K)`):
            The token ids mixed at each step (sorted by weight); hard steps hold the emitted token first.
        soft_topk_weights (`torch.FloatTensor` of shape `(batch_size, new_tokens, K)`):
            The final mixture weights (after noise); one-hot on hard steps, zeros once a row has finished.
        thinking_mask (`torch.BoolTensor` of shape `(batch_size, new_tokens)`):
            True where the step fed a concept token (a soft step).
        entropies (`torch.FloatTensor` of shape `(batch_size, new_tokens)`):
            Entropy (nats) of softmax(logits / T_thinking) over the full vocabulary at each step.
        soft_topk_log_weights (`torch.FloatTensor` of shape `(batch_size, new_tokens, K)`):
            log of `soft_topk_weights`, from a log-softmax (finite where a Gumbel-Softmax weight underflows
            to 0 in fp32): what the Concrete density scores. `-inf` where the weight is exactly 0.
        soft_input_embeddings (`torch.FloatTensor` of shape `(batch_size, new_tokens, hidden)`):
            With Gaussian noise only: the noisy embedding fed back at each soft step (zeros elsewhere),
            the action whose density the trainer scores.
        soft_topk_support (`torch.BoolTensor` of shape `(batch_size, new_tokens, K)`):
            At thinking steps (soft steps and sampled stop decisions): which of `soft_topk_ids` had weight > 0 in
            the thinking distribution w, after the filters and before noise or the removal of stop ids. False
            elsewhere.
        stop_decision_mask (`torch.BoolTensor` of shape `(batch_size, new_tokens)`):
            True where a thinking step chose a stop token (EOS or the first token of `think_end`) by sampling,
            with `SoftThinkingConfig(stop_decision="sample")`. The step feeds that token (one-hot) and its
            `soft_topk_ids` hold it first, then the other ids of w.
        forced_mask (`torch.BoolTensor` of shape `(batch_size, new_tokens)`):
            True where the decoder forced the token (thinking budget, Cold Stop, switch limit, or spelling the rest
            of a multi-token `think_end`): not a choice of the model.
    """

    soft_topk_ids: torch.LongTensor | None = None
    soft_topk_weights: torch.FloatTensor | None = None
    thinking_mask: torch.BoolTensor | None = None
    entropies: torch.FloatTensor | None = None
    soft_topk_log_weights: torch.FloatTensor | None = None
    soft_input_embeddings: torch.FloatTensor | None = None
    soft_topk_support: torch.BoolTensor | None = None
    stop_decision_mask: torch.BoolTensor | None = None
    forced_mask: torch.BoolTensor | None = None


def stop_token_ids(generation_config: GenerationConfig, think_end: ThinkEnd | None, device) -> torch.Tensor:
    """The *stop set* S of a thinking step: the EOS ids of `generation_config` and the first token of `think_end`."""
    eos = generation_config.eos_token_id
    ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    if think_end is not None:
        ids.append(think_end.token_ids[0])
    return torch.tensor(sorted(set(int(i) for i in ids)), dtype=torch.long, device=device)


def sample_stop_decision(
    scores: torch.Tensor, ids: torch.Tensor, stop_ids: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Sample a thinking step's stop decision: $x \sim \mathrm{Categorical}(w)$, $w = \mathrm{softmax}(s)$ over the K ids.

    Every decision that ends thinking or the completion is an action of the policy (DESIGN.md section 3): a row
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
    continue_scores = torch.where((rows & ~stop)[:, None] & is_stop, -math.inf, scores)
    return stop, index[:, 0], continue_scores


def stop_one_hot(log_mixture: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Log-weights that are one-hot at `index` on `rows` (a stop decision feeds its token), else `log_mixture`."""
    one_hot = torch.full_like(log_mixture, -math.inf).scatter_(-1, index[:, None], 0.0)
    return torch.where(rows[:, None], one_hot, log_mixture)


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


def resolve_think_end(think_end: str | int | None, tokenizer: Any, vocab_size: int) -> ThinkEnd | None:
    """Turn `SoftThinkingConfig.think_end` into token ids, or raise a `ValueError` that names the fix."""
    if think_end is None:
        return None
    if isinstance(think_end, int):
        if not 0 <= think_end < vocab_size:
            raise ValueError(f"think_end={think_end} is not a token id of this model (vocabulary size {vocab_size}).")
        return ThinkEnd((think_end,))
    if tokenizer is None:
        raise ValueError(
            f"think_end={think_end!r} is a string, so soft thinking needs a tokenizer to find its tokens: pass "
            "`generate(..., tokenizer=tokenizer)` or `enable_soft_thinking(model, tokenizer=tokenizer)`, or set "
            "`SoftThinkingConfig(think_end=<token id>)` or `think_end=None` (every step soft)."
        )
    vocab = tokenizer.get_vocab()
    if think_end in vocab:
        return ThinkEnd((vocab[think_end],), think_end)
    token_ids = tokenizer.encode(think_end, add_special_tokens=False)
    unk = getattr(tokenizer, "unk_token_id", None)
    decoded = tokenizer.decode(token_ids) if token_ids else ""
    if not token_ids or (unk is not None and unk in token_ids) or decoded.strip() != think_end.strip():
        raise ValueError(
            f"think_end={think_end!r} cannot be produced by this tokenizer (it encodes to {token_ids}, which "
            f"decodes to {decoded!r}). Use a string the tokenizer can spell, a token id, or think_end=None."
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
    on any causal LM, without `enable_soft_thinking` (transformers then does not pass `streamer`).
    `soft_thinking` defaults to `generation_config.soft_thinking`, then to the defaults.
    """
    if soft_thinking is None:
        soft_thinking = getattr(generation_config, GENERATION_CONFIG_ATTRIBUTE, None) or True
    config = SoftThinkingConfig.coerce(soft_thinking, saved=getattr(model.generation_config, GENERATION_CONFIG_ATTRIBUTE, None))
    if config is None:
        raise ValueError("soft_thinking_sample was called with soft_thinking=False: call generate without it.")
    check_soft_generation_mode(generation_config)
    if model.config.is_encoder_decoder:
        raise ValueError("soft_thinking supports decoder-only causal LMs, not encoder-decoder models.")
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "_soft_thinking_tokenizer", None)
    embedding = input_embedding_module(model)
    vocab_size = model.config.get_text_config().vocab_size
    think_end = resolve_think_end(config.think_end, tokenizer, vocab_size)
    think_end_first = think_end.token_ids[0] if think_end is not None else None

    pad_token_id = generation_config._pad_token_tensor
    return_dict = generation_config.return_dict_in_generate
    output_scores = return_dict and generation_config.output_scores
    output_logits = return_dict and generation_config.output_logits
    output_attentions = return_dict and generation_config.output_attentions
    output_hidden_states = return_dict and generation_config.output_hidden_states
    has_eos_stopping_criteria = any(hasattr(c, "eos_token_id") for c in stopping_criteria)
    do_sample = generation_config.do_sample

    batch_size, prompt_length = input_ids.shape
    device = input_ids.device
    if pad_token_id is not None:
        pad_token_id = pad_token_id.to(device)
    shared, answer_rest, thinking_rest = split_processors(logits_processor)
    forcers = think_end_forcers(config, think_end_first, prompt_length)
    warpers = thinking_warpers(config)
    noise = mixture_noise(config)
    candidates = config.candidate_count
    mixture_size = min(x for x in (config.max_topk, candidates, vocab_size) if x is not None)
    noise_std = (
        config.gaussian_sigma * embedding_rms(embedding, vocab_size)
        if config.noise == "gaussian" and config.gaussian_sigma > 0
        else 0.0
    )
    switch = next((f for f in forcers if hasattr(f, "explicit")), None)
    sample_stops = config.stop_decision == "sample"
    stop_ids = stop_token_ids(generation_config, think_end, device)

    thinking = torch.ones(batch_size, dtype=torch.bool, device=device)
    think_end_progress = torch.zeros(batch_size, dtype=torch.long, device=device)
    think_end_ids = torch.tensor(think_end.token_ids if think_end else [0], device=device)
    unfinished = torch.ones(batch_size, dtype=torch.long, device=device)
    scores, raw_logits, attentions, hidden_states = [], [], [], []
    step_ids, step_weights, step_log_weights, step_soft, step_entropy, step_embeds = [], [], [], [], [], []
    step_support, step_stop, step_forced = [], [], []
    one_hot = torch.zeros(batch_size, mixture_size, device=device)
    one_hot[:, 0] = 1.0
    log_one_hot = one_hot.log()

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
            logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32, device=device)
            entropy = full_entropy(logits, config.temperature)
            processed = shared(input_ids, logits)
            active_thinking = thinking & (unfinished > 0)
            n_thinking = int(active_thinking.sum())

            next_tokens = torch.zeros(batch_size, dtype=torch.long, device=device)
            answer_scores = None
            if n_thinking < batch_size:
                answer_scores = answer_rest(input_ids, processed)
                if do_sample:
                    next_tokens = torch.multinomial(torch.softmax(answer_scores, dim=-1), num_samples=1).squeeze(1)
                else:
                    next_tokens = torch.argmax(answer_scores, dim=-1)

            forced = torch.zeros(batch_size, dtype=torch.bool, device=device)
            explicit = torch.zeros(batch_size, dtype=torch.bool, device=device)
            weights, log_weights, mixed_ids, candidate_scores = one_hot, log_one_hot, None, None
            stop = torch.zeros(batch_size, dtype=torch.bool, device=device)
            support = torch.zeros(batch_size, mixture_size, dtype=torch.bool, device=device)
            if n_thinking > 0:
                spelling = active_thinking & (think_end_progress > 0)
                thinking_scores = thinking_rest(input_ids, processed)
                thinking_scores = forcers(
                    input_ids, thinking_scores, thinking=active_thinking & ~spelling, entropy=entropy, forced=forced
                )
                if think_end is not None and len(think_end.token_ids) > 1:
                    next_piece = think_end_ids[think_end_progress.clamp_max(len(think_end.token_ids) - 1)]
                    thinking_scores = force_tokens(thinking_scores, spelling, next_piece)
                    forced |= spelling
                candidate_scores, candidate_ids = top_k_candidates(thinking_scores, candidates)
                candidate_scores = warpers(input_ids, candidate_scores)
                if candidate_scores.shape[-1] > mixture_size:
                    if candidates is None:
                        candidate_scores, order = torch.topk(candidate_scores, mixture_size, dim=-1)
                        candidate_ids = candidate_ids.gather(-1, order)
                    else:  # candidates are sorted by score and the warpers keep the order
                        candidate_scores = candidate_scores[:, :mixture_size]
                        candidate_ids = candidate_ids[:, :mixture_size]
                candidate_support = candidate_scores > -math.inf
                if switch is not None:
                    explicit = switch.explicit & active_thinking
                deciding = active_thinking & ~forced & ~explicit
                if sample_stops and config.noise != "gumbel":
                    stop, stop_index, candidate_scores = sample_stop_decision(
                        candidate_scores, candidate_ids, stop_ids, deciding
                    )
                candidate_scores = noise(input_ids, candidate_scores)
                log_mixture = torch.log_softmax(candidate_scores, dim=-1)
                if sample_stops and config.noise == "gumbel":  # the Gumbel-max id is already a sample of w
                    stop_index = log_mixture.argmax(-1)
                    stop = deciding & torch.isin(candidate_ids.gather(-1, stop_index[:, None])[:, 0], stop_ids)
                if sample_stops:
                    log_mixture = stop_one_hot(log_mixture, stop_index, stop)
                log_weights, order = log_mixture.sort(dim=-1, descending=True)
                weights = log_weights.exp()
                mixed_ids = candidate_ids.gather(-1, order)
                support = candidate_support.gather(-1, order) & active_thinking[:, None] & ~forced[:, None]
                next_tokens = torch.where(active_thinking, mixed_ids[:, 0], next_tokens)

            if has_eos_stopping_criteria:
                next_tokens = next_tokens * unfinished + pad_token_id * (1 - unfinished)
            input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)

            if think_end is not None:
                leaving = active_thinking & think_end.reached(input_ids)
            else:
                leaving = torch.zeros_like(forced)
            soft_step = active_thinking & ~forced & ~explicit & ~leaving & ~stop
            support = support & (soft_step | stop)[:, None]
            mixed_step = soft_step | stop  # a stop decision feeds its token, recorded with the ids of w
            hard_ids = torch.zeros(batch_size, mixture_size, dtype=torch.long, device=device)
            hard_ids[:, 0] = next_tokens
            fed_ids = torch.where(mixed_step[:, None], mixed_ids, hard_ids) if mixed_ids is not None else hard_ids
            fed_weights = torch.where(soft_step[:, None], weights, one_hot)
            fed_log_weights = torch.where(soft_step[:, None], log_weights, log_one_hot)
            fed_embeds = concept_embedding(embedding, fed_ids, fed_weights)
            if noise_std > 0:
                fed_embeds = add_gaussian_noise(fed_embeds, noise_std, soft_step)
            if think_end is not None and len(think_end.token_ids) > 1:
                # a sampled first piece of the marker is the decision; the rest is spelled (forced)
                starts = (forced | (stop & (next_tokens == think_end_first))) & active_thinking
                think_end_progress = torch.where(starts, think_end_progress + 1, think_end_progress)
                think_end_progress = torch.where(leaving, 0, think_end_progress)
            thinking = thinking & ~leaving

            if return_dict:
                live = unfinished > 0
                step_ids.append(torch.where(live[:, None], fed_ids, pad_token_id if pad_token_id is not None else 0))
                step_weights.append(fed_weights * live[:, None])
                step_log_weights.append(fed_log_weights.masked_fill(~live[:, None], -math.inf))
                if noise_std > 0:
                    step_embeds.append(fed_embeds.float() * soft_step[:, None])
                step_soft.append(soft_step)
                step_entropy.append(entropy)
                step_support.append(support & live[:, None])
                step_stop.append(stop & live)
                step_forced.append(forced & active_thinking & live)
                if output_scores:
                    recorded = answer_scores if answer_scores is not None else processed
                    if candidate_scores is not None:
                        thinking_full = torch.full_like(processed, -math.inf).scatter_(-1, candidate_ids, candidate_scores)
                        recorded = torch.where(active_thinking[:, None], thinking_full, recorded)
                    scores.append(recorded)
                if output_logits:
                    raw_logits.append(logits)
                if output_attentions:
                    attentions.append(outputs.attentions)
                if output_hidden_states:
                    hidden_states.append(outputs.hidden_states)

            unfinished = unfinished & ~stopping_criteria(input_ids, tuple(scores) if output_scores else None)
            if streamer is not None:
                streamer.put(next_tokens.cpu())
            this_peer_finished = bool(unfinished.max() == 0)
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
        soft_topk_ids=torch.stack(step_ids, dim=1),
        soft_topk_weights=torch.stack(step_weights, dim=1),
        soft_topk_log_weights=torch.stack(step_log_weights, dim=1),
        soft_input_embeddings=torch.stack(step_embeds, dim=1) if step_embeds else None,
        thinking_mask=torch.stack(step_soft, dim=1),
        entropies=torch.stack(step_entropy, dim=1),
        soft_topk_support=torch.stack(step_support, dim=1),
        stop_decision_mask=torch.stack(step_stop, dim=1),
        forced_mask=torch.stack(step_forced, dim=1),
    )


class SoftThinkingGenerationMixin:
    """Adds `soft_thinking=` to `generate`. Put first in the bases of a causal LM class.

    `generate(..., soft_thinking=True | SoftThinkingConfig(...) | dict)` runs the soft-thinking loop;
    `True` uses the config saved in `generation_config.soft_thinking`, or the defaults. Without it, or with
    `False`, `generate` is transformers' own. Decoding methods other than greedy/sampling raise.
    """

    _soft_thinking_tokenizer: Any = None

    def generate(self, inputs: torch.Tensor | None = None, generation_config: GenerationConfig | None = None, **kwargs):
        saved = getattr(self.generation_config, GENERATION_CONFIG_ATTRIBUTE, None)
        config = SoftThinkingConfig.coerce(kwargs.pop(GENERATION_CONFIG_ATTRIBUTE, None), saved=saved)
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
    return model
