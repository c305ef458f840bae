"""Spreading units of work over machines. A unit is one fold of a run
(``emoreg evaluate CONFIG --out RUN --fold K``) or one fold of one cell of an ablation grid
(``emoreg ablate CONFIG --out DIR --cell KEY --fold K``); a collect step computes the metrics once
all units are done. Results are the same whichever way the units ran.

``slurm``: a job-array script with one task per unit (a failed unit is retried once, resuming
where it stopped) and a collect script to run after it; nothing is submitted.
``ray``: one Ray task per unit on an existing cluster or a local one, each retried once.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..atomic import atomic_write_text


def write_slurm(folder: Path, name: str, units: list[list[str]], collect: list[str],
                options: list[str] = ()) -> tuple[Path, Path]:
    """``FOLDER/slurm/units.sbatch``, an array with one task per entry of ``units`` (the arguments
    of one emoreg command each, listed in ``units.txt``), and ``collect.sbatch`` running
    ``emoreg COLLECT``. ``$EMOREG`` names the emoreg to run (default: ``emoreg`` on the PATH)."""
    slurm = folder.resolve() / "slurm"
    logs = slurm / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    listing = atomic_write_text(slurm / "units.txt", "".join(shlex.join(u) + "\n" for u in units))
    header = ["#!/bin/bash", f"#SBATCH --job-name=emoreg-{name}", *[f"#SBATCH {o}" for o in options]]
    run = 'eval "$EMOREG $UNIT"'
    script = "\n".join(header + [
        f"#SBATCH --array=0-{len(units) - 1}",
        f"#SBATCH --output={logs}/unit-%a.log",
        "set -u",
        'EMOREG=${EMOREG:-emoreg}',
        f'UNIT=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(str(listing))})',
        f'{run} || {{ echo "unit $SLURM_ARRAY_TASK_ID ($UNIT) failed; retrying once" >&2; {run}; }}',
        "",
    ])
    collect_script = "\n".join(header + [
        f"#SBATCH --output={logs}/collect.log",
        'EMOREG=${EMOREG:-emoreg}',
        f"$EMOREG {shlex.join(collect)}",
        "",
    ])
    return (atomic_write_text(slurm / "units.sbatch", script),
            atomic_write_text(slurm / "collect.sbatch", collect_script))


def slurm_instructions(units: Path, collect: Path, n_units: int) -> str:
    """What to run after ``write_slurm``: the array, then the collect step once it succeeded."""
    return (f"{n_units} units: sbatch {units}\nthen: sbatch --dependency=afterok:<array job id> {collect}\n"
            f"{units.parent.resolve()}")


def check_failures(failures: list[str]) -> None:
    """Units that failed twice (``run_ray``) end the command with an error that says how to redo them."""
    from ..errors import EmoregError

    if failures:
        raise EmoregError("unit(s) failed twice (the others finished; run the same command again to "
                          "redo only these):\n  " + "\n  ".join(failures))


def run_ray(units: list[tuple], address: str | None = None, cpus: float = 1, gpus: float = 0,
            unit_hook=None, run_unit=None) -> list[str]:
    """Run every unit ``(config, out, fold, label)`` as a Ray task (``cpus``/``gpus`` each) on an
    existing cluster (``address``) or a local one on loopback, each retried once if it fails.
    ``run_unit(config, out, fold)`` does one unit (default: one fold of an evaluation);
    ``unit_hook(label)`` runs at the start of every task (logging, fault injection in tests).
    Returns one line per unit that failed twice (the others finished; a rerun does only those).
    Collecting the metrics is the caller's step after it."""
    import ray

    from ..errors import EmoregError

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(2, int(cpus) * len(units)), num_gpus=gpus or None, include_dashboard=False,
                     log_to_driver=False, _node_ip_address="127.0.0.1")

    @ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=1, retry_exceptions=True)
    def unit(settings: dict, out: str, fold: int, label: str) -> str:
        from emoreg.evaluation.config import config_from_dict

        if unit_hook is not None:
            unit_hook(label)
        (run_unit or _evaluate_fold)(config_from_dict(settings, f"ray unit {label}"), Path(out), fold)
        return label

    try:
        refs = {}
        for config, out, fold, label in units:
            settings = config.to_dict()
            if Path(settings["corpus"]).exists():  # workers may start in another folder
                settings["corpus"] = str(Path(settings["corpus"]).resolve())
            refs[label] = (Path(out), unit.remote(settings, str(Path(out).resolve()), fold, label))
        failures = []
        for label, (out, ref) in refs.items():
            try:
                ray.get(ref)
            except Exception as exc:  # reported with its cause and log; the other units still finish
                log = atomic_write_text(out / "logs" / f"ray-{label.replace(' ', '-')}.log", f"{exc}\n")
                last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
                failures.append(f"{label}: {type(exc).__name__}: {last} (traceback: {log})")
    finally:
        if started_here:
            ray.shutdown()
    if units and len(failures) == len(units):
        raise EmoregError("every unit failed twice:\n  " + "\n  ".join(failures))
    return failures


def _evaluate_fold(config, out: Path, fold: int) -> None:
    from .runner import evaluate

    evaluate(config, out, units=[fold])
