"""``head: classify``: the LLM as a classifier over the task's labels, trained only where it learns.

* A linear head maps the hidden state of the prompt's last token (the position that would predict
  the answer's first token) to one logit per label, trained with cross-entropy (class-weighted
  with ``class_weight: balanced``). It starts as the language model's own output rows of each
  label's first answer token (``head_init: labels``), i.e. as a softmax restricted to the labels,
  so training starts from what the model already knows. No label is favoured for being spelt in
  fewer tokens: each label is one logit, whatever its name.
* Only the top ``tune_layers`` decoder layers are trained (LoRA, or all their weights with
  ``tune: full``), with the head. The layers below are frozen: the states entering the first tuned
  layer come from ``states.entering_states`` (computed once per prompt and cached), and an epoch
  runs only the tuned layers, forward and backward. ``tune_layers: null`` tunes every layer (the
  cache then holds the token embeddings).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ... import heap
from ...errors import EmoregError
from ...progress import progress
from ..training import Checkpoint, class_weight_table, train
from . import last_token
from .cut import decoder_of, first_tuned, only_layers
from .mix import last_states, make_mix, mixed
from .states import TRIM_EVERY, entering_states
from .tokens import padded

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier

HEAD_FILE = "head.safetensors"


def label_logits(clf: LlmClassifier, states: list, start: int, last_only: bool = True, extra=None):
    """Label logits for a batch of cached states: the tuned layers, the final norm, the head. The
    top layer runs at the last prompt token only where it is a known Llama layer (``last_token``:
    the same function, ~6% of the layer's cost); ``last_only=False`` runs it whole. ``extra``: the
    batch's last-token states of the ``mix_layers`` (``mix``)."""
    import torch

    x, mask = padded(states, 0)
    x, mask = x.to(clf.device_), mask.to(clf.device_)
    _, decoder = decoder_of(clf.model_)
    layers = list(decoder.layers)[start:]
    with clf._autocast():
        if last_only and last_token.supported(decoder, layers[-1]):
            hidden = x
            if len(layers) > 1:
                with only_layers(decoder, layers[:-1], start), last_token.no_final_norm(decoder):
                    hidden = decoder(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state
            last = decoder.norm(last_token.top_layer_at_last(decoder, layers[-1], hidden, mask))
        else:
            with only_layers(decoder, layers, start):
                hidden = decoder(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state
            last = hidden[torch.arange(len(states), device=clf.device_), mask.sum(-1) - 1]
        last = mixed(clf, decoder, last, extra)
    return clf.head_(last.float())


def make_head(clf: LlmClassifier):
    """The label head, initialised from the output rows of each label's first answer token, or zeros."""
    import torch

    base, decoder = decoder_of(clf.model_)
    hidden = decoder.norm.weight.shape[0]
    head = torch.nn.Linear(hidden, len(clf.task.labels)).to(clf.device_)
    with torch.no_grad():
        head.bias.zero_()
        if clf.settings.head.head_init == "labels":
            rows = torch.tensor([ids[0] for ids in clf.label_ids_], device=clf.device_)
            head.weight.copy_(base.get_output_embeddings().weight[rows].float())
        else:
            head.weight.zero_()
    return head


def _tuned_modules(clf: LlmClassifier, start: int) -> list:
    """With ``tune: full``: the layers from ``start`` on and the final norm, their weights in fp32
    (bf16 autocast still computes in bf16 where it is on; AdamW needs fp32 weights)."""
    _, decoder = decoder_of(clf.model_)
    modules = list(decoder.layers)[start:] + [decoder.norm]
    for module in modules:
        module.float()
    return modules


def trainable(clf: LlmClassifier, start: int) -> list:
    """Freeze everything but the tuned part: LoRA weights (peft marks them), or with ``tune: full``
    every weight of the layers from ``start`` on and the final norm; then the head."""
    if clf.settings.head.tune == "full":
        for p in clf.model_.parameters():
            p.requires_grad_(False)
        for module in _tuned_modules(clf, start):
            for p in module.parameters():
                p.requires_grad_(True)
    mix = [clf.mix_] if getattr(clf, "mix_", None) is not None else []
    return [p for p in clf.model_.parameters() if p.requires_grad] + list(clf.head_.parameters()) + mix


def fit_head(clf: LlmClassifier, prefixes: list[list[int]], y: np.ndarray) -> None:
    """Train the head (and the tuned layers) on the training prompts; fills ``clf.history_``."""
    import torch

    start = first_tuned(clf.model_, clf.settings.head.tune_layers)
    clf.first_tuned_ = start
    clf.unseen_ = sorted(set(range(len(clf.task.labels))) - set(np.asarray(y).tolist()))  # get no probability
    clf.head_ = make_head(clf)
    clf.mix_ = make_mix(clf)
    began = time.perf_counter()
    lower = last_states(clf, prefixes, entering_states)  # the mixed layers' last tokens (None without)
    states = entering_states(clf, prefixes, start, also=clf.settings.head.state_layers or ())
    clf.fit_report.states_seconds = time.perf_counter() - began
    schedule = clf.schedule()
    if schedule.epochs == 0:
        return
    params = trainable(clf, start)
    per_class = class_weight_table(y, len(clf.task.labels), clf.settings.training.class_weight).to(clf.device_)
    torch.manual_seed(clf.seed)  # dropout masks
    target = torch.as_tensor(y, dtype=torch.long, device=clf.device_)
    tick = heap.trimmer(TRIM_EVERY)

    def step(batch):
        logits = label_logits(clf, [states[i] for i in batch], start, extra=None if lower is None else lower[batch])
        loss = torch.nn.functional.cross_entropy(logits, target[batch], weight=per_class)
        tick()
        return loss, torch.stack([loss.detach(), torch.tensor(float(sum(len(states[i]) for i in batch)))])

    def after_epoch():  # e.g. the inner validation score of ``layers: auto``
        clf.model_.eval()
        clf.epoch_callback(clf)
        clf.model_.train()

    # a fit scored after each epoch (an inner fit of layers: auto) is short and not checkpointed:
    # the scores of the epochs before a kill could not be recomputed
    checkpoint = None if clf.epoch_callback is not None else Checkpoint(
        clf.checkpoint_dir, {"n": len(prefixes), "total": schedule.steps(len(prefixes)), "seed": clf.seed,
                             "start": start, "first": list(prefixes[0][-8:]), "last": list(prefixes[-1][-8:])},
        clf.settings.training.checkpoint_minutes, name="llm head")
    clf.model_.train()
    tuned = len(decoder_of(clf.model_)[1].layers) - start
    clf.history_, clf.fit_report.train_seconds = train(
        params, schedule, [len(p) for p in prefixes], clf.seed, step,
        desc=f"head training ({len(prefixes)} prompts, {tuned} layers)",
        checkpoint=checkpoint, on_epoch=after_epoch if clf.epoch_callback is not None else None)
    clf.model_.eval()


def predict_head(clf: LlmClassifier, prefixes: list[list[int]]) -> np.ndarray:
    import torch

    start = clf.first_tuned_
    lower = last_states(clf, prefixes, entering_states)
    states = entering_states(clf, prefixes, start, also=clf.settings.head.state_layers or ())
    out = np.zeros((len(prefixes), len(clf.task.labels)))
    order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))
    size = clf.settings.model.score_batch
    with torch.inference_mode():
        tick = heap.trimmer(TRIM_EVERY)
        for at in progress(range(0, len(order), size), desc="scoring (head)", unit="batch", leave=False):
            idx = order[at:at + size]
            logits = label_logits(clf, [states[i] for i in idx], start, extra=None if lower is None else lower[idx])
            logits[:, getattr(clf, "unseen_", [])] = -torch.inf
            out[idx] = torch.softmax(logits, -1).cpu().numpy()
            tick()
    return out


def save_head(clf: LlmClassifier, folder) -> None:
    """The head, and with ``tune: full`` the tuned layers' weights, as safetensors beside the adapter."""
    from safetensors.torch import save_file

    tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in clf.head_.state_dict().items()}
    if getattr(clf, "mix_", None) is not None:
        tensors["mix.weight"] = clf.mix_.detach().cpu().contiguous()
    if clf.settings.head.tune == "full":
        base, _ = decoder_of(clf.model_)
        mine = {id(p) for m in _tuned_modules(clf, clf.first_tuned_) for p in m.parameters()}
        tensors |= {f"tuned.{n}": p.detach().cpu().contiguous() for n, p in base.named_parameters() if id(p) in mine}
    save_file(tensors, str(folder / HEAD_FILE))


def load_head(clf: LlmClassifier, folder) -> None:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(folder / HEAD_FILE))
    clf.first_tuned_ = first_tuned(clf.model_, clf.settings.head.tune_layers)
    clf.head_ = make_head(clf)
    clf.head_.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    clf.mix_ = make_mix(clf)
    if clf.mix_ is not None:
        with torch.no_grad():
            clf.mix_.copy_(tensors["mix.weight"])
    tuned = {k[6:]: v for k, v in tensors.items() if k.startswith("tuned.")}
    if tuned:
        _tuned_modules(clf, clf.first_tuned_)
        base, _ = decoder_of(clf.model_)
        names = dict(base.named_parameters())
        unknown = sorted(set(tuned) - set(names))
        if unknown:
            raise EmoregError(f"{folder / HEAD_FILE}: weights {unknown[:3]} do not belong to model "
                              f"{clf.settings.model.model!r}; was it saved from another model?")
        with torch.no_grad():
            for n, v in tuned.items():
                names[n].copy_(v.to(names[n].dtype))
