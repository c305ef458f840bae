"""Checkpoints of a LoRA fit: an interrupted fit resumes with the same result as an uninterrupted one.

The state (adapter, optimizer, schedule, random state, losses) is written to ``state.pt`` in the
classifier's ``checkpoint_dir`` (the runner sets one per fold), atomically; a fit resumes from it
only when its fingerprint (training set size, schedule, seed, processes, first and last prompt)
matches.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ... import distributed

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier


def save_checkpoint(clf: LlmClassifier, fingerprint: dict, step: int, elapsed: float, optimizer, scheduler) -> None:
    import torch
    from peft import get_peft_model_state_dict

    if not distributed.is_main():
        return
    folder = Path(clf.checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = {"fingerprint": fingerprint, "step": step, "elapsed": elapsed, "history": clf.history_,
             "adapter": get_peft_model_state_dict(clf.model_), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    tmp = folder / "state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / "state.pt")  # readers see the old checkpoint or the whole new one


def resume(clf: LlmClassifier, fingerprint: dict, optimizer, scheduler) -> tuple[int, float]:
    """Load the checkpoint of this fit if there is one: (steps already done, seconds spent)."""
    import torch
    from peft import set_peft_model_state_dict

    path = Path(clf.checkpoint_dir) / "state.pt" if clf.checkpoint_dir is not None else None
    if path is None or not path.is_file():
        return 0, 0.0
    state = torch.load(path, map_location=clf.device_, weights_only=True)  # tensors and plain values: no code
    if state["fingerprint"] != fingerprint:
        warnings.warn(f"{path} belongs to another training set or schedule; starting this fit afresh",
                      stacklevel=3)
        return 0, 0.0
    set_peft_model_state_dict(clf.model_, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"].cpu())
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([r.cpu() for r in state["cuda_rng"]])
    clf.history_ = list(state["history"])
    print(f"llm: resuming training at step {state['step'] + 1} of {fingerprint['total']} from {path}",
          file=sys.stderr, flush=True)
    return state["step"], state["elapsed"]
