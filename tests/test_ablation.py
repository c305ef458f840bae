import json

import pytest

from emoreg.cli import main
from emoreg.errors import EmoregError
from emoreg.evaluation import ablation
from emoreg.evaluation.ablation import load_grid, make_subsets, parse_units, run_grid
from emoreg.report_ablation import shapley, write_ablation_report


def test_subsets():
    units = ("context", "transcript", "nonverbal")
    assert len(make_subsets(units, "all")) == 7
    assert make_subsets(units, "leave-one-out") == [
        units, ("transcript", "nonverbal"), ("context", "nonverbal"), ("context", "transcript")]
    assert make_subsets(units, "all;context,nonverbal") == [units, ("context", "nonverbal")]
    with pytest.raises(EmoregError, match="person not among the grid's sources"):
        make_subsets(units, "person")
    assert parse_units("utterance,history,context") == ("context", "history", "utterance")
    assert parse_units("transcript,context") == ("context", "transcript")


def test_shapley_by_hand():
    # v(a)=0.2, v(b)=0.4, v(ab)=0.8, v()=0: phi_a = 1/2*(0.2-0) + 1/2*(0.8-0.4) = 0.3, phi_b = 0.5
    values = {frozenset(): 0.0, frozenset("a"): 0.2, frozenset("b"): 0.4, frozenset("ab"): 0.8}
    assert shapley(values, ["a", "b"]) == pytest.approx({"a": 0.3, "b": 0.5})


@pytest.fixture
def grid_config(tmp_path, toy_corpus):
    path = tmp_path / "grid.yaml"
    path.write_text(
        f"corpus: {toy_corpus}\ntask: deep-shame\nsplit: {{kind: group-kfold, folds: 3}}\n"
        "prompt: {sources: [context, utterance, nonverbal, person]}\n"
        "models:\n"
        "  - {name: tfidf, model: tfidf, params: {text: prompt, min_df: 1}}\n"
        "  - {name: bn, model: bayesnet, params: {structure: naive}}\n")
    return path


def test_grid_report_and_resume(grid_config, tmp_path, monkeypatch):
    cells = load_grid(grid_config, None, "all")
    assert len(cells) == 2 * 15 + 1  # two models x all subsets of four sources, plus the empty set
    calls, stopped = [], []
    real = ablation.evaluate

    def counting(config, out, command="", **units):
        if len(calls) == 8 and not stopped:
            stopped.append(out.name)
            raise KeyboardInterrupt  # the grid is stopped in the middle of its ninth run
        calls.append(out.name)
        return real(config, out, command, **units)

    monkeypatch.setattr(ablation, "evaluate", counting)
    with pytest.raises(KeyboardInterrupt):
        run_grid(cells, tmp_path / "grid")
    done_before = list(calls)
    assert len(done_before) == 8
    calls.clear()
    state = run_grid(cells, tmp_path / "grid")
    assert not set(done_before) & set(calls)  # finished runs are never redone
    assert len(calls) == len(cells) - len(done_before)
    statuses = {k: v["status"] for k, v in state["cells"].items()}
    assert statuses["bn--utterance"] == "skipped"  # a Bayesian network cannot read text
    assert statuses["tfidf--utterance"] == "done"
    report = write_ablation_report(tmp_path / "grid").read_text()
    assert "| context+person+utterance+nonverbal |" in report
    assert "## Each subset against the full set" in report
    assert "**tfidf**: `" in report and "(they sum to macro-F1 with all sources minus the empty set" in report
    assert "- bn--utterance: bayesnet: the sources utterance give no variable" in report
    for name in ("ablation_heatmap.png", "ablation_drop.png"):
        assert (tmp_path / "grid" / name).read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((tmp_path / "grid" / "runs" / "tfidf--utterance" / "metrics.json").read_text())
    assert metrics["pooled"]["accuracy"]["value"] == 1.0  # the utterance reveals the label


def test_cli_ablate_leave_one_out(grid_config, tmp_path, capsys):
    assert main(["ablate", str(grid_config), "--out", str(tmp_path / "g"), "--sources", "utterance,nonverbal"]) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    names = sorted(p.name for p in (tmp_path / "g" / "runs").iterdir())
    assert names == ["bn--nonverbal", "bn--utterance", "bn--utterance+nonverbal", "majority--none",
                     "tfidf--nonverbal", "tfidf--utterance", "tfidf--utterance+nonverbal"]


def test_deep_example_grid_runs_all_five_sources(tmp_path):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / "configs" / "ablation" / "deep-example-ablation.yaml"
    cells = load_grid(config, None, "leave-one-out")
    assert {c.subset for c in cells if c.model == "tfidf"} >= {
        ("context", "person", "transcript", "nonverbal", "introspection"),
        ("context", "person", "transcript", "nonverbal")}
    state = run_grid(cells, tmp_path / "g")
    assert state["sources"] == ["context", "person", "transcript", "nonverbal", "introspection"]
    assert all(c["status"] == "done" for c in state["cells"].values())
    report = write_ablation_report(tmp_path / "g").read_text()
    for source in state["sources"]:
        assert f"- `{source}`: present in 15 of 15 segments" in report


def test_a_grid_whose_models_may_keep_different_history_says_so(toy_corpus, tmp_path, capsys):
    """Several models, prompts with history and a budget counted by each model in its own tokens
    (prompt.count: model): ``emoreg ablate`` says the models may read different history; with one
    count for all (words) it says nothing."""
    from emoreg.evaluation.ablation import budget_note

    path = tmp_path / "grid.yaml"
    path.write_text(
        f"corpus: {toy_corpus}\ntask: deep-shame\nsplit: {{kind: group-kfold, folds: 3}}\n"
        "prompt: {sources: [context, history, utterance], max_tokens: 128}\n"
        "models:\n"
        "  - {name: tfidf, model: tfidf, params: {text: prompt, min_df: 1}}\n"
        "  - {name: bn, model: bayesnet, params: {structure: naive}}\n")
    assert main(["ablate", str(path), "--out", str(tmp_path / "g"), "--list-units"]) == 0
    assert "prompt.count is model, so the models of this grid (bayesnet, tfidf)" in capsys.readouterr().err
    assert budget_note(load_grid(path, None, "leave-one-out", ["prompt.count=words"])) is None
    assert budget_note(load_grid(path, "context,utterance", "leave-one-out")) is None  # no history: nothing to drop
