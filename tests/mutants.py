"""Mutants: tests that must be able to fail, shown failing. For each bug below, put it into the
source tree, run the one test that must catch it, and restore the file (also when interrupted).

    .venv/bin/python tests/mutants.py        # prints one line per mutant: caught or NOT caught

Exit status 1 when a mutant is not caught. Not part of the default test run (each mutant runs
pytest once, about a minute in all); run it after changing one of the tests it names.
"""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MUTANTS = [
    ("prompts: keep one turn fewer than fits", "src/emoreg/prompts.py",
     "            best, lo = (mid, prompt), mid + 1\n", "            best, lo = (mid - 1, attempt(history - mid + 1)[1]), mid + 1\n",
     "tests/test_prompts.py::test_the_budget_search_drops_exactly_the_fewest_turns"),
    ("generate: unmatched answers not counted", "src/emoreg/models/llm/generate.py",
     "                unmatched += 1\n", "                unmatched += 0\n",
     "tests/test_llm.py::test_zero_shot_and_generation_modes"),
    ("stats: p-value ignores the permutations", "src/emoreg/evaluation/stats.py",
     '"p": float((extreme + 1) / (n_perm + 1))', '"p": float(1 / (n_perm + 1))',
     "tests/test_stats.py::test_permutation_test_identical_and_different_systems"),
    ("units: a fold run as a unit writes its probabilities reversed", "src/emoreg/evaluation/runner.py",
     "zip(test, proba)]", "zip(test, proba[:, ::-1] if units is not None else proba)]",
     "tests/test_units.py::test_grid_units_run_anywhere_then_collect_equal_a_local_grid"),
    ("llm: cross-parameter checks dropped", "src/emoreg/models/llm/model.py",
     '        """Settings that are each valid but do not go together."""\n',
     '        """Settings that are each valid but do not go together."""\n        return []\n',
     "tests/test_runner.py::test_llm_settings_that_do_not_go_together_fail_at_config_read_all_at_once"),
    ("runner: one test segment joins the training set", "src/emoreg/evaluation/runner.py",
     "        train, test = fold.split(segments)\n", "        train, test = fold.split(segments)\n        train = train + test[:1]\n",
     "tests/test_runner.py::test_no_test_subject_ever_reaches_fit"),
    ("last_token: the query rotated as if at position 0", "src/emoreg/models/llm/last_token.py",
     "cos[0, last][:, None], sin[0, last][:, None]", "cos[0, :1].expand(batch, -1)[:, None], sin[0, :1].expand(batch, -1)[:, None]",
     "tests/test_llm_head.py::test_the_top_layer_at_the_last_token_is_the_whole_layer_read_there"),
    ("last_token: padding keys attended", "src/emoreg/models/llm/last_token.py",
     "attn_mask=seen,", "attn_mask=None,",
     "tests/test_llm_head.py::test_the_top_layer_at_the_last_token_is_the_whole_layer_read_there"),
    ("ensemble: members reused across folds", "src/emoreg/models/ensemble.py",
     "            member = make_model(spec[\"model\"], self.task, self.prompt, self.seed, spec[\"params\"])\n",
     "            member = getattr(Ensemble, '_m' + spec['name'], None) or make_model(\n"
     "                spec[\"model\"], self.task, self.prompt, self.seed, spec[\"params\"])\n"
     "            setattr(Ensemble, '_m' + spec['name'], member)\n",
     "tests/test_runner.py::test_composite_models_see_no_test_subject"),
]
rows = []
for name, path, old, new, test in MUTANTS:
    f = ROOT / path
    text = f.read_text()
    if text.count(old) != 1:
        sys.exit(f"mutant {name!r}: its target occurs {text.count(old)} times in {path}; update tests/mutants.py")
    f.write_text(text.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test],
                           cwd=ROOT, capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
        last = [line for line in r.stdout.splitlines() if "passed" in line or "failed" in line][-1:]
        rows.append((name, test, "caught" if r.returncode != 0 else "NOT caught", last[0] if last else r.stdout[-200:]))
    finally:
        f.write_text(text)
for row in rows:
    print(" | ".join(row))
sys.exit(1 if any(row[2] != "caught" for row in rows) else 0)
