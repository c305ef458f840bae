"""Folds as independent units of work: --fold, collect, and the SLURM scripts."""

import shlex
import subprocess

import pytest

from emoreg.cli import main
from emoreg.runs import read_json, read_jsonl


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


def emoreg_command() -> str:
    import shutil
    import sys

    return shutil.which("emoreg") or f"{sys.executable} -m emoreg"


def test_slurm_scripts_run_by_hand_give_the_local_result(config, tmp_path, capsys):
    assert main(["evaluate", str(config), "--out", str(tmp_path / "local")]) == 0
    run = tmp_path / "slurm-run"
    assert main(["evaluate", str(config), "--out", str(run), "--executor", "slurm",
                 "--slurm-option=--time=01:00:00"]) == 0
    units = (run / "slurm" / "units.sbatch").read_text()
    assert "#SBATCH --array=0-2" in units and "#SBATCH --time=01:00:00" in units and "retrying once" in units
    listed = (run / "slurm" / "units.txt").read_text().splitlines()
    assert [line.split()[-2:] for line in listed] == [["--fold", "0"], ["--fold", "1"], ["--fold", "2"]]
    assert list(run.glob("folds/fold-*.jsonl")) == []  # writing the scripts fits nothing
    assert (run / "config.yaml").is_file() and (run / "folds.json").is_file()
    # run each array task by hand, as SLURM would, with emoreg from this environment
    env = {"PATH": "/usr/bin:/bin", "EMOREG": emoreg_command()}
    for task in range(3):
        subprocess.run(["bash", str(run / "slurm" / "units.sbatch")], env=env | {"SLURM_ARRAY_TASK_ID": str(task)},
                       check=True, capture_output=True)
    subprocess.run(["bash", str(run / "slurm" / "collect.sbatch")], env=env, check=True, capture_output=True)
    assert read_jsonl(run / "predictions.jsonl") == read_jsonl(tmp_path / "local" / "predictions.jsonl")


def test_slurm_unit_with_overrides_resumes_the_same_run(config, tmp_path):
    run = tmp_path / "r"
    assert main(["evaluate", str(config), "--out", str(run), "--executor", "slurm", "--set", "params.C=0.5"]) == 0
    line = (run / "slurm" / "units.txt").read_text().splitlines()[0]
    assert "--set=params.C=0.5" in line
    assert main(shlex.split(line)) == 0  # the unit sees the same configuration as the folder
    assert (run / "folds" / "fold-00.jsonl").is_file()


@pytest.fixture
def grid(tmp_path, toy_corpus):
    path = tmp_path / "grid.yaml"
    path.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nsplit: {{kind: group-kfold, folds: 3}}\n"
                    "prompt: {sources: [utterance, nonverbal]}\n"
                    "models:\n  - {name: tfidf, model: tfidf, params: {text: prompt, min_df: 1}}\n"
                    "  - {name: bn, model: bayesnet, params: {structure: naive}}\n")
    return path


def test_grid_units_run_anywhere_then_collect_equal_a_local_grid(grid, tmp_path, capsys):
    assert main(["ablate", str(grid), "--out", str(tmp_path / "local")]) == 0
    capsys.readouterr()
    out = tmp_path / "units"
    assert main(["ablate", str(grid), "--out", str(out), "--list-units"]) == 0
    units = [line.split() for line in capsys.readouterr().out.splitlines()]
    # 3 models' cells (tfidf, bn: 3 subsets each; majority) x 3 folds
    assert len(units) == 7 * 3 and ["bn--utterance", "2"] in units
    assert main(["ablate", str(grid), "--out", str(out), "--collect"]) == 2
    assert "7 cell(s)" in capsys.readouterr().err
    first, rest = [u for u in units if u[0].startswith("tfidf")], [u for u in units if not u[0].startswith("tfidf")]
    for key, fold in reversed(first):  # any order
        assert main(["ablate", str(grid), "--out", str(out), "--cell", key, "--fold", fold]) == 0
    assert main(["ablate", str(grid), "--out", str(out), "--collect"]) == 2  # a report of what is finished
    assert "4 cell(s)" in capsys.readouterr().err
    partial = (out / "report.md").read_text()
    assert "## Unfinished cells (n/a above)" in partial and "- bn--nonverbal: " in partial
    for key, fold in rest:
        assert main(["ablate", str(grid), "--out", str(out), "--cell", key, "--fold", fold]) == 0
    assert "bn--utterance: skipped" in capsys.readouterr().out
    assert main(["ablate", str(grid), "--out", str(out), "--list-units"]) == 0
    assert capsys.readouterr().out == ""  # nothing left
    assert main(["ablate", str(grid), "--out", str(out), "--collect"]) == 0
    local, spread = read_json(tmp_path / "local" / "grid.json"), read_json(out / "grid.json")
    assert {k: v["status"] for k, v in local["cells"].items()} == {k: v["status"] for k, v in spread["cells"].items()}
    for key, cell in local["cells"].items():
        if cell["status"] == "done":
            assert read_jsonl(out / "runs" / key / "predictions.jsonl") == read_jsonl(
                tmp_path / "local" / "runs" / key / "predictions.jsonl")
    def tables(path):  # the report's tables, without the run folders' paths (they differ by design)
        return [line for line in path.read_text().splitlines() if line.startswith("|")]
    assert tables(out / "report.md") == tables(tmp_path / "local" / "report.md")


def test_grid_slurm_script_lists_every_unit(grid, tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["ablate", str(grid), "--out", str(out), "--executor", "slurm", "--sources", "utterance,nonverbal"]) == 0
    script = (out / "slurm" / "units.sbatch").read_text()
    listed = (out / "slurm" / "units.txt").read_text().splitlines()
    assert "#SBATCH --array=0-20" in script and len(listed) == 21
    assert all("--sources=utterance,nonverbal" in line and "--cell" in line for line in listed)
    collect = (out / "slurm" / "collect.sbatch").read_text()
    assert "ablate" in collect and "--collect" in collect
    for line in listed:  # as the array tasks would, in this process
        assert main(shlex.split(line)) == 0
    assert main(shlex.split(collect.splitlines()[-1].split(" ", 1)[1])) == 0
    assert read_json(out / "grid.json")["cells"]["tfidf--utterance"]["status"] == "done"


def test_ray_local_cluster_matches_local_and_retries_a_failed_unit(config, grid, tmp_path):
    ray = pytest.importorskip("ray")
    from emoreg.evaluation import evaluate, load_config
    from emoreg.evaluation.executors import run_ray

    cfg = load_config(config)
    local = evaluate(cfg, tmp_path / "local")
    marker = tmp_path / "failed-once"

    def fail_fold_1_once(label):
        if label == "fold 1" and not marker.exists():
            marker.write_text("x")
            raise RuntimeError("injected failure")

    # one loopback cluster for the whole test (starting one costs most of its time)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        evaluate(cfg, tmp_path / "ray", units=[])
        failures = run_ray([(cfg, tmp_path / "ray", k, f"fold {k}") for k in (0, 1, 2)], cpus=1,
                           unit_hook=fail_fold_1_once)
        assert failures == [] and marker.exists()  # fold 1 failed once, was retried, and finished
        evaluate(cfg, tmp_path / "ray", collect_only=True)
        assert read_jsonl(tmp_path / "ray" / "predictions.jsonl") == read_jsonl(local / "predictions.jsonl")

        # a unit that fails twice is reported with its traceback; the others finish
        def always_fail_fold_2(label):
            if label == "fold 2":
                raise RuntimeError("broken unit")

        evaluate(cfg, tmp_path / "ray2", units=[])
        failures = run_ray([(cfg, tmp_path / "ray2", k, f"fold {k}") for k in (0, 1, 2)], cpus=1,
                           unit_hook=always_fail_fold_2)
        assert len(failures) == 1 and failures[0].startswith("fold 2: ") and "broken unit" in failures[0]
        assert "broken unit" in (tmp_path / "ray2" / "logs" / "ray-fold-2.log").read_text()
        assert sorted(p.name for p in (tmp_path / "ray2" / "folds").glob("*.jsonl")) == ["fold-00.jsonl", "fold-01.jsonl"]

        # an ablation grid: one Ray task per (cell, fold), then collect and report
        small = ["--sources", "utterance", "--set", "split.folds=2"]  # 3 cells (one skipped) x 2 folds
        assert main(["ablate", str(grid), "--out", str(tmp_path / "grid-local"), *small]) == 0
        assert main(["ablate", str(grid), "--out", str(tmp_path / "grid-ray"), "--executor", "ray", *small]) == 0
    finally:
        ray.shutdown()
    for key, cell in read_json(tmp_path / "grid-local" / "grid.json")["cells"].items():
        assert read_json(tmp_path / "grid-ray" / "grid.json")["cells"][key]["status"] == cell["status"]
        if cell["status"] == "done":
            assert read_jsonl(tmp_path / "grid-ray" / "runs" / key / "predictions.jsonl") == read_jsonl(
                tmp_path / "grid-local" / "runs" / key / "predictions.jsonl")
    assert (tmp_path / "grid-ray" / "report.md").is_file()
