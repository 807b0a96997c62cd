"""hf_softthink.trace: the HTML and PNG views of a soft-thinking generation, checked in a real browser.

The browser test drives Debian's headless Chromium through Selenium and `chromedriver`
(`apt-get install -y chromium chromium-driver`, `pip install selenium`). Without them it is skipped with the
install command, unless `HF_SOFTTHINK_REQUIRE_BROWSER=1` (set by `.ci/run`) turns the skip into a failure.
"""

import os
import re
import shutil
import tempfile

import pytest
import torch

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.events import StepEvent
from hf_softthink.models import tiny_model, tiny_tokenizer
from hf_softthink.trace import SoftThinkingTrace

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


def test_hovering_a_soft_step_shows_its_top_k_in_chromium(output, tokenizer, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    trace = SoftThinkingTrace.from_generate_output(output, tokenizer, top_k=4)
    page = trace.save_html(tmp_path / "trace.html")
    driver, profile = chromium_driver()
    try:
        driver.get(page.as_uri())
        step = driver.find_elements(By.CSS_SELECTOR, ".hfst-row")[0].find_elements(
            By.CSS_SELECTOR, '.hfst-step[data-event="soft"]')[2]
        tip = step.find_element(By.CSS_SELECTOR, ".hfst-tip")
        assert not tip.is_displayed()
        ActionChains(driver).move_to_element(step).perform()
        assert tip.is_displayed()
        shown = tip.text
        assert "step 2 · soft · H =" in shown
        for text, weight in trace.rows[0].steps[2].candidates:
            assert f"{weight:.3f}" in shown and repr(text)[1:-1].strip() in shown
        assert len(re.findall(r"\d\.\d{3}", shown)) == len(trace.rows[0].steps[2].candidates) + 1  # + H
        assert driver.execute_script("return window.hfstRan") is None, "the script token was not run"
        assert SCRIPT_TOKEN in driver.find_element(By.CSS_SELECTOR, ".hfst").text
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
