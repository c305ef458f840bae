"""Speed of emoreg's LLM training and scoring against the plain recipes, in the same run.

    python benchmarks/llm_speed.py train [--model smollm2-135m] [--prompts 64] [--steps 6] [--repeats 3]
    python benchmarks/llm_speed.py score [--model smollm2-135m] [--prompts 24] [--max-tokens 256]
    python benchmarks/llm_speed.py random [--shape 7b] [--plain]   (on a GPU: --steps 30 --max-tokens 512)
    python benchmarks/llm_speed.py head [--prompts 256] [--tune-layers 4] [--epochs 2] [--dtype auto]
                                        [--layers 18 --tune full]
    python benchmarks/llm_speed.py compile [--prompts 128] [--layers 16] [--dtype fp32]
    python benchmarks/llm_speed.py prefix [--prompts 128] [--layers 17] [--max-tokens 192] [--dtype auto]
                                          [--variants bf16,openvino-bf16] [--calibration 64]
    python benchmarks/llm_speed.py tokens [--prompts 0] [--max-tokens 192] [--batch 16]
    python benchmarks/llm_speed.py alone [--prompts 32] [--layers 18 --tune-layers 2 --tune full] [--dtype fp32]
                                         [--engine torch|openvino] [--prefix-dtype same|int8]
    python benchmarks/llm_speed.py adamw [--model qwen2.5-coder-1.5b] [--prompts 960] [--layers 12]
                                         [--tune-layers 1 --tune full] [--dtype fp32] [--repeats 2]

train: emoreg's trainer (loss on the answer tokens from their hidden states only, length-grouped
dynamic padding, bf16 autocast where the CPU runs bf16 fast) against what a user would write with
the Hugging Face ``Trainer`` + PEFT (fp32, causal-LM loss over the whole vocabulary and sequence,
padding to the longest in the batch), same model, prompts, LoRA settings and step count, runs
alternating; prints prompt tokens per second of each, their ratio with its spread, and model FLOPs
utilisation: useful training FLOPs per second (4 x non-embedding parameters x tokens per second:
a forward pass and the backward pass through the activations; LoRA computes no gradients of the
frozen weights) over the machine's best matmul rate in the training dtype, measured here.

score: emoreg's scorer (KV-cached prompt pass, label continuations batched over the cache) against
scoring every label as its own full sequence; prints p50/p95 latency per prompt, throughput when
prompts are batched, and the ratio.

random: emoreg's trainer on a Llama-shaped model with randomly initialised weights (``7b``: the
Llama-2-7B shape; ``tiny`` for smoke runs), built here and saved to a temporary folder (no download),
with a byte-level tokenizer built here; prompts from the shipped ``deep-example`` corpus, so it
needs no data either: the check to run where a GPU is lent. Prints prompt tokens per second over
the steps after the first 10 (warm-up), MFU against the bf16 (or fp32) matmul peak measured on the
same device, and peak memory; ``--plain`` runs the plain Trainer recipe (fp32) beside it.

head: the ``head: classify`` recipe against the floor of one epoch, in one run: the matmul peak
in the training dtype; the floor (one forward pass of every prompt through the whole model, all
its layers even where ``--layers`` keeps fewer, at
that peak: 2 x non-embedding parameters x prompt tokens); the measured time of one plain forward
pass of every prompt (batched, no gradients); then the recipe's seconds for the cached states
(once), for each epoch of the tuned layers (and, for its speed-up, for an epoch with the top layer
run whole at every position instead of at the last token only), and for one epoch in all (states + one epoch), with
its ratio to the floor; the plain Trainer recipe's prompt tokens per second on the same
prompts (fp32, whole-sequence loss) against the recipe's epoch; and the trained head scoring the
prompts afresh (states not cached): seconds, MFU (the matmul FLOPs scoring needs over seconds x
peak; also over the peak of a matmul of the model's own shapes, 16 prompts of tokens through
the MLP's up projection) and p50/p95 of one prompt scored alone.

compile: the states pass's work (a forward pass of the prompts through the first ``--layers``
layers, no gradients, batches of 16 sorted by length) eager, with ``torch.compile`` (dynamic shapes,
the compile time reported apart, measured on a second pass) and eager with one thread, alternating.

prefix: the states pass (the frozen layers below the tuned layer ``--layers - 1``) per engine and
dtype, alternating: torch fp32 (the reference) with each prompt run whole, and as emoreg runs it
(``-shared``: a prefix common to a batch's prompts run once), int8 (``prefix_dtype: int8``) and bf16
where ``--dtype`` resolves to it, and OpenVINO (``prefix_engine: openvino``; fp32, int8 weights, bf16)
where installed, and on request (``--variants openvino-w8a8``) OpenVINO with NNCF's static int8 of
weights and activations, calibrated on ``--calibration`` other prompts;
seconds per prompt, ratio to fp32 (and to bf16), MFU against that dtype's peak measured in the same
run, the states' cosine to fp32 per layer, peak memory. Quality on a task is the validation split's.

tokens: no model pass, only the tokenizer over the corpus (``--prompts 0``: every segment): prompt
tokens with the recipe's system message and with none (the model's own default then), and the share
of padding in batches of ``--batch`` as the states pass forms them (sorted by length), as training
forms them (length-grouped, shuffled) and in corpus order: what sequence packing could save at most.

alone: only the last measurement of head, cheaply: a head trained one epoch on 16 prompts (their
states pass batched, per prompt, is printed too), then ``--prompts`` other prompts each scored
alone, its states not cached (the live service's case): p50/p95 milliseconds. Run it once with
``PYTHONPATH`` pointed at another version's ``src`` to compare two versions on one machine.

adamw: the head's training with AdamW fused (emoreg's optimizer) against AdamW's default multi-tensor
loop, alternating in one process: steps a second, their ratio, minor page faults, the loss each ends at.

All print peak resident memory. AnnoMI client talk supplies the prompts of train and score
($EMOREG_DATA_DIR).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5, trials: int = 3,
                       device: str = "cpu", shape: tuple[int, int, int] | None = None) -> float:
    """The best of ``trials`` timings of ``repeats`` square matmuls: the machine's practical peak.
    ``shape=(rows, inner, outer)`` times a (rows x inner) @ (inner x outer) matmul instead: the
    peak at the shapes a model's projections run at (a batch of prompt tokens through a layer's
    weights)."""
    rows, inner, outer = shape or (size, size, size)
    a = torch.randn(rows, inner, dtype=dtype, device=device)
    b = torch.randn(inner, outer, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    best = 0.0
    for _ in range(trials):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync()
        best = max(best, 2 * rows * inner * outer * repeats / (time.perf_counter() - started) / 1e9)
    return best


def matmul_params(model) -> int:
    """Parameters that cost matmul FLOPs per token in training: not the embedding lookups, and not
    the output head (emoreg computes logits at the answer positions only)."""
    return sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)


def _segments(n: int, seed: int = 0):
    from emoreg.corpora import load_corpus

    corpus = load_corpus("annomi")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(corpus.segments), size=n, replace=False)
    return corpus.task, [corpus.segments[i] for i in sorted(picked)]


def _llm(task, model: str, max_tokens: int, **params):
    from emoreg.models import make_model
    from emoreg.prompts import PromptConfig

    prompt = PromptConfig(sources=("context", "history", "utterance"), max_tokens=max_tokens,
                          template="emoreg-v1-compact")
    return make_model("llm", task, prompt, seed=0, params={"model": model, "head": "lm", **params})


def ours_train(task, segments, model: str, steps: int, batch: int, max_tokens: int) -> dict:
    clf = _llm(task, model, max_tokens, epochs=1, batch_size=batch, max_train=steps * batch)
    clf.fit(segments[: steps * batch])
    history = clf.history_
    seconds = history[-1]["seconds"]
    tokens = sum(h["tokens"] for h in history)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "bf16": clf.bf16_}


def _prompt_tokens(clf, task, segments) -> int:
    """Tokens the plain recipe trains on: every prompt with its answer."""
    return sum(len(clf._prefix_ids(s)) + len(clf.label_ids_[task.index(s.label)]) for s in segments)


def plain_train(task, segments, model: str, steps: int, batch: int, max_tokens: int) -> dict:
    """The recipe most users write: Trainer + PEFT, whole-sequence loss, fp32 (``trainer: hf``)."""
    clf = _llm(task, model, max_tokens, epochs=1, batch_size=batch, max_train=steps * batch, trainer="hf")
    clf.fit(segments[: steps * batch])
    tokens = _prompt_tokens(clf, task, segments[: steps * batch])
    return {"tokens": tokens, "seconds": clf.fit_report.train_seconds, "tokens_per_s": tokens / clf.fit_report.train_seconds}


def bench_train(args) -> dict:
    task, segments = _segments(args.steps * args.batch, seed=1)
    ours, plain = [], []
    for _ in range(args.repeats):  # alternating, so drifts of the machine hit both
        ours.append(ours_train(task, segments, args.model, args.steps, args.batch, args.max_tokens))
        plain.append(plain_train(task, segments, args.model, args.steps, args.batch, args.max_tokens))
    ratios = [o["tokens_per_s"] / p["tokens_per_s"] for o, p in zip(ours, plain)]
    from emoreg.models.llm.loading import load_base

    base, _ = load_base(args.model)
    params = matmul_params(base)
    dtype = torch.bfloat16 if ours[0]["bf16"] else torch.float32
    peak = matmul_peak_gflops(dtype)
    ours_tps = statistics.median(o["tokens_per_s"] for o in ours)
    return {
        "model": args.model, "steps": args.steps, "batch": args.batch, "repeats": args.repeats,
        "ours_tokens_per_s": [round(o["tokens_per_s"], 1) for o in ours],
        "plain_tokens_per_s": [round(p["tokens_per_s"], 1) for p in plain],
        "ratio_median": round(statistics.median(ratios), 2), "ratio_min": round(min(ratios), 2),
        "ratio_max": round(max(ratios), 2),
        "training_dtype": str(dtype), "matmul_peak_gflops": round(peak, 1),
        "non_embedding_params": params,
        "mfu": float(f"{4 * params * ours_tps / (peak * 1e9):.3g}"),  # 3 significant digits
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def bench_score(args) -> dict:

    task, segments = _segments(args.prompts + 8, seed=2)
    clf = _llm(task, args.model, args.max_tokens, epochs=0, dtype=args.dtype)
    clf.fit(segments[:8])
    prefixes = [clf._prefix_ids(s) for s in segments[8:]]

    def naive(prefix):
        with torch.inference_mode():
            scores = []
            for label in clf.label_ids_:
                ids = torch.tensor([prefix + label])
                logp = torch.log_softmax(clf.model_(input_ids=ids).logits[0].float(), -1)
                scores.append(sum(float(logp[len(prefix) - 1 + j, t]) for j, t in enumerate(label)))
            return torch.softmax(torch.tensor(scores), 0).numpy()

    ours_ms, naive_ms = [], []
    for prefix in prefixes:  # alternating per prompt
        started = time.perf_counter()
        clf.score_prefixes([prefix])
        ours_ms.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        naive(prefix)
        naive_ms.append(1000 * (time.perf_counter() - started))
    batched, merged = [], []
    for _ in range(2):  # alternating: the LoRA adapter beside every projection, or merged for the pass
        for merge, out in ((False, batched), (True, merged)):
            clf.params["merge_lora"] = merge
            started = time.perf_counter()
            clf.score_prefixes(prefixes)
            out.append(len(prefixes) / (time.perf_counter() - started))
    clf.params["merge_lora"] = False
    batched, merged = max(batched), max(merged)
    return {
        "model": args.model, "dtype": "bf16" if clf.bf16_ else "fp32", "prompts": len(prefixes),
        "mean_prompt_tokens": round(float(np.mean([len(p) for p in prefixes])), 1),
        "ours_p50_ms": round(float(np.percentile(ours_ms, 50)), 1), "ours_p95_ms": round(float(np.percentile(ours_ms, 95)), 1),
        "naive_p50_ms": round(float(np.percentile(naive_ms, 50)), 1), "naive_p95_ms": round(float(np.percentile(naive_ms, 95)), 1),
        "speedup_p50": round(float(np.percentile(naive_ms, 50) / np.percentile(ours_ms, 50)), 2),
        "ours_batched_prompts_per_s": round(batched, 2),
        "merged_batched_prompts_per_s": round(merged, 2), "merged_speedup": round(merged / batched, 2),
        "naive_prompts_per_s": round(1000 / float(np.mean(naive_ms)), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


SHAPES = {  # LlamaConfig fields; vocabulary size 32000 as in Llama-2
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 32},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2},
}
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def random_llama(shape: str, folder, device: str) -> int:
    """Save a Llama of ``shape`` with random weights (bf16 on CUDA, else fp32) and a byte-level
    tokenizer (every byte a token) to ``folder``; returns its matmul parameter count."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<|im_end|>", "<|im_start|>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<|im_end|>")
    tokenizer.chat_template = CHATML
    config = LlamaConfig(vocab_size=32000 if shape == "7b" else len(vocab), max_position_embeddings=4096,
                         pad_token_id=1, eos_token_id=2, bos_token_id=3, tie_word_embeddings=False,
                         **SHAPES[shape])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        with torch.device(device):  # initialised where it will train: seconds for 7B on a GPU
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    params = matmul_params(model)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return params


def bench_random(args) -> dict:
    import tempfile

    from emoreg.corpora import load_corpus
    from emoreg.models import make_model
    from emoreg.prompts import PromptConfig

    device = "cuda" if torch.cuda.is_available() else "cpu"
    corpus = load_corpus("deep-example")
    n = args.steps * args.batch
    segments = [corpus.segments[i % len(corpus.segments)] for i in range(n)]
    prompt = PromptConfig(sources=("context", "history", "utterance"), max_tokens=args.max_tokens,
                          template="emoreg-v1-compact")
    warm = min(10, args.steps - 1)  # the clock is exact at every 10th step (a host sync there)
    with tempfile.TemporaryDirectory(prefix="emoreg-random-llama-") as folder:
        params = random_llama(args.shape, folder, device)
        runs = {}
        for name in ["emoreg"] + (["plain"] if args.plain else []):
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            extra = {"trainer": "hf", "class_weight": None, "dtype": "fp32"} if name == "plain" else {}
            clf = make_model("llm", corpus.task, prompt, seed=0, params={
                "model": folder, "head": "lm", "epochs": 1, "batch_size": args.batch, "system": None, **extra})
            clf.fit(segments)
            if name == "plain":
                tokens = _prompt_tokens(clf, corpus.task, segments)
                tps, seconds = tokens / clf.fit_report.train_seconds, clf.fit_report.train_seconds
            else:
                history = clf.history_
                tokens = sum(h["tokens"] for h in history[warm:])
                seconds = history[-1]["seconds"] - (history[warm - 1]["seconds"] if warm else 0.0)
                tps = tokens / seconds
                all_steps = sum(h["tokens"] for h in history) / history[-1]["seconds"]
            runs[name] = {"tokens_per_s": round(tps, 1), "timed_steps": args.steps - (warm if name == "emoreg" else 0),
                          # the plain recipe's clock covers all its steps, warm-up included: compare like with like
                          "tokens_per_s_all_steps": round(tps if name == "plain" else all_steps, 1),
                          "seconds": round(seconds, 2), "bf16": bool(clf.bf16_),
                          "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None}
            del clf
    dtype = torch.bfloat16 if runs["emoreg"]["bf16"] else torch.float32
    peak = matmul_peak_gflops(dtype, size=8192 if device == "cuda" else 1024, repeats=10 if device == "cuda" else 3,
                              device=device)
    result = {
        "shape": args.shape, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "steps": args.steps, "batch": args.batch, "max_tokens": args.max_tokens, "matmul_params": params,
        "runs": runs, "training_dtype": str(dtype), "matmul_peak_gflops": round(peak, 1),
        "mfu": float(f"{4 * params * runs['emoreg']['tokens_per_s'] / (peak * 1e9):.3g}"),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if "plain" in runs:
        result["ratio_all_steps"] = round(runs["emoreg"]["tokens_per_s_all_steps"] / runs["plain"]["tokens_per_s"], 2)
    return result


def _sig(x: float) -> float:
    return float(f"{x:.3g}")  # 3 significant digits


def _empty_state_cache() -> None:
    """Forget the states the head cached in this process (the benchmark keeps none on disk)."""
    from emoreg.models.llm import states as llm_states

    llm_states.CACHE.forget()


def score_unseen(clf, segments, tokens: int, alone: int = 32) -> dict:
    """The trained head scoring prompts it has not seen (the state cache emptied first, as for a test
    fold): seconds for all of them batched, and p50/p95 of one prompt scored alone (the live
    service's case). ``useful_flop``: the matmul FLOPs that scoring needs, every kept layer below
    the top at every prompt token and the top layer at the last token only (2 x their parameters
    per token; attention scores and the head left out, as in the floor)."""
    from emoreg.models.llm import cut as llm_cut

    _empty_state_cache()
    started = time.perf_counter()
    clf.predict_proba(segments)
    seconds = time.perf_counter() - started
    one = []
    for s in segments[:alone]:
        _empty_state_cache()
        started = time.perf_counter()
        clf.predict_proba([s])
        one.append((time.perf_counter() - started) * 1e3)
    layers = list(llm_cut.decoder_of(clf.model_)[1].layers)
    size = [sum(p.numel() for p in layer.parameters()) for layer in layers]
    useful = 2 * (sum(size[:-1]) * tokens + size[-1] * len(segments))
    return {"score_s": seconds, "p50_ms": float(np.percentile(one, 50)), "p95_ms": float(np.percentile(one, 95)),
            "useful_flop": useful}


def bench_head(args) -> dict:
    from emoreg.models.llm import last_token
    from emoreg.models.llm.loading import load_base
    from emoreg.models.llm.tokens import padded

    task, segments = _segments(args.prompts, seed=2)
    settings = _head_settings(args, args.epochs)
    clf = _llm(task, args.model, args.max_tokens, **settings)
    _empty_state_cache()
    clf.fit(segments)
    # the same epochs with the top layer run whole at every position (before last_token.py): the
    # states are in memory now, so only the tuned layers run
    saved, last_token.SUPPORTED = last_token.SUPPORTED, ()
    try:
        whole = _llm(task, args.model, args.max_tokens, **settings)
        whole.fit(segments)
    finally:
        last_token.SUPPORTED = saved
    epoch_whole = whole.fit_report.train_seconds / args.epochs
    dtype = torch.bfloat16 if clf.bf16_ else torch.float32
    prefixes = [clf._prefix_ids(s) for s in segments]
    tokens = sum(len(p) for p in prefixes)
    scoring = score_unseen(clf, segments, tokens)
    base, _ = load_base(args.model, bf16=clf.bf16_)
    params = matmul_params(base)
    peak = matmul_peak_gflops(dtype)
    config = base.config  # the MLP's up projection over a batch of 16 prompts of the mean length
    shaped = matmul_peak_gflops(dtype, repeats=20,
                                shape=(16 * tokens // len(segments), config.hidden_size, config.intermediate_size))
    floor = 2 * params * tokens / (peak * 1e9)
    started = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=clf.bf16_):
        for at in range(0, len(prefixes), 16):
            ids, mask = padded(prefixes[at:at + 16], clf.pad_id_)
            base.model(input_ids=ids, attention_mask=mask)
    forward = time.perf_counter() - started
    useful = scoring["useful_flop"]
    epoch = clf.fit_report.train_seconds / args.epochs
    one_epoch = clf.fit_report.states_seconds + epoch
    steps = len(segments) // args.batch
    plain = plain_train(task, segments, args.model, steps, args.batch, args.max_tokens)
    plain_epoch = plain["seconds"] * len(segments) / (steps * args.batch)  # its epoch over every prompt
    return {
        "model": args.model, "prompts": len(segments), "prompt_tokens": tokens, "dtype": str(dtype),
        "layers": args.layers or "all", "tune_layers": args.tune_layers, "tune": args.tune, "epochs": args.epochs,
        "matmul_peak_gflops": _sig(peak),
        "floor_s": _sig(floor), "plain_forward_s": _sig(forward),
        "forward_mfu": _sig(floor / forward),
        "states_s": _sig(clf.fit_report.states_seconds), "epoch_of_tuned_layers_s": _sig(epoch),
        "one_epoch_s": _sig(one_epoch), "one_epoch_over_floor": _sig(one_epoch / floor),
        "each_later_epoch_over_floor": _sig(epoch / floor),
        "epoch_with_whole_top_layer_s": _sig(epoch_whole), "last_token_top_layer_speedup": _sig(epoch_whole / epoch),
        "plain_recipe_epoch_s": _sig(plain_epoch), "speedup_over_plain_one_epoch": _sig(plain_epoch / one_epoch),
        "score_s": _sig(scoring["score_s"]), "score_mfu": _sig(useful / scoring["score_s"] / (peak * 1e9)),
        "matmul_peak_at_model_shapes_gflops": _sig(shaped),
        "score_mfu_at_model_shapes": _sig(useful / scoring["score_s"] / (shaped * 1e9)),
        "score_p50_ms_one_prompt": _sig(scoring["p50_ms"]), "score_p95_ms_one_prompt": _sig(scoring["p95_ms"]),
        "peak_rss_mb": _sig(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def bench_adamw(args) -> dict:
    """The head's training with AdamW fused (one kernel for the update) against AdamW's default
    multi-tensor loop, alternating ``--repeats`` times in one process, after a round not counted; the
    states come from the state cache (computed by the first fit where missing), so a fit times its
    training only (one epoch of ``--prompts``). Steps a second, minor page faults of each fit, and the
    loss each ends at."""
    real = torch.optim.AdamW
    task, segments = _segments(args.prompts, seed=2)
    settings = _head_settings(args, 1) | {"state_cache": True}
    result: dict = {"model": args.model, "prompts": len(segments), "layers": args.layers, "tune_layers": args.tune_layers,
                    "tune": args.tune, "dtype": args.dtype}
    try:
        for rep in range(args.repeats + 1):  # the first round computes the states: not counted
            for fused in (False, True):
                torch.optim.AdamW = lambda params, _fused=fused, **kw: real(params, **(kw | {"fused": _fused}))
                clf = _llm(task, args.model, args.max_tokens, **settings)
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                clf.fit(segments)
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
                if rep == 0:
                    continue
                name = "fused" if fused else "foreach"
                result.setdefault(f"{name}_steps_per_s", []).append(
                    _sig(len(clf.history_) / clf.fit_report.train_seconds))
                result.setdefault(f"{name}_minor_faults", []).append(faults)
                result.setdefault(f"{name}_last_loss", []).append(_sig(clf.history_[-1]["loss"]))
    finally:
        torch.optim.AdamW = real
    result["fused_speedup"] = _sig(float(np.median(result["fused_steps_per_s"])) /
                                   float(np.median(result["foreach_steps_per_s"])))
    result["peak_rss_mb"] = _sig(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def _head_settings(args, epochs: int) -> dict:
    """The ``head: classify`` settings that head and alone measure (LoRA r 16 where ``--tune lora``)."""
    settings = dict(head="classify", tune_layers=args.tune_layers, epochs=epochs, batch_size=16, score_batch=16,
                    lr=1e-3, class_weight="balanced", dtype=args.dtype, state_cache=False, layers=args.layers,
                    tune=args.tune, prefix_engine=args.engine, prefix_dtype=args.prefix_dtype)
    if args.tune == "lora":
        settings |= {"lora_r": 16, "lora_alpha": 32}
    return settings


def _prompt_ids(task, segments, args, **params):
    """A head classifier with its model and tokenizer loaded (untrained), and every segment's prompt ids."""
    clf = _llm(task, args.model, args.max_tokens, head="classify", **params)
    clf._setup()
    clf._load()
    return clf, [clf._prefix_ids(s) for s in segments]


def bench_compile(args) -> dict:
    from emoreg.models.llm.cut import truncate
    from emoreg.models.llm.loading import load_base
    from emoreg.models.llm.tokens import padded

    task, segments = _segments(args.prompts, seed=2)
    clf, prefixes = _prompt_ids(task, segments, args, dtype=args.dtype)
    prefixes = sorted(prefixes, key=len)
    batches = [padded(prefixes[i:i + 16], clf.pad_id_) for i in range(0, len(prefixes), 16)]
    base, _ = load_base(args.model, bf16=clf.bf16_)
    if args.layers:
        truncate(base, args.layers)
    eager = base.model
    threads = torch.get_num_threads()

    def run(module) -> float:
        started = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=clf.bf16_):
            for ids, mask in batches:
                module(input_ids=ids, attention_mask=mask, use_cache=False)
        return time.perf_counter() - started

    compiled = torch.compile(eager, dynamic=True)
    first_compiled = run(compiled)  # compiles (and recompiles where a shape needs it)
    times = {"eager": [], "compiled": [], "eager_one_thread": []}
    for _ in range(args.repeats):
        times["eager"].append(run(eager))
        times["compiled"].append(run(compiled))
        torch.set_num_threads(1)
        try:
            times["eager_one_thread"].append(run(eager))
        finally:
            torch.set_num_threads(threads)
    best = {k: min(v) for k, v in times.items()}
    return {"model": args.model, "prompts": len(prefixes), "prompt_tokens": sum(map(len, prefixes)),
            "layers": args.layers or "all", "dtype": "bf16" if clf.bf16_ else "fp32", "threads": threads,
            "repeats": args.repeats, **{f"{k}_s": [_sig(x) for x in v] for k, v in times.items()},
            "first_compiled_pass_s": _sig(first_compiled),
            "compiled_speedup": _sig(best["eager"] / best["compiled"]),
            "one_thread_speedup": _sig(best["eager"] / best["eager_one_thread"]),
            "peak_rss_mb": _sig(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _pad_share(lengths: list[int], batches: list[list[int]]) -> float:
    real = sum(lengths)
    return 1 - real / sum(max(lengths[i] for i in b) * len(b) for b in batches)


def bench_tokens(args) -> dict:
    from emoreg.corpora import load_corpus
    from emoreg.models.training import length_grouped

    corpus = load_corpus("annomi")
    segments = corpus.segments if args.prompts == 0 else corpus.segments[:args.prompts]
    out = {"model": args.model, "prompts": len(segments), "max_tokens": args.max_tokens, "batch": args.batch}
    for name, system in (("recipe_system", "default"), ("no_system", None)):
        settings = {} if system == "default" else {"system": None}
        _, prefixes = _prompt_ids(corpus.task, segments, args, **settings)
        lengths = [len(p) for p in prefixes]
        out[f"{name}_mean_tokens"] = _sig(float(np.mean(lengths)))
        if system == "default":
            size = args.batch
            by_length = sorted(range(len(lengths)), key=lambda i: lengths[i])
            out["pad_share_states_pass"] = _sig(_pad_share(lengths, [by_length[i:i + size]
                                                                     for i in range(0, len(lengths), size)]))
            grouped = length_grouped(lengths, size, torch.Generator().manual_seed(0))
            out["pad_share_training"] = _sig(_pad_share(lengths, grouped))
            out["pad_share_corpus_order"] = _sig(_pad_share(lengths, [list(range(i, min(i + size, len(lengths))))
                                                                      for i in range(0, len(lengths), size)]))
    out["system_message_tokens_saved"] = _sig(out["recipe_system_mean_tokens"] - out["no_system_mean_tokens"])
    return out


def bench_alone(args) -> dict:
    task, segments = _segments(16 + args.prompts, seed=2)
    clf = _llm(task, args.model, args.max_tokens, **_head_settings(args, epochs=1))
    _empty_state_cache()
    clf.fit(segments[:16])
    unseen = segments[16:]
    tokens = sum(len(clf._prefix_ids(s)) for s in unseen)
    scoring = score_unseen(clf, unseen, tokens, alone=len(unseen))
    return {"model": args.model, "prompts": len(unseen), "prompt_tokens": tokens, "dtype": "bf16" if clf.bf16_ else "fp32",
            "layers": args.layers or "all", "tune_layers": args.tune_layers, "engine": args.engine,
            "prefix_dtype": args.prefix_dtype,
            "states_ms_per_training_prompt": _sig(clf.fit_report.states_seconds * 1e3 / 16),
            "score_p50_ms_one_prompt": _sig(scoring["p50_ms"]), "score_p95_ms_one_prompt": _sig(scoring["p95_ms"]),
            "peak_rss_mb": _sig(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _int8_peak_gflops(size: int = 2048, repeats: int = 5, trials: int = 3) -> float:
    """The best rate of a dynamically quantised int8 Linear (what ``prefix_dtype: int8`` runs) on a
    square problem: the int8 path's practical peak, as matmul_peak_gflops is fp32's and bf16's."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    layer = quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(size, size, bias=False)),
                             {"0": per_channel_dynamic_qconfig}, dtype=torch.qint8)
    x = torch.randn(size, size)
    with torch.inference_mode():
        layer(x)
        best = 0.0
        for _ in range(trials):
            started = time.perf_counter()
            for _ in range(repeats):
                layer(x)
            best = max(best, 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e9)
    return best


def _w8a8(task, timed, clf, count: int):
    """NNCF's static int8 (weights and activations, SmoothQuant as NNCF applies it to transformers),
    calibrated on ``count`` AnnoMI prompts other than the timed ones; down_proj and the first layers
    kept in float as emoreg's int8 prefixes keep them."""
    import nncf

    from emoreg.models.llm.prefix import FLOAT_LAYERS, KEEP_FLOAT
    from emoreg.models.llm.tokens import padded

    seen = {s.segment_id for s in timed}
    _, pool = _segments(count + len(timed), seed=3)
    prompts = [clf._prefix_ids(s) for s in pool if s.segment_id not in seen][:count]
    batches = [padded(prompts[i:i + 8], clf.pad_id_) for i in range(0, len(prompts), 8)]
    keep = [f".*{name}.*" for name in KEEP_FLOAT] + [rf".*layers\.{i}\..*" for i in range(FLOAT_LAYERS)]

    def compress(model):
        data = nncf.Dataset(batches, lambda b: {0: b[0].numpy(), 1: b[1].numpy()})
        return nncf.quantize(model, data, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches),
                             ignored_scope=nncf.IgnoredScope(patterns=keep, validate=False))

    return compress


def bench_prefix(args) -> dict:
    """The states pass (the frozen layers below the head) per engine and dtype, alternating: torch
    fp32 (the reference), torch bf16 (where ``--dtype`` allows: auto takes it only where the CPU is
    fast at bf16), torch int8 (``prefix_dtype: int8``) and, where OpenVINO is installed, OpenVINO
    in fp32, bf16 (as torch's) and int8 weights (``prefix_engine: openvino``, emoreg's own
    ``OpenVinoPrefix``): seconds per prompt, ratio to torch fp32 (and to torch bf16), MFU against
    that dtype's peak measured in the same run, and the cosine of the states to fp32's (per token:
    each layer's mean for torch, the tuned layer's for OpenVINO, which returns only that one; and
    the lowest token's at the tuned layer), and memory: each model's resident size (over its load and
    a first batch) and each pass's peak above where the process stood (the states it returns included)."""
    from llm_memory import Sampler, status

    from emoreg import heap
    from emoreg.models.llm import states as llm_states
    from emoreg.models.llm.cut import decoder_of, truncate
    from emoreg.models.llm.loading import load_base
    from emoreg.models.llm.numerics import resolve_dtype
    from emoreg.models.llm.prefix import OpenVinoPrefix, quantise_below
    from emoreg.models.llm.tokens import padded

    task, segments = _segments(args.prompts, seed=2)
    clf, prefixes = _prompt_ids(task, segments, args, dtype="fp32")
    prefixes = sorted(prefixes, key=len)
    rows = [prefixes[i:i + 16] for i in range(0, len(prefixes), 16)]
    batches = [padded(r, clf.pad_id_) for r in rows]
    tokens = sum(map(len, prefixes))
    depth = (args.layers or len(decoder_of(clf.model_)[1].layers)) - 1  # the states entering the tuned layer
    bf16 = resolve_dtype(args.dtype, torch.device("cpu")) == "bf16"
    try:
        import openvino  # noqa: F401
        engines = ["openvino-fp32", "openvino-int8"] + (["openvino-bf16"] if bf16 else [])
    except ImportError:
        engines = []
    variants = ["fp32", "fp32-shared", "int8"] + (["bf16", "bf16-shared"] if bf16 else []) + engines
    if args.variants:  # a large model: fewer copies in memory (fp32, the reference, always runs)
        if engines:  # asked for only: static int8 (weights and activations), calibrated first
            variants.append("openvino-w8a8")
        unknown = set(args.variants.split(",")) - set(variants)
        if unknown:
            raise SystemExit(f"--variants: {', '.join(sorted(unknown))} not available here (choose from {', '.join(variants)})")
        variants = ["fp32"] + [v for v in variants if v in args.variants.split(",") and v != "fp32"]
    models, captured, kept, resident = {}, {}, {}, {}

    def run(name: str, first_only: bool = False):
        out, started = [], time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=name.startswith("bf16")):
            for (ids, mask), row in zip(batches[:1] if first_only else batches, rows):
                if name.startswith("openvino"):
                    hidden = {depth: models[name](ids, mask)[depth]}
                elif name.endswith("-shared"):  # emoreg's states pass: a prefix common to the batch runs once
                    model = models[name.removesuffix("-shared")]
                    hooks = llm_states.capture_hooks(model.layers, [depth], captured)
                    try:
                        llm_states._torch_pass(model, [tuple(r) for r in row], ids, mask, "cpu", captured,
                                               kept.setdefault(name, {}))
                    finally:
                        for hook in hooks:
                            hook.remove()
                    hidden = {depth: captured.pop(depth)}
                else:
                    hidden = dict(enumerate(models[name](input_ids=ids, attention_mask=mask, use_cache=False,
                                                         output_hidden_states=True).hidden_states[:depth + 1]))
                out.append((mask, {layer: h.float() for layer, h in hidden.items()}))
        return time.perf_counter() - started, out

    sampler = Sampler(every=0.02)  # this process's resident memory, sampled while each variant loads and runs
    for name in dict.fromkeys(v.removesuffix("-shared") for v in variants):  # -shared: the same model
        heap.release()
        before = status()["rss"]
        base, _ = load_base(args.model, bf16=name.endswith("bf16"))
        truncate(base, depth + 1)
        if name == "int8":
            quantise_below(base.model, depth)
        if name.startswith("openvino"):
            w8a8 = _w8a8(task, segments, clf, args.calibration) if name.endswith("w8a8") else None
            models[name] = OpenVinoPrefix(base.model, [depth], name.endswith("bf16"), name.endswith("int8"),
                                          torch.get_num_threads(), compress=w8a8)
        else:
            models[name] = base.model
        del base
        run(name, first_only=True)  # a first batch: weights mapped from disk are read in
        heap.release()
        resident[name] = status()["rss"] - before

    times = {name: [] for name in variants}
    states, extra = {}, {name: 0.0 for name in variants}
    for _ in range(args.repeats):
        for name in variants:
            states.pop(name, None)
            heap.release()  # the heap trimmed first: growth is this variant's, not room the one before left
            sampler.stage(name)
            seconds, states[name] = run(name)
            times[name].append(seconds)
            row = sampler.rows[-1]
            extra[name] = max(extra[name], row["max_rss"] - row["start_rss"])
    sampler.close()
    params = matmul_params(models["fp32"]) * depth / (depth + 1)  # the layers below the tuned one
    shared = sum(llm_states.shared_prefix([tuple(r) for r in row]) * (len(row) - 1) for row in rows)
    peaks = {"fp32": matmul_peak_gflops(torch.float32), "int8": _int8_peak_gflops()}
    if any(v.endswith("bf16") for v in variants):
        peaks["bf16"] = matmul_peak_gflops(torch.bfloat16)
    out = {"model": args.model, "prompts": len(prefixes), "prompt_tokens": tokens, "states_entering_layer": depth,
           "tokens_shared": shared,
           "repeats": args.repeats, "threads": torch.get_num_threads(),
           "peak_gflops": {k: _sig(v) for k, v in peaks.items()}}
    best = {name: min(t) for name, t in times.items()}
    for name in variants:
        cosines = {}
        for (mask, ours), (_, ref) in zip(states[name], states["fp32"]):
            real = mask.bool()
            for layer, h in ours.items():
                cosines.setdefault(layer, []).append(
                    torch.nn.functional.cosine_similarity(h[real], ref[layer][real], dim=-1))
        per_layer = {layer: torch.cat(c) for layer, c in cosines.items()}
        out[name] = {"seconds": [_sig(t) for t in times[name]], "ms_per_prompt": _sig(best[name] * 1e3 / len(prefixes)),
                     "speedup_vs_fp32": _sig(best["fp32"] / best[name]),
                     **({"speedup_vs_bf16": _sig(best["bf16"] / best[name])} if "bf16" in best else {}),
                     # MFU counts the FLOPs the pass needs: a shared prefix's tokens run once
                     "mfu": _sig(2 * params * (tokens - shared * name.endswith("-shared")) / best[name]
                                 / (peaks[name.removesuffix("-shared").split("-")[-1].replace("w8a8", "int8")] * 1e9)),
                     "cosine_to_fp32_per_layer": [_sig(float(c.mean())) for _, c in sorted(per_layer.items())],
                     "cosine_to_fp32_lowest_token": _sig(float(per_layer[depth].min())),
                     # memory: the model's resident size (load, then a first batch), and the most the process
                     # grew above where it stood while this variant's pass ran (activations, buffers)
                     "model_resident_mb": _sig(resident[name.removesuffix("-shared")] * 1024),
                     "pass_peak_mb": _sig(extra[name] * 1024)}
    out["peak_rss_mb"] = _sig(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "score", "random", "head", "alone", "tokens", "compile", "prefix",
                                         "adamw"])
    parser.add_argument("--tune-layers", type=int, default=4, help="head: tuned top layers")
    parser.add_argument("--epochs", type=int, default=2, help="head: epochs")
    parser.add_argument("--layers", type=int, default=None, help="head: keep the first N layers (default all)")
    parser.add_argument("--tune", choices=["lora", "full"], default="lora", help="head: LoRA r 16 or every weight")
    parser.add_argument("--dtype", default="auto", help="head and score: auto, bf16 or fp32")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b", help="random: the model's shape")
    parser.add_argument("--plain", action="store_true", help="random: also run the plain Trainer recipe (fp32)")
    parser.add_argument("--engine", choices=["torch", "openvino"], default="torch",
                        help="head and alone: what runs the frozen layers (prefix_engine)")
    parser.add_argument("--prefix-dtype", choices=["same", "int8"], default="same",
                        help="head and alone: the frozen layers' dtype (prefix_dtype)")
    parser.add_argument("--variants", default=None,
                        help="prefix: a comma list of the prefixes to run beside fp32 (default: all available)")
    parser.add_argument("--calibration", type=int, default=64,
                        help="prefix: prompts that calibrate the openvino-w8a8 variant (asked for by --variants)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    result = {"train": bench_train, "score": bench_score, "random": bench_random, "head": bench_head,
              "alone": bench_alone, "tokens": bench_tokens,
              "compile": bench_compile, "prefix": bench_prefix, "adamw": bench_adamw}[args.what](args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
