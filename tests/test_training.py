"""The one training loop (models/training.py): a fit killed in training resumes from its checkpoint
to the same weights, for the LLM's head with its tuned layer and for the fine-tuned encoder (the
LoRA adapter: tests/test_llm.py); a fit killed while scoring trains nothing again."""

import numpy as np
import pytest
import torch
from test_llm_head import head_model

from emoreg.models import encoder_ft, make_model
from emoreg.prompts import PromptConfig
from emoreg.tasks import DEEP_SHAME


def _maker(kind, tiny_llama, monkeypatch, minutes=0):
    """A fit of ``kind`` checkpointing every ``minutes`` (0: after every step) and at its end."""
    if kind == "head":  # one layer fully tuned with the head
        return lambda: head_model(tiny_llama, epochs=3, tune="full", tune_layers=1, layers=2,
                                  checkpoint_minutes=minutes, lora_dropout=0.0)
    monkeypatch.setattr(encoder_ft, "CHECKPOINT_MINUTES", minutes)  # the encoder has dropout: the random state matters
    return lambda: make_model("encoder-ft", DEEP_SHAME, PromptConfig(sources=("utterance",)), 0,
                              {"epochs": 2, "lr": 2e-4, "batch_size": 8, "max_length": 16})


REAL_STEP = torch.optim.AdamW.step


def _counting(monkeypatch, stop_after=None):
    """Count AdamW's steps from here on; with ``stop_after``, kill the fit at that step."""
    real, calls = REAL_STEP, []

    def step(self, *args, **kwargs):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt  # killed during this step
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    return calls


@pytest.mark.parametrize("kind", ["head", "encoder"])
def test_a_fit_killed_in_training_resumes_to_the_same_weights(kind, tiny_llama, toy_split, tmp_path, monkeypatch):
    train, test = toy_split
    make = _maker(kind, tiny_llama, monkeypatch)
    whole = make().fit(train)  # no checkpoint folder: nothing saved
    total = len(whole.history_)
    stop = total // 2 + 1

    first = make()
    first.checkpoint_dir = tmp_path / "ckpt"
    _counting(monkeypatch, stop_after=stop)
    with pytest.raises(KeyboardInterrupt):
        first.fit(train)
    assert torch.load(tmp_path / "ckpt" / "state.pt", weights_only=True)["step"] == stop

    calls = _counting(monkeypatch)
    resumed = make()
    resumed.checkpoint_dir = tmp_path / "ckpt"
    resumed.fit(train)
    assert len(calls) == total - stop  # only the missing steps were trained
    assert [h["loss"] for h in resumed.history_] == pytest.approx([h["loss"] for h in whole.history_], abs=1e-6)
    assert [h["step"] for h in resumed.history_] == list(range(1, total + 1))
    assert np.allclose(resumed.predict_proba(test), whole.predict_proba(test), atol=1e-6)

    calls = _counting(monkeypatch)  # stopped while scoring: the finished training is not run again
    again = make()
    again.checkpoint_dir = tmp_path / "ckpt"
    again.fit(train)
    assert calls == [] and np.allclose(again.predict_proba(test), whole.predict_proba(test), atol=1e-6)

    other = make()  # a checkpoint of another training set is not used
    other.checkpoint_dir = tmp_path / "ckpt"
    with pytest.warns(UserWarning, match="starting this fit afresh"):
        other.fit(train[:20])


@pytest.mark.parametrize("kind", ["head", "encoder"])
def test_a_fit_stopped_between_checkpoints_saves_its_last_whole_step(kind, tiny_llama, toy_split, tmp_path,
                                                                     monkeypatch):
    """Ctrl-C or SIGTERM in the middle of a step (after its backward, before its update), long before
    the next checkpoint is due: the steps finished so far are saved on the way out, with the random
    state as it was after the last of them, and the rerun trains only the rest, to the same weights."""
    train, test = toy_split
    make = _maker(kind, tiny_llama, monkeypatch, minutes=60)
    whole = make().fit(train)
    total = len(whole.history_)
    stop = total // 2 + 1
    real_clip, clips = torch.nn.utils.clip_grad_norm_, []

    def clip_then_stop(*args, **kwargs):
        clips.append(1)
        if len(clips) == stop:
            raise KeyboardInterrupt  # in step `stop`: its dropout drawn, its gradients there, no update yet
        return real_clip(*args, **kwargs)

    first = make()
    first.checkpoint_dir = tmp_path / "ckpt"
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_then_stop)
    with pytest.raises(KeyboardInterrupt):
        first.fit(train)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    saved = torch.load(tmp_path / "ckpt" / "state.pt", weights_only=True)
    assert saved["step"] == stop - 1 and len(saved["history"]) == stop - 1

    calls = _counting(monkeypatch)
    resumed = make()
    resumed.checkpoint_dir = tmp_path / "ckpt"
    resumed.fit(train)
    assert len(calls) == total - (stop - 1)  # only the missing steps were trained
    assert [h["loss"] for h in resumed.history_] == pytest.approx([h["loss"] for h in whole.history_], abs=1e-6)
    assert np.allclose(resumed.predict_proba(test), whole.predict_proba(test), atol=1e-6)
