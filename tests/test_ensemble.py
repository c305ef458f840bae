"""model: ensemble: members fitted on the same fold, probabilities averaged with their weights."""

import numpy as np
import pytest

from emoreg.errors import EmoregError
from emoreg.evaluation import evaluate
from emoreg.evaluation.config import config_from_dict
from emoreg.models import load_model, make_model
from emoreg.prompts import PromptConfig
from emoreg.runs import read_json
from emoreg.tasks import DEEP_SHAME

MEMBERS = [{"name": "words", "model": "tfidf", "params": {"text": "utterance", "min_df": 1}},
           {"model": "stratified"}]


def test_probabilities_are_the_weighted_mean_of_the_members_fitted_alone(toy_split, tmp_path):
    train, test = toy_split
    prompt = PromptConfig(sources=("utterance",))
    ensemble = make_model("ensemble", DEEP_SHAME, prompt, 3, {"members": MEMBERS, "weights": [3, 1]}).fit(train)
    alone = [make_model(m["model"], DEEP_SHAME, prompt, 3, m.get("params", {})).fit(train) for m in MEMBERS]
    expected = 0.75 * alone[0].predict_proba(test) + 0.25 * alone[1].predict_proba(test)
    proba = ensemble.predict_proba(test)
    assert np.allclose(proba, expected) and np.allclose(proba.sum(axis=1), 1)
    facts = ensemble.describe()
    assert facts["weights"] == [0.75, 0.25] and set(facts["member_proba"]) == {"words", "stratified"}
    assert np.allclose(facts["member_proba"]["words"], alone[0].predict_proba(test), atol=1e-6)
    ensemble.save(tmp_path / "m")
    assert (tmp_path / "m" / "members" / "words" / "model.json").is_file()
    assert np.allclose(load_model(tmp_path / "m").predict_proba(test), proba)


def test_a_members_seed_is_added_to_the_runs_seed(toy_split, tmp_path):
    """A seed ensemble: members of the same kind differ only by their seed; each is fitted as the
    model alone would be with the run's seed plus the member's."""
    train, test = toy_split
    prompt = PromptConfig(sources=("utterance",))
    members = [{"name": "s0", "model": "stratified"}, {"name": "s1", "model": "stratified", "seed": 1}]
    ensemble = make_model("ensemble", DEEP_SHAME, prompt, 3, {"members": members}).fit(train)
    ensemble.predict_proba(test)
    kept = ensemble.describe()["member_proba"]
    for name, seed in (("s0", 3), ("s1", 4)):
        alone = make_model("stratified", DEEP_SHAME, prompt, seed, {}).fit(train).predict_proba(test)
        assert np.allclose(kept[name], alone)
    assert not np.allclose(kept["s0"], kept["s1"])
    ensemble.save(tmp_path / "m")
    assert np.allclose(load_model(tmp_path / "m").predict_proba(test), ensemble.predict_proba(test))


def test_an_llm_member_in_a_run_records_its_dtype_and_member_probabilities(toy_corpus, tiny_llama, tmp_path):
    members = [{"name": "llm", "model": "llm", "params": {
        "model": tiny_llama, "head": "classify", "tune_layers": 1, "epochs": 3, "lr": 1e-2, "system": None,
        "dtype": "fp32", "state_cache": False}}, MEMBERS[0]]
    config = config_from_dict({"corpus": str(toy_corpus), "task": "deep-shame", "model": "ensemble",
                               "params": {"members": members},
                               "prompt": {"sources": ["utterance"], "template": "emoreg-v1-compact"},
                               "split": {"kind": "group-kfold", "folds": 2}}, "test")
    run = evaluate(config, tmp_path / "run")
    meta = read_json(run / "folds" / "fold-00.meta.json")["model"]
    assert meta["dtype"] == "fp32" and meta["members"]["llm"]["head"] == "classify"
    assert len(meta["member_proba"]["llm"]) == read_json(run / "folds" / "fold-00.meta.json")["n_test"]
    assert read_json(run / "metrics.json")["pooled"]["macro_f1"]["value"] > 0.9
    # the members' own runs, from the same fits, reported beside the ensemble
    from emoreg.cli import main
    from emoreg.runs import load_run

    assert main(["report", str(run), "--out", str(tmp_path / "report"), "--members"]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| run:llm | llm |" in text and "| run:words | tfidf | utterance |" in text
    assert "| run:llm | run |" in text  # paired tests of each member against the ensemble
    for name in ("llm", "words"):
        rows = load_run(tmp_path / "report" / "members" / "run" / name).predictions
        kept = read_json(run / "folds" / "fold-00.meta.json")["model"]["member_proba"][name]
        assert np.allclose([list(r["proba"].values()) for r in rows if r["fold"] == 0], kept)
    # the members' spread, from their own runs' scores
    f1 = np.array([load_run(tmp_path / "report" / "members" / "run" / name).metrics["pooled"]["macro_f1"]["value"]
                   for name in ("llm", "words")])
    own = read_json(run / "metrics.json")["pooled"]["macro_f1"]["value"]
    assert (f"- **run**: its 2 members alone score {f1.min():.3f} to {f1.max():.3f} macro-F1 (mean {f1.mean():.3f}, "
            f"sd {f1.std(ddof=1):.3f}); their average {own:.3f}, {own - f1.mean():+.3f} over the members' mean.") in text
    assert main(["report", str(run), "--out", str(tmp_path / "plain")]) == 0  # without --members: no spread
    assert "members alone score" not in (tmp_path / "plain" / "report.md").read_text()


@pytest.mark.parametrize("params, message", [
    ({"members": [MEMBERS[0]]}, "must list two or more models"),
    ({"members": [MEMBERS[0], {"model": "tfidf", "params": {"txt": "x"}}]},
     r"params.members\[1\]: model 'tfidf' has no parameter\(s\) txt"),
    ({"members": [MEMBERS[0], {"model": "nope"}]}, r"members\[1\]: unknown model 'nope'"),
    ({"members": [MEMBERS[0], {"name": "words", "model": "majority"}]}, "member names must differ"),
    ({"members": MEMBERS, "weights": [1, -1]}, "weights must be null \\(equal\\) or 2 non-negative numbers"),
    ({"members": MEMBERS, "weights": [1]}, "weights must be null"),
    ({"members": [MEMBERS[0], {"model": "majority", "seed": -1}]}, r"members\[1\].seed must be a non-negative integer"),
    ({"members": [MEMBERS[0], {"model": "majority", "seed": "1"}]}, r"members\[1\].seed must be a non-negative integer"),
])
def test_bad_ensembles_fail_when_the_config_is_read(params, message):
    with pytest.raises(EmoregError, match=message):
        config_from_dict({"corpus": "deep-example", "model": "ensemble", "params": params,
                          "split": {"kind": "loso"}}, "test")


def test_the_two_training_recipe_of_the_docs_runs_the_llm_and_the_fine_tuned_encoder_in_one_run(
        toy_corpus, tiny_llama, tmp_path):
    """docs/own-corpus.md's `model: ensemble` of the LLM and a fully fine-tuned encoder: both fitted in
    every fold, the run's probabilities the equal-weight mean of the two members' own."""
    members = [{"name": "llm", "model": "llm", "params": {
        "model": tiny_llama, "head": "classify", "tune_layers": 1, "epochs": 3, "lr": 1e-2, "system": None,
        "dtype": "fp32", "state_cache": False}},
        {"name": "encoder", "model": "encoder-ft", "params": {"text": "utterance", "epochs": 1, "batch_size": 8,
                                                              "max_length": 16}}]
    config = config_from_dict({"corpus": str(toy_corpus), "task": "deep-shame", "model": "ensemble",
                               "params": {"members": members},
                               "prompt": {"sources": ["utterance"], "template": "emoreg-v1-compact"},
                               "split": {"kind": "group-kfold", "folds": 2}}, "test")
    run = evaluate(config, tmp_path / "run")
    from emoreg.runs import load_run

    rows = [r for r in load_run(run).predictions if r["fold"] == 0]
    kept = read_json(run / "folds" / "fold-00.meta.json")["model"]["member_proba"]
    assert set(kept) == {"llm", "encoder"} and not np.allclose(kept["llm"], kept["encoder"])
    mean = (np.asarray(kept["llm"]) + np.asarray(kept["encoder"])) / 2
    assert np.allclose([list(r["proba"].values()) for r in rows], mean, atol=1e-6)
    assert read_json(run / "metrics.json")["pooled"]["macro_f1"]["value"] > 0.5
