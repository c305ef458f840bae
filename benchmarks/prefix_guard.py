"""The quality guard of the frozen layers' engines, at scoring time: one head trained once (the main
job's recipe on the validation split of fold 0, torch fp32), then the validation prompts scored
with every prefix (torch and OpenVINO, float and int8, fp32 and bf16, and torch fp32 with each prompt
run whole instead of a batch's common prefix once), states computed afresh for
each; macro-F1, the share of decisions equal to torch fp32's, and the largest probability change.

    EMOREG_DATA_DIR=../shared/data python benchmarks/prefix_guard.py --out runs/prefix-guard

This isolates the prefix: a run that also trains on another prefix's states (``emoreg evaluate ...
--set params.prefix_engine=openvino``) moves its decisions through training too, as far as a change
of seed or of CPU moves fp32's (docs/llm.md). Training reuses the disk state cache where a run made
it; the scoring passes never read it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "llm" / "annomi-llm.yaml"
VARIANTS = [  # (name, dtype, prefix_engine, prefix_dtype); "whole": no prefix shared within a batch
    ("torch fp32 (reference)", "fp32", "torch", "same"),
    ("torch fp32 whole prompts", "fp32", "torch", "same"),
    ("torch int8", "fp32", "torch", "int8"),
    ("openvino fp32", "fp32", "openvino", "same"),
    ("openvino int8", "fp32", "openvino", "int8"),
    ("torch bf16", "bf16", "torch", "same"),
    ("openvino bf16", "bf16", "openvino", "same"),
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/prefix-guard", help="run folder of the trained reference")
    parser.add_argument("--variants", default=None, help="a comma list of variant names' first words+dtype, "
                        "e.g. 'openvino bf16,torch bf16' (default: all; bf16 only where the CPU is fast at it)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the reference's config, as emoreg evaluate --set takes it")
    args = parser.parse_args(argv)

    import torch
    from sklearn.metrics import f1_score

    from emoreg import api
    from emoreg.models.llm import cpu_bf16_flags
    from emoreg.models.llm import states as llm_states
    from emoreg.runs import fold_path

    api.evaluate(CONFIG, args.out, ["split.within_fold=0", "split.only=[0]", "save_models=true", *args.set])
    predictions = [json.loads(line) for line in (Path(args.out) / "predictions.jsonl").open()]
    corpus = api.load_corpus("annomi", "annomi-client-talk")
    by_id = {s.segment_id: s for s in corpus.segments}
    segments = [by_id[p["segment_id"]] for p in predictions]
    gold = [s.label for s in segments]
    model = api.load_model(fold_path(Path(args.out), 0, "-model"))
    model.params["state_cache"] = False  # every variant computes its states
    fast_bf16 = bool(cpu_bf16_flags())
    wanted = None if args.variants is None else [w.strip() for w in args.variants.split(",")]
    out: dict = {"validation_prompts": len(segments), "cpu_bf16_flags": cpu_bf16_flags(),
                 "threads": torch.get_num_threads(), "variants": {}}
    reference, min_shared = None, llm_states.MIN_SHARED
    try:
        for name, dtype, engine, prefix_dtype in VARIANTS:
            if dtype == "bf16" and not fast_bf16:
                continue
            if wanted is not None and reference is not None and not any(name.startswith(w) for w in wanted):
                continue
            model.params |= {"prefix_engine": engine, "prefix_dtype": prefix_dtype}
            model.bf16_ = dtype == "bf16"  # scoring in bf16: the frozen layers, the tuned layer and the head
            llm_states.CACHE.forget()
            # each prompt run whole, as before the states pass shared a batch's common prefix
            llm_states.MIN_SHARED = 10 ** 9 if name.endswith("whole prompts") else min_shared
            started = time.perf_counter()
            proba = model.predict_proba(segments)
            seconds = time.perf_counter() - started
            predicted = [model.labels_[i] for i in proba.argmax(1)]
            if reference is None:
                reference = (proba, predicted)
            out["variants"][name] = {
                "macro_f1": round(float(f1_score(gold, predicted, average="macro")), 4),
                "same_decisions_as_fp32": round(float(np.mean([a == b for a, b in zip(predicted, reference[1])])), 4),
                "largest_probability_change": round(float(np.abs(proba - reference[0]).max()), 4),
                "seconds": round(seconds, 1)}
            print(name, out["variants"][name], flush=True)
    finally:
        llm_states.MIN_SHARED = min_shared
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
