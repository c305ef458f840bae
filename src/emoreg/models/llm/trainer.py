"""The training loop of label scoring (``head: lm``): LoRA, the loss on the answer tokens only.

The loss is computed from the hidden states at the answer positions through the output head (no
whole-vocabulary logits over the prompt); AdamW with linear warm-up and decay, optional class
weights, length-grouped batches padded to the longest in the batch, bf16 autocast where it is
fast, no host sync inside the step loop (losses stay on the device; the progress bar reads one
every 10 steps), checkpoints to resume from: the loop of ``models/training.py``), data-parallel
over processes when started by a launcher (``emoreg.distributed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import distributed
from ..training import Checkpoint, class_weights, train
from .tokens import padded

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier


def answer_positions(seqs: list[list[int]], prefix_lengths: list[int], pad: int, device):
    """Right-padded ids and mask, and the (row, column) positions whose outputs predict the answer
    tokens, with those tokens and the row each belongs to."""
    import torch

    ids, mask = padded(seqs, pad)
    rows, cols, targets = [], [], []
    for b, (seq, plen) in enumerate(zip(seqs, prefix_lengths)):
        for t in range(plen, len(seq)):
            rows.append(b)
            cols.append(t - 1)
            targets.append(seq[t])
    as_long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return ids.to(device), mask.to(device), as_long(rows), as_long(cols), as_long(targets).to(device), as_long(rows)


def softcapped(model, head, hidden):
    """The output head's logits, with the model's final logit soft-capping where it has one (Gemma)."""
    import torch

    logits = head(hidden)
    cap = getattr(model.get_base_model().config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def answer_logits_module(peft_model):
    """The training forward as one module (so that DDP can wrap it): the decoder's hidden states
    at the given (row, column) positions through the output head; no logits over the prompt."""
    import torch

    class AnswerLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.peft = peft_model

        def forward(self, ids, mask, rows, cols):
            decoder = self.peft.get_base_model().base_model
            hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state
            return softcapped(self.peft, self.peft.get_base_model().get_output_embeddings(), hidden[rows, cols])

    return AnswerLogits()


def fit_lora(clf: LlmClassifier, prefixes: list[list[int]], y: np.ndarray) -> None:
    """Train the LoRA adapter on the prompts followed by their answers; fills ``clf.history_``."""
    import torch

    sequences = [p + clf.label_ids_[c] for p, c in zip(prefixes, y)]
    schedule = clf.schedule()
    weights = class_weights(y, len(clf.task.labels), clf.settings.training.class_weight).to(clf.device_)
    params = [p for p in clf.model_.parameters() if p.requires_grad]
    answer = answer_logits_module(clf.model_)
    world, rank = distributed.world_size(), distributed.rank()
    optimizer = backward = clip = None
    if world > 1:  # DDP through Accelerate: gradients are averaged over the processes in backward
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=clf.device_.type == "cpu")
        optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
        answer, optimizer = accelerator.prepare(answer, optimizer)
        backward = accelerator.backward
        clip = lambda _, norm: accelerator.clip_grad_norm_(answer.parameters(), norm)  # noqa: E731
    fingerprint = {"n": len(sequences), "total": schedule.steps(len(sequences)), "seed": clf.seed, "world": world,
                   "first": sequences[0][-8:], "last": sequences[-1][-8:]}
    device = clf.device_
    sum_loss = clf.settings.training.answer_loss == "sum"

    def step(batch):
        # each process takes every world-th prompt of the global batch; a process left
        # without one repeats the first at weight 0, so that it still joins the all-reduce
        mine = batch[rank::world]
        w = weights[mine] if mine else torch.zeros(1, device=device)
        real = bool(mine)
        mine = mine or batch[:1]
        ids, mask, rows, cols, targets, owner = answer_positions(
            [sequences[i] for i in mine], [len(prefixes[i]) for i in mine], clf.pad_id_, device)
        owner = owner.to(device)
        with clf._autocast():
            logits = answer(ids, mask, rows.to(device), cols.to(device))
        token_loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        per_sample = torch.zeros(len(mine), device=device).index_add_(0, owner, token_loss)
        if not sum_loss:
            per_sample = per_sample / torch.bincount(owner, minlength=len(mine))
        # the weighted mean over the global batch; DDP averages over processes, hence x world
        loss = (per_sample * w).sum() / weights[batch].sum() * world
        record = torch.stack([loss.detach(), (mask.sum() * real).float()])
        if world > 1:
            record = accelerator.reduce(record, "sum") / torch.tensor([world, 1.0], device=device)
        return loss, record

    clf.model_.train()
    clf.history_, clf.fit_report.train_seconds = train(
        params, schedule, [len(s) for s in sequences], clf.seed, step,
        desc=f"LoRA training ({len(sequences)} prompts)",
        checkpoint=Checkpoint(clf.checkpoint_dir, fingerprint, clf.settings.training.checkpoint_minutes, name="llm"),
        backward=backward, clip=clip, optimizer=optimizer)
    clf.model_.eval()
