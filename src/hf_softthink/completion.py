"""Completion-style prompts for base models: a model without a chat template thinks and answers as text.

A base model (google/gemma-3-270m, the packaged ``gemma3-270m``) has no chat template and was never taught
to write ``</think>``: given a bare question it continues with more questions. It does continue a
question-and-answer layout, so for such a model the package asks::

    Question: What is 8 + 7?
    Reasoning:

and takes ``"\\nAnswer:"`` (:data:`COMPLETION_THINK_END`) as the think-end marker: the model usually
writes it after its reasoning by itself, and a thinking budget forces it otherwise. The answer is the rest
of that line: :class:`AnswerLineStoppingCriteria` stops a row at the end of it, before the model starts
inventing the next question. Without thinking (standard decoding) the prompt ends in ``"\\nAnswer:"``
directly (:func:`completion_prompt` with ``thinking=False``).

Example:

```python
>>> completion_prompt("What is 8 + 7?")
'Question: What is 8 + 7?\\nReasoning:'
>>> completion_prompt("What is 8 + 7?", thinking=False)
'Question: What is 8 + 7?\\nAnswer:'

```
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import StoppingCriteria

from .evaluation_metrics import DEFAULT_THINK_END

__all__ = [
    "COMPLETION_THINK_END",
    "AnswerLineStoppingCriteria",
    "answer_marker",
    "completion_prompt",
    "has_chat_template",
]

#: the think-end marker of completion prompts: the reasoning ends where the answer line starts
COMPLETION_THINK_END = "\nAnswer:"


def has_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` has a chat template (else prompts are completion-style)."""
    return bool(getattr(tokenizer, "chat_template", None))


def default_think_end(tokenizer: Any) -> str:
    """The think-end marker that suits ``tokenizer``'s prompts: ``"</think>"`` for a chat template (and
    without a tokenizer), :data:`COMPLETION_THINK_END` for completion-style prompts."""
    return DEFAULT_THINK_END if tokenizer is None or has_chat_template(tokenizer) else COMPLETION_THINK_END


def completion_prompt(question: str, *, thinking: bool = True) -> str:
    """The completion-style prompt of ``question``: ``"Question: ...\\nReasoning:"`` when the model is to
    think first, ``"Question: ...\\nAnswer:"`` when it is to answer at once."""
    return f"Question: {question.strip()}\n" + ("Reasoning:" if thinking else COMPLETION_THINK_END.lstrip("\n"))


def answer_marker(prompt: str, think_end: str | None = COMPLETION_THINK_END) -> str | None:
    """Where the answer of a completion prompt starts: after ``think_end``, or (``None``) at once for a
    prompt that already ends in ``"Answer:"``."""
    return None if prompt.rstrip().endswith(COMPLETION_THINK_END.strip()) else think_end


class AnswerLineStoppingCriteria(StoppingCriteria):
    """Stops a row once its answer line is complete: a newline after answer text.

    The answer starts after the first ``think_end`` in the generated text (``think_end=None``: at the first
    generated token, for a prompt that already ends in ``"Answer:"``). Rows still thinking never stop here.

    Args:
        tokenizer: decodes the generated ids.
        prompt_length: length of the (padded) prompt; only later tokens are read.
        think_end: the marker that ends the reasoning, or ``None``.

    Example:

    ```python
    >>> from hf_softthink.models import tiny_tokenizer
    >>> tok = tiny_tokenizer()
    >>> stop = AnswerLineStoppingCriteria(tok, prompt_length=0, think_end="|A:")
    >>> ids = torch.tensor([tok.encode(t, add_special_tokens=False) for t in ("x\\ny|A: 15\\n", "x\\ny|A: 123")])
    >>> stop(ids, None).tolist()
    [True, False]

    ```
    """

    def __init__(self, tokenizer: Any, prompt_length: int, think_end: str | None = COMPLETION_THINK_END):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.think_end = think_end

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = []
        for row in input_ids[:, self.prompt_length :]:
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            if self.think_end:
                if self.think_end not in text:
                    done.append(False)
                    continue
                text = text.split(self.think_end, 1)[1]
            answer = text.lstrip()
            done.append("\n" in answer and bool(answer.split("\n", 1)[0].strip()))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
