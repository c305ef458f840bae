"""The ``emoreg`` command line: parse, call the library, map user errors to exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__, distributed
from .errors import EmoregError


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True,
                   help="annomi, deep-example, a segments .jsonl file, or a CSV mapping .yaml")
    p.add_argument("--task", default=None,
                   help="a built-in task (deep-shame, annomi-client-talk, annomi-therapist) or a "
                        "task YAML file; default: the corpus's own task")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emoreg",
        description="Recognise emotion-regulation strategies from behaviour with LLMs.",
    )
    parser.add_argument("--version", action="version", version=f"emoreg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate a corpus and summarise it")
    _add_corpus_args(p)
    p.add_argument("--out", type=Path, default=None,
                   help="also write summary.json, summary.txt, labels.png and sample prompts here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("prompts", help="print the prompts of a corpus")
    _add_corpus_args(p)
    p.add_argument("--sources", default="all",
                   help="comma-separated sources: context, person, transcript (= history, "
                        "utterance), nonverbal, introspection, or all (default)")
    p.add_argument("--limit", type=int, default=3, help="how many prompts to print (default 3)")
    p.add_argument("--max-tokens", type=int, default=512,
                   help="token budget per prompt; the oldest turns go first (default 512)")
    p.add_argument("--subject", default=None, help="only segments of this subject")
    p.add_argument("--template", default="emoreg-v1", help="prompt layout: emoreg-v1 (default) or emoreg-v1-compact")

    p = sub.add_parser("evaluate", help="cross-subject evaluation of one model")
    p.add_argument("config", type=Path, help="evaluation YAML (see configs/)")
    p.add_argument("--out", type=Path, required=True, help="run folder (resumed when it exists)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set params.C=0.5 --set split.folds=10")
    p.add_argument("--fold", dest="folds", type=int, action="append", default=None, metavar="K",
                   help="run only fold K (repeatable); `emoreg collect RUN` computes the metrics once all are done")
    executor_arguments(p, "fold")
    p.add_argument("--processes", type=int, default=1, metavar="N", help=PROCESSES_HELP)
    p.add_argument("--track", choices=["mlflow"], default=None,
                   help="also log the run to MLflow: a parent run, a child run per fold ($MLFLOW_TRACKING_URI, "
                        "else ./mlruns); a resumed run continues the same MLflow runs")

    p = sub.add_parser("collect", help="compute the metrics of a run whose folds ran separately")
    p.add_argument("run", type=Path, help="run folder")

    p = sub.add_parser("train", help="fit one model on every segment of a corpus and save it")
    p.add_argument("config", type=Path, help="evaluation YAML; its split is ignored")
    p.add_argument("--out", type=Path, required=True, help="model folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--processes", type=int, default=1, metavar="N", help=PROCESSES_HELP)
    p.add_argument("--evaluated", type=Path, default=None, metavar="RUN",
                   help="a finished `emoreg evaluate` run of this config: its cross-subject metrics go into "
                        "the model's MODEL_CARD.md")

    p = sub.add_parser("predict", help="label new segments with a saved model")
    p.add_argument("model_dir", type=Path, help="a folder written by `emoreg train`")
    p.add_argument("--corpus", required=True, help="segments (.jsonl, a CSV mapping, annomi, ...); labels optional")
    p.add_argument("--out", type=Path, required=True, help="predictions JSONL to write")
    p.add_argument("--explain", action="store_true",
                   help="for each segment, how each information source moved each label's probability "
                        "(occlusion: scored again without it); a summary and a figure beside --out")
    p.add_argument("--export", choices=["elan", "nova", "csv"], default=None,
                   help="also write the predictions for the annotation tools: a copy of each session's ELAN file "
                        "with an emoreg:<task> tier, NOVA annotations, or a CSV")
    p.add_argument("--export-dir", type=Path, default=None,
                   help="folder for --export (default: beside --out, named after it)")

    p = sub.add_parser("ablate", help="one evaluation per subset of information sources, and a report")
    p.add_argument("config", type=Path, help="evaluation YAML, optionally with `models: [{name, model, params}]`")
    p.add_argument("--out", type=Path, required=True, help="grid folder (resumed when it exists)")
    p.add_argument("--sources", default=None, help="the sources to ablate (default: the config's prompt.sources)")
    p.add_argument("--subsets", default="leave-one-out",
                   help="all, leave-one-out (default), or subsets like 'all;context,utterance'")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--cell", dest="cells", action="append", default=None, metavar="KEY",
                   help="run only this cell, e.g. tfidf--context+utterance (repeatable; see --list-units)")
    p.add_argument("--fold", dest="folds", type=int, action="append", default=None, metavar="K",
                   help="with --cell: run only fold K of it (repeatable): one unit of work")
    p.add_argument("--list-units", action="store_true", help="print the unfinished units (cell fold) and stop")
    p.add_argument("--collect", action="store_true",
                   help="fit nothing: gather the units run elsewhere, write grid.json and the report")
    p.add_argument("--track", choices=["mlflow"], default=None,
                   help="also log every cell to MLflow: a parent run per cell, a child run per fold")
    executor_arguments(p, "unit (cell x fold)")

    p = sub.add_parser("report", help="tables, paired tests and figures from finished runs")
    p.add_argument("runs", nargs="+", type=Path, help="run folders; the first is the reference")
    p.add_argument("--out", type=Path, required=True, help="folder for report.md and the figures")
    p.add_argument("--finished-folds", action="store_true",
                   help="interim report of runs still in progress: compare them on the folds all have finished")
    p.add_argument("--members", action="store_true",
                   help="also report each member of an ensemble run as a run of its own (the same fits)")

    p = sub.add_parser("import", help="segments from OpenFace/py-feat, Whisper/SRT/VTT/ELAN, NOVA, CSV tables")
    p.add_argument("--config", type=Path, required=True, help="import YAML (see examples/import/import.yaml)")
    p.add_argument("--out", type=Path, required=True, help="segments JSONL to write")

    p = sub.add_parser("serve", help="serve a trained model over HTTP for live sessions")
    p.add_argument("model_dir", type=Path, help="a folder written by `emoreg train`")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--db", type=Path, default=Path("emoreg-sessions.sqlite"),
                   help="SQLite file for sessions and predictions (default: ./emoreg-sessions.sqlite)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="file holding the API token (default: $EMOREG_API_TOKEN; none: no auth)")
    p.add_argument("--explain", action="store_true",
                   help="explain every post (occlusion per source: a few more model calls each) and show the "
                        "source that moved its label most on the page")
    p.add_argument("--public-docs", action="store_true",
                   help="serve /docs and /openapi.json without the token (with a token they are off by "
                        "default; without one everything is public anyway)")

    p = sub.add_parser("data", help="download corpora")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = data_sub.add_parser("fetch", help="download a corpus and verify its checksums")
    f.add_argument("name", choices=["annomi"])
    f.add_argument("--dest", type=Path, default=None,
                   help="data folder (default: $EMOREG_DATA_DIR, else the user cache)")
    return parser


def cmd_check(args: argparse.Namespace) -> int:
    from .corpora import load_corpus
    from .summary import format_summary, plot_labels_per_subject, summarise

    corpus = load_corpus(args.corpus, args.task)
    summary = summarise(corpus)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if args.out is not None:
        from .atomic import atomic_write_text
        from .prompts import render_prompt

        out: Path = args.out
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(out / "summary.txt", format_summary(summary) + "\n")
        plot_labels_per_subject(corpus, out / "labels.png")
        sample = corpus.segments[:: max(1, len(corpus.segments) // 3)][:3]
        atomic_write_text(out / "prompts.txt", "\n\n".join(
            f"=== {s.segment_id} (label: {s.label})\n{render_prompt(s, corpus.task).text}" for s in sample) + "\n")
        print(out.resolve())
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from .corpora import load_corpus
    from .prompts import PromptConfig, render_prompt

    if args.limit < 1:
        raise EmoregError(f"--limit must be at least 1, got {args.limit}")
    config = PromptConfig(sources=args.sources, max_tokens=args.max_tokens, template=args.template)
    corpus = load_corpus(args.corpus, args.task)
    segments = corpus.segments
    if args.subject is not None:
        segments = [s for s in segments if s.subject_id == args.subject]
        if not segments:
            raise EmoregError(f"no segments of subject {args.subject!r} in {corpus.name}")
    for segment in segments[: args.limit]:
        prompt = render_prompt(segment, corpus.task, config)
        budget = f", {prompt.dropped_turns} oldest turns dropped" if prompt.dropped_turns else ""
        over = ", OVER BUDGET" if prompt.over_budget else ""
        print(f"=== {segment.segment_id} | subject {segment.subject_id} | label {segment.label} | "
              f"~{prompt.n_tokens} tokens{budget}{over}")
        print(prompt.text)
        print()
    return 0


def _check_failures(failures: list[str]) -> None:
    if failures:
        raise EmoregError("unit(s) failed twice (the others finished; run the same command again to "
                          "redo only these):\n  " + "\n  ".join(failures))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, load_config
    from .runs import finished_folds, read_json

    config = load_config(args.config, args.overrides)
    command = " ".join(["emoreg", *sys.argv[1:]])
    if args.executor != "local":
        evaluate(config, args.out, command=command, units=[])  # the run folder and its folds, written once
        folds = [f["fold"] for f in read_json(args.out / "folds.json") if f["run"] and
                 (args.folds is None or f["fold"] in args.folds)]
    if args.executor == "slurm":
        from .evaluation.executors import write_slurm

        settings = [str(args.config.resolve()), "--out", str(args.out.resolve())]
        settings += [f"--set={o}" for o in args.overrides]
        units, collect = write_slurm(args.out, args.out.name, [["evaluate", *settings, "--fold", str(k)] for k in folds],
                                     ["collect", str(args.out.resolve())], args.slurm_options)
        print(f"{len(folds)} units: sbatch {units}\nthen: sbatch --dependency=afterok:<array job id> {collect}")
        print(units.parent.resolve())
        return 0
    if args.executor == "ray":
        from .evaluation.executors import run_ray

        _check_failures(run_ray([(config, args.out, k, f"fold {k}") for k in folds], args.ray_address,
                                args.unit_cpus, args.unit_gpus))
        if args.folds is None:
            evaluate(config, args.out, collect_only=True)
    run = args.out if args.executor == "ray" else evaluate(config, args.out, command=command, units=args.folds)
    if not distributed.is_main():
        return 0  # the main process reports
    if args.track == "mlflow":
        from .tracking import log_run

        ids = log_run(run)
        print(f"mlflow: run {ids['parent']} with {len(ids['folds'])} fold run(s)")
    if not (run / "metrics.json").is_file():
        print(f"fold(s) {finished_folds(run)} finished; run the others, then `emoreg collect {run}`")
        print(run.resolve())
        return 0
    return _print_metrics(run)


def _print_metrics(run: Path) -> int:
    from .runs import read_json

    metrics = read_json(run / "metrics.json")
    for name in ("macro_f1", "accuracy", "uar"):
        m = metrics["pooled"][name]
        print(f"{name:<9} {m['value']:.3f}  95% CI [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] "
              f"(bootstrap over {metrics['n_subjects']} subjects)")
    print(run.resolve())
    return 0


def cmd_collect(args: argparse.Namespace) -> int:

    from .evaluation import evaluate
    from .evaluation.config import config_from_dict

    path = args.run / "config.yaml"
    if not path.is_file():
        raise EmoregError(f"{args.run} is not a run folder (no config.yaml)")
    from .yamlio import read_yaml

    config = config_from_dict(read_yaml(path, "run config"), str(path))
    evaluate(config, args.run, collect_only=True)
    return _print_metrics(args.run)


def cmd_train(args: argparse.Namespace) -> int:
    from .corpora import load_corpus
    from .evaluation import load_config
    from .model_card import write_card

    config = load_config(args.config, args.overrides)
    corpus = load_corpus(config.corpus, config.task)
    if args.evaluated is not None:  # a wrong run fails now, not after the fit
        from .model_card import _check_same_config
        from .runs import load_run

        _check_same_config(config.to_dict(), load_run(args.evaluated).config, args.evaluated)
    model = config.build_model(corpus.task)
    model.fit(corpus.segments)
    if distributed.is_main():
        folder = model.save(args.out)
        write_card(folder, config.to_dict(), corpus, args.evaluated)
        print(folder.resolve())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .corpora import load_corpus
    from .models import load_model
    from .runs import prediction_row, write_jsonl

    model = load_model(args.model_dir)
    corpus = load_corpus(args.corpus, model.task)
    proba = model.predict_proba(corpus.segments)
    rows = [prediction_row(s, p, model.labels_) for s, p in zip(corpus.segments, proba)]
    if args.explain:
        from .explain import occlusion, plot_summary, summarise

        for row, explained in zip(rows, occlusion(model, corpus.segments, proba)):
            row["explain"] = explained
    write_jsonl(args.out, rows)
    if args.export:
        from .exporters import export

        folder = args.export_dir or args.out.with_name(f"{args.out.stem}-{args.export}")
        for path in export(corpus.segments, rows, model.task, args.export, folder):
            print(f"{args.export}: {path.resolve()}")
    if args.explain:
        summary = summarise(rows, "predicted")
        for by in ("predicted", "gold"):
            for cls, per in summarise(rows, by).items():
                parts = ", ".join(f"{source} {share:.0%}" for source, share in sorted(per.items(), key=lambda x: -x[1]))
                print(f"{by} {cls}: share of p({cls}) lost without each source: {parts}")
        figure = plot_summary(summary, args.out.with_suffix(".explain.png"),
                              "Which source carried each predicted class (occlusion)")
        print(figure.resolve())
    labelled = [r for r in rows if "gold" in r]
    if labelled:
        accuracy = sum(r["gold"] == r["predicted"] for r in labelled) / len(labelled)
        print(f"{len(rows)} segments labelled; accuracy on the {len(labelled)} with a gold label: {accuracy:.3f}")
    else:
        print(f"{len(rows)} segments labelled")
    print(args.out.resolve())
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .evaluation.ablation import grid_units, load_grid, run_cell, run_grid
    from .report_ablation import write_ablation_report

    cells = load_grid(args.config, args.sources, args.subsets, args.overrides)
    command = " ".join(["emoreg", *sys.argv[1:]])
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
            from .evaluation.executors import write_slurm

            grid = [str(args.config.resolve()), "--out", str(args.out.resolve()), "--subsets", args.subsets]
            grid += ([f"--sources={args.sources}"] if args.sources else []) + [f"--set={o}" for o in args.overrides]
            script, collect = write_slurm(args.out, args.out.name,
                                          [["ablate", *grid, "--cell", c.key, "--fold", str(k)] for c, k in units],
                                          ["ablate", *grid, "--collect"], args.slurm_options)
            print(f"{len(units)} units: sbatch {script}\nthen: sbatch --dependency=afterok:<array job id> {collect}")
            print(script.parent.resolve())
            return 0
        from .evaluation.ablation import cell_dir, run_cell_unit
        from .evaluation.executors import run_ray

        _check_failures(run_ray([(c.config, cell_dir(args.out, c), k, f"{c.key} fold {k}") for c, k in units],
                                args.ray_address, args.unit_cpus, args.unit_gpus, run_unit=run_cell_unit))
    state = run_grid(cells, args.out, command=command, collect_only=args.collect or args.executor == "ray")
    if args.track == "mlflow":
        from .evaluation.ablation import cell_dir
        from .tracking import log_run

        for cell in cells:
            if (cell_dir(args.out, cell) / "config.yaml").is_file():
                log_run(cell_dir(args.out, cell))
    report = write_ablation_report(args.out).resolve() if state["cells"] else None
    if state["missing"]:
        raise EmoregError(f"{len(state['missing'])} cell(s) of {args.out} are not finished:\n  " +
                          "\n  ".join(state["missing"]) + "\nrun their units (the same command without "
                          "--collect runs them here)" + (f"; the report covers the finished ones: {report}" if report else ""))
    print(report)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .reporting import write_report

    path = write_report(args.runs, args.out, finished_folds=args.finished_folds, members=args.members)
    print(path.resolve())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .errors import ValidationError
    from .importers.join import import_segments
    from .segments import check_segments, segment_from_dict, write_segments
    from .summary import format_summary, summarise

    corpus = import_segments(args.config)
    problems: list = []  # what is written must read back: the segments' own validation, before writing
    for segment in corpus.segments:
        segment_from_dict(segment.to_dict(), f"{args.config}: segment {segment.segment_id}", problems, corpus.task)
    if problems:
        raise ValidationError(str(args.config), problems)
    check_segments(corpus.segments, corpus.task, str(args.config))
    print(format_summary(summarise(corpus)))
    write_segments(args.out, corpus.segments)
    print(args.out.resolve())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .models import load_model
    from .serve.app import create_app, read_token
    from .serve.store import Store

    model = load_model(args.model_dir)  # once; a folder that holds no model fails here, readably
    try:
        token = read_token(args.token_file)
    except (OSError, ValueError) as exc:
        raise EmoregError(f"cannot read the API token: {exc}") from None
    Store.check(args.db)
    print(f"emoreg: serving {args.model_dir} on http://{args.host}:{args.port}/ "
          f"({'API token required' if token else 'no API token: anyone who reaches the port can use it'})",
          file=sys.stderr)
    uvicorn.run(create_app(model, args.db, token, public_docs=args.public_docs, explain_live=args.explain),
                host=args.host, port=args.port, log_level="warning")
    return 0


def executor_arguments(p: argparse.ArgumentParser, unit: str) -> None:
    p.add_argument("--executor", choices=["local", "ray", "slurm"], default="local",
                   help=f"local: run here (default); ray: one Ray task per {unit}; "
                        f"slurm: write a job-array script with one task per {unit} and a collect script")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--unit-cpus", type=float, default=1, help="CPUs per Ray task (default 1)")
    p.add_argument("--unit-gpus", type=float, default=0, help="GPUs per Ray task (default 0)")
    p.add_argument("--slurm-option", dest="slurm_options", action="append", default=[], metavar="OPTION",
                   help="an #SBATCH line for the scripts, e.g. --slurm-option=--gres=gpu:1")


PROCESSES_HELP = ("train data-parallel over N processes on this machine with Accelerate (one per GPU, or "
                  "CPU processes with gloo); the same as `accelerate launch --multi_gpu --num_processes N "
                  "-m emoreg ...`")


def relaunch(argv: list[str], processes: int) -> int:
    """Run this command again under `accelerate launch` over ``processes`` processes (each sees
    WORLD_SIZE and runs its share instead of launching again)."""
    import subprocess

    from .distributed import launch_command

    return subprocess.call(launch_command(processes, argv))


def cmd_data(args: argparse.Namespace) -> int:
    from .corpora.annomi import fetch_annomi

    for line in fetch_annomi(args.dest):
        print(line)
    return 0


COMMANDS = {"check": cmd_check, "prompts": cmd_prompts, "evaluate": cmd_evaluate, "collect": cmd_collect, "train": cmd_train,
            "predict": cmd_predict, "ablate": cmd_ablate, "report": cmd_report,
            "import": cmd_import, "serve": cmd_serve,
            "data": cmd_data}


FOLDER_OUT = {"check", "evaluate", "train", "ablate", "report"}  # their --out is a folder; predict and import write a file


def _check_out(args: argparse.Namespace) -> None:
    """An --out of the wrong kind is refused before any work: a file where a folder goes, a folder
    where a file goes, or a place inside a file."""
    out = getattr(args, "out", None)
    if out is None:
        return
    out = Path(out)
    if args.command in FOLDER_OUT and out.exists() and not out.is_dir():
        raise EmoregError(f"--out {out} is a file; `emoreg {args.command}` writes a folder there: give a new path")
    if args.command not in FOLDER_OUT and out.is_dir():
        raise EmoregError(f"--out {out} is a folder; `emoreg {args.command}` writes a file: give a file path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EmoregError(f"--out {out}: {parent} is a file, so nothing can be written under it")
            break


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    processes = getattr(args, "processes", 1)
    if processes < 1:
        parser.error(f"--processes must be at least 1, got {processes}")
    if processes > 1 and getattr(args, "executor", "local") != "local":
        parser.error("--processes runs here; with --executor ray or slurm give each unit its GPUs instead "
                     "(--unit-gpus, --slurm-option=--gres=gpu:N)")
    if processes > 1 and os.environ.get("WORLD_SIZE") is None:
        return relaunch(argv, processes)
    finished = False
    try:
        _check_out(args)
        code = COMMANDS[args.command](args)
        finished = True
        return code
    except EmoregError as exc:
        if args.debug:
            raise
        print(f"emoreg: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (`emoreg check | head`): not an error of ours
        sys.stderr.close()
        return 141
    except OSError as exc:  # a path the command could not read or write: permissions, a full disk, ...
        if args.debug:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"emoreg: error: cannot use{where}: {exc.strerror or exc}; check the path, its permissions and the "
              "free space (work finished so far is kept; rerun the same command to go on)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emoreg: interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown(wait=finished)


if __name__ == "__main__":
    sys.exit(main())
