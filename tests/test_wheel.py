"""The wheel holds everything a user needs: built here, installed into a fresh virtual environment
(reusing this environment's torch and other dependencies through a .pth file, so nothing is
downloaded twice), and run from outside the source tree."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert done.returncode == 0, (args, done.stdout[-1000:], done.stderr[-2000:])
    return done.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", ROOT)
    wheel = next((tmp_path / "dist").glob("emoreg-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("emoreg/serve/page.html", "emoreg/data/deep_example.jsonl", "emoreg/data/openface_rules.yaml",
                   "emoreg/cli/__init__.py", "emoreg/models/llm/head.py"):
        assert needed in names, needed
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "_emoreg_reuse.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., not emoreg
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel)
    where = run(python, "-c", "import emoreg; print(emoreg.__file__)", cwd=tmp_path).strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the source tree
    assert run(venv / "bin" / "emoreg", "--version", cwd=tmp_path).strip() == "emoreg 0.1.0"
    summary = run(venv / "bin" / "emoreg", "check", "--corpus", "deep-example", cwd=tmp_path)
    assert "segments   15" in summary
    page = run(python, "-c", "from importlib import resources; "
               "print(len((resources.files('emoreg.serve') / 'page.html').read_text()))", cwd=tmp_path)
    assert int(page) > 1000
