"""A live demonstration on a real counselling session: AnnoMI transcript t001 held out, a model
trained on the other 90 subjects, the held-out session replayed into the service.

    python examples/annomi_live_demo.py [OUT_DIR] [MODEL]     # MODEL: tfidf (default, seconds), main or llm

then, as it prints:

    emoreg serve OUT_DIR/model --port 8000 &
    emoreg play OUT_DIR/held-out.jsonl --url http://127.0.0.1:8000 --speed 10

and open http://127.0.0.1:8000/. `main` trains the main job's LLM (configs/llm/annomi-llm.yaml: the
label head on layer 16 of SmolLM2-135M, about 10 minutes on 2 CPU cores), `llm` the defaults
(`model: llm`, four depths, about 20 minutes). Needs AnnoMI ($EMOREG_DATA_DIR or `emoreg data fetch annomi`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

import emoreg
from emoreg.segment_files import write_segments

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/annomi-live-demo")
kind = sys.argv[2] if len(sys.argv) > 2 else "tfidf"
if kind not in ("tfidf", "main", "llm"):
    sys.exit(f"MODEL must be tfidf, main or llm, not {kind!r}")
corpus = emoreg.load_corpus("annomi", "annomi-client-talk")
held = [s for s in corpus.segments if s.session_id == "annomi-t001"]
train = [s for s in corpus.segments if s.subject_id != held[0].subject_id]  # the whole subject held out
out.mkdir(parents=True, exist_ok=True)
write_segments(out / "held-out.jsonl", held)
main = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "llm" / "annomi-llm.yaml").read_text())
params = {"tfidf": {"text": "utterance", "ngram_max": 2}, "main": main["params"], "llm": {}}[kind]
model = emoreg.make_model("tfidf" if kind == "tfidf" else "llm", corpus.task, prompt=main["prompt"], **params).fit(train)
model.save(out / "model")
print(f"trained {kind} on {len(train)} segments of {len({s.subject_id for s in train})} subjects; now run:\n"
      f"  emoreg serve {out / 'model'} --port 8000 &\n"
      f"  emoreg play {out / 'held-out.jsonl'} --url http://127.0.0.1:8000 --speed 10")
