"""model.generate(..., soft_thinking=...): parity, phases, outputs, streaming, errors."""

import math

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessorList
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor
from transformers.generation.streamers import BaseStreamer

from hf_softthink import SoftThinkingConfig, enable_soft_thinking, soft_thinking_sample
from hf_softthink.models import TINY_ARCHITECTURES, tiny_model, tiny_tokenizer
from hf_softthink.processors import full_entropy

GREEDY_TOP1 = SoftThinkingConfig(max_topk=1, think_end=None)
PARITY_ARCHITECTURES = ["llama", "qwen2", "qwen3", "gemma3", "mistral", "gpt2", "phi3"]


def left_padded_batch(vocab_size: int, seed: int = 0, pad_token_id: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab_size, (3, 8), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[0, :3], attention_mask[0, :3] = pad_token_id, 0
    input_ids[2, :1], attention_mask[2, :1] = pad_token_id, 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def early_eos(model, inputs) -> int:
    """A token that plain greedy decoding emits a few steps in, to use as EOS (so rows stop early)."""
    plain = model.generate(**inputs, do_sample=False, max_new_tokens=6)
    return int(plain[1, inputs["input_ids"].shape[1] + 2])


@pytest.fixture(scope="module")
def llama():
    return enable_soft_thinking(tiny_model("llama", seed=0))


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_tiny_architectures_cover_the_parity_families():
    assert set(PARITY_ARCHITECTURES) <= set(TINY_ARCHITECTURES)


@pytest.mark.parametrize("arch", PARITY_ARCHITECTURES)
@pytest.mark.parametrize("cache", [None, "static"])
def test_top1_soft_thinking_equals_greedy_generate(arch, cache):
    model = tiny_model(arch, seed=1)
    inputs = left_padded_batch(model.config.vocab_size)
    eos = early_eos(model, inputs)
    kwargs = dict(do_sample=False, max_new_tokens=12, eos_token_id=eos, pad_token_id=0, cache_implementation=cache)
    expected = model.generate(**inputs, **kwargs)
    enable_soft_thinking(model)
    out = model.generate(**inputs, **kwargs, soft_thinking=GREEDY_TOP1, return_dict_in_generate=True)
    assert torch.equal(out.sequences, expected)
    assert out.sequences.shape[1] < inputs["input_ids"].shape[1] + 12 or (expected == eos).any()
    assert out.thinking_mask[:, 0].all()


def test_parity_through_peft_lora():
    peft = pytest.importorskip("peft")
    model = tiny_model("llama", seed=2)
    lora = peft.get_peft_model(
        model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ).eval()
    inputs = left_padded_batch(model.config.vocab_size)
    expected = lora.generate(**inputs, do_sample=False, max_new_tokens=10)
    enable_soft_thinking(lora)
    assert torch.equal(lora.generate(**inputs, do_sample=False, max_new_tokens=10, soft_thinking=GREEDY_TOP1), expected)


def test_parity_with_4bit_nf4(tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tiny_model("llama", seed=3).save_pretrained(tmp_path)
    quantized = AutoModelForCausalLM.from_pretrained(
        tmp_path,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        ),
    ).eval()
    inputs = left_padded_batch(quantized.config.vocab_size)
    expected = quantized.generate(**inputs, do_sample=False, max_new_tokens=10)
    enable_soft_thinking(quantized)
    out = quantized.generate(**inputs, do_sample=False, max_new_tokens=10, soft_thinking=GREEDY_TOP1)
    assert torch.equal(out, expected)


def test_enable_is_idempotent_and_keeps_the_class(llama):
    cls = type(llama)
    assert enable_soft_thinking(llama) is llama and type(llama) is cls
    assert isinstance(llama, cls.__mro__[2]) and cls.__name__ == "LlamaForCausalLM"


def test_without_soft_thinking_generate_is_untouched(tmp_path):
    model = tiny_model("qwen2", seed=4)
    inputs = left_padded_batch(model.config.vocab_size)
    torch.manual_seed(0)
    expected = model.generate(**inputs, do_sample=True, top_p=0.9, max_new_tokens=8)
    enable_soft_thinking(model, config=SoftThinkingConfig(max_topk=3))
    for flag in ({}, {"soft_thinking": False}, {"soft_thinking": None}):
        torch.manual_seed(0)
        assert torch.equal(model.generate(**inputs, do_sample=True, top_p=0.9, max_new_tokens=8, **flag), expected)


def test_answer_phase_decodes_as_generate_with_the_callers_sampling(llama, tokenizer):
    """Budget 0: think-end is forced first; the answer then samples exactly like plain generate."""
    inputs = left_padded_batch(llama.config.vocab_size)
    think_end = tokenizer.convert_tokens_to_ids("</think>")
    sampling = dict(do_sample=True, temperature=1.3, top_k=20, top_p=0.9, repetition_penalty=1.2, max_new_tokens=10)
    torch.manual_seed(7)
    soft = llama.generate(
        **inputs, **sampling, soft_thinking=SoftThinkingConfig(think_end=think_end, max_thinking_tokens=0),
        return_dict_in_generate=True,
    )
    assert (soft.sequences[:, 8] == think_end).all() and not soft.thinking_mask.any()
    with_think_end = {
        "input_ids": soft.sequences[:, :9],
        "attention_mask": torch.cat([inputs["attention_mask"], torch.ones(3, 1, dtype=torch.long)], 1),
    }
    torch.manual_seed(7)
    plain = llama.generate(**with_think_end, **{**sampling, "max_new_tokens": 9})
    assert torch.equal(soft.sequences, plain)


def test_output_fields_shapes_and_contents(llama):
    inputs = left_padded_batch(llama.config.vocab_size)
    cfg = SoftThinkingConfig(max_topk=4, think_end=7, max_thinking_tokens=5)
    out = llama.generate(
        **inputs, do_sample=False, max_new_tokens=9, soft_thinking=cfg, return_dict_in_generate=True,
        output_scores=True, output_logits=True,
    )
    new = out.sequences.shape[1] - 8
    assert out.soft_topk_ids.shape == (3, new, 4) and out.soft_topk_weights.shape == (3, new, 4)
    assert out.thinking_mask.shape == (3, new) and out.entropies.shape == (3, new)
    assert len(out.scores) == new and len(out.logits) == new
    assert out.thinking_mask[:, :5].all() and not out.thinking_mask[:, 5:].any()
    assert (out.sequences[:, 8 + 5] == 7).all()
    weights = out.soft_topk_weights
    assert torch.allclose(weights.sum(-1), torch.ones(3, new))
    assert (weights[:, :5, 1] > 0).all(), "soft steps mix several tokens"
    assert (weights[:, 5:, 0] == 1).all() and (weights[:, 5:, 1:] == 0).all(), "hard steps are one-hot"
    assert torch.equal(out.soft_topk_ids[:, :, 0], out.sequences[:, 8:]), "the trace is the top-1 of the mixture"
    assert (weights[:, :5].diff(dim=-1) <= 0).all(), "mixture sorted by weight"
    for step, logits in enumerate(out.logits):
        assert torch.allclose(out.entropies[:, step], full_entropy(logits, cfg.temperature))
        assert torch.equal(out.scores[step].argmax(-1), out.sequences[:, 8 + step])


def test_finished_rows_have_zero_weights(llama):
    inputs = left_padded_batch(llama.config.vocab_size)
    eos = early_eos(llama, inputs)
    out = llama.generate(
        **inputs, do_sample=False, max_new_tokens=10, eos_token_id=eos, pad_token_id=0,
        soft_thinking=GREEDY_TOP1, return_dict_in_generate=True,
    )
    new_tokens = out.sequences[:, 8:]
    row = int((new_tokens == eos).any(-1).nonzero()[0])
    first_eos = int((new_tokens[row] == eos).nonzero()[0])
    assert (out.soft_topk_weights[row, first_eos + 1:] == 0).all()
    assert (out.soft_topk_weights[row, : first_eos + 1, 0] == 1).all()


def test_think_end_string_single_token_ends_thinking(llama, tokenizer):
    inputs = left_padded_batch(llama.config.vocab_size)
    think_end = tokenizer.convert_tokens_to_ids("</think>")
    out = llama.generate(
        **inputs, do_sample=False, max_new_tokens=8, tokenizer=tokenizer, return_dict_in_generate=True,
        soft_thinking=SoftThinkingConfig(think_end="</think>", max_thinking_tokens=3),
    )
    assert (out.sequences[:, 8 + 3] == think_end).all()
    assert out.thinking_mask[:, :3].all() and not out.thinking_mask[:, 3:].any()


def test_multi_token_think_end_is_forced_piece_by_piece_and_matched_on_the_trace(llama, tokenizer):
    marker = "Answer:"
    pieces = tokenizer.encode(marker, add_special_tokens=False)
    assert len(pieces) > 1
    inputs = left_padded_batch(llama.config.vocab_size)
    out = llama.generate(
        **inputs, do_sample=False, max_new_tokens=12, tokenizer=tokenizer, return_dict_in_generate=True,
        soft_thinking=SoftThinkingConfig(think_end=marker, max_thinking_tokens=2),
    )
    forced = out.sequences[:, 8 + 2 : 8 + 2 + len(pieces)]
    assert forced.tolist() == [pieces] * 3
    soft_steps = out.thinking_mask.sum(-1).tolist()
    assert soft_steps == [2, 2, 2], "only the 2 budgeted steps are soft; the marker and the answer are hard"


def test_cold_stop_in_the_decoder_fires_after_patience_steps(llama):
    inputs = left_padded_batch(llama.config.vocab_size)
    cfg = SoftThinkingConfig(think_end=9, cold_stop_entropy=100.0, cold_stop_patience=4)  # every step is "confident"
    out = llama.generate(**inputs, do_sample=False, max_new_tokens=8, soft_thinking=cfg, return_dict_in_generate=True)
    assert (out.sequences[:, 8 + 3] == 9).all()
    assert out.thinking_mask[:, :3].all() and not out.thinking_mask[:, 3:].any()
    never = SoftThinkingConfig(think_end=9, cold_stop_entropy=1e-6, cold_stop_patience=1)
    out = llama.generate(**inputs, do_sample=False, max_new_tokens=8, soft_thinking=never, return_dict_in_generate=True)
    assert out.thinking_mask.all()


def test_rows_switch_phase_independently(llama):
    """One row reaches think-end naturally and answers while the others keep thinking."""
    inputs = left_padded_batch(llama.config.vocab_size)
    probe = llama.generate(**inputs, do_sample=False, max_new_tokens=6, soft_thinking=SoftThinkingConfig(think_end=None))
    think_end = int(probe[0, 8 + 2])  # what row 0 writes at its third step
    out = llama.generate(
        **inputs, do_sample=False, max_new_tokens=6, return_dict_in_generate=True,
        soft_thinking=SoftThinkingConfig(think_end=think_end),
    )
    assert out.thinking_mask[0, :2].all() and not out.thinking_mask[0, 2:].any()
    rows_still_thinking = [r for r in (1, 2) if think_end not in probe[r, 8:].tolist()]
    for r in rows_still_thinking:
        assert out.thinking_mask[r].all()


def test_switch_mode_feeds_explicit_tokens_inside_thinking(llama):
    inputs = left_padded_batch(llama.config.vocab_size)
    cfg = SoftThinkingConfig(think_end=None, mode="switch", switch_window=2)
    out = llama.generate(**inputs, do_sample=False, max_new_tokens=16, soft_thinking=cfg, return_dict_in_generate=True)
    explicit_steps = ~out.thinking_mask
    assert explicit_steps.any() and out.thinking_mask.any()
    assert (out.soft_topk_weights[explicit_steps][:, 0] == 1).all()


@pytest.mark.parametrize("noise", ["gumbel", "dirichlet", "gaussian"])
def test_seeded_noisy_runs_are_reproducible_and_noise_changes_the_mixture(llama, noise):
    inputs = left_padded_batch(llama.config.vocab_size)
    cfg = SoftThinkingConfig(noise=noise, think_end=None)

    def run(seed):
        torch.manual_seed(seed)
        return llama.generate(**inputs, do_sample=True, max_new_tokens=8, soft_thinking=cfg, return_dict_in_generate=True)

    first, second, other = run(0), run(0), run(1)
    assert torch.equal(first.sequences, second.sequences)
    assert torch.equal(first.soft_topk_weights, second.soft_topk_weights)
    plain = llama.generate(**inputs, do_sample=False, max_new_tokens=8, return_dict_in_generate=True,
                           soft_thinking=SoftThinkingConfig(think_end=None))
    if noise == "gaussian":  # the noise is on the embedding: the next steps' mixtures differ
        assert not torch.allclose(first.soft_topk_weights[:, 1:], plain.soft_topk_weights[:, 1:])
    else:
        assert not torch.allclose(first.soft_topk_weights[:, 0], plain.soft_topk_weights[:, 0])
        assert not torch.equal(first.soft_topk_weights, other.soft_topk_weights)


def test_callers_logits_processors_apply_while_thinking(llama):
    inputs = left_padded_batch(llama.config.vocab_size)
    banned = llama.generate(**inputs, do_sample=False, max_new_tokens=4, soft_thinking=GREEDY_TOP1)[:, 8].tolist()
    out = llama.generate(
        **inputs, do_sample=False, max_new_tokens=4, soft_thinking=SoftThinkingConfig(think_end=None),
        bad_words_ids=[[t] for t in banned], return_dict_in_generate=True,
    )
    assert not set(out.soft_topk_ids[:, :, :][out.soft_topk_weights > 0].tolist()) & set(banned)
    custom = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(5.0)])
    out = llama.generate(**inputs, do_sample=False, max_new_tokens=6, soft_thinking=GREEDY_TOP1, logits_processor=custom)
    assert torch.equal(out, llama.generate(**inputs, do_sample=False, max_new_tokens=6, repetition_penalty=5.0))


class ListStreamer(BaseStreamer):
    def __init__(self):
        self.chunks, self.ended = [], False

    def put(self, value):
        self.chunks.append(value.clone())

    def end(self):
        self.ended = True


def test_streamer_receives_the_prompt_then_the_trace(llama):
    inputs = left_padded_batch(llama.config.vocab_size)
    single = {k: v[1:2] for k, v in inputs.items()}
    streamer = ListStreamer()
    out = llama.generate(**single, do_sample=False, max_new_tokens=6, streamer=streamer,
                         soft_thinking=SoftThinkingConfig(think_end=None))
    assert streamer.ended and torch.equal(streamer.chunks[0], single["input_ids"])
    assert [int(c) for c in streamer.chunks[1:]] == out[0, 8:].tolist()


def test_text_streamer_prints_the_trace(llama, tokenizer, capsys):
    from transformers import TextStreamer

    prompt = tokenizer("a b c", return_tensors="pt")
    out = llama.generate(**prompt, do_sample=False, max_new_tokens=5, streamer=TextStreamer(tokenizer),
                         tokenizer=tokenizer, soft_thinking=SoftThinkingConfig(think_end=None))
    printed = capsys.readouterr().out
    trace = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:]).strip()
    assert trace and trace in printed


def test_soft_thinking_true_uses_config_saved_with_the_model(tmp_path):
    from transformers import AutoModelForCausalLM

    model = enable_soft_thinking(tiny_model("llama", seed=5), config=SoftThinkingConfig(max_topk=3, think_end=None))
    model.save_pretrained(tmp_path)
    loaded = enable_soft_thinking(AutoModelForCausalLM.from_pretrained(tmp_path).eval())
    assert SoftThinkingConfig.from_generation_config(loaded.generation_config).max_topk == 3
    inputs = left_padded_batch(loaded.config.vocab_size)
    out = loaded.generate(**inputs, do_sample=False, max_new_tokens=3, soft_thinking=True, return_dict_in_generate=True)
    assert out.soft_topk_ids.shape[-1] == 3
    defaults = tiny_model("llama", seed=5)
    enable_soft_thinking(defaults)
    out = defaults.generate(**inputs, do_sample=False, max_new_tokens=3, return_dict_in_generate=True,
                            soft_thinking=True, tokenizer=tiny_tokenizer())
    assert out.soft_topk_ids.shape[-1] == 10


def test_custom_generate_callable_without_enabling():
    model = tiny_model("qwen3", seed=6)
    inputs = left_padded_batch(model.config.vocab_size)
    expected = model.generate(**inputs, do_sample=False, max_new_tokens=6)
    out = model.generate(**inputs, do_sample=False, max_new_tokens=6, custom_generate=soft_thinking_sample,
                         soft_thinking=GREEDY_TOP1)
    assert torch.equal(out, expected)


def test_user_generation_config_object_is_honoured_without_a_deprecation_warning(llama, monkeypatch):
    from transformers.generation import utils

    messages = []
    monkeypatch.setattr(utils.logger, "warning_once", lambda message, *args: messages.append(message))
    inputs = left_padded_batch(llama.config.vocab_size)
    gen = GenerationConfig(do_sample=False, max_new_tokens=5, pad_token_id=0)
    llama.generate(**inputs, generation_config=gen, max_new_tokens=5)
    assert any("together with generation-related" in m for m in messages), "the probe sees the warning"
    messages.clear()
    out = llama.generate(**inputs, generation_config=gen, soft_thinking=GREEDY_TOP1)
    assert not [m for m in messages if "together with generation-related" in m]
    assert not hasattr(gen, "soft_thinking"), "the caller's config object is not modified"
    assert torch.equal(out, llama.generate(**inputs, generation_config=gen))


def test_num_return_sequences_expands_rows(llama):
    inputs = left_padded_batch(llama.config.vocab_size)
    out = llama.generate(**inputs, do_sample=True, num_return_sequences=2, max_new_tokens=4,
                         soft_thinking=SoftThinkingConfig(think_end=None, noise="gumbel"), return_dict_in_generate=True)
    assert out.sequences.shape[0] == 6 and out.thinking_mask.shape[0] == 6


# ----------------------------------------------------------------------------------------------- errors
def test_wrong_soft_thinking_type_is_an_error(llama):
    with pytest.raises(TypeError, match="soft_thinking must be"):
        llama.generate(**left_padded_batch(llama.config.vocab_size), max_new_tokens=2, soft_thinking="on")


@pytest.mark.parametrize("extra", [{"num_beams": 2}, {"prompt_lookup_num_tokens": 3}])
def test_beam_search_and_assisted_decoding_are_refused(llama, extra):
    with pytest.raises(ValueError, match="greedy decoding and sampling"):
        llama.generate(**left_padded_batch(llama.config.vocab_size), max_new_tokens=2, soft_thinking=GREEDY_TOP1,
                       **extra)


def test_assistant_model_is_refused(llama):
    with pytest.raises(ValueError, match="greedy decoding and sampling"):
        llama.generate(**left_padded_batch(llama.config.vocab_size), max_new_tokens=2, soft_thinking=GREEDY_TOP1,
                       assistant_model=tiny_model("llama", seed=9))


def test_use_cache_false_is_refused(llama):
    with pytest.raises(ValueError, match="use_cache=True"):
        llama.generate(**left_padded_batch(llama.config.vocab_size), max_new_tokens=2, soft_thinking=GREEDY_TOP1,
                       use_cache=False)


def test_string_think_end_without_tokenizer_names_the_fix():
    model = enable_soft_thinking(tiny_model("llama", seed=0))
    with pytest.raises(ValueError, match="pass `generate\\(..., tokenizer=tokenizer\\)`"):
        model.generate(**left_padded_batch(model.config.vocab_size), max_new_tokens=2, soft_thinking=True)


def word_level_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "the": 1, "answer": 2, "is": 3}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_think_end_the_tokenizer_cannot_produce_is_an_error(llama):
    with pytest.raises(ValueError, match="cannot be produced by this tokenizer"):
        llama.generate(**left_padded_batch(llama.config.vocab_size), max_new_tokens=2,
                       tokenizer=word_level_tokenizer(), soft_thinking=SoftThinkingConfig(think_end="</think>"))
    with pytest.raises(ValueError, match="is token id 1000000, which this model cannot produce or feed"):
        llama.generate(**left_padded_batch(llama.config.vocab_size), max_new_tokens=2,
                       soft_thinking=SoftThinkingConfig(think_end=10**6))


def test_model_without_input_embeddings_is_refused():
    model = tiny_model("llama", seed=0)
    model.get_input_embeddings = lambda: None
    with pytest.raises(ValueError, match="input-embedding module"):
        enable_soft_thinking(model)


def test_concept_token_is_the_weighted_embedding_on_scaled_embeddings():
    from hf_softthink.mixing import concept_embedding, embedding_rms

    model = tiny_model("gemma3", seed=0)
    module = model.get_input_embeddings()
    scale = model.config.hidden_size**0.5
    ids = torch.tensor([[3, 8, 11]])
    weights = torch.tensor([[0.5, 0.3, 0.2]])
    expected = (weights[0, :, None] * module.weight[ids[0]] * scale).sum(0)
    assert torch.allclose(concept_embedding(module, ids, weights)[0], expected, atol=1e-5)
    effective = module(torch.arange(model.config.vocab_size))
    assert embedding_rms(module, model.config.vocab_size, chunk_size=7) == pytest.approx(
        effective.square().mean().sqrt().item(), rel=1e-5
    )
    assert not math.isclose(embedding_rms(module, model.config.vocab_size), module.weight.square().mean().sqrt().item())


def test_log_weights_stay_finite_where_gumbel_weights_underflow(llama):
    inputs = left_padded_batch(llama.config.vocab_size)
    torch.manual_seed(0)
    out = llama.generate(**inputs, do_sample=True, max_new_tokens=6, return_dict_in_generate=True,
                         soft_thinking=SoftThinkingConfig(think_end=None, noise="gumbel", gumbel_tau=0.01, top_p=1.0,
                                                          min_p=0.0))
    log_w, w = out.soft_topk_log_weights, out.soft_topk_weights
    assert torch.allclose(log_w.exp(), w)
    assert ((w == 0) & torch.isfinite(log_w)).any(), "tau=0.01 underflows some weights, their logs stay finite"


def test_gaussian_noise_returns_the_fed_embeddings(llama):
    inputs = left_padded_batch(llama.config.vocab_size)
    torch.manual_seed(0)
    out = llama.generate(**inputs, do_sample=False, max_new_tokens=5, return_dict_in_generate=True,
                         soft_thinking=SoftThinkingConfig(think_end=None, noise="gaussian", gaussian_sigma=0.5))
    from hf_softthink.mixing import concept_embedding

    clean = concept_embedding(llama.get_input_embeddings(), out.soft_topk_ids, out.soft_topk_weights)
    noise = out.soft_input_embeddings - clean
    assert out.soft_input_embeddings.shape == (3, 5, llama.config.hidden_size)
    rms = llama.get_input_embeddings().weight.square().mean().sqrt()
    assert noise.std().item() == pytest.approx(0.5 * rms.item(), rel=0.15)


# ----------------------------------------------------------------------------------------------- events
def test_step_events_name_what_each_step_was(llama, tokenizer):
    from hf_softthink.events import StepEvent, forced_mask

    inputs = left_padded_batch(llama.config.vocab_size)
    eos = early_eos(llama, inputs)
    out = llama.generate(**inputs, do_sample=False, max_new_tokens=10, eos_token_id=eos, pad_token_id=0,
                         return_dict_in_generate=True, soft_thinking=SoftThinkingConfig(think_end=9, max_thinking_tokens=3))
    events = out.step_events
    assert events.dtype == torch.uint8 and events.shape == out.thinking_mask.shape
    assert (events[:, :3] == StepEvent.SOFT).all() and (events[:, 3] == StepEvent.FORCED_BUDGET).all()
    assert torch.equal(out.thinking_mask, events == StepEvent.SOFT)
    new = out.sequences[:, 8:]
    for row in range(3):
        stop = (new[row] == eos).nonzero()
        end = int(stop[0]) + 1 if len(stop) else new.shape[1]
        assert (events[row, 4:end] == StepEvent.ANSWER).all() and (events[row, end:] == StepEvent.FINISHED).all()
    assert torch.equal(forced_mask(events), events == StepEvent.FORCED_BUDGET)

    cold = llama.generate(**inputs, do_sample=False, max_new_tokens=5, return_dict_in_generate=True,
                          soft_thinking=SoftThinkingConfig(think_end=9, cold_stop_entropy=100.0, cold_stop_patience=2))
    assert (cold.step_events[:, :2].tolist()) == [[StepEvent.SOFT, StepEvent.FORCED_COLD_STOP]] * 3

    marker = "Answer:"
    pieces = tokenizer.encode(marker, add_special_tokens=False)
    spelled = llama.generate(**inputs, do_sample=False, max_new_tokens=8, tokenizer=tokenizer,
                             return_dict_in_generate=True,
                             soft_thinking=SoftThinkingConfig(think_end=marker, max_thinking_tokens=1))
    expected = [StepEvent.SOFT, StepEvent.FORCED_BUDGET] + [StepEvent.FORCED_SPELLING] * (len(pieces) - 1)
    assert spelled.step_events[0, : len(expected)].tolist() == expected


def test_natural_think_end_is_its_own_event(llama):
    from hf_softthink.events import StepEvent, thinking_end_reason

    inputs = left_padded_batch(llama.config.vocab_size)
    probe = llama.generate(**inputs, do_sample=False, max_new_tokens=6, soft_thinking=SoftThinkingConfig(think_end=None))
    think_end = int(probe[0, 8 + 2])
    out = llama.generate(**inputs, do_sample=False, max_new_tokens=6, return_dict_in_generate=True,
                         soft_thinking=SoftThinkingConfig(think_end=think_end))
    assert out.step_events[0, 2] == StepEvent.THINK_END
    assert thinking_end_reason(out.step_events[0]) == (2, StepEvent.THINK_END)


# ----------------------------------------------------------------------------------------------- defects
def test_assigning_a_new_generation_config_keeps_soft_thinking_working():
    model = enable_soft_thinking(tiny_model("llama", seed=0))
    model.generation_config = GenerationConfig(max_new_tokens=4, pad_token_id=0)
    inputs = left_padded_batch(model.config.vocab_size)
    out = model.generate(**inputs, do_sample=False, soft_thinking=GREEDY_TOP1)
    assert torch.equal(out, model.generate(**inputs, do_sample=False))


def test_an_enabled_model_pickles_and_deep_copies(tmp_path):
    import copy
    import subprocess
    import sys

    model = enable_soft_thinking(tiny_model("gemma3", seed=0))
    inputs = left_padded_batch(model.config.vocab_size)
    expected = model.generate(**inputs, do_sample=False, max_new_tokens=4, soft_thinking=GREEDY_TOP1)
    clone = copy.deepcopy(model)
    assert type(clone) is type(model)
    assert torch.equal(clone.generate(**inputs, do_sample=False, max_new_tokens=4, soft_thinking=GREEDY_TOP1), expected)
    torch.save(model, tmp_path / "model.pt")
    torch.save((inputs, expected), tmp_path / "io.pt")
    script = (
        "import torch; from hf_softthink import SoftThinkingConfig, SoftThinkingGenerationMixin; "
        f"m = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=False); "
        f"inputs, expected = torch.load({str(tmp_path / 'io.pt')!r}); "
        "assert isinstance(m, SoftThinkingGenerationMixin) and type(m).__name__ == 'Gemma3ForCausalLM'; "
        "out = m.generate(**inputs, do_sample=False, max_new_tokens=4, "
        "soft_thinking=SoftThinkingConfig(max_topk=1, think_end=None)); "
        "assert torch.equal(out, expected); print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_custom_generate_with_a_string_think_end_takes_the_tokenizer_through_partial(tokenizer):
    import functools

    model = tiny_model("llama", seed=0)
    inputs = left_padded_batch(model.config.vocab_size)
    cfg = SoftThinkingConfig(think_end="</think>", max_thinking_tokens=2)
    with pytest.raises(ValueError, match=r"does not pass `tokenizer=` on to a custom_generate callable.*functools"):
        model.generate(**inputs, max_new_tokens=4, custom_generate=soft_thinking_sample, soft_thinking=cfg,
                       tokenizer=tokenizer)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, soft_thinking=cfg,
                         custom_generate=functools.partial(soft_thinking_sample, tokenizer=tokenizer))
    assert (out[:, 8 + 2] == tokenizer.convert_tokens_to_ids("</think>")).all()
