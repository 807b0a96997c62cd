"""Shared fixtures: the packaged SmolLM2 model is loaded once per test session."""

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct (converted once into the user cache)."""
    from hf_softthink.models import load_model

    return load_model("smollm2-135m")
