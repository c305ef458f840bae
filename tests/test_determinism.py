"""The same config and seed give the same predictions in every process, whatever PYTHONHASHSEED
is (string hashing, and with it set and dict-of-set iteration order, changes between processes),
and a Bayesian-network run killed in a fold resumes to the result of an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emoreg.runs import read_json

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tied_corpus(tmp_path) -> Path:
    """Segments whose two numeric features always agree (so a structure search scores a -> b and
    b -> a alike and must break the tie) and carry the label only in part."""
    lines = []
    for p in range(6):
        for i in range(16):
            label = ["Withdrawal", "Attack Other", "Rest"][(i * 7 + p) % 3]
            level = float((i + (label == "Rest") * 3) % 4)
            lines.append(json.dumps({
                "segment_id": f"T{p}-{i:02d}", "subject_id": f"T{p}", "session_id": f"T{p}-a",
                "label": label, "context": ["A mock interview.", "A hard question."][i % 2],
                "transcript": [{"speaker": "Candidate", "text": f"{label.lower()} words {i % 5}"}],
                "nonverbal": {"features": {"a": level, "b": level * 2.0, "c": float(i % 3)}},
                "person": {"age": 20 + p % 2},
            }))
    path = tmp_path / "tied.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _configs(folder: Path, corpus: Path, llm: Path) -> dict[str, Path]:
    split = "split: {kind: group-kfold, folds: 3}\nseed: 0\n"
    head = f"corpus: {corpus}\ntask: deep-shame\n"
    specs = {
        "majority": "model: majority\n",
        "stratified": "model: stratified\n",
        "tfidf": "model: tfidf\nparams: {text: utterance}\n",
        "bayesnet": "model: bayesnet\nprompt: {sources: [context, nonverbal, person]}\n",
        "embedding": "model: embedding\nparams: {text: utterance}\n",
        "llm": (f"model: llm\nparams: {{model: {llm}, head: lm, epochs: 1, batch_size: 8, lr: 1.0e-2, lora_dropout: 0.1, "
                "system: null, dtype: fp32, checkpoint_minutes: null}\n"
                "prompt: {sources: [utterance], template: emoreg-v1-compact}\n"),
        "llm-features": (f"model: llm-features\nparams: {{model: {llm}, system: null, dtype: fp32}}\n"
                         "prompt: {sources: [utterance], template: emoreg-v1-compact}\n"),
    }
    out = {}
    for name, spec in specs.items():
        out[name] = folder / f"{name}.yaml"
        out[name].write_text(head + spec + split)
    return out


def _run_all(configs: dict[str, Path], out: Path, hash_seed: str) -> None:
    script = ("import sys\nfrom emoreg.cli import main\n"
              "for name, config in zip(sys.argv[1::2], sys.argv[2::2]):\n"
              f"    assert main(['evaluate', config, '--out', {str(out)!r} + '/' + name]) == 0\n")
    args = [a for name, path in configs.items() for a in (name, str(path))]
    env = os.environ | {"PYTHONHASHSEED": hash_seed, "EMOREG_PROGRESS": "off"}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_model_predicts_the_same_in_processes_with_different_hash_seeds(tied_corpus, tiny_llama, tmp_path):
    configs = _configs(tmp_path, tied_corpus, tiny_llama)
    for seed in ("0", "1", "2"):
        _run_all(configs, tmp_path / f"hash{seed}", seed)
    for name in configs:
        runs = [tmp_path / f"hash{seed}" / name for seed in ("0", "1", "2")]
        texts = [(r / "predictions.jsonl").read_text() for r in runs]
        assert texts[0] == texts[1] == texts[2], f"{name}: predictions differ between hash seeds"
    for fold in range(3):  # the learned structures themselves agree
        edges = [read_json(tmp_path / f"hash{seed}" / "bayesnet" / "folds" / f"fold-{fold:02d}.meta.json")
                 ["model"]["edges"] for seed in ("0", "1", "2")]
        assert edges[0] == edges[1] == edges[2]


KILL_IN_SECOND_FOLD = """
import os, signal, sys
from emoreg.cli import main
from emoreg.models.bayesnet import BayesNet

fit = BayesNet._fit
calls = []

def dying_fit(self, segments, y):
    calls.append(1)
    if len(calls) == 2:  # the second fold: killed as kill -9 would, mid-fold
        os.kill(os.getpid(), signal.SIGKILL)
    return fit(self, segments, y)

BayesNet._fit = dying_fit
main(["evaluate", sys.argv[1], "--out", sys.argv[2]])
"""


def test_bayesnet_killed_in_a_fold_resumes_in_another_process_to_the_same_result(tied_corpus, tmp_path):
    config = tmp_path / "bn.yaml"
    config.write_text(f"corpus: {tied_corpus}\ntask: deep-shame\nmodel: bayesnet\n"
                      "prompt: {sources: [context, nonverbal, person]}\nsplit: {kind: group-kfold, folds: 3}\n")
    env = os.environ | {"EMOREG_PROGRESS": "off"}
    run, ref = tmp_path / "run", tmp_path / "ref"
    killed = subprocess.run([sys.executable, "-c", KILL_IN_SECOND_FOLD, str(config), str(run)],
                            env=env | {"PYTHONHASHSEED": "1"}, capture_output=True, text=True, cwd=ROOT)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sorted(p.name for p in (run / "folds").glob("fold-*.jsonl")) == ["fold-00.jsonl"]
    assert not (run / "predictions.jsonl").exists()
    for out, seed in ((run, "2"), (ref, "3")):  # resumed, and uninterrupted, each in a new process
        done = subprocess.run([sys.executable, "-m", "emoreg", "evaluate", str(config), "--out", str(out)],
                              env=env | {"PYTHONHASHSEED": seed}, capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "predictions.jsonl").read_text() == (ref / "predictions.jsonl").read_text()
    assert read_json(run / "metrics.json") == read_json(ref / "metrics.json")
