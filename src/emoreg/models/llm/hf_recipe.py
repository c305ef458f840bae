"""``trainer: hf``: the plain recipe most users write, for comparisons (benchmarks/llm_speed.py).

Hugging Face ``Trainer`` + PEFT with the causal-LM loss over the whole sequence and vocabulary,
the default collator (padding to the longest in the batch), no class weights.
"""

from __future__ import annotations

import tempfile
import time
from typing import TYPE_CHECKING

from ...errors import EmoregError

if TYPE_CHECKING:  # pragma: no cover
    from .model import LlmClassifier


def fit_hf(clf: LlmClassifier, sequences: list[list[int]]) -> None:
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    if clf.settings.training.class_weight is not None:
        raise EmoregError("llm: trainer hf (the plain Trainer recipe) takes no class weights; set class_weight to null")
    tokenizer = clf.tokenizer_
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=clf.settings.training.batch_size,
            num_train_epochs=clf.settings.training.epochs, learning_rate=clf.settings.training.lr,
            warmup_steps=float(clf.settings.training.warmup), weight_decay=clf.settings.training.weight_decay,
            max_grad_norm=clf.settings.training.max_grad_norm, seed=clf.seed, data_seed=clf.seed, report_to=[],
            save_strategy="no", logging_steps=1, use_cpu=clf.device_.type == "cpu",
            bf16=clf.bf16_, disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=clf.model_, args=args, train_dataset=[{"input_ids": s} for s in sequences],
                          data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
        trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    clf.history_ = [{"step": h["step"], "loss": h["loss"], "lr": h.get("learning_rate")} for h in logged]
    clf.fit_report.train_seconds = time.perf_counter() - started
    clf.model_.eval()
