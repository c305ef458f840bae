"""Spreading the folds of a run over machines. Every fold is a unit of work
(``emoreg evaluate CONFIG --out RUN --fold K``); ``emoreg collect RUN`` computes the metrics once
all units are done. Results are the same whichever way the units ran.

``slurm``: a job-array script with one task per fold (a failed unit is retried once, resuming
where it stopped) and a collect script to run after it; nothing is submitted.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..atomic import atomic_write_text


def write_slurm(config: Path, out: Path, folds: list[int], options: list[str] = (),
                emoreg: str = "emoreg") -> tuple[Path, Path]:
    """``RUN/slurm/units.sbatch`` (array over ``folds``) and ``RUN/slurm/collect.sbatch``."""
    config, out = config.resolve(), out.resolve()
    logs = out / "slurm" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    unit = f"{emoreg} evaluate {shlex.quote(str(config))} --out {shlex.quote(str(out))} --fold \"$K\""
    header = ["#!/bin/bash", f"#SBATCH --job-name=emoreg-{out.name}", *[f"#SBATCH {o}" for o in options]]
    units = "\n".join(header + [
        f"#SBATCH --array=0-{len(folds) - 1}",
        f"#SBATCH --output={logs}/unit-%a.log",
        "set -u",
        f"FOLDS=({' '.join(str(f) for f in folds)})",
        'K=${FOLDS[$SLURM_ARRAY_TASK_ID]}',
        f'{unit} || {{ echo "unit $K failed; retrying once" >&2; {unit}; }}',
        "",
    ])
    collect = "\n".join(header + [
        f"#SBATCH --output={logs}/collect.log",
        f"{emoreg} collect {shlex.quote(str(out))}",
        "",
    ])
    return (atomic_write_text(out / "slurm" / "units.sbatch", units),
            atomic_write_text(out / "slurm" / "collect.sbatch", collect))


def run_ray(config, out: Path, folds: list[int], address: str | None = None, cpus: float = 1, gpus: float = 0,
            unit_hook=None) -> list[str]:
    """Run every fold as a Ray task (``cpus``/``gpus`` each) on an existing cluster (``address``)
    or a local one on loopback, each retried once if it fails, then compute the metrics.
    ``unit_hook(fold)`` runs at the start of every task (logging, fault injection in tests).
    Returns one line per unit that failed twice (the others finished; a rerun does only those)."""
    import ray

    from ..errors import EmoregError
    from .runner import evaluate

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(2, int(cpus) * len(folds)), num_gpus=gpus or None, include_dashboard=False,
                     log_to_driver=False, _node_ip_address="127.0.0.1")
    settings = config.to_dict()
    if Path(settings["corpus"]).exists():  # workers may start in another folder
        settings["corpus"] = str(Path(settings["corpus"]).resolve())

    @ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=1, retry_exceptions=True)
    def unit(settings: dict, out: str, fold: int) -> int:
        from emoreg.evaluation.config import config_from_dict
        from emoreg.evaluation.runner import evaluate as run_units

        if unit_hook is not None:
            unit_hook(fold)
        run_units(config_from_dict(settings, f"ray unit {fold}"), out, units=[fold])
        return fold

    try:
        refs = {fold: unit.remote(settings, str(out.resolve()), fold) for fold in folds}
        failures = []
        for fold, ref in refs.items():
            try:
                ray.get(ref)
            except Exception as exc:  # reported with its cause; the other units still finish
                failures.append(f"fold {fold}: {type(exc).__name__}: {str(exc).splitlines()[-1] if str(exc) else ''}")
    finally:
        if started_here:
            ray.shutdown()
    if not failures:
        evaluate(config, out, collect_only=True)
    elif len(failures) == len(folds):
        raise EmoregError("every unit failed twice:\n  " + "\n  ".join(failures))
    return failures
