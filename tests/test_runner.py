import gc
import json
import weakref

import numpy as np
import pytest
import yaml

from emoreg.errors import EmoregError, ValidationError
from emoreg.evaluation import evaluate, load_config
from emoreg.evaluation.config import config_from_dict
from emoreg.models import MODELS, SegmentClassifier
from emoreg.reporting import write_report
from emoreg.runs import load_run, read_jsonl


class Spy(SegmentClassifier):
    """Records the subjects it was fitted on and asked about; predicts uniformly."""

    name = "spy"
    defaults = {}
    log: list = []

    fitted_by: list = []

    def _fit(self, segments, y):
        assert not getattr(self, "spy_fitted_", False), "a model was fitted twice"
        self.spy_fitted_ = True
        Spy.fitted_by.append(self)  # kept alive, so that no two models share an id()
        Spy.log.append(("fit", {s.subject_id for s in segments}))

    def _predict_proba(self, segments):
        Spy.log.append(("predict", {s.subject_id for s in segments}))
        return np.full((len(segments), len(self.task.labels)), 1 / len(self.task.labels))


class CrashOnce(SegmentClassifier):
    """TF-IDF that dies in fold 2 the first time, as a killed process would."""

    name = "crash-once"
    defaults = {}
    crashed = False

    def _fit(self, segments, y):
        from emoreg.models.tfidf import TfidfLogReg

        if len({s.subject_id for s in segments}) == 5 and not CrashOnce.crashed and "S2" not in {
                s.subject_id for s in segments}:
            CrashOnce.crashed = True
            raise KeyboardInterrupt
        self.inner_ = TfidfLogReg(self.task, self.prompt, self.seed, min_df=1).fit(segments)

    def _predict_proba(self, segments):
        return self.inner_.predict_proba(segments)


class Cyclic(SegmentClassifier):
    """Holds itself in a reference cycle, as a fitted LLM and its hooks can: freed only by a
    garbage collection. Fails if a previous fold's model is still alive when it is fitted."""

    name = "cyclic"
    defaults = {}
    alive: list = []

    def _fit(self, segments, y):
        survivors = [ref for ref in Cyclic.alive if ref() is not None]
        assert not survivors, "the previous fold's model is still in memory"
        self.me_ = self
        Cyclic.alive.append(weakref.ref(self))

    def _predict_proba(self, segments):
        return np.full((len(segments), len(self.task.labels)), 1 / len(self.task.labels))


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(MODELS, "spy", Spy)
    monkeypatch.setitem(MODELS, "crash-once", CrashOnce)
    monkeypatch.setitem(MODELS, "cyclic", Cyclic)
    Cyclic.alive = []
    Spy.log = []
    Spy.fitted_by = []
    CrashOnce.crashed = False


def config(corpus, model="tfidf", **extra):
    data = {"corpus": str(corpus), "task": "deep-shame", "model": model, "split": {"kind": "loso"}} | extra
    return config_from_dict(data, "test")


@pytest.mark.parametrize("split, n_folds", [({"kind": "loso"}, 6), ({"kind": "group-kfold", "folds": 3}, 3)])
def test_no_test_subject_ever_reaches_fit(toy_corpus, tmp_path, registered, split, n_folds):
    """For every split kind: each fold fits a fresh model on training subjects only, then predicts
    its test subjects only, and together the folds test every subject once."""
    evaluate(config(toy_corpus, "spy", split=split), tmp_path / "run")
    fits = [subjects for kind, subjects in Spy.log if kind == "fit"]
    predicts = [subjects for kind, subjects in Spy.log if kind == "predict"]
    assert len(fits) == len(predicts) == n_folds
    for fitted, tested in zip(fits, predicts):
        assert tested and not fitted & tested and fitted | tested == {f"S{p}" for p in range(6)}
    assert sorted(s for t in predicts for s in t) == [f"S{p}" for p in range(6)]
    assert len({id(m) for m in Spy.fitted_by}) == n_folds  # one new model per fold, none fitted twice


@pytest.mark.parametrize("model, extra, per_fold", [
    ("spy", {"decode": {"temporal": "filter"}}, 1),  # transitions counted on the fold's training sessions
    ("spy", {"decode": {"temporal": "smooth"}, "calibrate": {"method": "vector"}}, 2),  # inner split, then refit
    ("ensemble", {"params": {"members": [{"model": "spy"}, {"model": "spy", "name": "second"}]}}, 2),
])
def test_composite_models_see_no_test_subject(toy_corpus, tmp_path, registered, model, extra, per_fold):
    """Session decoding, calibration and ensembles wrap fresh inner models per fold: every inner fit
    sees training subjects only, and every fold's models are new."""
    evaluate(config(toy_corpus, model, split={"kind": "group-kfold", "folds": 3}, **extra), tmp_path / "run")
    folds = json.loads((tmp_path / "run" / "folds.json").read_text())
    tested = [set(f["test_subjects"]) for f in folds]
    fits = [subjects for kind, subjects in Spy.log if kind == "fit"]
    assert len(fits) == 3 * per_fold and len({id(m) for m in Spy.fitted_by}) == 3 * per_fold
    for fold, held in enumerate(tested):
        for fitted in fits[fold * per_fold:(fold + 1) * per_fold]:
            assert fitted and not fitted & held


def test_fitted_state_holds_nothing_of_the_test_subjects(toy_corpus, tmp_path):
    """A canary word and a canary behaviour occur only in subject S5: the fold that tests S5 has
    neither in its TF-IDF vocabulary nor among its Bayesian network's variables and states."""
    from emoreg.models import load_model

    lines = []
    for line in toy_corpus.read_text().splitlines():
        row = json.loads(line)
        if row["subject_id"] == "S5":
            row["transcript"][-1]["text"] += " zzcanary"
            row["nonverbal"]["events"].append({"behaviour": "canary_blink", "start_s": row["start_s"],
                                               "end_s": row["start_s"] + 0.2})
        lines.append(json.dumps(row))
    corpus = tmp_path / "canary.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    tfidf = evaluate(config(corpus, params={"min_df": 1, "text": "prompt"}, save_models=True), tmp_path / "tfidf")
    bn = evaluate(config(corpus, "bayesnet", params={"structure": "naive"}, prompt={"sources": ["nonverbal"]},
                         save_models=True), tmp_path / "bn")
    folds = json.loads((tfidf / "folds.json").read_text())
    s5 = next(f["fold"] for f in folds if "S5" in f["test_subjects"])
    others = [f["fold"] for f in folds if f["fold"] != s5]
    vocab = load_model(tfidf / "folds" / f"fold-{s5:02d}-model").vectorizer_.vocabulary_
    assert not any("zzcanary" in term for term in vocab)
    assert any("zzcanary" in term for term in load_model(tfidf / "folds" / f"fold-{others[0]:02d}-model").vectorizer_.vocabulary_)
    def saved(run, fold):  # every byte of the fitted model as saved
        return b"".join(p.read_bytes() for p in sorted((run / "folds" / f"fold-{fold:02d}-model").rglob("*"))
                        if p.is_file())

    assert b"canary_blink" not in saved(bn, s5) and b"zzcanary" not in saved(tfidf, s5)
    assert b"canary_blink" in saved(bn, others[0])  # where S5 trains, the canary is learned


def test_calibration_sees_only_training_subjects(toy_corpus, tmp_path, registered):
    """calibrate holds out training subjects of the fold, never a test subject: per fold the spy is
    fitted on the rest, asked about the held-out ones, refitted on all training subjects, and only
    then asked about the test subject."""
    evaluate(config(toy_corpus, "spy", calibrate={"method": "temperature", "decide": "macro-f1"}), tmp_path / "run")
    assert len(Spy.log) == 6 * 4
    for fold in range(6):
        (k1, inner), (k2, held), (k3, train), (k4, test) = Spy.log[4 * fold:4 * fold + 4]
        assert (k1, k2, k3, k4) == ("fit", "predict", "fit", "predict")
        assert inner and held and not inner & held and inner | held == train
        assert len(test) == 1 and not test & train


def test_run_folder_contents(toy_corpus, tmp_path):
    run = evaluate(config(toy_corpus, params={"min_df": 1}), tmp_path / "run", command="emoreg evaluate x")
    for name in ("config.yaml", "command.txt", "environment.json", "data.json", "folds.json",
                 "predictions.jsonl", "metrics.json"):
        assert (run / name).is_file(), name
    rows = read_jsonl(run / "predictions.jsonl")
    assert len(rows) == 72 and set(rows[0]) == {"segment_id", "subject_id", "session_id", "fold", "gold",
                                                 "predicted", "proba"}
    assert abs(sum(rows[0]["proba"].values()) - 1) < 1e-9
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["pooled"]["accuracy"]["value"] == 1.0  # the toy task is separable
    low, high = metrics["pooled"]["macro_f1"]["ci95"]
    assert low <= metrics["pooled"]["macro_f1"]["value"] <= high
    assert set(metrics["per_subject"]) == {f"S{i}" for i in range(6)}
    data = json.loads((run / "data.json").read_text())
    assert list(data["files"].values())[0] and data["n_subjects"] == 6
    assert json.loads((run / "environment.json").read_text())["libraries"]["scikit-learn"]
    assert yaml.safe_load((run / "config.yaml").read_text())["model"] == "tfidf"


def test_interrupted_run_resumes_to_the_same_result(toy_corpus, tmp_path, registered):
    CrashOnce.crashed = True  # the reference run does not crash
    ref = evaluate(config(toy_corpus, "crash-once"), tmp_path / "ref")
    CrashOnce.crashed = False
    with pytest.raises(KeyboardInterrupt):
        evaluate(config(toy_corpus, "crash-once"), tmp_path / "run")
    finished = sorted(p.name for p in (tmp_path / "run" / "folds").glob("fold-*.jsonl"))
    assert finished == ["fold-00.jsonl", "fold-01.jsonl"]  # the crash hit fold 2
    assert not (tmp_path / "run" / "predictions.jsonl").exists()
    evaluate(config(toy_corpus, "crash-once"), tmp_path / "run")
    assert (tmp_path / "run" / "predictions.jsonl").read_text() == (ref / "predictions.jsonl").read_text()
    assert load_run(tmp_path / "run").metrics == load_run(ref).metrics


def test_a_fold_s_model_is_freed_before_the_next_is_fitted(toy_corpus, tmp_path, registered):
    """The runner drops each fold's model and collects it (reference cycles included) before it
    fits the next, so a run holds one fold's model at a time (BENCHMARKS.md, "Memory of one fold")."""
    gc.disable()  # only the runner's own collection can free the cycle
    try:
        evaluate(config(toy_corpus, "cyclic"), tmp_path / "run")
    finally:
        gc.enable()
    assert len(Cyclic.alive) == 6


def test_finished_folds_are_not_redone(toy_corpus, tmp_path, registered):
    evaluate(config(toy_corpus, "spy"), tmp_path / "run")
    Spy.log = []
    evaluate(config(toy_corpus, "spy"), tmp_path / "run")
    assert Spy.log == []


def test_a_different_config_in_the_same_folder_is_refused(toy_corpus, tmp_path):
    evaluate(config(toy_corpus, "majority"), tmp_path / "run")
    with pytest.raises(EmoregError, match="holds a run of a different configuration \\(differs in: model\\)"):
        evaluate(config(toy_corpus, "stratified"), tmp_path / "run")


def test_config_errors_are_listed_together(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("corpus: annomi\nmodle: tfidf\nsplit: {kind: random, folds: 1}\nseed: '3'\n"
                    "prompt: {sources: [transcript], budget: 100}\n")
    with pytest.raises(ValidationError) as info:
        load_config(path)
    fields = [p.field for p in info.value.problems]
    assert fields == ["modle", "seed", "prompt.budget", "split.kind"]
    assert "unknown key (valid: corpus, task, model, params, prompt, split, seed, name, save_models, calibrate, decode)" in str(info.value)


def test_bad_model_params_and_overrides(tmp_path, toy_corpus):
    path = tmp_path / "c.yaml"
    path.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: tfidf\nparams: {{C: 2}}\n")
    assert load_config(path, ["params.C=0.5", "split.folds=3"]).params == {"C": 0.5}
    assert load_config(path, ["split.kind=loso"]).split == {"kind": "loso"}
    with pytest.raises(ValidationError, match="has no parameter\\(s\\) gamma"):
        load_config(path, ["params.gamma=1"])
    with pytest.raises(EmoregError, match="expected KEY=VALUE"):
        load_config(path, ["params.C"])


def test_a_number_in_exponent_form_is_a_number_in_a_config_and_in_set(tmp_path, toy_corpus):
    """PyYAML (YAML 1.1) reads 3e-4 as text; a learning rate written so must reach the model as 0.0003."""
    path = tmp_path / "c.yaml"
    path.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: tfidf\nparams: {{C: 2e-1}}\n")
    assert load_config(path).params == {"C": 0.2}
    assert load_config(path, ["params.C=3E+2"]).params == {"C": 300.0}
    assert load_config(path, ["params.C=1e-3"]).params == {"C": 0.001}
    assert load_config(path, ["name='3e-4'"]).name == "3e-4"  # quoted stays text
    assert load_config(path, ["name=3e"]).name == "3e"  # not a number: text, as before
    assert load_config(path, ["params.C=1.5e3"]).params == {"C": 1500.0}  # YAML 1.1 wanted 1.5e+3


def test_what_emoreg_writes_as_yaml_it_reads_back_the_same():
    """A run's config.yaml: the text '3e-4' goes out quoted, the number 3e-4 as a number."""
    from emoreg.yamlio import dump_yaml, parse_yaml

    data = {"name": "3e-4", "lr": 3e-4, "big": 1.5e3, "label": "1E5", "plain": "3e", "n": 12, "unicode": "Füße"}
    text = dump_yaml(data)
    assert "'3e-4'" in text and "'1E5'" in text and text.isascii()
    assert parse_yaml(text, "test") == data


def test_overrides_reach_into_lists_and_say_what_is_wrong():
    from emoreg.evaluation.config import apply_overrides

    data = {"params": {"members": [{"model": "tfidf", "params": {"C": 1}}, {"model": "majority"}]}, "seed": 0}
    out = apply_overrides(data, ["params.members.0.params.C=0.5", "params.members.1.name=base", "split.folds=3"])
    assert out["params"]["members"] == [{"model": "tfidf", "params": {"C": 0.5}}, {"model": "majority", "name": "base"}]
    assert out["split"] == {"folds": 3} and data["params"]["members"][0]["params"] == {"C": 1}  # a copy
    with pytest.raises(EmoregError, match="params.members is a list of 2; index it with 0 to 1, not '2'"):
        apply_overrides(data, ["params.members.2.model=tfidf"])
    with pytest.raises(EmoregError, match="seed is not a mapping or a list"):
        apply_overrides(data, ["seed.x=1"])


def test_corpus_path_is_relative_to_the_config(tmp_path, toy_corpus):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "c.yaml").write_text("corpus: ../toy.jsonl\ntask: deep-shame\n")
    assert load_config(folder / "c.yaml").corpus == str(toy_corpus.resolve())


def test_split_only_runs_the_named_folds_and_save_models_keeps_them(toy_corpus, tmp_path):
    cfg = config(toy_corpus, "majority", split={"kind": "group-kfold", "folds": 3, "only": [1]}, save_models=True)
    run = evaluate(cfg, tmp_path / "run")
    folds = json.loads((run / "folds.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["folds_run"] == [1] and metrics["folds_in_split"] == 3
    assert [f["run"] for f in folds] == [False, True, False]
    assert metrics["n_subjects"] == len(folds[1]["test_subjects"])
    assert {r["fold"] for r in read_jsonl(run / "predictions.jsonl")} == {1}
    assert (run / "folds" / "fold-01-model" / "model.json").is_file()
    with pytest.raises(EmoregError, match="split.only names fold\\(s\\) \\[5\\] but the split has folds 0-2"):
        evaluate(config(toy_corpus, "majority", split={"kind": "group-kfold", "folds": 3, "only": [5]}), tmp_path / "r2")


def test_split_seed_keeps_the_folds_while_the_model_seed_changes(toy_corpus, tmp_path):
    def tests_of(run):
        return [f["test_subjects"] for f in json.loads((run / "folds.json").read_text())]

    split = {"kind": "group-kfold", "folds": 3}
    zero = tests_of(evaluate(config(toy_corpus, "majority", split=split, seed=0), tmp_path / "s0"))
    one = tests_of(evaluate(config(toy_corpus, "majority", split=split, seed=1), tmp_path / "s1"))
    kept = evaluate(config(toy_corpus, "majority", split=split | {"seed": 0}, seed=1), tmp_path / "s1-folds0")
    assert one != zero and tests_of(kept) == zero  # the top-level seed alone moves the folds; split.seed holds them
    assert yaml.safe_load((kept / "config.yaml").read_text())["seed"] == 1
    with pytest.raises(ValidationError, match="split.seed: expected a whole number from 0 to 2\\*\\*32 - 1"):
        config_from_dict({"corpus": "annomi", "split": {"kind": "loso", "seed": -1}}, "c.yaml")


def test_validation_split_within_a_fold_never_sees_its_test_subjects(toy_corpus, tmp_path, registered):
    outer = evaluate(config(toy_corpus, "spy", split={"kind": "group-kfold", "folds": 3}), tmp_path / "outer")
    held_out = set(json.loads((outer / "folds.json").read_text())[1]["test_subjects"])
    Spy.log = []
    run = evaluate(config(toy_corpus, "spy", split={"kind": "loso", "within_fold": 1}), tmp_path / "inner")
    # loso's fold 1 is one subject; with that subject removed, the inner split has the other 5
    loso_held = {sorted(f"S{p}" for p in range(6))[1]}
    inner = json.loads((run / "folds.json").read_text())
    inner_subjects = {s for f in inner for s in f["test_subjects"]}
    assert len(inner) == 5 and not inner_subjects & loso_held
    assert all(not subjects & loso_held for _, subjects in Spy.log) and len(Spy.log) == 10
    data = json.loads((run / "data.json").read_text())
    assert data["within_fold"] == {"fold": 1, "excluded_subjects": 1, "excluded_segments": 12}
    assert data["n_subjects"] == 5 and data["n_segments"] == 60

    Spy.log = []
    run = evaluate(config(toy_corpus, "spy", split={"kind": "group-kfold", "folds": 3, "within_fold": 1}),
                   tmp_path / "inner3")
    assert Spy.log and all(not subjects & held_out for _, subjects in Spy.log)
    inner = json.loads((run / "folds.json").read_text())
    assert {s for f in inner for s in f["test_subjects"]} == {f"S{p}" for p in range(6)} - held_out
    with pytest.raises(EmoregError, match="split.within_fold is 3 but the split has folds 0-2"):
        evaluate(config(toy_corpus, "spy", split={"kind": "group-kfold", "folds": 3, "within_fold": 3}),
                 tmp_path / "bad")
    report = write_report([run], tmp_path / "report").read_text()
    assert "**Validation split**: the 2 test subjects of fold 1 (24 segments) were removed" in report


def test_finished_folds_reads_every_fold_number_whatever_its_width(tmp_path):
    from emoreg.runs import finished_folds, fold_path

    for index in (0, 7, 100):
        fold_path(tmp_path, index).parent.mkdir(parents=True, exist_ok=True)
        fold_path(tmp_path, index).write_text("{}\n")
    for other in ("fold-00.meta.json", "fold-xx.jsonl", "fold-3.jsonl.tmp"):
        (tmp_path / "folds" / other).write_text("{}")
    assert finished_folds(tmp_path) == [0, 7, 100]  # fold-100 is not fold 10


def test_parameter_values_are_checked_when_the_config_is_read_all_at_once(toy_corpus, tmp_path):
    """A bad value fails before any run folder exists, with every problem of the params named."""
    with pytest.raises(ValidationError) as info:
        config(toy_corpus, params={"C": 0, "ngram_max": 0, "text": "speech"})
    message = str(info.value)
    for part in ("C must be a number above 0, found 0", "ngram_max must be a whole number of at least 1",
                 "text must be one of prompt, utterance, found 'speech'"):
        assert part in message
    with pytest.raises(ValidationError, match="seed: expected a whole number from 0"):
        config(toy_corpus, seed=-1)
    with pytest.raises(ValidationError, match="lr must be a number above 0"):
        config(toy_corpus, model="llm", params={"lr": -1})
    assert not (tmp_path / "run").exists()


def test_paths_in_a_config_resolve_against_its_folder_and_set_values_against_the_cwd(toy_corpus, tmp_path,
                                                                                      monkeypatch):
    import shutil

    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    shutil.copy(toy_corpus, tmp_path / "project" / "corpus.jsonl")
    (tmp_path / "project" / "task.yaml").write_text(yaml.safe_dump({"name": "mine", "labels": [
        {"name": label, "definition": "x"} for label in ("Withdrawal", "Attack Other", "Rest")]}))
    (folder / "c.yaml").write_text(yaml.safe_dump({"corpus": "../corpus.jsonl", "task": "../task.yaml",
                                                   "model": "tfidf", "split": {"kind": "loso"}}))
    monkeypatch.chdir(tmp_path)  # anywhere but the config's folder
    loaded = load_config(folder / "c.yaml")
    assert loaded.corpus == str(tmp_path / "project" / "corpus.jsonl")
    assert loaded.task == str(tmp_path / "project" / "task.yaml")
    shutil.copy(toy_corpus, tmp_path / "here.jsonl")
    overridden = load_config(folder / "c.yaml", ["corpus=here.jsonl"])
    assert overridden.corpus == "here.jsonl"  # typed on the command line: the working directory's
    assert load_config(folder / "c.yaml", ["corpus=deep-example"]).corpus == "deep-example"  # a name stays a name


def test_loso_refuses_a_fold_count_and_written_files_follow_the_umask(toy_corpus, tmp_path):
    import os
    import stat

    with pytest.raises(ValidationError, match="loso makes one fold per subject"):
        config(toy_corpus, split={"kind": "loso", "folds": 1})
    old = os.umask(0o022)
    try:
        run = evaluate(config(toy_corpus, params={"min_df": 1}), tmp_path / "run")
    finally:
        os.umask(old)
    assert stat.S_IMODE((run / "metrics.json").stat().st_mode) == 0o644


def test_llm_settings_that_do_not_go_together_fail_at_config_read_all_at_once(tmp_path, toy_corpus):
    """A typo, a bad value and a combination that cannot work are all reported by load_config,
    before any model is loaded or any run folder written."""
    path = tmp_path / "c.yaml"
    path.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: llm\n"
                    "params: {head: lm, tune: full, lr: -1, epochz: 2}\n")
    with pytest.raises(ValidationError) as info:
        load_config(path)
    text = str(info.value)
    assert "has no parameter(s) epochz" in text and "lr must be a number above 0, found -1" in text
    assert "tune full (every weight of the tuned layers) needs head: classify" in text  # the same round
    path.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: llm\n"
                    "params: {head: lm, tune: full, layers: 2, tune_layers: 3, trainer: hf, class_weight: balanced}\n")
    with pytest.raises(ValidationError) as info:
        load_config(path)
    text = str(info.value)
    for part in ("tune full (every weight of the tuned layers) needs head: classify",
                 "layers (a truncated decoder) needs head: classify", "tune_layers (3) cannot exceed layers (2)",
                 "trainer hf (the plain Trainer recipe) takes no class weights"):
        assert part in text
    path.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: llm\nparams: {{lr: 0}}\n"
                    "split: {kind: leave-one-out}\ndecode: {temporal: viterbi}\n")
    with pytest.raises(ValidationError) as info:  # the file's problems and the model's in one round
        load_config(path)
    assert [p.field for p in info.value.problems] == ["split.kind", "params", "decode"]
