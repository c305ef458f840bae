"""Every shipped config loads on a fresh checkout: a renamed parameter or a changed default that a
config relies on fails here, not in somebody's five-fold run."""

from pathlib import Path

import pytest
import yaml

from emoreg.errors import EmoregError
from emoreg.evaluation.ablation import load_grid
from emoreg.evaluation.config import load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_a_shipped_config_loads(path):
    data = yaml.safe_load(path.read_text())
    if "models" in data:  # an ablation grid: every cell is a whole evaluation config
        assert load_grid(path, None, "leave-one-out")
        return
    if "replay" not in path.read_text():
        assert load_config(path).model
        return
    # replays read the predictions of earlier runs, which a fresh checkout lacks: that may be their
    # only complaint, and it names the run folder to make first
    try:
        assert load_config(path).model == "replay" or "replay" in str(load_config(path).params)
    except EmoregError as error:
        problems = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        assert problems and all("is not a run folder" in p for p in problems), problems


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_a_shipped_config_says_what_it_is_and_the_command_that_runs_it(path):
    """The header comment (the catalogue in configs/README.md points at it) names the command that
    runs this very file, so a moved or copied config cannot carry another's command."""
    root = Path(__file__).parents[1]
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    own = path.relative_to(root).as_posix()
    assert header, f"{own} has no header comment"
    assert any(f" {own} " in line + " " and any(f"emoreg {verb} " in line for verb in ("evaluate", "ablate", "train"))
               for line in header), f"{own}: no header line with the emoreg command that runs it"
