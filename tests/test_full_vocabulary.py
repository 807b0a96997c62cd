"""Full-vocabulary concept tokens: mixed as one (B, V) @ (V, d) product through the embedding module, with
bounded outputs."""

import pytest
import torch

from hf_softthink import SoftThinkingConfig, enable_soft_thinking, generation
from hf_softthink.mixing import concept_embedding, dense_concept_embedding
from hf_softthink.models import tiny_model

FULL = SoftThinkingConfig(max_topk=None, top_k=None, top_p=1.0, min_p=0.0, temperature=1.0, think_end=None)


def lora_on_embedding():
    peft = pytest.importorskip("peft")
    model = tiny_model("gemma3", seed=4)
    config = peft.LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"], init_lora_weights=False)
    return peft.get_peft_model(model, config).eval()


def embedding_of(model):
    return model.get_input_embeddings()


@pytest.mark.parametrize("build", [lambda: tiny_model("llama"), lambda: tiny_model("gemma3"), lambda: tiny_model("gpt2"),
                                   lora_on_embedding], ids=["llama", "gemma3-scaled", "gpt2", "gemma3-lora-embedding"])
def test_dense_mixture_equals_the_lookup_mixture(build):
    torch.manual_seed(0)
    model = build()
    module = embedding_of(model)
    vocab = model.config.get_text_config().vocab_size
    weights = torch.softmax(torch.randn(3, vocab) * 3, -1)
    with torch.no_grad():
        dense = dense_concept_embedding(module, weights)
        lookup = concept_embedding(module, torch.arange(vocab).expand(3, vocab), weights)
        one_hot = dense_concept_embedding(module, torch.nn.functional.one_hot(torch.tensor([7, 8, 9]), vocab).float())
        tokens = module(torch.tensor([7, 8, 9]))
    tolerance = 1e-6 * lookup.abs().max().item()  # float32 sums of V terms in another order
    assert torch.allclose(dense, lookup, atol=tolerance, rtol=1e-5)
    assert torch.allclose(one_hot, tokens, atol=tolerance, rtol=1e-5), "a one-hot mixture is the token's embedding"


def test_lora_on_the_embedding_changes_the_dense_mixture():
    model = lora_on_embedding()
    module = embedding_of(model)
    weights = torch.softmax(torch.randn(2, model.config.vocab_size), -1)
    with torch.no_grad():
        with_lora = dense_concept_embedding(module, weights)
        with model.disable_adapter():
            without = dense_concept_embedding(module, weights)
    assert not torch.allclose(with_lora, without), "the LoRA A/B tables take part in the product"


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_generation_on_the_dense_path_equals_the_lookup_path(arch, monkeypatch):
    model = enable_soft_thinking(tiny_model(arch, seed=2))
    prompt = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    kwargs = dict(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False,
                  soft_thinking=FULL, return_dict_in_generate=True, pad_token_id=0)
    lookup = model.generate(**kwargs)
    monkeypatch.setattr(generation, "DENSE_MIXTURE_MIN_IDS", 16)
    dense = model.generate(**kwargs)
    assert torch.equal(dense.sequences, lookup.sequences)
    assert torch.equal(dense.soft_topk_ids, lookup.soft_topk_ids)
    assert torch.allclose(dense.soft_topk_weights, lookup.soft_topk_weights, atol=1e-6)


def test_full_vocabulary_outputs_are_bounded_and_the_trace_is_the_top1():
    model = enable_soft_thinking(tiny_model("llama", vocab_size=3000, seed=1))
    prompt = torch.tensor([[5, 6, 7]] * 2)
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False,
                         soft_thinking=FULL, return_dict_in_generate=True, pad_token_id=0, output_scores=True)
    bound = generation.RECORDED_IDS_FULL_VOCABULARY
    assert out.soft_topk_ids.shape == (2, 5, bound) and out.soft_topk_weights.shape == (2, 5, bound)
    assert out.thinking_mask.all()
    total = out.soft_topk_weights.sum(-1)
    assert (total < 1).all() and (total > 0).all(), "the 32 largest weights of a 3000-token mixture"
    assert (out.soft_topk_weights.diff(dim=-1) <= 0).all()
    assert torch.equal(out.soft_topk_ids[:, :, 0], out.sequences[:, 3:])
    assert len(out.scores) == 5 and torch.equal(out.scores[0].argmax(-1), out.sequences[:, 3])


def test_a_bounded_mixture_is_recorded_whole():
    model = enable_soft_thinking(tiny_model("llama", vocab_size=3000, seed=1))
    prompt = torch.tensor([[5, 6, 7]])
    cfg = SoftThinkingConfig(max_topk=1500, top_k=None, top_p=1.0, min_p=0.0, think_end=None)
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3, do_sample=False,
                         soft_thinking=cfg, return_dict_in_generate=True, pad_token_id=0)
    assert out.soft_topk_ids.shape[-1] == 1500
    assert torch.allclose(out.soft_topk_weights.sum(-1), torch.ones(1, 3))


class RenormalisingEmbedding(torch.nn.Embedding):
    """max_norm renormalises looked-up rows: not linear in the token."""


class IndexingEmbedding(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = weight

    def forward(self, ids):
        return self.weight[ids]


def test_modules_that_cannot_be_mixed_densely_name_the_fix():
    weights = torch.softmax(torch.randn(1, 10), -1)
    with pytest.raises(ValueError, match="max_norm"):
        dense_concept_embedding(RenormalisingEmbedding(10, 4, max_norm=1.0), weights)
    with pytest.raises(ValueError, match="finite SoftThinkingConfig.max_topk"):
        dense_concept_embedding(IndexingEmbedding(torch.randn(10, 4)), weights)
