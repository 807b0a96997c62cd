"""`step_events` print as event names, and stay an ordinary uint8 tensor for everything else."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.events import (
    StepEvent,
    StepEvents,
    event_names,
    event_runs,
    forced_mask,
    thinking_end_reason,
)
from hf_softthink.models import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def events():
    model, tokenizer = enable_soft_thinking(tiny_model("llama", seed=0)), tiny_tokenizer()
    prompt = tokenizer(["What is 2 + 2?", "Hi"], return_tensors="pt", padding=True)
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False, return_dict_in_generate=True,
                         tokenizer=tokenizer, soft_thinking=SoftThinkingConfig(max_thinking_tokens=4))
    return out.step_events


def test_generate_returns_step_events_that_print_as_names(events):
    assert isinstance(events, StepEvents) and events.dtype == torch.uint8
    text = repr(events)
    assert "[0] SOFT×4, FORCED_BUDGET" in text and "[1] SOFT×4, FORCED_BUDGET" in text
    assert repr(events[0]) == f"StepEvents([{event_runs(events[0])}])"
    assert repr(events[0, 0]) == "StepEvents(SOFT)" and str(events[0, 4]) == "StepEvents(FORCED_BUDGET)"
    assert event_names(events[0, :5]) == ["SOFT"] * 4 + ["FORCED_BUDGET"]
    assert event_names(events)[1][:4] == ["SOFT"] * 4


def test_step_events_index_and_compute_like_the_uint8_tensor_they_are(events):
    plain = events.as_subclass(torch.Tensor)
    assert events.tolist() == plain.tolist() and int(events[0, 4]) == int(StepEvent.FORCED_BUDGET)
    for kept in (events[0], events[:, 2:], events.clone(), events.detach(), events.cpu(), events.to("cpu")):
        assert type(kept) is StepEvents
    for derived in (events == StepEvent.SOFT, forced_mask(events), events.float(), events.sum(), events + 1,
                    torch.stack([events[0], events[1]])):
        assert type(derived) is torch.Tensor, "results of computations are plain tensors"
    assert torch.equal(forced_mask(events), forced_mask(plain))
    assert thinking_end_reason(events[0]) == (4, StepEvent.FORCED_BUDGET)


def test_step_events_save_as_a_plain_tensor_and_copy(events):
    buffer = io.BytesIO()
    torch.save({"step_events": events}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["step_events"]  # no unsafe global needed
    assert type(loaded) is torch.Tensor and torch.equal(loaded, events)
    copied = copy.deepcopy(events)
    assert type(copied) is StepEvents and torch.equal(copied, events) and copied.data_ptr() != events.data_ptr()


def test_an_event_prints_as_its_name_and_formats_as_a_number_on_request():
    assert str(StepEvent.SOFT) == f"{StepEvent.SOFT}" == "SOFT"
    assert f"{StepEvent.FORCED_BUDGET:d}" == "6" and f"{StepEvent.ANSWER:>8}" == "  ANSWER"
    assert event_runs([1, 1, 6, 9, 9, 11, 200]) == "SOFT×2, FORCED_BUDGET, FORCED_SPELLING×2, ANSWER, 200"
