"""Prompts and answers as token ids, and the one padding helper every pass uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...prompts import render_prompt
from ..base import prompt_counter, token_counter

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier

DEFAULT_SYSTEM = "You label moments of a conversation."


def answer_ids(tokenizer, labels, prefix: str = "") -> tuple[list[list[int]], int]:
    """Each label's answer (``prefix`` + label + end-of-turn) as token ids, and the padding id."""
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids = [tokenizer(prefix + label, add_special_tokens=False).input_ids + end for label in labels]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return ids, pad


def prompt_ids(clf: LlmClassifier, segment) -> list[int]:
    """The segment's prompt in the model's chat template (with the system message unless it is
    null), ending where the answer starts; base models without a template get "Answer: "."""
    count = prompt_counter(clf.prompt, own=token_counter(clf.tokenizer_))
    text = render_prompt(segment, clf.task, clf.prompt, count_tokens=count).text
    return chat_ids(clf.tokenizer_, text, clf.settings.model.system)


def chat_ids(tokenizer, text: str, system: str | None = DEFAULT_SYSTEM) -> list[int]:
    """A rendered prompt's ids: in the chat template (after ``system`` unless it is None), ending where
    the answer starts; a base model without a template gets "Answer: " after the text."""
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": text}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        wrapped = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tokenizer(wrapped, add_special_tokens=False).input_ids
    return tokenizer(text + "\nAnswer: ", add_special_tokens=True).input_ids


def padded(rows: list, pad, left: bool = False):
    """(batch, width[, hidden]) tensor of a list of 1-D id lists or 2-D state tensors, padded with
    ``pad`` on the right (or the left, so that every row ends at the last column), and its mask."""
    import torch

    width = max(len(r) for r in rows)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    if isinstance(rows[0], torch.Tensor):
        out = torch.zeros((len(rows), width, rows[0].shape[-1]), dtype=rows[0].dtype)
    else:
        out = torch.full((len(rows), width), pad, dtype=torch.long)
    for b, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        out[b, span] = r if isinstance(r, torch.Tensor) else torch.tensor(r)
        mask[b, span] = 1
    return out, mask
