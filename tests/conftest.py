"""Shared fixtures. AnnoMI tests need the real corpus: they use $EMOREG_DATA_DIR, else
../shared/data beside the checkout; when CI=true a missing corpus fails instead of skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _annomi_data_dir() -> Path | None:
    candidates = []
    if os.environ.get("EMOREG_DATA_DIR"):
        candidates.append(Path(os.environ["EMOREG_DATA_DIR"]))
    candidates.append(ROOT.parent / "shared" / "data")
    for folder in candidates:
        if (folder / "annomi" / "AnnoMI-simple.csv").is_file():
            return folder.resolve()
    return None


@pytest.fixture
def annomi_data_dir(monkeypatch) -> Path:
    folder = _annomi_data_dir()
    if folder is None:
        message = ("AnnoMI not found: set EMOREG_DATA_DIR to a folder with annomi/AnnoMI-simple.csv "
                   "or run `emoreg data fetch annomi`")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.setenv("EMOREG_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def annomi_client():
    """The real AnnoMI client-talk corpus, loaded once per test session."""
    folder = _annomi_data_dir()
    if folder is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("AnnoMI not found and CI=true")
        pytest.skip("AnnoMI not found; set EMOREG_DATA_DIR")
    from emoreg.corpora.annomi import load_annomi

    return load_annomi(path=folder / "annomi" / "AnnoMI-simple.csv")


@pytest.fixture
def tiny_annomi() -> Path:
    return TESTS / "data" / "annomi_tiny.csv"
