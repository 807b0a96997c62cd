"""hf_softthink.trace: the HTML and PNG views of a soft-thinking generation, checked in a real browser.

The browser test drives Debian's headless Chromium through Selenium and `chromedriver`
(`apt-get install -y chromium chromium-driver`, `pip install selenium`). Without them it is skipped with the
install command, unless `HF_SOFTTHINK_REQUIRE_BROWSER=1` (set by `.ci/run`) turns the skip into a failure.
"""

import os
import re
import shutil
import tempfile
from types import SimpleNamespace

import pytest
import torch

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.events import StepEvent
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.trace import SoftThinkingTrace
from hf_softthink.trace import _tick_label as tick_label

SCRIPT_TOKEN = "<script>window.hfstRan=1</script>"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REQUIRE_BROWSER = os.environ.get("HF_SOFTTHINK_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def tokenizer():
    tok = tiny_tokenizer()
    tok.add_tokens([SCRIPT_TOKEN])  # one token whose text is a script: it must be shown, never run
    return tok


@pytest.fixture(scope="module")
def output(tokenizer):
    """A batch of 2: row 0 thinks until the budget, row 1 is made to write the script token while thinking."""
    model = enable_soft_thinking(tiny_model("llama", vocab_size=len(tokenizer), seed=0))
    script_id = tokenizer.convert_tokens_to_ids(SCRIPT_TOKEN)

    def favour_script(module, args, out):
        out.logits[1, -1, script_id] += 6.0
        return out

    handle = model.register_forward_hook(favour_script)
    prompt = tokenizer(["What is 2 + 2?", "Say <hello> & goodbye"], return_tensors="pt", padding=True)
    try:
        return model.generate(**prompt, max_new_tokens=12, do_sample=False, tokenizer=tokenizer,
                              return_dict_in_generate=True,
                              soft_thinking=SoftThinkingConfig(max_topk=5, max_thinking_tokens=6, think_end="</think>"))
    finally:
        handle.remove()


def test_trace_reads_steps_events_and_why_thinking_ended(output, tokenizer):
    trace = SoftThinkingTrace.from_generate_output(output, tokenizer, top_k=3, show_prompt=True)
    assert len(trace.rows) == 2 and trace.top_k == 3
    row = trace.rows[0]
    assert [s.event for s in row.steps[:7]] == [StepEvent.SOFT] * 6 + [StepEvent.FORCED_BUDGET]
    assert row.end_step == 6 and row.end_reason == "thinking budget"
    assert len(row.steps[0].candidates) == 3 and row.steps[0].candidates[0][1] >= row.steps[0].candidates[1][1]
    assert row.steps[0].candidates[0][0] == row.steps[0].token
    assert not row.steps[7].candidates, "answer steps show no mixture"
    assert trace.rows[1].prompt == "Say <hello> & goodbye"
    assert "rows=2" in repr(trace)


def test_html_escapes_tokens_and_is_self_contained(output, tokenizer):
    page = SoftThinkingTrace.from_generate_output(output, tokenizer, show_prompt=True).to_html()
    assert SCRIPT_TOKEN not in page and "&lt;script&gt;window.hfstRan=1&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert "&lt;hello&gt; &amp; goodbye" in page
    for external in ("http:", "https:", "src=", "<link", "@import", "url("):
        assert external not in page
    assert "think-end: thinking budget" in page
    assert page == SoftThinkingTrace.from_generate_output(output, tokenizer, show_prompt=True)._repr_html_()


def synthetic_output(tokenizer, thinking: str, answer: str, end: StepEvent = StepEvent.FORCED_BUDGET, pad: int = 2):
    """A soft-thinking output spelled by hand: `thinking` as soft steps (weights 0.5 / 0.3 / 0.2 over the token and
    two others), the one-token marker (`end`), `answer` and EOS as answer steps, then `pad` finished steps."""
    think_ids = tokenizer.encode(thinking, add_special_tokens=False)
    answer_ids = tokenizer.encode(answer, add_special_tokens=False) + [tokenizer.eos_token_id]
    marker = tokenizer.convert_tokens_to_ids("</think>")
    new = think_ids + [marker] + answer_ids + [tokenizer.pad_token_id] * pad
    events = ([StepEvent.SOFT] * len(think_ids) + [end] + [StepEvent.ANSWER] * len(answer_ids)
              + [StepEvent.FINISHED] * pad)
    ids = torch.tensor([[[t, 5, 6] for t in new]])
    weights = torch.tensor([[[0.5, 0.3, 0.2] if e == StepEvent.SOFT else [1.0, 0.0, 0.0] for e in events]])
    prompt = tokenizer.encode("Q?", add_special_tokens=False)
    return SimpleNamespace(
        sequences=torch.tensor([prompt + new]), step_events=torch.tensor([[int(e) for e in events]], dtype=torch.uint8),
        soft_topk_ids=ids, soft_topk_weights=weights,
        entropies=torch.linspace(0.1, 1.0, len(new))[None],
    )


def test_row_summary_gives_soft_steps_why_thinking_ended_the_answer_and_the_verdict(tokenizer):
    output = synthetic_output(tokenizer, "2+2 is 4", "The answer is \\boxed{4}.")
    right = SoftThinkingTrace.from_generate_output(output, tokenizer, gold_answers="4").rows[0]
    assert (right.answer, right.correct, right.soft_steps) == ("4", True, len("2+2 is 4"))
    assert right.answer_text == "The answer is \\boxed{4}."
    assert right.summary() == "8 soft steps · thinking ended at step 8: thinking budget · answer: 4 · right (gold 4)"
    wrong = SoftThinkingTrace.from_generate_output(output, tokenizer, gold_answers=["5"]).rows[0]
    assert wrong.correct is False and wrong.summary().endswith("answer: 4 · wrong (gold 5)")
    plain = SoftThinkingTrace.from_generate_output(output, tokenizer).rows[0]
    assert plain.correct is None and plain.summary().endswith("answer: 4")
    empty = SoftThinkingTrace.from_generate_output(synthetic_output(tokenizer, "hmm", ""), tokenizer, gold_answers="4")
    assert empty.rows[0].summary().endswith("answer: (empty) · wrong (gold 4)")
    with pytest.raises(ValueError, match="gold_answers has 2 entries for 1 rows"):
        SoftThinkingTrace.from_generate_output(output, tokenizer, gold_answers=["4", "5"])


def test_a_row_that_never_ends_thinking_has_no_answer(tokenizer):
    output = synthetic_output(tokenizer, "abc", "", pad=0)
    output.step_events[0, 3:] = int(StepEvent.SOFT)  # the marker and EOS recorded as soft steps: never ended
    row = SoftThinkingTrace.from_generate_output(output, tokenizer, gold_answers="4").rows[0]
    assert row.end_step is None and row.answer_text is None and row.correct is False
    assert "thinking did not end: no answer" in row.summary()


def test_tooltips_hold_the_weight_beyond_the_shown_top_k(output, tokenizer):
    full = SoftThinkingTrace.from_generate_output(output, tokenizer, top_k=5).rows[0].steps[2]
    step = SoftThinkingTrace.from_generate_output(output, tokenizer, top_k=2).rows[0].steps[2]
    assert step.other_weight == pytest.approx(sum(w for _, w in full.candidates[2:]), abs=1e-5)
    assert step.other_count == len(full.candidates) - 2
    page = SoftThinkingTrace.from_generate_output(output, tokenizer, top_k=2).to_html()
    assert f"<td>{step.other_count} others</td><td>{step.other_weight:.3f}</td>" in page


def test_html_has_a_colour_key_and_an_entropy_curve_per_row(output, tokenizer):
    trace = SoftThinkingTrace.from_generate_output(output, tokenizer)
    page = trace.to_html()
    assert "shade = entropy: 0 " in page and f"{trace.max_entropy:.2f} nats" in page
    curves = re.findall(r'<svg viewBox="0 0 (\d+) \d+"[^>]*data-steps="(\d+)">(.*?)</svg>', page)
    assert [int(steps) for _, steps, _ in curves] == [len(row.steps) for row in trace.rows]
    for (_, _, svg), row in zip(curves, trace.rows, strict=True):
        points = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
        assert len(points) == len(row.steps)
        assert f'x1="{row.end_step + 0.5}"' in svg  # the think-end line
        assert svg.count("<title>") == len(row.steps)


def ordinary_output(tokenizer, budget=6):
    """The fixture's prompts decoded with ordinary tokens, the marker forced after `budget` tokens."""
    from transformers import LogitsProcessorList

    from hf_softthink.processors import HardThinkingBudgetProcessor

    model = tiny_model("llama", vocab_size=len(tokenizer), seed=0)
    prompt = tokenizer(["What is 2 + 2?", "Say <hello> & goodbye"], return_tensors="pt", padding=True)
    length = prompt["input_ids"].shape[1]
    budget_processor = HardThinkingBudgetProcessor(tokenizer, "</think>", budget, length)
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False, return_dict_in_generate=True,
                         output_logits=True, logits_processor=LogitsProcessorList([budget_processor]))
    return out, length


def test_an_ordinary_decoding_becomes_a_trace_to_compare_with(tokenizer):
    out, length = ordinary_output(tokenizer)
    trace = SoftThinkingTrace.from_ordinary_output(out, tokenizer, prompt_length=length, think_end="</think>",
                                                   max_thinking_tokens=6, temperature=0.6, gold_answers="4")
    row = trace.rows[0]
    assert [s.event for s in row.steps[:7]] == [StepEvent.EXPLICIT] * 6 + [StepEvent.FORCED_BUDGET]
    assert all(s.event == StepEvent.ANSWER for s in row.steps[7:]) and row.ordinary
    assert row.end_reason == "thinking budget" and row.summary().startswith("6 ordinary thinking tokens · thinking")
    log_p = torch.log_softmax(out.logits[0][0].float() / 0.6, dim=-1)
    assert row.steps[0].entropy == pytest.approx(float(-(log_p.exp() * log_p).sum()), rel=1e-5)
    natural = SoftThinkingTrace.from_ordinary_output(out, tokenizer, prompt_length=length, think_end="</think>")
    assert natural.rows[0].steps[6].event == StepEvent.THINK_END, "without the budget the marker is the model's"


def test_compare_puts_the_two_traces_side_by_side(output, tokenizer):
    ordinary, length = ordinary_output(tokenizer)
    other = SoftThinkingTrace.from_ordinary_output(ordinary, tokenizer, prompt_length=length, think_end="</think>",
                                                   max_thinking_tokens=6)
    page = SoftThinkingTrace.from_generate_output(output, tokenizer).to_html(compare=other)
    grid = page[page.index('<div class="hfst-compare">'):]
    order = re.findall(r'<h2 class="hfst-column">([^<]+)</h2>|<section class="hfst-trace" data-row="(\d)">', grid)
    assert order[:2] == [("soft thinking", ""), ("ordinary tokens", "")]
    assert [row for _, row in order[2:]] == ["0", "0", "1", "1"]  # row by row, soft then ordinary
    assert "ordinary thinking token" in page


def test_trace_of_switch_mode_marks_the_switches():
    model = enable_soft_thinking(tiny_model("llama", seed=1))
    prompt = torch.tensor([[5, 6, 7, 8]])
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False,
                         return_dict_in_generate=True, pad_token_id=0,
                         soft_thinking=SoftThinkingConfig(mode="switch", switch_window=1, think_end=None))
    trace = SoftThinkingTrace.from_generate_output(out, tiny_tokenizer())
    events = {s.event for s in trace.rows[0].steps}
    assert {StepEvent.SWITCH_TO_EXPLICIT, StepEvent.SWITCH_TO_SOFT} <= events
    page = trace.to_html()
    assert "→ explicit" in page and "→ soft" in page and "thinking did not end" in page


def test_plot_saves_a_png_per_batch(output, tokenizer, tmp_path):
    trace = SoftThinkingTrace.from_generate_output(output, tokenizer)
    figure = trace.plot(tmp_path / "trace.png")
    assert (tmp_path / "trace.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figure.axes) == 2
    assert len(figure.axes[0].lines[0].get_ydata()) == len(trace.rows[0].steps)


def test_plot_labels_tokens_on_the_x_axis_and_keeps_the_think_end_label_inside(tokenizer):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    output = synthetic_output(tokenizer, "a" * 30, "4")  # the marker near the right edge: the label must not run off
    trace = SoftThinkingTrace.from_generate_output(output, tokenizer)
    figure = trace.plot()
    FigureCanvasAgg(figure).draw()
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [tick_label(s.token) for s in trace.rows[0].steps] and labels[30] == "</think>"
    (label,) = ax.texts
    assert label.get_text() == "think-end: thinking budget"
    box, frame = label.get_window_extent(), ax.get_window_extent()
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def test_a_plain_generate_output_is_refused_with_the_fix(tokenizer):
    model = tiny_model("llama", seed=0)
    prompt = torch.tensor([[5, 6, 7]])
    plain = model.generate(input_ids=prompt, max_new_tokens=2, return_dict_in_generate=True, pad_token_id=0)
    with pytest.raises(ValueError, match="return_dict_in_generate=True"):
        SoftThinkingTrace.from_generate_output(plain, tokenizer)


def chromium_driver():
    """A headless Chromium WebDriver, or a skip (a failure under HF_SOFTTHINK_REQUIRE_BROWSER=1) saying why."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        reason = (f"browser test needs {', '.join(missing)}: `apt-get install -y chromium chromium-driver` and "
                  "`pip install selenium`")
        if REQUIRE_BROWSER:
            pytest.fail(f"HF_SOFTTHINK_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="hfst-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", "--window-size=1100,700", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER)), profile


def test_the_page_in_chromium_hover_key_curve_summary_and_compare(output, tokenizer, tmp_path):
    """Hovering a soft step shows its top-K, the weight left to the others and its entropy; the colour key, the
    entropy curves and the row summaries are shown; the ordinary decoding sits beside the soft one, row by row."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    trace = SoftThinkingTrace.from_generate_output(output, tokenizer, top_k=3, gold_answers=["4", None])
    ordinary, length = ordinary_output(tokenizer)
    other = SoftThinkingTrace.from_ordinary_output(ordinary, tokenizer, prompt_length=length, think_end="</think>",
                                                   max_thinking_tokens=6, gold_answers=["4", None])
    page = trace.save_html(tmp_path / "trace.html", compare=other)
    driver, profile = chromium_driver()
    try:
        driver.get(page.as_uri())
        soft_row, ordinary_row = driver.find_elements(By.CSS_SELECTOR, 'section.hfst-trace[data-row="0"]')
        step = soft_row.find_elements(By.CSS_SELECTOR, '.hfst-step[data-event="soft"]')[2]
        tip = step.find_element(By.CSS_SELECTOR, ".hfst-tip")
        assert not tip.is_displayed()
        ActionChains(driver).move_to_element(step).perform()
        assert tip.is_displayed()
        shown, expected = tip.text, trace.rows[0].steps[2]
        assert "step 2 · soft · H =" in shown
        for text, weight in expected.candidates:
            assert f"{weight:.3f}" in shown and repr(text)[1:-1].strip() in shown
        assert expected.other_count > 0, "the fixture mixes 5 tokens and shows 3"
        assert f"{expected.other_count} other" in shown and f"{expected.other_weight:.3f}" in shown
        assert len(re.findall(r"\d\.\d{3}", shown)) == len(expected.candidates) + 2  # + the others + H
        assert driver.execute_script("return window.hfstRan") is None, "the script token was not run"
        assert SCRIPT_TOKEN in driver.find_element(By.CSS_SELECTOR, ".hfst").text

        key = driver.find_element(By.CSS_SELECTOR, ".hfst-key")
        assert key.is_displayed() and f"{trace.max_entropy:.2f} nats" in key.text
        assert key.find_element(By.CSS_SELECTOR, ".hfst-gradient").size["width"] >= 100
        for row, section in ((trace.rows[0], soft_row), (other.rows[0], ordinary_row)):
            curve = section.find_element(By.CSS_SELECTOR, 'svg[aria-label="entropy per step"]')
            assert curve.is_displayed() and curve.size["width"] > 200 and curve.size["height"] >= 40
            summary = section.find_element(By.CSS_SELECTOR, ".hfst-summary")
            assert summary.is_displayed() and summary.text == row.summary()
            verdict = summary.find_element(By.CSS_SELECTOR, ".hfst-right, .hfst-wrong")
            assert verdict.text == ("right" if row.correct else "wrong")
        columns = driver.find_elements(By.CSS_SELECTOR, "h2.hfst-column")
        assert [c.text for c in columns] == ["soft thinking", "ordinary tokens"]
        assert soft_row.location["y"] == ordinary_row.location["y"], "row 0 of both runs on one line"
        assert ordinary_row.location["x"] > soft_row.location["x"] + soft_row.size["width"] * 0.9
        driver.save_screenshot(str(tmp_path / "hover.png"))
        if os.environ.get("HF_SOFTTHINK_SCREENSHOT"):
            driver.save_screenshot(os.environ["HF_SOFTTHINK_SCREENSHOT"])
        assert (tmp_path / "hover.png").stat().st_size > 10_000
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.parametrize("required", [False, True])
def test_a_missing_browser_is_a_clear_skip_or_in_ci_a_failure(monkeypatch, required):
    import sys

    module = sys.modules[__name__]
    monkeypatch.setattr(module, "REQUIRE_BROWSER", required)
    monkeypatch.setattr(shutil, "which", lambda path: None)
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome, match=r"apt-get install -y chromium chromium-driver"):
        chromium_driver()
