"""Evaluation commands: evaluate (here, on Ray or as SLURM arrays), collect, ablate, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import distributed
from ..errors import EmoregError
from ..runs import RunFolder


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate, load_config
    from ..runs import finished_folds, read_json

    config = load_config(args.config, args.overrides)
    command = " ".join(["emoreg", *sys.argv[1:]])
    if args.track == "mlflow" and distributed.is_main():  # a store that cannot be used fails before the run
        from ..tracking import check_store

        check_store(args.out)
    if args.executor != "local":
        evaluate(config, args.out, command=command, units=[])  # the run folder and its folds, written once
        folds = [f["fold"] for f in read_json(RunFolder(args.out).folds_file) if f["run"] and
                 (args.folds is None or f["fold"] in args.folds)]
    if args.executor == "slurm":
        from ..evaluation.executors import slurm_instructions, write_slurm

        settings = [str(args.config.resolve()), "--out", str(args.out.resolve())]
        settings += [f"--set={o}" for o in args.overrides]
        units, collect = write_slurm(args.out, args.out.name, [["evaluate", *settings, "--fold", str(k)] for k in folds],
                                     ["collect", str(args.out.resolve())], args.slurm_options)
        print(slurm_instructions(units, collect, len(folds)))
        return 0
    if args.executor == "ray":
        from ..evaluation.executors import check_failures, run_ray

        check_failures(run_ray([(config, args.out, k, f"fold {k}") for k in folds], args.ray_address,
                                args.unit_cpus, args.unit_gpus))
        if args.folds is None:
            evaluate(config, args.out, collect_only=True)
    run = args.out if args.executor == "ray" else evaluate(config, args.out, command=command, units=args.folds)
    if not distributed.is_main():
        return 0  # the main process reports
    if args.track == "mlflow":
        _track(run)
    if not RunFolder(run).metrics_file.is_file():
        print(f"fold(s) {finished_folds(run)} finished; run the others, then `emoreg collect {run}`")
        print(run.resolve())
        return 0
    return _print_metrics(run)


def _track(run: Path) -> None:
    """Log a run to MLflow; a failure here never fails the finished run, it says how to log again."""
    from ..tracking import log_run

    try:
        ids = log_run(run)
    except Exception as exc:  # noqa: BLE001 - the run is done and kept whatever MLflow does
        reason = " ".join(str(exc).split())[:300]
        print(f"mlflow: logging {run} failed ({type(exc).__name__}: {reason}); the run itself is finished. "
              "Log it again with the same command and --track mlflow (finished folds are not rerun)", file=sys.stderr)
        return
    print(f"mlflow: run {ids['parent']} with {len(ids['folds'])} fold run(s)")


def _print_metrics(run: Path) -> int:
    from ..runs import read_json

    metrics = read_json(RunFolder(run).metrics_file)
    for name in ("macro_f1", "accuracy", "uar"):
        m = metrics["pooled"][name]
        print(f"{name:<9} {m['value']:.3f}  95% CI [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] "
              f"(bootstrap over {metrics['n_subjects']} subjects)")
    print(run.resolve())
    return 0


def cmd_collect(args: argparse.Namespace) -> int:

    from ..evaluation import evaluate
    from ..evaluation.config import config_from_dict

    path = RunFolder(args.run).config_file
    if not path.is_file():
        raise EmoregError(f"{args.run} is not a run folder (no config.yaml)")
    from ..yamlio import read_yaml

    config = config_from_dict(read_yaml(path, "run config"), str(path))
    evaluate(config, args.run, collect_only=True)
    return _print_metrics(args.run)


def cmd_ablate(args: argparse.Namespace) -> int:
    from ..evaluation.ablation import budget_note, grid_units, load_grid, run_cell, run_grid
    from ..report_ablation import write_ablation_report

    cells = load_grid(args.config, args.sources, args.subsets, args.overrides)
    note = budget_note(cells)
    if note:
        print(note, file=sys.stderr)
    command = " ".join(["emoreg", *sys.argv[1:]])
    if args.track == "mlflow":
        from ..evaluation.ablation import cell_dir
        from ..tracking import check_store

        for cell in cells:
            check_store(cell_dir(args.out, cell))
    if args.folds is not None and not args.cells:
        raise EmoregError("--fold needs --cell: a unit of a grid is one fold of one cell (see --list-units)")
    if args.cells:
        known = {c.key: c for c in cells}
        unknown = [k for k in args.cells if k not in known]
        if unknown:
            raise EmoregError(f"no cell {', '.join(unknown)} in this grid; its cells: {', '.join(known)}")
        for key in args.cells:
            status = run_cell(known[key], args.out, folds=args.folds, command=command)
            print(f"{key}: {status['status']}" + (f" ({status['reason']})" if "reason" in status else ""))
        return 0
    if args.list_units or args.executor != "local":
        units = grid_units(cells, args.out, command)
        if args.list_units:
            for cell, fold in units:
                print(cell.key, fold)
            return 0
        if args.executor == "slurm":
            from ..evaluation.executors import slurm_instructions, write_slurm

            grid = [str(args.config.resolve()), "--out", str(args.out.resolve()), "--subsets", args.subsets]
            grid += ([f"--sources={args.sources}"] if args.sources else []) + [f"--set={o}" for o in args.overrides]
            script, collect = write_slurm(args.out, args.out.name,
                                          [["ablate", *grid, "--cell", c.key, "--fold", str(k)] for c, k in units],
                                          ["ablate", *grid, "--collect"], args.slurm_options)
            print(slurm_instructions(script, collect, len(units)))
            return 0
        from ..evaluation.ablation import cell_dir, run_cell_unit
        from ..evaluation.executors import check_failures, run_ray

        check_failures(run_ray([(c.config, cell_dir(args.out, c), k, f"{c.key} fold {k}") for c, k in units],
                                args.ray_address, args.unit_cpus, args.unit_gpus, run_unit=run_cell_unit))
    state = run_grid(cells, args.out, command=command, collect_only=args.collect or args.executor == "ray")
    if args.track == "mlflow":
        from ..evaluation.ablation import cell_dir

        for cell in cells:
            if RunFolder(cell_dir(args.out, cell)).config_file.is_file():
                _track(cell_dir(args.out, cell))
    report = write_ablation_report(args.out).resolve() if state["cells"] else None
    if state["missing"]:
        raise EmoregError(f"{len(state['missing'])} cell(s) of {args.out} are not finished:\n  " +
                          "\n  ".join(state["missing"]) + "\nrun their units (the same command without "
                          "--collect runs them here)" + (f"; the report covers the finished ones: {report}" if report else ""))
    print(report)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..reporting import write_report

    path = write_report(args.runs, args.out, finished_folds=args.finished_folds, members=args.members)
    print(path.resolve())
    return 0
