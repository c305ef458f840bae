"""SIGTERM (a batch scheduler's time limit or preemption, `timeout`, `docker stop`) stops a command as
Ctrl-C does: the work in flight is saved on the way out and the same command goes on from it."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from emoreg.cli import main
from emoreg.models.llm.state_cache import load_shards

ROOT = Path(__file__).resolve().parents[1]

STOPPED_IN_THE_STATES_PASS = """
import os, signal, sys
import emoreg.models.llm.states as states
from emoreg.cli import main

real, batches = states.padded, []

def padded(*args, **kwargs):  # the states pass pads each batch: at the third, the scheduler's SIGTERM
    batches.append(1)
    if len(batches) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)

states.padded = padded
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_in_the_states_pass_keeps_its_states_and_the_rerun_goes_on(tiny_llama, toy_corpus, tmp_path):
    config = tmp_path / "llm.yaml"
    config.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: llm\n"
                      f"params: {{model: {tiny_llama}, head: classify, layers: 2, tune_layers: 1, epochs: 1, "
                      "dtype: fp32, score_batch: 2, system: null, checkpoint_minutes: null}\n"
                      "prompt: {sources: [utterance], template: emoreg-v1-compact}\n"
                      "split: {kind: group-kfold, folds: 3, only: [0]}\n")
    env = os.environ | {"EMOREG_PROGRESS": "off"}

    def evaluate(out, cache, *script):
        command = [sys.executable, *(script or ["-m", "emoreg"]), "evaluate", str(config), "--out", str(out)]
        return subprocess.run(command, env=env | {"EMOREG_STATE_CACHE": str(cache)}, capture_output=True,
                              text=True, cwd=ROOT)

    run, cache = tmp_path / "run", tmp_path / "states"
    stopped = evaluate(run, cache, "-c", STOPPED_IN_THE_STATES_PASS)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "stopped by SIGTERM" in stopped.stderr and "rerun the same command" in stopped.stderr
    folders = list(cache.iterdir())
    assert len(folders) == 1 and len(load_shards(folders[0])) == 4  # two batches of two, saved on the way out
    assert not (run / "folds" / "fold-00.jsonl").exists()

    resumed = evaluate(run, cache)
    reference = evaluate(tmp_path / "ref", tmp_path / "ref-states")
    assert resumed.returncode == 0 and reference.returncode == 0, resumed.stderr[-2000:] + reference.stderr[-2000:]
    went_on, whole = (json.loads((out / "folds" / "fold-00.meta.json").read_text())["model"]
                      for out in (run, tmp_path / "ref"))
    assert went_on["states_reused"] == whole["states_reused"] + 4
    assert went_on["states_computed"] == whole["states_computed"] - 4
    assert (run / "folds" / "fold-00.jsonl").read_text() == (tmp_path / "ref" / "folds" / "fold-00.jsonl").read_text()


def test_the_handler_before_a_command_is_back_after_it(capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert main(["check", "--corpus", "deep-example"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
