"""Concept token -> input embedding, through the model's own input-embedding module.

Going through the module (not its weight matrix) keeps what the module adds: Gemma's sqrt(d) scale,
PEFT's LoRA-on-embedding hooks, quantised or offloaded weights. Two exact ways to mix:

* sparse (`concept_embedding`): look the K mixed ids up through the module and sum, $O(K d)$ per row;
* dense (`dense_concept_embedding`): a mixture over the whole vocabulary as one matrix product
  $w E$ (`(B, V) @ (V, d)`), never a `(B, V, d)` gather. The module still runs: each weight lookup it makes
  with `torch.nn.functional.embedding` (the base table, a LoRA A table) becomes `w @ weight`, and whatever the
  module does with the result (Gemma's scale, LoRA's B and scaling) applies unchanged. This is exact for any
  module that is linear in the one-hot token, which every token embedding is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


def input_embedding_module(model: nn.Module) -> nn.Module:
    """The model's input-embedding module, or a `ValueError` that says why soft thinking cannot run."""
    try:
        module = model.get_input_embeddings()
    except (AttributeError, NotImplementedError) as error:
        raise ValueError(
            f"{type(model).__name__} has no input-embedding module (get_input_embeddings() failed: {error}). "
            "Soft thinking feeds mixtures of input embeddings, so it needs a causal LM whose "
            "get_input_embeddings() returns the token embedding (any AutoModelForCausalLM does)."
        ) from error
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"{type(model).__name__}.get_input_embeddings() returned {module!r}, not an input-embedding module. "
            "Soft thinking feeds mixtures of input embeddings: use a causal LM with token embeddings."
        )
    return module


def concept_embedding(embedding: nn.Module, token_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""The concept token $e = \sum_j w_j\,\mathrm{embed}(id_j)$ (Soft Thinking, arXiv:2505.15778, eq. 3).

    Args:
        embedding: the model's input-embedding module.
        token_ids: `(..., K)` token ids.
        weights: `(..., K)` mixture weights (rows sum to 1; a one-hot row gives exactly `embed(id)`).

    Returns:
        `(..., d)` embeddings in the module's output dtype.
    """
    vectors = embedding(token_ids)
    return (weights.to(vectors.dtype).unsqueeze(-1) * vectors).sum(-2)


class _MixtureLookup(TorchFunctionMode):
    """While active, `F.embedding(ids, weight)` on the marker `ids` returns `weights @ weight` instead."""

    def __init__(self, marker: torch.Tensor, weights: torch.Tensor):
        super().__init__()
        self.marker, self.weights, self.lookups = marker, weights, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.embedding and args and args[0] is self.marker:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            max_norm = args[3] if len(args) > 3 else kwargs.get("max_norm")
            if max_norm is not None:
                raise ValueError(
                    "This input-embedding module renormalises looked-up rows (max_norm), which is not linear in "
                    "the token: a full-vocabulary concept token cannot be mixed exactly. Set a finite "
                    "SoftThinkingConfig.max_topk (mixed by lookups) instead."
                )
            self.lookups += 1
            weights = self.weights
            if weights.shape[-1] < weight.shape[0]:  # embedding tables padded beyond the logits' vocabulary
                weights = F.pad(weights, (0, weight.shape[0] - weights.shape[-1]))
            return weights.to(weight.dtype) @ weight
        return func(*args, **kwargs)


def dense_concept_embedding(embedding: nn.Module, weights: torch.Tensor) -> torch.Tensor:
    r"""The concept token $e = \sum_v w_v\,\mathrm{embed}(v) = w E$ over the whole vocabulary, as a matmul.

    Runs `embedding` on a `(B,)` placeholder id tensor while every `F.embedding` lookup of that placeholder is
    replaced by `weights @ weight` (`(B, V) @ (V, d)`), so the module's own arithmetic around its lookups
    (Gemma's scale, PEFT LoRA's A/B tables and scaling) applies as it would to a token. Memory is
    $O(B (V + d))$: no `(B, V, d)` gather.

    Args:
        embedding: the model's input-embedding module.
        weights: `(B, V)` mixture weights (zeros outside the support; rows sum to 1).

    Returns:
        `(B, d)` embeddings in the module's output dtype.

    Example:

    ```python
    >>> import torch
    >>> table = torch.nn.Embedding(5, 3)
    >>> w = torch.tensor([[0.5, 0.0, 0.5, 0.0, 0.0]])
    >>> torch.allclose(dense_concept_embedding(table, w), (table.weight[0] + table.weight[2])[None] / 2)
    True

    ```
    """
    marker = torch.zeros(weights.shape[0], dtype=torch.long, device=weights.device)
    lookup = _MixtureLookup(marker, weights)
    with lookup:
        vectors = embedding(marker)
    if lookup.lookups == 0:
        raise ValueError(
            f"{type(embedding).__name__} does not look its token ids up with torch.nn.functional.embedding, so a "
            "full-vocabulary concept token cannot be mixed through it as a matrix product. Set a finite "
            "SoftThinkingConfig.max_topk (the mixture is then looked up id by id)."
        )
    return vectors


@torch.no_grad()
def embedding_rms(
    embedding: nn.Module, vocab_size: int, chunk_size: int = 8192, token_ids: list[int] | None = None
) -> float:
    r"""Root mean square of the effective embedding matrix, $\sqrt{\mathrm{mean}(E^2)}$ (over every entry).

    $E$ is what the module returns for every token id (so Gemma's scale is included), or only for `token_ids`
    (the rows the model uses: `SoftThinkingConfig.gaussian_rms_token_ids`). Computed in chunks of
    `chunk_size` ids to bound memory on large vocabularies. It sets the scale of Gaussian embedding noise
    (Soft Tokens, Hard Truths, arXiv:2509.19170): $\tilde e = e + \sigma\,\mathrm{rms}(E)\,\epsilon$.
    """
    device = next(embedding.parameters()).device
    if token_ids is not None:
        bad = [i for i in token_ids if not 0 <= i < vocab_size]
        if bad:
            raise ValueError(
                f"SoftThinkingConfig.gaussian_rms_token_ids has ids outside the vocabulary [0, {vocab_size}): "
                f"{bad[:5]}. List token ids of this model's vocabulary, or None for every row."
            )
        rows = torch.tensor(sorted(set(token_ids)), device=device)
    else:
        rows = torch.arange(vocab_size, device=device)
    total, count = 0.0, 0
    for start in range(0, rows.numel(), chunk_size):
        vectors = embedding(rows[start : start + chunk_size]).float()
        total += vectors.square().sum().item()
        count += vectors.numel()
    return (total / count) ** 0.5


def add_gaussian_noise(embeds: torch.Tensor, std: float, rows: torch.Tensor) -> torch.Tensor:
    r"""$e + s\,\epsilon$, $\epsilon \sim \mathcal N(0, I)$, on the rows where `rows` (bool `(B,)`) is set."""
    noise = torch.randn_like(embeds, dtype=torch.float32) * std
    return torch.where(rows[:, None], (embeds.float() + noise).to(embeds.dtype), embeds)
