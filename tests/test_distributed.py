"""Data-parallel training with Accelerate: two CPU processes (gloo) against one."""

import json

import numpy as np
import pytest

from emoreg.cli import main
from emoreg.distributed import launch_command
from emoreg.runs import read_json, read_jsonl


def test_launch_command_names_the_processes_and_the_module():
    command = launch_command(3, ["evaluate", "c.yaml", "--out", "r"])
    assert command[command.index("--num_processes") + 1] == "3"
    assert command[-5:] == ["emoreg", "evaluate", "c.yaml", "--out", "r"] and command[-6] == "-m"


def test_processes_refuses_a_cluster_executor(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "c.yaml", "--out", str(tmp_path), "--processes", "2", "--executor", "ray"])
    assert "--processes runs here" in capsys.readouterr().err


# per dtype: how close two runs that sum the same gradients in a different order stay (in bf16,
# how close to the fp32 result). In bf16 a probability near a tie can flip the predicted label,
# so labels are compared in fp32 only.
# bf16 rounding compounds over the steps, so the bf16 run trains one epoch (8 steps) instead of 3.
TOLERANCE = {"fp32": {"proba": 1e-4, "loss": 1e-4, "epochs": 3}, "bf16": {"proba": 6e-2, "loss": 5e-2, "epochs": 1}}


def _config(path, corpus, model, epochs, dtype):
    path.write_text(
        f"corpus: {corpus}\ntask: deep-shame\nmodel: llm\n"
        f"params: {{model: {model}, head: lm, epochs: {epochs}, batch_size: 5, lr: 1.0e-2, lora_dropout: 0.0, system: null,\n"
        f"         dtype: {dtype},\n"
        "         class_weight: balanced, checkpoint_minutes: 0}\n"
        "prompt: {sources: [utterance], template: emoreg-v1-compact}\n"
        "split: {kind: group-kfold, folds: 2}\nsave_models: true\n")
    return path


def _proba(rows):
    return np.array([list(r["proba"].values()) for r in rows])


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_two_processes_give_the_result_of_one(tiny_llama, toy_corpus, tmp_path, dtype):
    # 36 training segments per fold in batches of 5: shards of 3 and 2 prompts, and a last batch
    # of one prompt, which leaves the second process without one (it joins at weight 0)
    tol = TOLERANCE[dtype]
    config = _config(tmp_path / "llm.yaml", toy_corpus, tiny_llama, tol["epochs"], dtype)
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["evaluate", str(config), "--out", str(one)]) == 0
    assert main(["evaluate", str(config), "--out", str(two), "--processes", "2"]) == 0

    a, b = read_jsonl(one / "predictions.jsonl"), read_jsonl(two / "predictions.jsonl")
    assert [r["segment_id"] for r in a] == [r["segment_id"] for r in b]
    pa, pb = _proba(a), _proba(b)
    if dtype == "fp32":
        assert np.allclose(pa, pb, atol=tol["proba"])
        assert [r["predicted"] for r in a] == [r["predicted"] for r in b]
        assert read_json(one / "metrics.json")["pooled"] == read_json(two / "metrics.json")["pooled"]
    else:
        # bf16 rounds differently per CPU (AVX-512 BF16, AMX tiles) and per shard shape, so the two
        # bf16 runs are compared through the exact result they both approximate, the one-process
        # run in fp32: the two-process run must be no further from it than the one-process run
        # is (its own rounding on this CPU, with a margin), or than the fixed tolerance.
        ref = tmp_path / "one-fp32"
        assert main(["evaluate", str(_config(tmp_path / "fp32.yaml", toy_corpus, tiny_llama, tol["epochs"], "fp32")),
                     "--out", str(ref)]) == 0
        exact = _proba(read_jsonl(ref / "predictions.jsonl"))
        rounding = np.abs(pa - exact).max()
        assert np.abs(pb - exact).max() <= max(tol["proba"], 1.5 * rounding)
    for fold in (0, 1):
        meta_a = read_json(one / "folds" / f"fold-{fold:02d}.meta.json")["model"]
        meta_b = read_json(two / "folds" / f"fold-{fold:02d}.meta.json")["model"]
        assert (meta_a["processes"], meta_b["processes"]) == (1, 2)
        assert meta_a["dtype"] == meta_b["dtype"] == dtype
        la, lb = [h["loss"] for h in meta_a["loss"]], [h["loss"] for h in meta_b["loss"]]
        # every step saw the whole global batch: the token counts of both runs agree
        assert [h["tokens"] for h in meta_a["loss"]] == [h["tokens"] for h in meta_b["loss"]]
        assert len(la) == len(lb) == tol["epochs"] * 8 and np.allclose(la, lb, rtol=tol["loss"])
        # the adapter was written once, by the main process, and loads
        assert json.loads((two / "folds" / f"fold-{fold:02d}-model" / "model.json").read_text())["n_train"] == 36
    assert "--processes 2" in (two / "command.txt").read_text()
    # checkpoints were written after every step (by the main process) and removed with each finished fold
    assert list(one.glob("folds/*.checkpoint")) == [] == list(two.glob("folds/*.checkpoint"))


def test_shutdown_ends_the_process_group(monkeypatch):
    # a process that exits with a live gloo group can abort after its work is written
    # ("terminate called without an active exception"); shutdown ends the group first
    import torch.distributed as dist

    from emoreg import distributed
    from emoreg.distributed import _free_port

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as a launched process sees it
    distributed.shutdown()
    assert not dist.is_initialized()
    distributed.shutdown()  # a second call (nothing left to end) is harmless


def test_every_command_ends_with_shutdown_waiting_only_after_success(monkeypatch, tmp_path, toy_corpus, capsys):
    from emoreg import distributed

    calls = []
    monkeypatch.setattr(distributed, "shutdown", lambda wait=True: calls.append(wait))
    assert main(["collect", str(tmp_path)]) == 2  # an error: the other processes may never arrive
    assert "not a run folder" in capsys.readouterr().err
    assert main(["check", "--corpus", str(toy_corpus), "--task", "deep-shame"]) == 0
    assert calls == [False, True]
