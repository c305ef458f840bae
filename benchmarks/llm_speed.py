"""Speed of emoreg's LLM training and scoring against the plain recipes, in the same run.

    python benchmarks/llm_speed.py train [--model smollm2-135m] [--prompts 64] [--steps 6] [--repeats 3]
    python benchmarks/llm_speed.py score [--model smollm2-135m] [--prompts 24] [--max-tokens 256]

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

Both print peak resident memory. AnnoMI client talk supplies the prompts ($EMOREG_DATA_DIR).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5, trials: int = 3) -> float:
    """The best of ``trials`` timings of ``repeats`` square matmuls: the machine's practical peak."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9)
    return best


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
    return make_model("llm", task, prompt, seed=0, params={"model": model, **params})


def ours_train(task, segments, model: str, steps: int, batch: int, max_tokens: int) -> dict:
    clf = _llm(task, model, max_tokens, epochs=1, batch_size=batch, max_train=steps * batch)
    clf.fit(segments[: steps * batch])
    history = clf.history_
    seconds = history[-1]["seconds"]
    tokens = sum(h["tokens"] for h in history)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "bf16": clf.bf16_}


def plain_train(task, segments, model: str, steps: int, batch: int, max_tokens: int) -> dict:
    """The recipe most users write: Trainer + PEFT, whole-sequence loss, fp32 (``trainer: hf``)."""
    clf = _llm(task, model, max_tokens, epochs=1, batch_size=batch, max_train=steps * batch, trainer="hf")
    clf.fit(segments[: steps * batch])
    tokens = sum(len(clf._prefix_ids(s)) + len(clf.label_ids_[task.index(s.label)]) for s in segments[: steps * batch])
    return {"tokens": tokens, "seconds": clf.hf_seconds_, "tokens_per_s": tokens / clf.hf_seconds_}


def bench_train(args) -> dict:
    task, segments = _segments(args.steps * args.batch, seed=1)
    ours, plain = [], []
    for _ in range(args.repeats):  # alternating, so drifts of the machine hit both
        ours.append(ours_train(task, segments, args.model, args.steps, args.batch, args.max_tokens))
        plain.append(plain_train(task, segments, args.model, args.steps, args.batch, args.max_tokens))
    ratios = [o["tokens_per_s"] / p["tokens_per_s"] for o, p in zip(ours, plain)]
    from emoreg.models.llm_loading import load_base

    base, _ = load_base(args.model)
    params = sum(p.numel() for n, p in base.named_parameters() if "embed" not in n)  # lookups cost no matmul
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
    from emoreg.models.llm import LlmClassifier

    task, segments = _segments(args.prompts + 8, seed=2)
    clf = _llm(task, args.model, args.max_tokens, epochs=0)
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
        LlmClassifier.score_prefixes(clf, [prefix])
        ours_ms.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        naive(prefix)
        naive_ms.append(1000 * (time.perf_counter() - started))
    started = time.perf_counter()
    clf.score_prefixes(prefixes)
    batched = len(prefixes) / (time.perf_counter() - started)
    return {
        "model": args.model, "prompts": len(prefixes), "mean_prompt_tokens": round(float(np.mean([len(p) for p in prefixes])), 1),
        "ours_p50_ms": round(float(np.percentile(ours_ms, 50)), 1), "ours_p95_ms": round(float(np.percentile(ours_ms, 95)), 1),
        "naive_p50_ms": round(float(np.percentile(naive_ms, 50)), 1), "naive_p95_ms": round(float(np.percentile(naive_ms, 95)), 1),
        "speedup_p50": round(float(np.percentile(naive_ms, 50) / np.percentile(ours_ms, 50)), 2),
        "ours_batched_prompts_per_s": round(batched, 2),
        "naive_prompts_per_s": round(1000 / float(np.mean(naive_ms)), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "score"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    result = bench_train(args) if args.what == "train" else bench_score(args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
