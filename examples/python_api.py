"""emoreg from Python: evaluate two models across subjects, compare them, train one and predict.

    python examples/python_api.py [OUT_DIR]

Runs on the DEEP-style example shipped with emoreg (invented data, three subjects: the numbers
mean nothing) and, when AnnoMI is available ($EMOREG_DATA_DIR or `emoreg data fetch annomi`),
TF-IDF on one test fold of AnnoMI client talk. Takes under a minute on 2 CPU cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import emoreg

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/python-api")

# 1. A corpus: validated segments and their task (label scheme)
corpus = emoreg.load_corpus("deep-example")
print(f"{corpus.name}: {len(corpus.segments)} segments, labels {', '.join(corpus.task.labels)}")

# 2. Two evaluations across subjects (leave one subject out), each a run folder like `emoreg evaluate`'s
base = {"corpus": "deep-example", "task": "deep-shame", "split": {"kind": "loso"}, "seed": 0}
tfidf = emoreg.evaluate(base | {"model": "tfidf", "params": {"text": "prompt", "min_df": 1}}, out / "tfidf")
majority = emoreg.evaluate(base | {"model": "majority"}, out / "majority")
for run in (tfidf, majority):
    f1 = run.metrics["pooled"]["macro_f1"]
    print(f"{run.path.name}: macro-F1 {f1['value']:.3f} [{f1['ci95'][0]:.3f}, {f1['ci95'][1]:.3f}]")
frame = tfidf.predictions_frame()  # one row per test segment, a p_<label> column per label
print(frame[["segment_id", "gold", "predicted"]].head(3).to_string(index=False))

# 3. Compare them: tables, paired tests over subjects, figures
print("report:", emoreg.report([tfidf, majority], out / "report"))

# 4. Train on every segment, save, load back and predict
model = emoreg.make_model("tfidf", corpus.task, text="prompt", min_df=1).fit(corpus.segments)
saved = model.save(out / "model")
again = emoreg.load_model(saved)
print("predicted:", again.predict(corpus.segments[:3]), "gold:", [s.label for s in corpus.segments[:3]])

# 5. AnnoMI, when it is here: TF-IDF on test fold 0 of the 5-fold split grouped by subject
try:
    config = Path(__file__).resolve().parents[1] / "configs" / "baselines" / "annomi-tfidf-fold0.yaml"
    annomi = emoreg.evaluate(config, out / "annomi-tfidf-fold0")
    print(f"AnnoMI fold 0: TF-IDF macro-F1 {annomi.metrics['pooled']['macro_f1']['value']:.3f}")
except emoreg.api.EmoregError as exc:  # no AnnoMI on this machine
    print(f"AnnoMI skipped: {exc}")
