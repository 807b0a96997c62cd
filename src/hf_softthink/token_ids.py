"""Every token id a run uses, checked against the model before the first step.

A token id is usable when the model can both *produce* it (its output layer scores that many tokens) and
*feed* it back (its input embedding has that many rows). An id beyond either is not an error torch reports
clearly: a marker the output layer cannot score is never generated (thinking never ends, silently), and a
marker fed or forced beyond the embedding is ``RuntimeError: index 263 is out of bounds`` deep in a step. It
happens after ``tokenizer.add_tokens([...])`` without ``model.resize_token_embeddings``, with another
model's tokenizer, or with an id typed by hand.

* :func:`check_token_ids`: the one check. It takes every id by the setting it came from and raises a
  ``ValueError`` naming the setting, its value, the ids and the model's sizes, with the fix.
* :func:`check_tokenizer_fits`: a tokenizer whose ids exceed the model's embedding (``len(tokenizer)`` larger
  than the usable vocabulary) is refused by name, before the prompts reach the model.
* :func:`embedding_sizes`: what the model can produce and feed.

The soft-thinking decoder resolves its ids in one place, ``hf_softthink.generation.plan_soft_thinking``, and
checks every token-id field of the plan with these functions before the first step (``check_plan_token_ids``
there); `evaluate_modes`, the command line and `SoftGRPOTrainer` run the same check before their first
decoding step.

Example:

```python
>>> from hf_softthink.models import tiny_model
>>> from hf_softthink.token_ids import check_token_ids
>>> check_token_ids(tiny_model("llama"), {"SoftThinkingConfig.think_end=300": (300,)})
Traceback (most recent call last):
...
ValueError: SoftThinkingConfig.think_end=300 is token id 300, which this model cannot produce or feed: ...

```
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EmbeddingSizes", "check_token_ids", "check_tokenizer_fits", "embedding_sizes"]


@dataclass(frozen=True)
class EmbeddingSizes:
    """How many token ids a model scores (``output_rows``) and embeds (``input_rows``)."""

    input_rows: int
    output_rows: int

    @property
    def usable(self) -> int:
        """Ids ``0 .. usable - 1`` can be both produced and fed back."""
        return min(self.input_rows, self.output_rows)

    def describe(self) -> str:
        if self.input_rows == self.output_rows:
            return f"its input embedding and output layer have {self.input_rows} rows (ids 0..{self.input_rows - 1})"
        return (
            f"its output layer scores {self.output_rows} tokens and its input embedding has {self.input_rows} "
            f"rows (usable ids 0..{self.usable - 1})"
        )


def _rows(module: Any) -> int | None:
    if module is None:
        return None
    for name in ("num_embeddings", "out_features"):
        value = getattr(module, name, None)
        if isinstance(value, int):
            return value
    weight = getattr(module, "weight", None)
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None


def embedding_sizes(model: Any) -> EmbeddingSizes | None:
    """The rows of the model's input embedding and output layer (the config's ``vocab_size`` where a module
    does not say); ``None`` for an object that has neither (a stand-in for a model: nothing to check against)."""
    config = getattr(model, "config", None)
    vocab = None
    if config is not None:
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        vocab = getattr(text_config, "vocab_size", None)
    get_input = getattr(model, "get_input_embeddings", None)
    get_output = getattr(model, "get_output_embeddings", None)
    input_rows = _rows(get_input()) if callable(get_input) else None
    output_rows = _rows(get_output()) if callable(get_output) else None
    input_rows = input_rows if input_rows is not None else vocab
    output_rows = output_rows if output_rows is not None else (vocab if vocab is not None else input_rows)
    if input_rows is None or output_rows is None:
        return None
    return EmbeddingSizes(int(input_rows), int(output_rows))


def _fix(tokenizer: Any, sizes: EmbeddingSizes) -> str:
    held = ""
    if tokenizer is not None and hasattr(tokenizer, "__len__"):
        held = f" The tokenizer has {len(tokenizer)} tokens."
    return (
        f"{held} After tokenizer.add_tokens([...]) call model.resize_token_embeddings(len(tokenizer)); otherwise "
        "use the model's own tokenizer, a marker the model knows, or an id below "
        f"{sizes.usable}."
    )


def check_token_ids(
    model: Any,
    token_ids: Mapping[str, Iterable[int]],
    *,
    tokenizer: Any = None,
    sizes: EmbeddingSizes | None = None,
) -> None:
    """Raise a ``ValueError`` if an id of ``token_ids`` (setting, as the message should name it -> its ids) is
    negative or beyond what ``model`` can produce and feed (:class:`EmbeddingSizes`)."""
    sizes = sizes or embedding_sizes(model)
    if sizes is None:
        return
    for setting, ids in token_ids.items():
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < sizes.usable]
        if not bad:
            continue
        which = f"token id {bad[0]}, which" if len(ids) == 1 else f"token ids {ids}, of which {bad}"
        raise ValueError(
            f"{setting} is {which} this model cannot produce or feed: {sizes.describe()}." + _fix(tokenizer, sizes)
        )


def check_tokenizer_fits(model: Any, tokenizer: Any, *, sizes: EmbeddingSizes | None = None) -> None:
    """Raise a ``ValueError`` if ``tokenizer`` can produce ids the model cannot embed or score (its length is
    larger than the model's usable vocabulary): a prompt or marker with such an id would fail mid-run.

    When every token beyond the model is a *special* added token (text never tokenizes to one unless it spells
    it, e.g. an image placeholder of a multimodal tokenizer), a ``UserWarning`` names them instead: the markers
    and prompts that do use one are refused where they are resolved.
    """
    if tokenizer is None or not hasattr(tokenizer, "__len__"):
        return
    sizes = sizes or embedding_sizes(model)
    length = len(tokenizer)
    if sizes is None or length <= sizes.usable:
        return
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    beyond = sorted((i, token) for i, token in added.items() if i >= sizes.usable)
    listed = ""
    if beyond:
        listed = " (" + ", ".join(f"{str(t)!r} = {i}" for i, t in beyond[:5]) + (", ..." if len(beyond) > 5 else "") + ")"
    message = (
        f"The tokenizer {name!r} has {length} tokens, ids up to {length - 1}{listed}, but the model "
        f"{type(model).__name__} cannot use ids from {sizes.usable} on: {sizes.describe()}. Call "
        "model.resize_token_embeddings(len(tokenizer)) after adding tokens, or use the model's own tokenizer."
    )
    only_special = len(beyond) == length - sizes.usable and all(getattr(t, "special", False) for _, t in beyond)
    if only_special:
        warnings.warn(message + " (Only special tokens are beyond it: a prompt or marker using one is refused.)",
                      UserWarning, stacklevel=3)
        return
    raise ValueError(message)
