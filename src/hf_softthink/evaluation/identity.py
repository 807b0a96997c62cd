"""What an evaluation's results belong to: digests of the model's weights, its adapter, its tokenizer and its
generation config.

A saved result is reused only by a run whose model *is* the one that made it, so the resume key holds digests
of content, never a name: a folder overwritten by more training, two in-memory models of one class, an adapter
trained further in the same notebook, a tokenizer with an added token all have other digests.

* ``weights``: every tensor of ``model.state_dict()`` (parameters and buffers; name, dtype, shape and bytes),
  the adapter's tensors apart. A tensor shared by two names (tied embeddings) is hashed once and the second
  name records the tie. Quantised models hash their packed bytes and quantisation state (both are in the state
  dict). Tensors on an accelerator are copied to the host one at a time.
* ``adapter``: the tensors of the PEFT adapters and their configs (rank, alpha, target modules) and which
  adapters are active; ``None`` for a model without one.
* ``tokenizer``: the tokenizer's vocabulary, merges, normalisation and added tokens (the backend's JSON from its
  added tokens on, less the padding and truncation state before them, which every padded call changes), its
  special tokens and chat template.
* ``generation_config``: the model's generation config (what ``generate`` starts from: EOS ids, repetition
  penalty, ...), less the transformers version and an unset ``soft_thinking``.

The digests are xxHash3-128 (not a cryptographic hash: they guard against mistakes, not against an adversary).
Hashing is memory-bound. On SmolLM2-135M (538 MB of float32 weights after the tie, a 49k-token tokenizer), one
CPU thread: weights 0.02 s on a quiet machine, 0.08 s on a busy shared one; tokenizer 0.02-0.08 s; the first
call after loading 0.3 s, as it reads the memory-mapped weights in (``benchmarks/identity_cost.py``).

A model without a ``state_dict`` (a stand-in object) has no weight digest: its label (``model_name`` or
``config._name_or_path``) stands in for it.
"""

from __future__ import annotations

import json
from typing import Any

import torch
import xxhash

#: the parts of an evaluation's identity, and how a message names each
IDENTITY_PARTS = {
    "model": "the model's name",
    "weights": "the model's weights",
    "adapter": "the adapter (its weights, config or active adapters)",
    "tokenizer": "the tokenizer",
    "generation_config": "the model's generation config",
}


def model_identity(model: Any, tokenizer: Any, label: str) -> dict[str, str | None]:
    """The digests of :data:`IDENTITY_PARTS` for ``model`` and ``tokenizer``.

    ``model`` holds ``label`` only when the model has no weight digest (a stand-in without ``state_dict``):
    the same weights under another name or path are the same model.
    """
    weights, adapter = weights_digests(model)
    return {
        "model": str(label) if weights is None else None,
        "weights": weights,
        "adapter": adapter,
        "tokenizer": tokenizer_digest(tokenizer),
        "generation_config": generation_config_digest(getattr(model, "generation_config", None)),
    }


def _adapter_names(model: Any) -> list[str]:
    config = getattr(model, "peft_config", None)
    return sorted(config) if isinstance(config, dict) else []


def _is_adapter_tensor(name: str, adapters: list[str]) -> bool:
    # PEFT keeps each adapter's tensors under its name: `...q_proj.lora_A.default.weight`,
    # `...modules_to_save.default.weight`; the base layer's are `...base_layer.weight`
    parts = name.split(".")
    return any(adapter in parts[:-1] for adapter in adapters)


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.to("cpu")
    if flat.is_quantized:
        flat = flat.int_repr()
    return memoryview(flat.contiguous().view(torch.uint8).numpy())


def weights_digests(model: Any) -> tuple[str | None, str | None]:
    """(digest of the model's own tensors, digest of its adapters or None); ``(None, None)`` without a
    ``state_dict``."""
    state_dict = getattr(model, "state_dict", None)
    if not callable(state_dict):
        return None, None
    adapters = _adapter_names(model)
    base, adapter = xxhash.xxh3_128(), xxhash.xxh3_128()
    seen: dict[tuple, str] = {}
    for name, tensor in state_dict().items():
        target = adapter if _is_adapter_tensor(name, adapters) else base
        target.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.device.type == "meta":  # offloaded: nothing to read (its shape is recorded)
            target.update(b"meta;")
            continue
        where = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
                 tuple(tensor.stride()), tuple(tensor.shape), tensor.dtype)
        if where in seen:  # a tied tensor: the tie is part of the model, its bytes were hashed once
            target.update(f"same as {seen[where]};".encode())
            continue
        seen[where] = name
        target.update(_tensor_bytes(tensor))
    if not adapters:
        return base.hexdigest(), None
    configs = {name: _jsonable(model.peft_config[name]) for name in adapters}
    active = getattr(model, "active_adapters", None)
    adapter.update(_canonical({"configs": configs, "active": active}).encode())
    return base.hexdigest(), adapter.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    """Digest of what the tokenizer turns text into (and back), its special tokens and its chat template."""
    digest = xxhash.xxh3_128(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # the backend's JSON, from its added tokens on: the padding and truncation state before them change with
        # every padded call and are not what the tokenizer is (should the layout change, the whole text is hashed:
        # a digest that changes too often recomputes, it never reuses a wrong result)
        text = backend.to_str()
        start = text.find('"added_tokens":')
        digest.update(text[max(start, 0) :].encode())
    elif callable(getattr(tokenizer, "get_vocab", None)):
        digest.update(_canonical(sorted(tokenizer.get_vocab().items())).encode())
    extras = {
        "special_tokens": getattr(tokenizer, "special_tokens_map", None),
        "chat_template": getattr(tokenizer, "chat_template", None),
        "length": len(tokenizer) if hasattr(tokenizer, "__len__") else None,
    }
    digest.update(_canonical(extras).encode())
    return digest.hexdigest()


def generation_config_digest(generation_config: Any) -> str | None:
    """Digest of the model's generation config (its non-default values), or None without one."""
    if generation_config is None:
        return None
    if callable(getattr(generation_config, "to_diff_dict", None)):
        values = generation_config.to_diff_dict()
    else:
        values = dict(vars(generation_config))
    values.pop("transformers_version", None)
    if values.get("soft_thinking") is None:  # `enable_soft_thinking` adds the attribute, unset
        values.pop("soft_thinking", None)
    return xxhash.xxh3_128(_canonical(values).encode()).hexdigest()


def changed_parts(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """How the parts of two identities differ, in words (``[]``: the same)."""
    return [text for key, text in IDENTITY_PARTS.items() if saved.get(key) != current.get(key)]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
