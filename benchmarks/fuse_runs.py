"""Macro-F1 of the weighted average of two finished runs' probabilities, segment by segment: what
``model: ensemble`` would give with those weights on the same fits, without refitting (README,
"The LLM with a classification head", the late-fusion table).

    python benchmarks/fuse_runs.py runs/head-tune/k4-full-e3 runs/head-tune/tfidf --weights 0.3,0.5,0.7

``--weights``: the second run's weight in each average (the first run gets 1 - w).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emoreg.evaluation.metrics import confusion, scores
from emoreg.runs import read_jsonl


def fuse(first: str, second: str, weights: list[float]) -> dict[float, float]:
    a = {r["segment_id"]: r for r in read_jsonl(Path(first) / "predictions.jsonl")}
    b = {r["segment_id"]: r for r in read_jsonl(Path(second) / "predictions.jsonl")}
    if set(a) != set(b):
        raise SystemExit(f"{first} and {second} predict different segments")
    ids = sorted(a)
    labels = list(a[ids[0]]["proba"])
    gold = np.array([labels.index(a[i]["gold"]) for i in ids])
    pa = np.array([[a[i]["proba"][k] for k in labels] for i in ids])
    pb = np.array([[b[i]["proba"][k] for k in labels] for i in ids])
    return {w: scores(confusion(gold, ((1 - w) * pa + w * pb).argmax(1), len(labels)))["macro_f1"] for w in weights}


def main(argv: list[str] | None = None) -> dict[float, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--weights", default="0.3,0.5,0.7")
    args = parser.parse_args(argv)
    result = fuse(args.first, args.second, [float(w) for w in args.weights.split(",")])
    print(json.dumps({f"second weight {w}": round(v, 3) for w, v in result.items()}, indent=2))
    return result


if __name__ == "__main__":
    main()
