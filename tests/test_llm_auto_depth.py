"""``layers: auto``: the head's depth and epochs chosen on an inner split of the training subjects."""

import re

import numpy as np
import pytest
from test_llm_head import head_model

from emoreg.errors import EmoregError
from emoreg.models import load_model
from emoreg.models.llm import auto_depth
from emoreg.models.llm import states as llm_states
from emoreg.models.llm.model import LlmClassifier


@pytest.fixture(autouse=True)
def empty_state_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOREG_STATE_CACHE", str(tmp_path / "states"))
    llm_states.CACHE.forget()


def auto_model(folder, **params):
    return head_model(folder, **{"layers": "auto", "tune_layers": 1, "tune": "full", "epochs": 3, "candidates": [1, 2],
                                 "inner_share": 0.25, "min_subjects": 2} | params)


def test_the_choice_sees_training_subjects_only_and_the_refit_is_the_chosen_cell(tiny_llama, toy_split, monkeypatch):
    train, test = toy_split
    seen = []
    original = LlmClassifier._prefix_ids
    monkeypatch.setattr(LlmClassifier, "_prefix_ids", lambda self, s: seen.append(s.subject_id) or original(self, s))
    model = auto_model(tiny_llama).fit(train)
    assert set(seen) == {s.subject_id for s in train}  # every prompt built in fit: training subjects only
    choice = model.describe()["depth_choice"]
    assert set(choice["inner_scores"]) == {"1", "2"} and all(len(v) == 3 for v in choice["inner_scores"].values())
    assert choice["inner_subjects"] == 1 and choice["inner_segments"] + choice["fit_segments"] == len(train)
    best = max(max(v) for v in choice["inner_scores"].values())
    assert choice["inner_scores"][str(choice["chosen_layers"])][choice["chosen_epochs"] - 1] == best
    assert model.describe()["layers"] == choice["chosen_layers"]
    fixed = head_model(tiny_llama, layers=choice["chosen_layers"], tune_layers=1, tune="full",
                       epochs=choice["chosen_epochs"]).fit(train)
    assert np.allclose(model.predict_proba(test), fixed.predict_proba(test), atol=1e-6)


def test_one_pass_gives_every_candidate_its_states(tiny_llama, toy_split, monkeypatch):
    """The states of all training prompts for every candidate come from one pass to the deepest."""
    calls = []
    original = llm_states.entering_states
    monkeypatch.setattr(llm_states, "entering_states", lambda clf, p, start, also=(): calls.append(
        (start, tuple(also), clf.fit_report.states_computed))
        or original(clf, p, start, also))
    train, _ = toy_split
    model = auto_model(tiny_llama).fit(train)
    assert calls[0][:2] == (1, (0,))  # the deepest candidate's layer, keeping the shallower one's
    assert model.fit_report.states_computed == 0  # the refit found every state cached


def test_an_auto_model_saves_its_choice_and_loads_as_that_cell(tiny_llama, toy_split, tmp_path):
    train, test = toy_split
    model = auto_model(tiny_llama).fit(train)
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.params["layers"] == model.fit_report.depth_choice["chosen_layers"] and "candidates" not in again.params
    assert np.allclose(again.predict_proba(test), model.predict_proba(test), atol=1e-6)


def test_few_training_subjects_fall_back_to_the_default_depth(tiny_llama, toy_split):
    train, _ = toy_split
    model = auto_model(tiny_llama, min_subjects=5, fallback_layers=1).fit(train)
    choice = model.fit_report.depth_choice
    assert choice["chosen_layers"] == 1 and choice["chosen_epochs"] == 3 and choice["inner_scores"] is None
    assert "4 training subjects" in choice["reason"]


def test_default_candidates_sit_between_40_and_70_percent():
    assert auto_depth.default_candidates(30, 1) == [13, 16, 19, 22]  # SmolLM2-135M: layers 12-21 tuned
    assert auto_depth.default_candidates(18, 1) == [8, 10, 12, 14]  # Gemma 3 270M
    assert auto_depth.default_candidates(2, 1) == [2]  # a tiny model: one depth, the epochs still chosen
    assert auto_depth.fallback_depth([13, 16, 19, 22], 30) == 16


@pytest.mark.parametrize("params, message", [
    ({"layers": 2, "candidates": [1]}, "candidates is a setting of layers: auto or ensemble; set layers to one of them"),
    ({"layers": "auto", "epochs": 0}, "layers auto chooses the epochs too, from 1 to epochs"),
    ({"layers": "auto", "tune_layers": None}, "layers auto needs tune_layers"),
    ({"layers": "auto", "tune_layers": 2, "candidates": [1, 2]}, "candidates [1] cannot be below tune_layers (2)"),
    ({"layers": "deep"}, "layers must be a whole number of at least 1, auto, ensemble, or null, found 'deep'"),
    ({"layers": "auto", "inner_share": 0}, "inner_share must be a share above 0 and below 1"),
])
def test_bad_auto_settings_are_clear_errors_before_fitting(params, message):
    with pytest.raises(EmoregError, match=re.escape(message)):
        LlmClassifier.check_params({"head": "classify", "tune_layers": 1} | params)


def test_depths_the_model_lacks_fail_when_the_config_is_read_without_loading_it(tiny_llama, monkeypatch):
    """The layer count comes from the folder's config.json (a shipped model's from its pinned file):
    no weights are read, and every impossible depth is named at once."""
    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", None)  # loading would fail loudly
    with pytest.raises(EmoregError) as info:
        LlmClassifier.check_params({"model": tiny_llama, "layers": "auto", "candidates": [1, 3], "fallback_layers": 4})
    assert "candidates [3] must be at most 2, the layers of" in str(info.value)
    assert "fallback_layers (4) exceeds the 2 layers of" in str(info.value)
    with pytest.raises(EmoregError, match=re.escape("layers (31) exceeds the 30 layers of smollm2-135m")):
        LlmClassifier.check_params({"model": "smollm2-135m", "layers": 31})


def test_the_defaults_are_the_measured_recipe_and_head_lm_keeps_its_own():
    """``model: llm`` with no params is configs/llm/annomi-llm-depths.yaml's recipe (the measured one:
    the head at the four default depths, averaged); ``head: lm`` alone is the study's LoRA label
    scoring as before (1 epoch, LoRA on every layer)."""
    from pathlib import Path

    import yaml

    configs = Path(__file__).parents[1] / "configs" / "llm"
    recipe = yaml.safe_load((configs / "annomi-llm-auto.yaml").read_text())["params"] | {"layers": "ensemble"}
    assert {k: LlmClassifier.default_of({}, k) for k in recipe} == recipe
    members = yaml.safe_load((configs / "annomi-llm-depths.yaml").read_text())["params"]["members"]
    assert sorted(m["params"]["layers"] for m in members) == auto_depth.default_candidates(30, 1)
    assert all(set(m["params"]) <= {"layers", "state_layers"} for m in members)  # defaults otherwise
    lm = {k: LlmClassifier.default_of({"head": "lm"}, k) for k in ("epochs", "tune", "layers", "tune_layers",
                                                                   "class_weight", "batch_size")}
    assert lm == {"epochs": 1, "tune": "lora", "layers": None, "tune_layers": None, "class_weight": None,
                  "batch_size": 8}
    assert LlmClassifier.conflicts({}) == [] and LlmClassifier.conflicts({"head": "lm"}) == []


def test_the_deep_style_example_left_one_subject_out_falls_back_and_says_so(tiny_llama, tmp_path):
    """The study's protocol on a small corpus: leave-one-subject-out over the DEEP-style example's
    3 subjects leaves 2 training subjects a fold, too few to hold some out for the choice
    (min_subjects 8), so each fold takes the fallback depth and its metadata says why."""
    import json

    from emoreg.evaluation import evaluate
    from emoreg.evaluation.config import config_from_dict

    params = {"model": tiny_llama, "layers": "auto", "epochs": 1, "system": None, "checkpoint_minutes": None,
              "dtype": "fp32"}
    out = evaluate(config_from_dict({"corpus": "deep-example", "task": "deep-shame", "model": "llm",
                                     "params": params, "split": {"kind": "loso"}}, "test"), tmp_path / "run")
    metas = [json.loads(p.read_text()) for p in sorted((out / "folds").glob("fold-*.meta.json"))]
    assert len(metas) == 3
    for meta in metas:
        choice = meta["model"]["depth_choice"]
        assert choice["inner_scores"] is None and "fallback: 2 training subjects (min_subjects 8)" in choice["reason"]
        assert choice["chosen_layers"] == 2 and meta["model"]["layers"] == 2


def test_layers_ensemble_averages_the_head_at_every_candidate_depth_and_round_trips(tiny_llama, toy_split, tmp_path):
    """``layers: ensemble``: no choice, the head at each candidate depth fitted on all training
    subjects (one states pass) and their probabilities averaged, as the same fixed-depth heads are."""
    train, test = toy_split
    common = {"tune_layers": 1, "tune": "full", "epochs": 3}
    model = head_model(tiny_llama, layers="ensemble", candidates=[1, 2], **common).fit(train)
    assert model.describe()["depths"] == [1, 2] and model.describe()["dtype"] == "fp32"
    assert sum(m.fit_report.states_computed for m in model.members_) == len({tuple(model.members_[0]._prefix_ids(s))
                                                                   for s in train})  # one pass for both depths
    alone = [head_model(tiny_llama, layers=d, **common).fit(train).predict_proba(test) for d in (1, 2)]
    assert np.allclose(model.predict_proba(test), np.mean(alone, axis=0), atol=1e-6)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["depth-01", "depth-02", "model.json"]
    assert np.allclose(load_model(tmp_path / "m").predict_proba(test), model.predict_proba(test), atol=1e-6)
    with pytest.raises(EmoregError, match="fallback_layers is a setting of layers: auto"):
        LlmClassifier.check_params({"layers": "ensemble", "fallback_layers": 2})


def test_layers_ensemble_scores_new_prompts_with_one_pass(tiny_llama, toy_split):
    """Prompts no fit has seen (a test fold's) cost one states pass for all depths: the deepest
    depth scores first and keeps the states entering the shallower ones, which then read them."""
    train, test = toy_split
    seen = [s for s in train if s.subject_id in ("S0", "S3")]  # none of the test subjects' prompts
    model = head_model(tiny_llama, layers="ensemble", candidates=[1, 2], tune_layers=1, tune="full",
                       epochs=1).fit(seen)
    prompts = lambda segments: {tuple(model.members_[0]._prefix_ids(s)) for s in segments}  # noqa: E731
    assert prompts(test) and not prompts(test) & prompts(seen)
    before = [m.fit_report.states_computed for m in model.members_]
    proba = model.predict_proba(test)
    assert [m.fit_report.states_computed - b for m, b in zip(model.members_, before)] == [0, len(prompts(test))]
    assert np.array_equal(proba, np.mean([m.predict_proba(test) for m in model.members_], axis=0))


def test_the_llm_settings_are_typed_documented_and_checked_one_by_one():
    """settings.py is the one place of the LLM's settings: every one a typed field of its concern with
    a docstring, a rule for its values, the chosen head's defaults filled in."""
    import ast
    import inspect

    from emoreg.models.llm import settings

    assert set(settings.DEFAULTS) == set(settings.RULES)
    tree = ast.parse(inspect.getsource(settings))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in {k.__name__ for k in settings.CONCERNS.values()}:
            body = node.body
            fields = [(i, n.target.id) for i, n in enumerate(body) if isinstance(n, ast.AnnAssign)]
            undocumented = [name for i, name in fields if not (i + 1 < len(body) and isinstance(body[i + 1], ast.Expr)
                                                                and isinstance(body[i + 1].value, ast.Constant))]
            assert undocumented == [], node.name
    default = settings.LlmSettings.of({})
    assert (default.head.head, default.head.layers, default.training.epochs, default.model.model) == (
        "classify", "ensemble", 3, "smollm2-135m")
    lm = settings.LlmSettings.of({"head": "lm", "lr": 2e-4})
    assert (lm.training.epochs, lm.training.lr, lm.head.tune, lm.head.layers) == (1, 2e-4, "lora", None)
    with pytest.raises(EmoregError, match="prefix_dtype must be one of same, int8"):
        LlmClassifier.check_params({"prefix_dtype": "int4"})


def test_a_layers_ensemble_run_reports_each_depth_as_a_run_of_its_own(toy_corpus, tiny_llama, tmp_path):
    """``emoreg report --members`` on a run of ``model: llm`` with ``layers: ensemble``: each depth's
    probabilities from the same fits become a run whose config is that depth alone; the depths'
    mean is the run's probabilities, and evaluating a member's config again gives its predictions."""
    from emoreg.cli import main
    from emoreg.evaluation import evaluate
    from emoreg.evaluation.config import config_from_dict
    from emoreg.runs import load_run, read_config, read_json

    params = {"model": tiny_llama, "layers": "ensemble", "candidates": [1, 2], "tune_layers": 1, "tune": "full",
              "epochs": 2, "lr": 1e-2, "system": None, "dtype": "fp32"}
    config = {"corpus": str(toy_corpus), "task": "deep-shame", "model": "llm", "params": params,
              "prompt": {"sources": ["utterance"], "template": "emoreg-v1-compact"},
              "split": {"kind": "group-kfold", "folds": 2}}
    run = evaluate(config_from_dict(config, "test"), tmp_path / "run")
    meta = read_json(run / "folds" / "fold-00.meta.json")["model"]
    kept = meta["member_proba"]
    assert list(kept) == ["layers 1", "layers 2"]
    # each depth keeps its training curve; the run's is their mean step by step
    curves = [meta["members"][name]["loss"] for name in kept]
    assert len(curves[0]) == len(curves[1]) == len(meta["loss"]) > 0 and curves[0] != curves[1]
    assert [h["loss"] for h in meta["loss"]] == pytest.approx([(a["loss"] + b["loss"]) / 2 for a, b in zip(*curves)])
    assert main(["report", str(run), "--out", str(tmp_path / "report"), "--members"]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| run:layers 1 | llm |" in text and "| run:layers 2 | run |" in text  # reported, paired with the run
    members = {d: tmp_path / "report" / "members" / "run" / f"layers-{d}" for d in (1, 2)}
    probas = {d: np.array([list(r["proba"].values()) for r in load_run(m).predictions]) for d, m in members.items()}
    assert np.allclose(probas[1][[r["fold"] == 0 for r in load_run(members[1]).predictions]], kept["layers 1"])
    whole = np.array([list(r["proba"].values()) for r in load_run(run).predictions])
    assert np.allclose((probas[1] + probas[2]) / 2, whole, atol=1e-5)
    assert not np.allclose(probas[1], probas[2])
    assert read_json(members[2] / "folds" / "fold-00.meta.json")["model"]["loss"] == curves[1]  # its own curve
    alone = read_config(members[2])
    assert alone["model"] == "llm" and alone["params"] == {k: v for k, v in params.items() if k != "candidates"} | {
        "layers": 2}
    again = evaluate(config_from_dict(alone | {"name": "again"}, "test"), tmp_path / "again")
    assert np.allclose([list(r["proba"].values()) for r in load_run(again).predictions], probas[2], atol=1e-5)
    # a run still going (its second fold and its metrics not written yet): an interim report of its depths
    for part in (run / "metrics.json", run / "folds" / "fold-01.jsonl", run / "folds" / "fold-01.meta.json"):
        part.unlink()
    assert main(["report", str(run), "--out", str(tmp_path / "interim"), "--members", "--finished-folds"]) == 0
    assert "| run:layers 2 | llm |" in (tmp_path / "interim" / "report.md").read_text()
