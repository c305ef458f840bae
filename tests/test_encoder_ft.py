"""encoder-ft: the shipped MiniLM fully fine-tuned with a label head, on the toy corpus."""

import numpy as np
import torch

from emoreg.models import load_model, make_model
from emoreg.prompts import PromptConfig
from emoreg.tasks import DEEP_SHAME


def test_fine_tuned_minilm_learns_updates_every_weight_and_round_trips(toy_split, tmp_path):
    train, test = toy_split
    model = make_model("encoder-ft", DEEP_SHAME, PromptConfig(sources=("utterance",)), 0,
                       {"epochs": 2, "lr": 2e-4, "batch_size": 8, "max_length": 16})
    fresh = make_model("encoder-ft", DEEP_SHAME, PromptConfig(sources=("utterance",)), 0, {})
    fresh._load()
    model.fit(train)
    proba = model.predict_proba(test)
    assert np.allclose(proba.sum(axis=1), 1)
    assert np.mean([p == s.label for p, s in zip(model.predict(test), test)]) == 1.0
    # scored in length order, returned in the caller's: each row belongs to its own segment
    assert np.allclose(model.predict_proba(test[::-1]), proba[::-1], atol=1e-5)
    assert np.allclose(model.predict_proba(test[:1]), proba[:1], atol=1e-5)
    before = dict(fresh.encoder_.named_parameters())
    used = [n for n in before if not n.startswith("pooler.")]  # BERT's pooler is not used by mean pooling
    changed = [n for n, p in model.encoder_.named_parameters() if not torch.equal(p, before[n])]
    assert sorted(changed) == sorted(used)  # every weight the prediction uses was trained, not only a head
    assert len(model.describe()["loss"]) == 2 * 6
    model.save(tmp_path / "m")
    assert np.allclose(load_model(tmp_path / "m").predict_proba(test), proba, atol=1e-6)
