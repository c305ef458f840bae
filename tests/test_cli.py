import json
import re
import subprocess
import sys

import pytest

from emoreg.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "emoreg", *args], capture_output=True, text=True)


def test_check_annomi_prints_the_counts(annomi_data_dir, capsys):
    assert main(["check", "--corpus", "annomi"]) == 0
    out = capsys.readouterr().out
    assert "segments   4,817" in out
    assert "change 1,174 (24.4%) / neutral 3,102 (64.4%) / sustain 541 (11.2%)" in out
    assert "subjects   91" in out and "133 transcripts from 119 videos, grouped into 91 subjects" in out


def test_check_out_writes_summary_figure_and_prompts(tmp_path, capsys):
    out = tmp_path / "check"
    assert main(["check", "--corpus", "deep-example", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out.resolve())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["segments"] == 15 and summary["subjects"] == 3
    assert summary["labels"]["Withdrawal"] == 2
    assert (out / "labels.png").read_bytes()[:4] == b"\x89PNG"
    assert "=== P01-m01" in (out / "prompts.txt").read_text()


def test_bad_jsonl_exits_2_with_every_problem_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"segment_id": "a", "subject_id": "P", "session_id": "S", "label": "Rest"}
    path.write_text("\n".join([
        json.dumps(good),
        "{not json",
        json.dumps(good | {"segment_id": "b", "label": "Joy"}),
        json.dumps({k: v for k, v in good.items() if k != "subject_id"} | {"segment_id": "c"}),
    ]) + "\n")
    out = tmp_path / "out"
    result = run_cli("check", "--corpus", str(path), "--task", "deep-shame", "--out", str(out))
    assert result.returncode == 2
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith(f"emoreg: error: {path}: 3 problem(s) found, nothing was written:")
    assert f"{path}:2: malformed JSON" in err
    assert f"{path}:3: label: 'Joy' is not a label of task 'deep-shame'" in err
    assert f"{path}:4: subject_id: missing; expected a non-empty string" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_user_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    result = run_cli("prompts", "--corpus", "deep-example", "--sources", "video")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "emoreg: error: unknown source 'video' in --sources; choose from: context, person, "
        "history, utterance, nonverbal, introspection, transcript, all"]
    debug = run_cli("--debug", "prompts", "--corpus", "deep-example", "--sources", "video")
    assert "Traceback" in debug.stderr and debug.returncode != 0


def test_jsonl_needs_a_task(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n")
    result = run_cli("check", "--corpus", str(path))
    assert result.returncode == 2 and "name the task of" in result.stderr


def test_prompts_prints_the_chosen_sources(annomi_data_dir, capsys):
    assert main(["prompts", "--corpus", "annomi", "--task", "annomi-client-talk",
                 "--sources", "transcript,context", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("=== annomi-t000-") == 3
    assert "Situation: A motivational-interviewing session about reducing alcohol consumption." in out
    assert "Nonverbal" not in out


def test_train_then_predict(tmp_path, toy_corpus, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: tfidf\nparams: {{min_df: 1}}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "model")]) == 0
    assert capsys.readouterr().out.strip() == str((tmp_path / "model").resolve())
    unlabelled = tmp_path / "new.jsonl"
    rows = [json.loads(line) for line in toy_corpus.read_text().splitlines()[:5]]
    unlabelled.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "label"}) + "\n" for r in rows))
    assert main(["predict", str(tmp_path / "model"), "--corpus", str(unlabelled), "--out", str(tmp_path / "p.jsonl")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "5 segments labelled"
    predicted = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [p["predicted"] for p in predicted] == [r["label"] for r in rows]  # the toy task is separable
    assert "gold" not in predicted[0] and abs(sum(predicted[0]["proba"].values()) - 1) < 1e-9


def test_predict_needs_a_saved_model(tmp_path):
    result = run_cli("predict", str(tmp_path), "--corpus", "deep-example", "--out", str(tmp_path / "p.jsonl"))
    assert result.returncode == 2 and "holds no saved emoreg model" in result.stderr


def test_train_writes_a_model_card_with_the_evaluated_metrics_and_serve_shows_it(toy_corpus, tmp_path, capsys):
    import yaml
    from fastapi.testclient import TestClient

    from emoreg.models import load_model
    from emoreg.serve.app import create_app

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(toy_corpus), "task": "deep-shame", "model": "tfidf",
                                      "params": {"min_df": 1, "text": "utterance"}, "split": {"kind": "loso"}}))
    assert main(["evaluate", str(config), "--out", str(tmp_path / "run")]) == 0
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("min_df: 1", "min_df: 2"))
    assert main(["train", str(other), "--out", str(tmp_path / "bad"), "--evaluated", str(tmp_path / "run")]) == 2
    assert "run of another configuration (differs in: params)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before the fit
    assert main(["train", str(config), "--out", str(tmp_path / "model"), "--evaluated", str(tmp_path / "run")]) == 0
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert f"| macro-F1 | {metrics['pooled']['macro_f1']['value']:.3f}" in card
    assert "| Withdrawal |" in card and "**Not a diagnosis.**" in card and "What it reads of each segment: utterance" in card
    assert "None: `tfidf` is trained from the corpus alone" in card
    with TestClient(create_app(load_model(tmp_path / "model"), tmp_path / "s.sqlite")) as client:
        served = client.get("/model")
        assert served.status_code == 200 and served.text == card
    secret = tmp_path / "secret.txt"  # a card that is a link to a file elsewhere is not served
    secret.write_text("root:x:0:0\n")
    (tmp_path / "model" / "MODEL_CARD.md").unlink()
    (tmp_path / "model" / "MODEL_CARD.md").symlink_to(secret)
    with TestClient(create_app(load_model(tmp_path / "model"), tmp_path / "s.sqlite")) as client:
        served = client.get("/model")
        assert served.status_code == 404 and "root:x" not in served.text
    (tmp_path / "model" / "MODEL_CARD.md").unlink()
    (tmp_path / "model" / "MODEL_CARD.md").write_bytes("# Karte f\u00fcr".encode("latin-1"))  # not UTF-8
    with TestClient(create_app(load_model(tmp_path / "model"), tmp_path / "s.sqlite")) as client:
        served = client.get("/model")
        assert served.status_code == 200 and served.text == "# Karte f\ufffdr"


def test_the_model_card_names_each_base_model_and_its_licence():
    from emoreg.model_card import _base_models, licence_of

    ensemble = {"model": "ensemble", "params": {"members": [
        {"model": "llm", "params": {"model": "gemma3-270m"}}, {"model": "embedding"}, {"model": "tfidf"}]}}
    assert _base_models(ensemble) == ["gemma3-270m", "minilm"]
    assert _base_models({"model": "llm", "params": {}}) == ["smollm2-135m"]
    assert licence_of("smollm2-135m").startswith("Apache-2.0")
    assert "Gemma Terms of Use" in licence_of("gemma3-270m")
    assert "Llama 2 Community License" in licence_of("/models/Llama-2-7b-chat-hf")
    assert licence_of("some/unknown-model").startswith("not known to emoreg")


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_serve_refuses_a_port_that_is_not_one_in_one_line(port, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["serve", str(tmp_path), "--port", port])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "expected a port number from 1 to 65535" in err and "Traceback" not in err


def test_train_evaluated_with_damaged_metrics_fails_before_fitting_and_collect_mends_it(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("corpus: deep-example\ntask: deep-shame\nmodel: tfidf\nparams: {text: utterance, min_df: 1}\n"
                      "split: {kind: loso}\n")
    run = tmp_path / "run"
    assert main(["evaluate", str(config), "--out", str(run)]) == 0
    (run / "metrics.json").write_text("[1, 2]")
    assert main(["train", str(config), "--out", str(tmp_path / "model"), "--evaluated", str(run)]) == 2
    assert "metrics.json: not the metrics `emoreg evaluate` writes" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()  # nothing fitted or written
    assert main(["collect", str(run)]) == 0
    assert main(["train", str(config), "--out", str(tmp_path / "model"), "--evaluated", str(run)]) == 0
    assert "macro" in (tmp_path / "model" / "MODEL_CARD.md").read_text().lower()


def test_a_trained_model_folder_whose_parts_were_changed_is_refused(tmp_path, capsys):
    """The digest recorded at `emoreg train`: reversing model.json's labels, or changing a byte of
    the weights, makes the folder refuse to load instead of relabelling every prediction; the
    model card is documentation and may be edited."""
    import shutil

    config = tmp_path / "c.yaml"
    config.write_text("corpus: deep-example\ntask: deep-shame\nmodel: tfidf\nparams: {text: utterance, min_df: 1}\n"
                      "split: {kind: loso}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "m")]) == 0
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    assert len(spec["digest"]) == 64
    (tmp_path / "m" / "MODEL_CARD.md").write_text("edited by hand\n")
    predict = ["predict", None, "--corpus", "deep-example", "--out", str(tmp_path / "p.jsonl")]
    assert main([predict[0], str(tmp_path / "m"), *predict[2:]]) == 0
    for name, change in (("labels", lambda d: (d / "model.json").write_text(json.dumps(
            spec | {"labels": spec["labels"][::-1]}))),
                         ("weights", lambda d: (d / "fitted.skops").write_bytes((d / "fitted.skops").read_bytes() + b"\0"))):
        shutil.copytree(tmp_path / "m", tmp_path / name)
        change(tmp_path / name)
        assert main([predict[0], str(tmp_path / name), *predict[2:]]) == 2, name
        assert "its parts disagree with the digest recorded when it was saved" in capsys.readouterr().err


def test_prompts_count_the_budget_in_a_tokenizers_tokens(tiny_llama, capsys):
    """``--count FOLDER``: the budget and the printed count are that tokenizer's tokens (exact, no "~")."""
    from transformers import AutoTokenizer

    assert main(["prompts", "--corpus", "deep-example", "--sources", "transcript", "--limit", "1",
                 "--max-tokens", "400", "--count", tiny_llama]) == 0
    header, text = capsys.readouterr().out.split("\n", 1)
    shown = int(re.search(r"\| (\d+) tokens", header).group(1))
    assert shown == len(AutoTokenizer.from_pretrained(tiny_llama)(text.strip(), add_special_tokens=False).input_ids)
    assert main(["prompts", "--corpus", "deep-example", "--sources", "transcript", "--limit", "1"]) == 0
    assert re.search(r"\| ~\d+ tokens", capsys.readouterr().out)
