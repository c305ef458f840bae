"""Predictions back into ELAN and NOVA, and read back by `emoreg import` as labels: a round trip."""

import json
from pathlib import Path

import pytest
import yaml

from emoreg.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "import"


def _import(config: dict, folder: Path, name: str) -> list[dict]:
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))
    assert main(["import", "--config", str(folder / f"{name}.yaml"), "--out", str(folder / f"{name}.jsonl")]) == 0
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["elan", "nova"])
def test_export_then_import_gives_the_predicted_labels_back(tmp_path, fmt):
    config = yaml.safe_load((EXAMPLE / "import.yaml").read_text())
    for session in config["sessions"]:  # absolute paths: the configs below live elsewhere
        for part in ("face", "speech", "labels"):
            session[part] = {k: str(EXAMPLE / v) if k != "tier" else v for k, v in session[part].items()}
    for key in ("person", "introspection"):
        config[key] = str(EXAMPLE / config[key])
    rows = _import(config, tmp_path, "all")
    p01, p02 = ([r for r in rows if r["subject_id"] == s] for s in ("P01", "P02"))
    for name, part in (("p01", p01), ("p02", p02)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({
        "corpus": str(tmp_path / "p01.jsonl"), "task": "deep-shame", "model": "tfidf",
        "params": {"text": "prompt", "min_df": 1}, "split": {"kind": "loso"}}))
    assert main(["train", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "model")]) == 0
    assert main(["predict", str(tmp_path / "model"), "--corpus", str(tmp_path / "p02.jsonl"),
                 "--out", str(tmp_path / "pred.jsonl"), "--export", fmt, "--export-dir", str(tmp_path / "out")]) == 0
    predicted = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    if fmt == "elan":
        exported = tmp_path / "out" / "P02_labels.eaf"
        text = exported.read_text()
        assert 'TIER_ID="emoreg:deep-shame"' in text and 'TIER_ID="emoreg:deep-shame:p"' in text
        assert 'TIER_ID="strategy"' in text  # the annotators' own tiers stay
        labels = {"elan": str(exported), "tier": "emoreg:deep-shame"}
    else:
        exported = tmp_path / "out" / "P02-interview.emoreg.annotation"
        labels = {"nova": str(exported)}
    back = dict(config, sessions=[dict(config["sessions"][1], labels=labels)])
    again = _import(back, tmp_path, "again")
    assert [r["label"] for r in again] == [r["predicted"] for r in predicted]
    assert [(r["start_s"], r["end_s"]) for r in again] == [(r["start_s"], r["end_s"]) for r in p02]


def test_export_elan_needs_segments_imported_from_elan_and_csv_takes_any(tmp_path, capsys):
    assert main(["train", "configs/deep-example-tfidf.yaml", "--out", str(tmp_path / "m")]) == 0
    args = ["predict", str(tmp_path / "m"), "--corpus", "deep-example", "--out", str(tmp_path / "p.jsonl")]
    assert main(args + ["--export", "elan"]) == 2
    assert "was not imported from one ELAN file" in capsys.readouterr().err
    assert main(args + ["--export", "csv"]) == 0
    table = (tmp_path / "p-csv" / "predictions.csv").read_text().splitlines()
    assert table[0].startswith("session_id,segment_id,subject_id,start_s,end_s,predicted,p_Withdrawal")
    assert len(table) == 1 + len((tmp_path / "p.jsonl").read_text().splitlines())
