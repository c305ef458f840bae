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
