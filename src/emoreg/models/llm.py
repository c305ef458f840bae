"""The study's model: an instruction-tuned causal LLM, LoRA-tuned on verbalised prompts.

* The prompt of ``emoreg.prompts`` is wrapped in the model's own chat template; the answer is
  the label text followed by the end-of-turn token.
* Training: LoRA (peft) with the loss on the answer tokens only, computed from the hidden states
  at the answer positions (no whole-vocabulary logits over the prompt), AdamW with linear
  warm-up and decay, optional class weights, length-grouped batches padded to the longest in the
  batch, bf16 autocast where the hardware runs bf16 fast (CUDA, or CPUs with AVX-512 BF16/AMX),
  optional 4-bit QLoRA on CUDA with bitsandbytes, fused AdamW on CUDA, and no host sync inside
  the step loop (losses stay on the device; the progress bar reads one every 10 steps). Seeded.
  Data-parallel over processes when started by a launcher (``emoreg.distributed``).
* Prediction (``decode: score``): every label is scored as a continuation of the prompt, one
  pass over a batch of prompts (left-padded, with a KV cache) and then all label continuations
  batched over that cache; the label log-likelihoods are normalised into probabilities. No answer
  is ever unparseable. ``decode: generate`` is the study's alternative: greedy generation and
  label matching; answers that match no label get a uniform distribution and are counted.
* ``epochs: 0`` is the zero-shot baseline with the same scoring.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import distributed
from ..errors import EmoregError
from ..progress import progress
from ..prompts import render_prompt
from .base import NotFittedError, SegmentClassifier
from .llm_loading import load_base
from .rules import at_least, choice, or_null, positive, share, text, whole

DEFAULT_SYSTEM = "You label moments of a conversation."


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags that make bf16 matmuls fast


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The CPU flags of ``BF16_FLAGS`` this machine has (``cpuinfo``: the text of /proc/cpuinfo,
    read when None; an unreadable file gives none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    words = set(cpuinfo.split())
    return [flag for flag in BF16_FLAGS if flag in words]


def bf16_fast(device, cpuinfo: str | None = None) -> bool:
    """Whether bf16 matmuls are fast here: CUDA with bf16 support, or a CPU with AVX-512 BF16 or
    AMX (measured 2.6x fp32 on a 1024^3 matmul); on other CPUs they are ~100x slower than fp32."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(cpu_bf16_flags(cpuinfo))


def resolve_dtype(choice: str, device, cpuinfo: str | None = None) -> str:
    """``bf16`` or ``fp32`` for a model's ``dtype`` parameter: ``auto`` takes bf16 where it is fast."""
    if choice not in ("auto", "bf16", "fp32"):
        raise EmoregError(f"llm: dtype must be auto, bf16 or fp32, got {choice!r}")
    if choice == "auto":
        return "bf16" if bf16_fast(device, cpuinfo) else "fp32"
    return choice


def numerics() -> dict[str, Any]:
    """What decides a run's numeric path on this machine, for its environment.json."""
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    return {"device": device.type, "cpu_bf16_flags": cpu_bf16_flags(), "bf16_fast": bf16_fast(device),
            "auto_dtype": resolve_dtype("auto", device), "torch_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name(0) if cuda else None}


def warmup_linear_schedule(optimizer, total: int, warmup: float):
    """Linear warm-up over the first ``warmup`` share of ``total`` steps, then linear decay to zero."""
    import torch

    warm = max(1, int(warmup * total))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm))))


class LlmClassifier(SegmentClassifier):
    """Parameters (see the module docstring for what they do):

    model: short name (smollm2-135m, gemma3-270m), local folder or hub id.
    epochs, batch_size, lr, warmup (share of steps), weight_decay, max_grad_norm.
    lora_r, lora_alpha, lora_dropout, target_modules (list, or "auto": attention projections).
    class_weight: "balanced" or null. max_train: subsample this many training segments per
    fold (stratified, seeded; null: all). dtype: auto, bf16 or fp32. quantize_4bit (CUDA only).
    decode: score or generate. score_batch: prompts per scoring pass. system: the system
    message of the chat template (null: the model's own default).
    trainer: emoreg (default) or hf: the plain recipe most users write, Hugging Face ``Trainer``
    + PEFT with the causal-LM loss over the whole sequence and vocabulary, padding to the longest
    in the batch and fp32, for comparisons (benchmarks/llm_speed.py); it takes no class weights.
    answer_loss: mean (default) or sum: a training prompt's loss is the mean or the sum of its
    answer tokens' losses. The scorer ranks labels by their summed log-likelihood; with mean, a
    label of more tokens (SmolLM2 spells AnnoMI's "sustain" in two, the others in one, each plus
    the end-of-turn token) gets a smaller share of the gradient on its deciding first token.
    answer_prefix: text before every label in the answer ("" by default). The answer's tokens
    decide what the model must learn: SmolLM2 spells "sustain" as "s" + "ustain", so the
    deciding first token is a letter that starts countless words, while " sustain", " change" and
    " neutral" (with a leading space, as the prompt's label list spells them) are one token each;
    ``describe()`` records each label's answer tokens.
    head: lm (default: the answer is scored label by label over the vocabulary) or classify (a
    linear head over the labels on the prompt's last hidden state, cross-entropy; ``llm_head``).
    tune_layers: train only the top K decoder layers (null: all). With head classify the states
    entering them are computed once per prompt and cached; with head lm LoRA goes on those layers.
    tune: lora (default) or full (every weight of the tuned layers; head classify only).
    layers: use only the first N decoder layers (null: all); head classify only. The head then
    reads the state after layer N (through the final norm), and every pass costs N/L of the
    whole model's; the layers above N are dropped from memory.
    head_init: labels (the output rows of each label's first answer token) or zeros.
    state_cache: keep the cached states of head classify on disk too (true) or in memory only.
    checkpoint_minutes: when ``checkpoint_dir`` is set (the runner sets it per fold), the training
    state (adapter, optimizer, schedule, random state, losses) is saved this often, and a fit that
    finds a checkpoint resumes from it with the same result as an uninterrupted one.
    """

    name = "llm"
    defaults = {
        "model": "smollm2-135m", "epochs": 1, "batch_size": 8, "lr": 1e-3, "warmup": 0.1,
        "weight_decay": 0.0, "max_grad_norm": 1.0, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05,
        "target_modules": "auto", "class_weight": None, "max_train": None, "dtype": "auto",
        "quantize_4bit": False, "decode": "score", "score_batch": 8, "system": DEFAULT_SYSTEM,
        "trainer": "emoreg", "checkpoint_minutes": 10, "answer_loss": "mean", "answer_prefix": "",
        "head": "lm", "tune_layers": None, "tune": "lora", "head_init": "labels", "state_cache": True,
        "layers": None,
    }
    rules = {
        "model": text(), "epochs": whole(0), "batch_size": whole(1), "lr": positive(), "warmup": share(),
        "weight_decay": at_least(0), "max_grad_norm": positive(), "lora_r": whole(1), "lora_alpha": positive(),
        "lora_dropout": share(), "class_weight": choice("balanced", None), "max_train": or_null(whole(1)),
        "dtype": choice("auto", "bf16", "fp32"), "quantize_4bit": choice(True, False),
        "decode": choice("score", "generate"), "score_batch": whole(1), "trainer": choice("emoreg", "hf"),
        "checkpoint_minutes": or_null(at_least(0)), "answer_loss": choice("mean", "sum"),
        "head": choice("lm", "classify"), "tune_layers": or_null(whole(1)), "tune": choice("lora", "full"),
        "head_init": choice("labels", "zeros"), "state_cache": choice(True, False), "layers": or_null(whole(1)),
    }
    checkpoint_dir: Path | None = None  # set by the runner: where an interrupted fit resumes from

    @classmethod
    def inputs(cls, params, sources):
        return ", ".join(sources)

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        import torch

        if distributed.world_size() > 1:
            self.device_ = distributed.state().device  # this process's GPU, or the CPU
        else:
            self.device_ = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.bf16_ = resolve_dtype(self._param("dtype"), self.device_) == "bf16"
        if self._param("trainer") not in ("emoreg", "hf"):
            raise EmoregError(f"llm: trainer must be emoreg or hf, got {self._param('trainer')!r}")
        if self._param("answer_loss") not in ("mean", "sum"):
            raise EmoregError(f"llm: answer_loss must be mean or sum, got {self._param('answer_loss')!r}")
        if not isinstance(self._param("answer_prefix"), str):
            raise EmoregError(f"llm: answer_prefix must be text (e.g. \" \"), got {self._param('answer_prefix')!r}")
        if self._param("decode") not in ("score", "generate"):
            raise EmoregError(f"llm: decode must be score or generate, got {self._param('decode')!r}")
        if self._param("head") not in ("lm", "classify"):
            raise EmoregError(f"llm: head must be lm or classify, got {self._param('head')!r}")
        if self._param("tune") not in ("lora", "full"):
            raise EmoregError(f"llm: tune must be lora or full, got {self._param('tune')!r}")
        if self._param("tune") == "full" and self._param("head") != "classify":
            raise EmoregError("llm: tune full (every weight of the tuned layers) needs head: classify")
        if self._param("head_init") not in ("labels", "zeros"):
            raise EmoregError(f"llm: head_init must be labels or zeros, got {self._param('head_init')!r}")
        k = self._param("tune_layers")
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise EmoregError(f"llm: tune_layers must be a whole number of layers (1 or more) or null, got {k!r}")
        n = self._param("layers")
        if n is not None:
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise EmoregError(f"llm: layers must be a whole number of layers (1 or more) or null, got {n!r}")
            if self._param("head") != "classify":
                raise EmoregError("llm: layers (a truncated decoder) needs head: classify; the language-model "
                                  "head reads the last layer")
            if k is not None and k > n:
                raise EmoregError(f"llm: tune_layers ({k}) cannot exceed layers ({n})")
        if self._param("head") == "classify":
            if distributed.world_size() > 1:
                raise EmoregError("llm: head classify trains in one process; run it without --processes")
            if self._param("trainer") != "emoreg":
                raise EmoregError("llm: head classify has its own training loop; leave trainer at emoreg")

    def _load(self, adapter: Path | None = None):
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

        quantize = bool(self._param("quantize_4bit"))
        if quantize and self.device_.type != "cuda":
            raise EmoregError("llm: quantize_4bit (QLoRA) needs a CUDA GPU and bitsandbytes; set it to false here")
        # training in bf16, the frozen weights are stored in bf16 too (the LoRA weights stay fp32)
        base, tokenizer = load_base(self._param("model"), quantize_4bit=quantize, bf16=self.bf16_)
        if quantize:
            from peft import prepare_model_for_kbit_training

            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
        else:
            base.to(self.device_)
        self.tokenizer_ = tokenizer
        classify = self._param("head") == "classify"
        if classify and self._param("layers") is not None:
            from .llm_head import truncate

            truncate(base, self._param("layers"))
        if classify and self._param("tune") == "full":
            self.model_ = base  # no adapter: the tuned layers' own weights are trained
            self.model_.eval()
            self._prepare_labels()
            return
        if adapter is not None:
            self.model_ = PeftModel.from_pretrained(base, str(adapter))
        else:
            torch.manual_seed(self.seed)  # LoRA initialisation
            targets = self._param("target_modules")
            if targets == "auto":
                names = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
                targets = [t for t in ("q_proj", "k_proj", "v_proj", "o_proj") if t in names] or None
            top = self._param("tune_layers")
            layers = None
            if top is not None:
                from .llm_head import first_tuned

                start = first_tuned(base, top)
                layers = list(range(start, start + top))
            config = LoraConfig(r=self._param("lora_r"), lora_alpha=self._param("lora_alpha"),
                                lora_dropout=self._param("lora_dropout"), target_modules=targets,
                                layers_to_transform=layers, task_type="CAUSAL_LM")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # peft calls a renamed transformers API
                self.model_ = get_peft_model(base, config)
        self.model_.eval()
        self._prepare_labels()

    def _prepare_labels(self) -> None:
        tok = self.tokenizer_
        end = [tok.eos_token_id] if tok.eos_token_id is not None else []
        prefix = self._param("answer_prefix")
        self.label_ids_ = [tok(prefix + label, add_special_tokens=False).input_ids + end for label in self.task.labels]
        self.pad_id_ = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    def _prefix_ids(self, segment) -> list[int]:
        tok = self.tokenizer_

        def count(text: str) -> int:
            return len(tok(text, add_special_tokens=False).input_ids)

        text = render_prompt(segment, self.task, self.prompt, count_tokens=count).text
        if tok.chat_template:
            messages = [{"role": "user", "content": text}]
            if self._param("system") is not None:
                messages.insert(0, {"role": "system", "content": self._param("system")})
            wrapped = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return tok(wrapped, add_special_tokens=False).input_ids
        ids = tok(text + "\nAnswer: ", add_special_tokens=True).input_ids  # base models without a template
        return ids

    def _autocast(self):
        import torch

        return torch.autocast(self.device_.type, dtype=torch.bfloat16, enabled=self.bf16_)

    # ------------------------------------------------------------------ training
    def _fit(self, segments, y):
        import torch

        self._setup()
        self._load()
        keep = self._subsample(y)
        segments = [segments[i] for i in keep]
        y = y[keep]
        self.n_train_ = len(segments)
        self.history_: list[dict[str, float]] = []
        epochs = self._param("epochs")
        if epochs == 0 and self._param("head") != "classify":
            return  # zero-shot
        prefixes = [self._prefix_ids(s) for s in progress(segments, desc="encode prompts", leave=False)]
        if self._param("head") == "classify":
            from .llm_head import fit_head

            return fit_head(self, prefixes, y)
        sequences = [p + self.label_ids_[c] for p, c in zip(prefixes, y)]
        if self._param("trainer") == "hf":
            return self._fit_hf(sequences)
        weights = self._class_weights(y)
        generator = torch.Generator().manual_seed(self.seed)
        batches_per_epoch = math.ceil(len(sequences) / self._param("batch_size"))
        total = batches_per_epoch * epochs
        params = [p for p in self.model_.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self._param("lr"), weight_decay=self._param("weight_decay"),
                                      fused=self.device_.type == "cuda")
        scheduler = warmup_linear_schedule(optimizer, total, self._param("warmup"))
        answer = _answer_logits_module(self.model_, self._logits)
        world, rank = distributed.world_size(), distributed.rank()
        if world > 1:  # DDP through Accelerate: gradients are averaged over the processes in backward
            from accelerate import Accelerator

            accelerator = Accelerator(cpu=self.device_.type == "cpu")
            answer, optimizer = accelerator.prepare(answer, optimizer)
        fingerprint = {"n": len(sequences), "total": total, "seed": self.seed, "world": world,
                       "first": sequences[0][-8:], "last": sequences[-1][-8:]}
        done_before, elapsed = self._resume(fingerprint, optimizer, scheduler)
        self.model_.train()
        started = time.perf_counter() - elapsed
        last_save = time.perf_counter()
        minutes = self._param("checkpoint_minutes")
        save_every = 60 * minutes if self.checkpoint_dir is not None and minutes is not None else None  # seconds
        bar = progress(total=total, initial=done_before, desc=f"LoRA training ({len(sequences)} prompts)",
                       unit="step", leave=False)
        step = 0
        device = self.device_
        weights = weights.to(device)
        sum_loss = self._param("answer_loss") == "sum"
        pending = []  # per-step loss and tokens, kept on the device: no host sync inside the loop
        for _ in range(epochs):
            for batch in self._length_grouped(sequences, generator):  # replayed from the seed on resume
                if step < done_before:
                    step += 1
                    continue
                # each process takes every world-th prompt of the global batch; a process left
                # without one repeats the first at weight 0, so that it still joins the all-reduce
                mine = batch[rank::world]
                w = weights[mine] if mine else torch.zeros(1, device=device)
                real = bool(mine)
                mine = mine or batch[:1]
                ids, mask, rows, cols, targets, owner = self._collate([sequences[i] for i in mine],
                                                                        [len(prefixes[i]) for i in mine])
                owner = owner.to(device)
                with self._autocast():
                    logits = answer(ids, mask, rows.to(device), cols.to(device))
                token_loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
                per_sample = torch.zeros(len(mine), device=device).index_add_(0, owner, token_loss)
                if not sum_loss:
                    per_sample = per_sample / torch.bincount(owner, minlength=len(mine))
                # the weighted mean over the global batch; DDP averages over processes, hence x world
                loss = (per_sample * w).sum() / weights[batch].sum() * world
                record = torch.stack([loss.detach(), (mask.sum() * real).float()])
                if world > 1:
                    accelerator.backward(loss)
                    accelerator.clip_grad_norm_(answer.parameters(), self._param("max_grad_norm"))
                    record = accelerator.reduce(record, "sum") / torch.tensor([world, 1.0], device=device)
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, self._param("max_grad_norm"))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                if step % 10 == 0 or step == total:  # one host sync every 10 steps, for the progress bar;
                    bar.set_postfix(loss=f"{float(record[0]):.3f}")  # so the clock is exact at those steps
                pending.append((record, scheduler.get_last_lr()[0], time.perf_counter() - started))
                # the end of training too: a fit stopped while scoring resumes with no step to retrain
                if save_every is not None and (step == total or time.perf_counter() - last_save >= save_every):
                    self._flush_history(pending, step)
                    self._save_checkpoint(fingerprint, step, time.perf_counter() - started, optimizer, scheduler)
                    last_save = time.perf_counter()
        self._flush_history(pending, step)
        bar.close()
        self.model_.eval()

    def _flush_history(self, pending: list, step: int) -> None:
        """Move the device-side per-step records of the steps up to ``step`` into ``history_``."""
        first = step - len(pending) + 1
        for n, (record, lr, seconds) in enumerate(pending, start=first):
            loss_value, n_tokens = record.tolist()
            self.history_.append({"step": n, "loss": loss_value, "lr": lr, "seconds": seconds, "tokens": int(n_tokens)})
        pending.clear()

    def _save_checkpoint(self, fingerprint: dict, step: int, elapsed: float, optimizer, scheduler) -> None:
        import os

        import torch
        from peft import get_peft_model_state_dict

        if not distributed.is_main():
            return
        folder = Path(self.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        state = {"fingerprint": fingerprint, "step": step, "elapsed": elapsed, "history": self.history_,
                 "adapter": get_peft_model_state_dict(self.model_), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        tmp = folder / "state.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, folder / "state.pt")  # readers see the old checkpoint or the whole new one

    def _resume(self, fingerprint: dict, optimizer, scheduler) -> tuple[int, float]:
        """Load the checkpoint of this fit if there is one: (steps already done, seconds spent)."""
        import torch
        from peft import set_peft_model_state_dict

        path = Path(self.checkpoint_dir) / "state.pt" if self.checkpoint_dir is not None else None
        if path is None or not path.is_file():
            return 0, 0.0
        state = torch.load(path, map_location=self.device_, weights_only=False)
        if state["fingerprint"] != fingerprint:
            warnings.warn(f"{path} belongs to another training set or schedule; starting this fit afresh",
                          stacklevel=2)
            return 0, 0.0
        set_peft_model_state_dict(self.model_, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([r.cpu() for r in state["cuda_rng"]])
        self.history_ = list(state["history"])
        print(f"llm: resuming training at step {state['step'] + 1} of {fingerprint['total']} from {path}",
              file=sys.stderr, flush=True)
        return state["step"], state["elapsed"]

    def _fit_hf(self, sequences: list[list[int]]) -> None:
        """The plain recipe: ``Trainer`` + PEFT, whole-sequence causal-LM loss, default collator."""
        import tempfile

        from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

        if self._param("class_weight") is not None:
            raise EmoregError("llm: trainer hf (the plain Trainer recipe) takes no class weights; set class_weight to null")
        tokenizer = self.tokenizer_
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                output_dir=out, per_device_train_batch_size=self._param("batch_size"),
                num_train_epochs=self._param("epochs"), learning_rate=self._param("lr"),
                warmup_steps=float(self._param("warmup")), weight_decay=self._param("weight_decay"),
                max_grad_norm=self._param("max_grad_norm"), seed=self.seed, data_seed=self.seed, report_to=[],
                save_strategy="no", logging_steps=1, use_cpu=self.device_.type == "cpu",
                bf16=self.bf16_, disable_tqdm=True, dataloader_num_workers=0)
            trainer = Trainer(model=self.model_, args=args, train_dataset=[{"input_ids": s} for s in sequences],
                              data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
            trainer.train()
        logged = [h for h in trainer.state.log_history if "loss" in h]
        self.history_ = [{"step": h["step"], "loss": h["loss"], "lr": h.get("learning_rate")} for h in logged]
        self.hf_seconds_ = time.perf_counter() - started
        self.model_.eval()

    def _subsample(self, y: np.ndarray) -> np.ndarray:
        limit = self._param("max_train")
        if limit is None or limit >= len(y):
            return np.arange(len(y))
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=y, random_state=self.seed)
        return np.sort(keep)

    def _class_weights(self, y: np.ndarray):
        import torch

        if self._param("class_weight") == "balanced":
            counts = np.bincount(y, minlength=len(self.task.labels)).astype(float)
            per_class = np.where(counts > 0, len(y) / (len(np.nonzero(counts)[0]) * np.maximum(counts, 1)), 0)
            return torch.tensor(per_class[y], dtype=torch.float32)
        if self._param("class_weight") is not None:
            raise EmoregError(f"llm: class_weight must be balanced or null, got {self._param('class_weight')!r}")
        return torch.ones(len(y))

    def _length_grouped(self, sequences, generator):
        """Shuffled batches of similar length (sorted inside chunks of 50 batches), so padding is short."""
        import torch

        size = self._param("batch_size")
        order = torch.randperm(len(sequences), generator=generator).tolist()
        chunk = size * 50
        batches = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start:start + chunk], key=lambda i: len(sequences[i]))
            batches += [part[i:i + size] for i in range(0, len(part), size)]
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffled]

    def _collate(self, seqs: list[list[int]], prefix_lengths: list[int]):
        """Right-padded ids and mask, and the positions whose outputs predict the answer tokens."""
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id_, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        rows, cols, targets, owner = [], [], [], []
        for b, (seq, plen) in enumerate(zip(seqs, prefix_lengths)):
            ids[b, :len(seq)] = torch.tensor(seq)
            mask[b, :len(seq)] = 1
            for t in range(plen, len(seq)):
                rows.append(b)
                cols.append(t - 1)
                targets.append(seq[t])
                owner.append(b)
        as_long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
        return (ids.to(self.device_), mask.to(self.device_), as_long(rows), as_long(cols),
                as_long(targets).to(self.device_), as_long(owner))

    def _logits(self, head, hidden):
        import torch

        logits = head(hidden)
        cap = getattr(self.model_.get_base_model().config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    # ------------------------------------------------------------------ prediction
    def _predict_proba(self, segments):
        if not hasattr(self, "model_"):
            raise NotFittedError("llm: the model is not loaded; fit it or load it from a folder")
        prefixes = [self._prefix_ids(s) for s in segments]
        if self._param("head") == "classify":
            from .llm_head import predict_head

            return predict_head(self, prefixes)
        if self._param("decode") == "generate":
            return self._generate(prefixes)
        return self.score_prefixes(prefixes)

    def score_prefixes(self, prefixes: list[list[int]]) -> np.ndarray:
        """Label probabilities for tokenised prompts: KV-cached prompt pass + batched continuations.
        In a distributed run every process scores every world-th prompt and the shards are gathered."""
        world = distributed.world_size()
        if world == 1:
            return self._score_all(prefixes)
        mine = list(range(distributed.rank(), len(prefixes), world))
        out = np.zeros((len(prefixes), len(self.task.labels)))
        for index, part in distributed.gather((mine, self._score_all([prefixes[i] for i in mine]))):
            out[index] = part
        return out

    def _score_all(self, prefixes: list[list[int]]) -> np.ndarray:
        import torch

        out = np.zeros((len(prefixes), len(self.task.labels)))
        order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))  # similar lengths together
        size = self._param("score_batch")
        with torch.inference_mode():
            for start in progress(range(0, len(order), size), desc="scoring", unit="batch", leave=False):
                idx = order[start:start + size]
                out[idx] = self._score_batch([prefixes[i] for i in idx])
        return out

    def _score_batch(self, prefixes: list[list[int]]) -> np.ndarray:
        import torch

        B, K = len(prefixes), len(self.label_ids_)
        width = max(len(p) for p in prefixes)
        ids = torch.full((B, width), self.pad_id_, dtype=torch.long)
        mask = torch.zeros((B, width), dtype=torch.long)
        for b, p in enumerate(prefixes):  # left padding: every prompt ends at the last column
            ids[b, width - len(p):] = torch.tensor(p)
            mask[b, width - len(p):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(self.device_), mask.to(self.device_), positions.to(self.device_)
        with self._autocast():
            first = self.model_(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                                logits_to_keep=1)
        first_logp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # (B, V)
        label_first = torch.tensor([ids_[0] for ids_ in self.label_ids_], device=self.device_)
        total = first_logp[:, label_first]  # (B, K)
        longest = max(len(l) for l in self.label_ids_)
        if longest > 1:
            cont = torch.full((K, longest - 1), self.pad_id_, dtype=torch.long)
            cont_mask = torch.zeros((K, longest - 1), dtype=torch.long)
            targets = torch.zeros((K, longest - 1), dtype=torch.long)
            for k, label in enumerate(self.label_ids_):
                cont[k, :len(label) - 1] = torch.tensor(label[:-1])
                cont_mask[k, :len(label) - 1] = 1
                targets[k, :len(label) - 1] = torch.tensor(label[1:])
            cache = getattr(first, "cache", None) or first.past_key_values  # transformers 5 / 4 names
            cache.batch_repeat_interleave(K)
            lengths = mask.sum(-1).repeat_interleave(K)  # (B*K,)
            step = torch.arange(longest - 1, device=self.device_)
            cont_ids = cont.repeat(B, 1).to(self.device_)
            cont_m = cont_mask.repeat(B, 1).to(self.device_)
            with self._autocast():
                second = self.model_(input_ids=cont_ids,
                                     attention_mask=torch.cat([mask.repeat_interleave(K, 0), cont_m], dim=1),
                                     position_ids=lengths[:, None] + step[None], use_cache=False,
                                     **{self._cache_arg(): cache})
            logp = torch.log_softmax(second.logits.float(), dim=-1)  # (B*K, L-1, V)
            picked = logp.gather(-1, targets.repeat(B, 1).to(self.device_)[..., None])[..., 0]
            total = total + (picked * cont_m).sum(-1).view(B, K)
        return torch.softmax(total, dim=-1).cpu().numpy()

    def _cache_arg(self) -> str:
        import inspect

        forward = inspect.signature(self.model_.get_base_model().forward).parameters
        return "cache" if "cache" in forward else "past_key_values"

    def _generate(self, prefixes: list[list[int]]) -> np.ndarray:
        import torch

        out = np.zeros((len(prefixes), len(self.task.labels)))
        unmatched = 0
        longest = max(len(l) for l in self.label_ids_)
        with torch.inference_mode():
            for i, p in enumerate(progress(prefixes, desc="generating", leave=False)):
                ids = torch.tensor([p], device=self.device_)
                with self._autocast():
                    gen = self.model_.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                               max_new_tokens=longest + 2, do_sample=False,
                                               pad_token_id=self.pad_id_)
                text = self.tokenizer_.decode(gen[0, len(p):], skip_special_tokens=True)
                label = match_label(text, self.task.labels)
                if label is None:
                    unmatched += 1
                    out[i] = 1.0 / len(self.task.labels)
                else:
                    out[i, self.task.index(label)] = 1.0
        self.unmatched_ = getattr(self, "unmatched_", 0) + unmatched
        return out

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        return {"loss": getattr(self, "history_", []), "n_train": getattr(self, "n_train_", None),
                "processes": distributed.world_size(),
                "bf16": getattr(self, "bf16_", None),
                "dtype": None if not hasattr(self, "bf16_") else ("bf16" if self.bf16_ else "fp32"),
                "unmatched_answers": getattr(self, "unmatched_", None),
                "answer_tokens": self.answer_tokens(), **self._head_facts()}

    def _head_facts(self) -> dict[str, Any]:
        """With head classify: where tuning starts, and what the state cache saved."""
        if self._param("head") != "classify":
            return {}
        return {"head": "classify", "layers": self._param("layers"),
                "first_tuned_layer": getattr(self, "first_tuned_", None),
                "states_computed": getattr(self, "states_computed_", 0),
                "states_reused": getattr(self, "states_reused_", 0),
                "states_seconds": getattr(self, "states_seconds_", None),
                "train_seconds": getattr(self, "train_seconds_", None)}

    def answer_tokens(self) -> dict[str, list[str]] | None:
        """Each label's answer as the model's tokens (end-of-turn included), e.g. sustain: [s, ustain, <|im_end|>]."""
        if not hasattr(self, "label_ids_"):
            return None
        return {label: self.tokenizer_.convert_ids_to_tokens(ids) for label, ids in zip(self.task.labels, self.label_ids_)}

    def save(self, folder: str | Path) -> Path:
        if not hasattr(self, "labels_"):
            raise NotFittedError("llm: fit the model before saving it")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._param("head") == "classify":
            from .llm_head import save_head

            save_head(self, folder)
        if not (self._param("head") == "classify" and self._param("tune") == "full"):
            self.model_.save_pretrained(str(folder / "adapter"))  # standard PEFT format
        self._write_spec(folder, history=getattr(self, "history_", []), n_train=getattr(self, "n_train_", None),
                         unseen_labels=getattr(self, "unseen_", []))  # head classify: labels absent from training
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LlmClassifier:
        folder = Path(folder)
        model, spec = cls._from_spec(folder)
        model._setup()
        model._load(adapter=folder / "adapter")
        if model._param("head") == "classify":
            from .llm_head import load_head

            load_head(model, folder)
        model.labels_ = tuple(spec["labels"])
        model.history_ = spec.get("history", [])
        model.n_train_ = spec.get("n_train")
        model.unseen_ = spec.get("unseen_labels", [])
        return model

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for key in ("model_", "tokenizer_", "head_"):
            state.pop(key, None)
        return state


def _answer_logits_module(peft_model, logits_fn):
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
            return logits_fn(self.peft.get_base_model().get_output_embeddings(), hidden[rows, cols])

    return AnswerLogits()


def match_label(text: str, labels: tuple[str, ...]) -> str | None:
    """The label a generated answer names: the longest label the answer starts with, ignoring
    case, spaces and punctuation around it; None when it names none."""
    cleaned = text.strip().strip(".:;,!\"'` ").lower()
    hits = [label for label in labels if cleaned.startswith(label.lower())]
    return max(hits, key=len) if hits else None

