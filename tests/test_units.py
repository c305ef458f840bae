"""Folds as independent units of work: --fold, collect, and the SLURM scripts."""

import subprocess

import pytest

from emoreg.cli import main
from emoreg.runs import read_jsonl


@pytest.fixture
def config(tmp_path, toy_corpus):
    path = tmp_path / "c.yaml"
    path.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: tfidf\nparams: {{min_df: 1}}\n"
                    "split: {kind: group-kfold, folds: 3}\n")
    return path


def test_units_then_collect_equal_a_local_run(config, tmp_path, capsys):
    assert main(["evaluate", str(config), "--out", str(tmp_path / "local")]) == 0
    for k in (2, 0):
        assert main(["evaluate", str(config), "--out", str(tmp_path / "units"), "--fold", str(k)]) == 0
    assert not (tmp_path / "units" / "metrics.json").exists()
    assert main(["collect", str(tmp_path / "units")]) == 2  # fold 1 is missing
    assert "fold(s) [1] are not finished" in capsys.readouterr().err
    assert main(["evaluate", str(config), "--out", str(tmp_path / "units"), "--fold", "1"]) == 0
    assert (tmp_path / "units" / "metrics.json").exists()  # the last unit computed the metrics
    assert main(["collect", str(tmp_path / "units")]) == 0
    assert read_jsonl(tmp_path / "units" / "predictions.jsonl") == read_jsonl(tmp_path / "local" / "predictions.jsonl")


def test_slurm_scripts_run_by_hand_give_the_local_result(config, tmp_path, capsys):
    assert main(["evaluate", str(config), "--out", str(tmp_path / "local")]) == 0
    run = tmp_path / "slurm-run"
    assert main(["evaluate", str(config), "--out", str(run), "--executor", "slurm",
                 "--slurm-option=--time=01:00:00"]) == 0
    units = (run / "slurm" / "units.sbatch").read_text()
    assert "#SBATCH --array=0-2" in units and "#SBATCH --time=01:00:00" in units
    assert "FOLDS=(0 1 2)" in units and "retrying once" in units
    assert list(run.glob("folds/fold-*.jsonl")) == []  # writing the scripts fits nothing
    assert (run / "config.yaml").is_file() and (run / "folds.json").is_file()
    # run each array task by hand, as SLURM would, with emoreg from this environment
    import shutil
    import sys

    emoreg = shutil.which("emoreg") or f"{sys.executable} -m emoreg"
    script = units.replace("emoreg evaluate", f"{emoreg} evaluate")
    for task in range(3):
        subprocess.run(["bash", "-c", script], env={"SLURM_ARRAY_TASK_ID": str(task), "PATH": "/usr/bin:/bin"},
                       check=True, capture_output=True)
    collect = (run / "slurm" / "collect.sbatch").read_text().replace("emoreg collect", f"{emoreg} collect")
    subprocess.run(["bash", "-c", collect], check=True, capture_output=True)
    assert read_jsonl(run / "predictions.jsonl") == read_jsonl(tmp_path / "local" / "predictions.jsonl")


def test_ray_local_cluster_matches_local_and_retries_a_failed_unit(config, tmp_path):
    pytest.importorskip("ray")
    from emoreg.evaluation import evaluate, load_config
    from emoreg.evaluation.executors import run_ray

    cfg = load_config(config)
    local = evaluate(cfg, tmp_path / "local")
    marker = tmp_path / "failed-once"

    def fail_fold_1_once(fold):
        if fold == 1 and not marker.exists():
            marker.write_text("x")
            raise RuntimeError("injected failure")

    evaluate(cfg, tmp_path / "ray", units=[])
    failures = run_ray(cfg, tmp_path / "ray", [0, 1, 2], cpus=1, unit_hook=fail_fold_1_once)
    assert failures == [] and marker.exists()  # fold 1 failed once, was retried, and finished
    assert read_jsonl(tmp_path / "ray" / "predictions.jsonl") == read_jsonl(local / "predictions.jsonl")
