"""Progress: whole lines in a log (not a terminal), nothing in CI or when switched off."""

import pytest

from emoreg.progress import progress


@pytest.fixture
def log(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("EMOREG_PROGRESS", raising=False)
    monkeypatch.setenv("EMOREG_PROGRESS_SECONDS", "0")
    return capsys


def test_a_log_gets_whole_lines_and_keeps_the_finished_bar(log):
    assert sum(progress(range(5), desc="work", unit="step", leave=False)) == 10
    err = log.readouterr().err
    assert "\r" not in err and err.endswith("\n")
    lines = err.splitlines()
    assert lines[0].startswith("work:   0%") and "5/5" in lines[-1] and len(lines) >= 2


def test_nested_bars_in_a_log_leave_no_cursor_moves_or_blank_lines(log):
    for _ in progress(range(2), desc="folds", unit="fold"):
        for _ in progress(range(3), desc="steps", unit="step", leave=False):
            pass
    err = log.readouterr().err
    assert "\x1b" not in err and "\r" not in err
    lines = err.splitlines()
    assert all(line.strip() for line in lines)
    assert any(line.startswith("steps:") and "3/3" in line for line in lines) and "2/2" in lines[-1]


@pytest.mark.parametrize("variable, value", [("CI", "true"), ("EMOREG_PROGRESS", "off")])
def test_silent_in_ci_or_when_switched_off(log, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    bar = progress(total=3, desc="work")
    bar.update(3)
    bar.close()
    assert log.readouterr().err == ""


def test_a_log_gets_no_library_bars_when_a_model_loads(log, tiny_llama):
    from transformers.utils import logging as hf_logging

    from emoreg.models.llm.loading import load_base

    hf_logging.enable_progress_bar()
    load_base(str(tiny_llama))
    assert "Loading weights" not in log.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # switched back on afterwards


def test_a_log_on_a_pipe_gets_one_line_a_minute_whatever_the_bar_reports(tmp_path):
    """A real pipe (as nohup or SLURM give): a bar of 300 steps that sets its loss on every step
    writes its first and its last line only (the run lasts well under the minute), each once."""
    import subprocess
    import sys

    script = tmp_path / "bar.py"
    script.write_text("from emoreg.progress import progress\n"
                      "bar = progress(total=300, desc='train', unit='step')\n"
                      "for i in range(300):\n"
                      "    bar.update(1)\n"
                      "    bar.set_postfix(loss=f'{i:.3f}')\n"
                      "bar.close()\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("CI", "EMOREG_PROGRESS")}
    env["EMOREG_PROGRESS_SECONDS"] = "60"
    done = subprocess.run([sys.executable, str(script)], stderr=subprocess.PIPE, text=True, env=env, check=True)
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("train:   0%") and "300/300" in lines[1], lines
