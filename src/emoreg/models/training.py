"""One training loop for every model that learns by gradient descent: the LLM's LoRA adapter
(``head: lm``), its label head with the tuned layers (``head: classify``) and the fine-tuned
encoder (``encoder-ft``).

A model gives the loop its trainable parameters, a ``Schedule`` (epochs, batch size, AdamW's
learning rate and weight decay, linear warm-up then decay, the gradient-norm clip), the length of
each training item (batches group similar lengths, in an order drawn from the seed) and a step
function that computes one batch's loss; the loop does the rest the same way for all three:
backward, clip, optimizer and schedule step, the progress bar, the per-step history (losses kept
on the device, read every 10 steps) and the checkpoint. With a ``Checkpoint`` (the runner gives
every fold a folder), the trainable weights, the optimizer, the schedule, the random state and the
history are written atomically every few minutes, at the end, and when the fit is stopped (Ctrl-C,
or SIGTERM through the CLI: the last whole step, with the random state as it was after it); a fit
killed in training resumes at the step after the last checkpoint and ends with the same weights as
an uninterrupted one, and a fit killed while scoring trains nothing again. A checkpoint of another training set or schedule
(its fingerprint differs) is ignored with a warning.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import distributed
from ..errors import EmoregError
from ..progress import progress


@dataclass(frozen=True)
class Schedule:
    """How a model trains: ``epochs`` over the training items in batches of ``batch_size``, AdamW
    at learning rate ``lr`` with ``weight_decay``, the rate warmed up linearly over the first
    ``warmup`` share of the steps and decayed linearly to zero after, gradients clipped to a norm
    of ``max_grad_norm``."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    warmup: float = 0.0
    max_grad_norm: float = 1.0

    def steps(self, n_items: int) -> int:
        return math.ceil(n_items / self.batch_size) * self.epochs


def length_grouped(lengths: list[int], size: int, generator) -> list[list[int]]:
    """Shuffled batches of similar length (sorted inside chunks of 50 batches), so padding is short."""
    import torch

    order = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + size] for i in range(0, len(part), size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def class_weight_table(y, n_labels: int, mode: str | None):
    """One weight per class: ``balanced`` gives each present class n / (k * count), ``sqrt`` the square
    root of that (a milder balancing: a class 4x rarer weighs 2x, not 4x), null gives ones; a class
    absent from ``y`` gets 0 when balancing."""
    import numpy as np
    import torch

    if mode in ("balanced", "sqrt"):
        counts = np.bincount(y, minlength=n_labels).astype(float)
        per_class = np.where(counts > 0, len(y) / (len(np.nonzero(counts)[0]) * np.maximum(counts, 1)), 0)
        return torch.tensor(np.sqrt(per_class) if mode == "sqrt" else per_class, dtype=torch.float32)
    if mode is not None:
        raise EmoregError(f"llm: class_weight must be balanced, sqrt or null, got {mode!r}")
    return torch.ones(n_labels)


def class_weights(y, n_labels: int, mode: str | None):
    """Per-example weights: each example's class weight (``class_weight_table``)."""
    import numpy as np

    return class_weight_table(y, n_labels, mode)[np.asarray(y)]


def warmup_linear_schedule(optimizer, total: int, warmup: float):
    """Linear warm-up over the first ``warmup`` share of ``total`` steps, then linear decay to zero."""
    import torch

    warm = max(1, int(warmup * total))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm))))


def advance(optimizer, scheduler) -> None:
    """One optimizer step after backward: the update, the schedule, the gradients cleared."""
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def random_states() -> tuple:
    """torch's random states (CPU, and every CUDA device's), as a checkpoint keeps them: reading
    them copies a few kB on the host and waits for no device."""
    import torch

    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


class Checkpoint:
    """``state.pt`` in ``folder``: what resumes a fit, saved every ``minutes`` (None: never) and
    at the end of training, by the main process only; read back weights-only (no code runs)."""

    def __init__(self, folder: str | Path | None, fingerprint: dict[str, Any], minutes: float | None,
                 name: str = "training"):
        self.path = Path(folder) / "state.pt" if folder is not None and minutes is not None else None
        self.fingerprint, self.name = fingerprint, name
        self.every_s = 60 * minutes if minutes is not None else None
        self.saved_at = time.perf_counter()

    def due(self, step: int, total: int) -> bool:
        return self.path is not None and (step == total or time.perf_counter() - self.saved_at >= self.every_s)

    def save(self, params, optimizer, scheduler, step: int, elapsed: float, history: list, rng: tuple) -> None:
        """``rng``: the random states as they were right after ``step`` (``random_states``; a fit
        stopped in the middle of the next step has drawn more since)."""
        self.saved_at = time.perf_counter()
        if self.path is None or not distributed.is_main():
            return
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        cpu_rng, cuda_rng = rng
        state = {"fingerprint": self.fingerprint, "step": step, "elapsed": elapsed, "history": history,
                 "params": [p.detach().cpu() for p in params], "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": cpu_rng, "cuda_rng": cuda_rng}
        tmp = self.path.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)  # readers see the old checkpoint or the whole new one

    def resume(self, params, optimizer, scheduler) -> tuple[int, float, list]:
        """Load this fit's checkpoint if there is one: (steps already done, seconds spent, history)."""
        import torch

        if self.path is None or not self.path.is_file():
            return 0, 0.0, []
        state = torch.load(self.path, map_location="cpu", weights_only=True)  # tensors and plain values: no code
        if state.get("fingerprint") != self.fingerprint or len(state.get("params", ())) != len(params):
            warnings.warn(f"{self.path} belongs to another training set or schedule; starting this fit afresh",
                          stacklevel=3)
            return 0, 0.0, []
        with torch.no_grad():
            for p, saved in zip(params, state["params"]):
                p.copy_(saved.to(p.device, p.dtype))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([r.cpu() for r in state["cuda_rng"]])
        print(f"{self.name}: resuming at step {state['step'] + 1} of {self.fingerprint.get('total')} from "
              f"{self.path}", file=sys.stderr, flush=True)
        return state["step"], state["elapsed"], list(state["history"])


def train(params: list, schedule: Schedule, lengths: list[int], seed: int,
          step: Callable[[list[int]], tuple[Any, Any]], *, desc: str,
          checkpoint: Checkpoint | None = None, backward: Callable | None = None, clip: Callable | None = None,
          optimizer=None, on_epoch: Callable[[], None] | None = None) -> tuple[list[dict], float]:
    """Train ``params`` for ``schedule`` over items of ``lengths``; ``step(batch)`` returns the
    batch's loss and a detached record ``[loss, tokens]`` (a tensor, left on the device). Returns
    the history (step, loss, lr, tokens, seconds) and the seconds the training took.

    ``backward`` and ``clip`` replace ``loss.backward()`` and torch's norm clip (Accelerate's, when
    processes train together); ``optimizer`` replaces the plain AdamW (Accelerate's wrapper of it);
    ``on_epoch`` runs after each epoch (the inner validation score of ``layers: auto``)."""
    import torch

    if optimizer is None:  # fused: the whole update in one kernel, on a CPU too (not a loop of ops over
        # temporaries the size of the tuned weights: a Qwen2.5-1.5B layer's step 1.6-1.9x faster; BENCHMARKS.md)
        optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay, fused=True)
    total = schedule.steps(len(lengths))
    scheduler = warmup_linear_schedule(optimizer, total, schedule.warmup)
    generator = torch.Generator().manual_seed(seed)
    done, elapsed, history = checkpoint.resume(params, optimizer, scheduler) if checkpoint else (0, 0.0, [])
    started = time.perf_counter() - elapsed
    bar = progress(total=total, initial=done, desc=desc, unit="step", leave=False)
    pending: list = []  # per-step records kept on the device: no host sync inside the loop

    def flush() -> None:
        for record, lr, seconds in pending:
            loss, tokens = record.tolist()
            history.append({"step": len(history) + 1, "loss": float(loss), "lr": lr, "tokens": int(tokens),
                            "seconds": seconds})
        pending.clear()

    n, saved = 0, done
    # A stop (Ctrl-C, SIGTERM) saves the last whole step, so the rerun loses no training: ``whole``
    # is that step and ``rng`` the random states right after it (read only where a checkpoint is
    # kept); ``whole`` is None while the weights are updated (a stop there would leave them half-stepped).
    keep = checkpoint is not None and checkpoint.path is not None
    whole, rng = done, random_states() if keep else None
    try:
        for _ in range(schedule.epochs):
            for batch in length_grouped(lengths, schedule.batch_size, generator):  # replayed on resume
                n += 1
                if n <= done:
                    continue
                loss, record = step(batch)
                (backward or torch.Tensor.backward)(loss)
                (clip or torch.nn.utils.clip_grad_norm_)(params, schedule.max_grad_norm)
                whole = None
                advance(optimizer, scheduler)
                bar.update(1)
                pending.append((record, scheduler.get_last_lr()[0], time.perf_counter() - started))
                whole, rng = n, random_states() if keep else None
                if n % 10 == 0 or n == total:  # one host sync every 10 steps, for the progress bar
                    bar.set_postfix(loss=f"{float(record[0]):.3f}")
                if keep and checkpoint.due(n, total):
                    flush()
                    checkpoint.save(params, optimizer, scheduler, n, time.perf_counter() - started, history, rng)
                    saved = n
            if on_epoch is not None and n > done:
                on_epoch()
    except KeyboardInterrupt:
        if keep and whole is not None and whole > saved:
            flush()
            checkpoint.save(params, optimizer, scheduler, whole, time.perf_counter() - started, history, rng)
        raise
    flush()
    bar.close()
    return history, time.perf_counter() - started
