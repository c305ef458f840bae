import json

import pytest

from emoreg.cli import main
from emoreg.errors import EmoregError
from emoreg.evaluation import evaluate
from emoreg.evaluation.config import config_from_dict
from emoreg.reporting import write_report


def run(corpus, out, model, **params):
    cfg = config_from_dict({"corpus": str(corpus), "task": "deep-shame", "model": model, "params": params,
                            "split": {"kind": "group-kfold", "folds": 3}}, "test")
    return evaluate(cfg, out)


def test_report_of_two_runs_has_table_tests_and_figures(toy_corpus, tmp_path):
    a = run(toy_corpus, tmp_path / "tfidf", "tfidf", min_df=1, text="utterance")
    b = run(toy_corpus, tmp_path / "majority", "majority")
    path = write_report([a, b], tmp_path / "report")
    text = path.read_text()
    assert "| tfidf | tfidf | utterance | 1.000 [1.000, 1.000] |" in text
    assert "| majority | majority | training labels only |" in text
    assert "## Paired tests against the first run" in text
    line = next(l for l in text.splitlines() if l.startswith("| majority | tfidf |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert float(cells[2]) < -0.5 and float(cells[3]) < 0.05  # macro-F1 drop, significant
    for figure in ("scores.png", "confusion.png", "per_subject.png"):
        assert (tmp_path / "report" / figure).read_bytes()[:4] == b"\x89PNG" and f"]({figure})" in text
    assert "| Withdrawal |" in text


def test_report_refuses_unfinished_runs(tmp_path):
    with pytest.raises(EmoregError, match="is not a finished run"):
        write_report([tmp_path], tmp_path / "r")


def test_interim_report_compares_runs_on_the_folds_all_have_finished(toy_corpus, tmp_path):
    def units(out, model, run, **split):
        cfg = config_from_dict({"corpus": str(toy_corpus), "task": "deep-shame", "model": model,
                                "params": {"min_df": 1, "text": "utterance"} if model == "tfidf" else {},
                                "split": {"kind": "group-kfold", "folds": 3} | split}, "test")
        return evaluate(cfg, out, units=run)

    def cells(text, model):  # the metric cells of a run's row in the results table
        row = next(line for line in text.splitlines() if line.startswith("| ") and f"| {model} |" in line)
        return row.split("|")[3:]

    a = units(tmp_path / "tfidf", "tfidf", [0, 1])
    b = units(tmp_path / "majority", "majority", [1, 2])
    with pytest.raises(EmoregError, match="is not a finished run.*--finished-folds"):
        write_report([a, b], tmp_path / "r")
    text = write_report([a, b], tmp_path / "r", finished_folds=True).read_text()
    assert "**Interim report**" in text and "[1] of 3" in text and "test folds [1] of a 3-fold split" in text
    assert "## Paired tests against the first run" in text
    # the same numbers as finished runs of fold 1 alone
    done = write_report([units(tmp_path / "t1", "tfidf", None, only=[1]), units(tmp_path / "m1", "majority", None, only=[1])],
                        tmp_path / "r1").read_text()
    assert "Interim" not in done
    assert cells(text, "tfidf") == cells(done, "tfidf") and cells(text, "majority") == cells(done, "majority")
    with pytest.raises(EmoregError, match="no fold is finished in every one"):
        write_report([a, units(tmp_path / "m2", "majority", [2])], tmp_path / "r2", finished_folds=True)
    with pytest.raises(EmoregError, match="use different splits"):
        write_report([a, units(tmp_path / "two", "majority", None, folds=2)], tmp_path / "r3", finished_folds=True)


def test_cli_evaluate_and_report(toy_corpus, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: tfidf\nparams: {{min_df: 1}}\n"
                      "split: {kind: group-kfold, folds: 3}\n")
    assert main(["evaluate", str(config), "--out", str(tmp_path / "r1")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("macro_f1  1.000  95% CI [1.000, 1.000] (bootstrap over 6 subjects)")
    assert out[-1] == str((tmp_path / "r1").resolve())
    assert main(["evaluate", str(config), "--out", str(tmp_path / "r2"), "--set", "model=majority",
                 "--set", "params={}"]) == 0
    assert main(["report", str(tmp_path / "r1"), str(tmp_path / "r2"), "--out", str(tmp_path / "rep")]) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")


def test_report_shows_each_runs_numeric_path_and_flags_mixed_dtypes(toy_corpus, tiny_llama, tmp_path):
    """environment.json records what decided the dtype; the report names it per run and warns when
    the runs compared used different dtypes."""

    from emoreg.models.llm import cpu_bf16_flags

    common = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "system": None,
              "checkpoint_minutes": None}
    tfidf = run(toy_corpus, tmp_path / "tfidf", "tfidf", min_df=1, text="utterance")
    runs = {d: evaluate(config_from_dict({
        "corpus": str(toy_corpus), "task": "deep-shame", "model": "llm", "name": d,
        "params": common | {"model": tiny_llama, "head": "lm", "dtype": d},
        "split": {"kind": "group-kfold", "folds": 3}}, "test"), tmp_path / d) for d in ("fp32", "bf16")}
    env = json.loads((runs["fp32"] / "environment.json").read_text())["numerics"]
    assert env["cpu_bf16_flags"] == cpu_bf16_flags() and env["torch_threads"] >= 1
    assert env["auto_dtype"] == ("bf16" if env["bf16_fast"] else "fp32")
    flags = ", ".join(env["cpu_bf16_flags"]) or "CPU without fast bf16"
    same = write_report([tfidf, runs["fp32"]], tmp_path / "same").read_text()
    assert same.splitlines()[[l.startswith("| fp32 |") for l in same.splitlines()].index(True)].endswith(
        f"| fp32 ({flags}) |")
    assert "| tfidf | tfidf | utterance |" in same and "Numeric paths differ" not in same
    mixed = write_report([runs["fp32"], runs["bf16"]], tmp_path / "mixed").read_text()
    assert f"| bf16 ({flags}) |" in mixed
    assert f"**Numeric paths differ**: fp32: fp32 ({flags}); bf16: bf16 ({flags})." in mixed


def test_report_has_calibration_metrics_a_reliability_figure_and_what_calibrate_fitted(toy_corpus, tmp_path):

    plain = run(toy_corpus, tmp_path / "tfidf", "tfidf", min_df=1, text="prompt")
    cfg = config_from_dict({"corpus": str(toy_corpus), "task": "deep-shame", "model": "tfidf",
                            "params": {"min_df": 1, "text": "prompt"}, "split": {"kind": "group-kfold", "folds": 3},
                            "calibrate": {"method": "temperature", "refit": False}}, "test")
    calibrated = evaluate(cfg, tmp_path / "calibrated")
    metrics = json.loads((calibrated / "metrics.json").read_text())["calibration"]
    assert set(metrics) == {"ece", "brier", "log_loss", "reliability"}
    assert metrics["ece"]["ci95"][0] <= metrics["ece"]["value"] <= metrics["ece"]["ci95"][1]
    text = write_report([plain, calibrated], tmp_path / "report").read_text()
    assert "| run | ECE | Brier | log-loss |" in text and "| calibrated | " in text
    assert "calibrated: calibrate temperature, decide argmax, fitted on" in text and "held-out log-loss" in text
    assert (tmp_path / "report" / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_layers_auto_chooses_in_each_fold_from_its_training_subjects_and_the_report_shows_it(
        toy_corpus, tiny_llama, tmp_path, monkeypatch):
    """A spy on every prompt built while ``layers: auto`` chooses: only the fold's training subjects,
    never one of its test subjects; each fold's choice is in its metadata and in the report."""

    from emoreg.models.llm import auto_depth
    from emoreg.models.llm.model import LlmClassifier

    calls, seen = [], []
    original_fit, original_ids = auto_depth.fit_auto, LlmClassifier._prefix_ids
    monkeypatch.setattr(LlmClassifier, "_prefix_ids", lambda self, s: seen.append(s.subject_id) or original_ids(self, s))

    def spy(clf, segments, y):
        seen.clear()
        final = original_fit(clf, segments, y)
        calls.append(({s.subject_id for s in segments}, set(seen)))
        return final

    monkeypatch.setattr(auto_depth, "fit_auto", spy)
    params = {"model": tiny_llama, "head": "classify", "layers": "auto", "tune_layers": 1, "tune": "full",
              "epochs": 2, "candidates": [1, 2], "inner_share": 0.25, "min_subjects": 2, "system": None,
              "lr": 1e-2, "checkpoint_minutes": None, "dtype": "fp32"}
    out = evaluate(config_from_dict({"corpus": str(toy_corpus), "task": "deep-shame", "model": "llm", "params": params,
                                     "split": {"kind": "group-kfold", "folds": 3}}, "test"), tmp_path / "auto")
    folds = json.loads((out / "folds.json").read_text())
    folds = folds["folds"] if isinstance(folds, dict) else folds
    assert len(calls) == 3
    for (given, built), fold in zip(calls, folds):
        assert built <= given and not given & set(fold["test_subjects"])
    metas = [json.loads(p.read_text()) for p in sorted((out / "folds").glob("fold-*.meta.json"))]
    assert all(m["model"]["depth_choice"]["chosen_layers"] in (1, 2) for m in metas)
    text = write_report([out], tmp_path / "report").read_text()
    assert "the LLM head's depth chosen in each fold" in text
    assert sum(line.startswith(("| 0 |", "| 1 |", "| 2 |")) and " of 2 |" in line for line in text.splitlines()) == 3


@pytest.mark.parametrize("content", ["[]", "{not json"])
def test_a_damaged_fold_metadata_file_is_named_not_a_traceback(toy_corpus, tmp_path, content):
    a = run(toy_corpus, tmp_path / "tfidf", "tfidf", min_df=1, text="utterance")
    (a / "folds" / "fold-01.meta.json").write_text(content)
    with pytest.raises(EmoregError, match=r"fold-01\.meta\.json: .*rerun that fold \(delete .*fold-01\.jsonl"):
        write_report([a], tmp_path / "report")


@pytest.mark.parametrize("damage, words", [
    (lambda r: r["proba"].update({next(iter(r["proba"])): float("nan")}), "is nan, not a number from 0 to 1"),
    (lambda r: r.update(predicted="Nobody"), "predicted 'Nobody' is not a label of the run"),
    (lambda r: r["proba"].popitem(), "proba must give a probability for every label"),
])
def test_damaged_predictions_are_named_not_reported_as_nan(toy_corpus, tmp_path, damage, words):
    a = run(toy_corpus, tmp_path / "tfidf", "tfidf", min_df=1, text="utterance")
    rows = [json.loads(line) for line in (a / "predictions.jsonl").read_text().splitlines()]
    damage(rows[1])
    (a / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(EmoregError, match=rf"predictions.jsonl: prediction 2: .*{words}.*emoreg collect"):
        write_report([a], tmp_path / "report")
    assert not (tmp_path / "report").exists()
    fold = sorted((a / "folds").glob("fold-*.jsonl"))[0]  # the same in a fold file: collect names it
    fold.write_text(fold.read_text().replace('"proba": {', '"proba": {"x": NaN, ', 1))
    assert main(["collect", str(a)]) == 2


@pytest.mark.parametrize("model, words", [
    ({"prefix_engine": "openvino", "prefix_dtype": "int8"}, "fp32, frozen layers openvino int8"),
    ({"prefix_engine": "openvino", "prefix_dtype": "same"}, "fp32, frozen layers openvino"),
    ({"prefix_engine": "torch", "prefix_dtype": "int8"}, "fp32, frozen layers int8"),
    ({"prefix_engine": "torch", "prefix_dtype": "same"}, "fp32")])
def test_the_numeric_path_names_what_ran_the_frozen_layers(monkeypatch, tmp_path, model, words):
    """A run whose folds' frozen layers ran through OpenVINO or in int8 says so beside its dtype."""
    from types import SimpleNamespace

    from emoreg import report_models

    monkeypatch.setattr(report_models, "fold_metas", lambda run: [{"model": {"dtype": "fp32", **model}}] * 2)
    assert report_models.numeric_path(SimpleNamespace(path=tmp_path)) == words  # no environment.json: no flags
