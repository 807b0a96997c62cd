"""Soft thinking on the real packaged SmolLM2-135M-Instruct model, and the README's main command."""

import pytest
import torch

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.cli import main

pytestmark = pytest.mark.real_model

QUESTIONS = ["What is 8 + 7?", "Name a colour of the sky on a clear day."]


def chat_batch(tokenizer):
    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        for q in QUESTIONS
    ]
    return tokenizer(texts, return_tensors="pt", padding=True)


def test_top1_soft_thinking_equals_greedy_on_smollm2(smollm2):
    model, tokenizer = smollm2
    inputs = chat_batch(tokenizer)
    assert (inputs["attention_mask"] == 0).any(), "the batch is left-padded"
    expected = model.generate(**inputs, do_sample=False, max_new_tokens=24)
    enable_soft_thinking(model, tokenizer=tokenizer)
    out = model.generate(**inputs, do_sample=False, max_new_tokens=24, soft_thinking=SoftThinkingConfig(max_topk=1,
                                                                                                      think_end=None))
    assert torch.equal(out, expected)


def test_multi_token_think_end_is_forced_on_smollm2(smollm2):
    model, tokenizer = smollm2
    enable_soft_thinking(model, tokenizer=tokenizer)
    inputs = chat_batch(tokenizer)
    assert len(tokenizer.encode("</think>", add_special_tokens=False)) > 1
    out = model.generate(**inputs, do_sample=False, max_new_tokens=16, return_dict_in_generate=True,
                         soft_thinking=SoftThinkingConfig(max_thinking_tokens=6))
    assert out.thinking_mask[:, :6].all() and not out.thinking_mask[:, 6:].any()
    prompt_length = inputs["input_ids"].shape[1]
    for row in out.sequences[:, prompt_length:]:
        assert "</think>" in tokenizer.decode(row)


def test_generate_command_compares_soft_and_standard(capsys):
    code = main(["generate", "What is 8 + 7?", "--compare", "--max-new-tokens", "20", "--max-thinking-tokens", "8",
                 "--cold-stop-entropy", "0"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "=== soft thinking" in printed and "=== ordinary tokens (same prompt and budget" in printed
    assert "| soft thinking | 11 |" in printed, "8 budgeted steps plus the 3 tokens of </think>"
    assert ('[thinking, 11 tokens (8 soft steps), ended by "</think>" (3 tokens) forced when the thinking budget of 8 '
            "tokens was spent;") in printed, "the text says why there are 11 thinking tokens for a budget of 8"


def test_generate_command_writes_the_trace_page_and_plot(tmp_path, capsys):
    html, png = tmp_path / "trace.html", tmp_path / "trace.png"
    code = main(["generate", "What is 8 + 7?", "--max-new-tokens", "16", "--max-thinking-tokens", "6",
                 "--cold-stop-entropy", "0", "--html", str(html), "--plot", str(png)])
    assert code == 0
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "think-end: thinking budget" in page and "What is 8 + 7?" in page
    assert page.count('data-event="soft"') == 6
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert str(html) in capsys.readouterr().err


def test_top1_soft_thinking_equals_greedy_on_gemma3_scaled_embeddings():
    from hf_softthink.models import load_model

    model, tokenizer = load_model("gemma3-270m")
    assert model.get_input_embeddings().embed_scale != 1.0, "Gemma scales its input embeddings"
    inputs = tokenizer(["The capital of France is", "2 + 2 ="], return_tensors="pt", padding=True)
    expected = model.generate(**inputs, do_sample=False, max_new_tokens=8)
    enable_soft_thinking(model, tokenizer=tokenizer)
    out = model.generate(**inputs, do_sample=False, max_new_tokens=8,
                         soft_thinking=SoftThinkingConfig(max_topk=1, think_end=None))
    assert torch.equal(out, expected)
