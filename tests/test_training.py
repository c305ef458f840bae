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


def _maker(kind, tiny_llama, monkeypatch):
    if kind == "head":  # one layer fully tuned with the head, a checkpoint after every step
        return lambda: head_model(tiny_llama, epochs=3, tune="full", tune_layers=1, layers=2, checkpoint_minutes=0,
                                  lora_dropout=0.0)
    monkeypatch.setattr(encoder_ft, "CHECKPOINT_MINUTES", 0)
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
