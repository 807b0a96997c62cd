"""Make `docs/trace_hover.png`, the README's picture of a soft-thinking trace, in headless Chromium.

    python docs/trace_screenshot.py

SmolLM2-135M-Instruct (packaged) thinks about "What is 8 + 7?" for at most 24 soft steps, and again with
ordinary tokens at the same budget (what `hf-softthink generate --compare --html` shows); the page of the two
traces side by side, graded against the gold answer 15, is opened in Debian's Chromium
(`apt-get install -y chromium chromium-driver`, `pip install selenium`), the most uncertain soft step is
hovered, and the window is saved.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.demo import DEMO_THINKING_PROMPT, decode_hard, prompt_inputs
from hf_softthink.models import load_model
from hf_softthink.trace import SoftThinkingTrace

OUT = Path(__file__).with_name("trace_hover.png")


def main() -> int:
    model, tokenizer = load_model("smollm2-135m")
    enable_soft_thinking(model, tokenizer=tokenizer)
    config = SoftThinkingConfig(max_topk=10, max_thinking_tokens=24)
    inputs = prompt_inputs(tokenizer, "What is 8 + 7?", DEMO_THINKING_PROMPT)
    out = model.generate(**inputs, max_new_tokens=48, do_sample=False, return_dict_in_generate=True,
                         tokenizer=tokenizer, soft_thinking=config)
    hard = decode_hard(model, tokenizer, inputs, 48, think_end="</think>", max_thinking_tokens=24, output_logits=True)
    trace = SoftThinkingTrace.from_generate_output(out, tokenizer, top_k=6, gold_answers="15")
    ordinary = SoftThinkingTrace.from_ordinary_output(
        hard.output, tokenizer, prompt_length=inputs["input_ids"].shape[1], think_end="</think>",
        max_thinking_tokens=24, temperature=config.temperature, gold_answers="15",
    )
    soft = [(s.entropy, i) for i, s in enumerate(trace.rows[0].steps) if s.soft]
    hovered = max(soft)[1]
    folder = Path(tempfile.mkdtemp(prefix="hfst-shot-"))
    page = trace.save_html(folder / "trace.html", title="What is 8 + 7? (SmolLM2-135M, budget 24)", compare=ordinary)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync", "--window-size=1280,640", f"--user-data-dir={folder / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
    try:
        driver.get(page.as_uri())
        step = driver.find_element(By.CSS_SELECTOR, f'.hfst-row .hfst-step[data-step="{hovered}"]')  # the soft one
        ActionChains(driver).move_to_element(step).perform()
        driver.save_screenshot(str(OUT))
    finally:
        driver.quit()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{OUT} (hovered step {hovered})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
