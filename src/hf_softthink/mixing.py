"""Concept token -> input embedding, through the model's own input-embedding module.

Going through the module (not its weight matrix) keeps what the module adds: Gemma's sqrt(d) scale,
PEFT's LoRA-on-embedding hooks, quantised or offloaded weights.
"""

from __future__ import annotations

import torch
from torch import nn


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


@torch.no_grad()
def embedding_rms(embedding: nn.Module, vocab_size: int, chunk_size: int = 8192) -> float:
    r"""Root mean square of the effective embedding matrix, $\sqrt{\mathrm{mean}(E^2)}$.

    $E$ is what the module returns for every token id (so Gemma's scale is included). Computed in chunks of
    `chunk_size` ids to bound memory on large vocabularies. It sets the scale of Gaussian embedding noise
    (Soft Tokens, Hard Truths, arXiv:2509.19170): $\tilde e = e + \sigma\,\mathrm{rms}(E)\,\epsilon$.
    """
    device = next(embedding.parameters()).device
    total, count = 0.0, 0
    for start in range(0, vocab_size, chunk_size):
        ids = torch.arange(start, min(start + chunk_size, vocab_size), device=device)
        vectors = embedding(ids).float()
        total += vectors.square().sum().item()
        count += vectors.numel()
    return (total / count) ** 0.5


def add_gaussian_noise(embeds: torch.Tensor, std: float, rows: torch.Tensor) -> torch.Tensor:
    r"""$e + s\,\epsilon$, $\epsilon \sim \mathcal N(0, I)$, on the rows where `rows` (bool `(B,)`) is set."""
    noise = torch.randn_like(embeds, dtype=torch.float32) * std
    return torch.where(rows[:, None], (embeds.float() + noise).to(embeds.dtype), embeds)
