"""`transformers.pipeline("text-generation")` with an enabled model: `soft_thinking=` reaches `generate`."""

import pytest
import transformers

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.models import tiny_model, tiny_tokenizer

TOKENIZER = tiny_tokenizer()
PROMPTS = ["hello", "a much longer prompt than the first"]


@pytest.fixture
def pipe():
    model = enable_soft_thinking(tiny_model("llama", seed=0), tokenizer=TOKENIZER)
    return transformers.pipeline("text-generation", model=model, tokenizer=TOKENIZER)


def direct(model, prompt, **kwargs):
    inputs = TOKENIZER(prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=10, do_sample=False, pad_token_id=0, **kwargs)
    return TOKENIZER.decode(out[0, inputs.input_ids.size(1) :], skip_special_tokens=True)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_pipeline_generates_exactly_as_soft_generate(pipe, batch_size):
    config = SoftThinkingConfig(max_topk=4, max_thinking_tokens=3)
    out = pipe(PROMPTS, soft_thinking=config, max_new_tokens=10, do_sample=False, return_full_text=False,
               batch_size=batch_size)  # fmt: skip
    texts = [o[0]["generated_text"] for o in out]
    expected = [direct(pipe.model, p, soft_thinking=config) for p in PROMPTS]
    if (
        batch_size == 1
    ):  # batched rows are left-padded, so only batch 1 matches unpadded generate to the token
        assert texts == expected
    plain = [
        o[0]["generated_text"]
        for o in pipe(PROMPTS, max_new_tokens=10, do_sample=False, return_full_text=False)
    ]
    for text, reference in zip(texts, plain, strict=True):
        # 3 thinking tokens (single bytes here), then the thinking budget forces </think>
        assert text.index("</think>") == 3 and "</think>" not in reference


def test_pipeline_soft_thinking_true_uses_the_config_saved_with_the_model(pipe):
    saved = SoftThinkingConfig(max_topk=2, max_thinking_tokens=5)
    saved.save_to_generation_config(pipe.model.generation_config)
    text = pipe("hello", soft_thinking=True, max_new_tokens=10, do_sample=False, return_full_text=False)
    assert text[0]["generated_text"] == direct(pipe.model, "hello", soft_thinking=saved)
    assert text[0]["generated_text"].index("</think>") == 5


def test_pipeline_chat_input(pipe):
    config = SoftThinkingConfig(max_topk=4, max_thinking_tokens=3)
    chat = [{"role": "user", "content": "hi"}]
    out = pipe([chat], soft_thinking=config, max_new_tokens=10, do_sample=False)
    reply = out[0][0]["generated_text"][-1]
    assert reply["role"] == "assistant"
    prompt = TOKENIZER.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert reply["content"] == direct(pipe.model, prompt, soft_thinking=config)
