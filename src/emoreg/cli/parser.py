"""The command line's arguments: one sub-command per job, with its help text."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__


def _port(text: str) -> int:
    """A TCP port number (argparse turns the ValueError into a one-line usage error)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {port}")
    return port


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True,
                   help="annomi, deep-example, a segments .jsonl file, or a CSV mapping .yaml")
    p.add_argument("--task", default=None,
                   help="a built-in task (deep-shame, annomi-client-talk, annomi-therapist, "
                        "annomi-therapist-fine) or a task YAML file; default: the corpus's own task")


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
    p.add_argument("--count", default="words",
                   help="what the budget counts: words (words and punctuation, the default) or a tokenizer's "
                        "model name or folder, e.g. smollm2-135m (an evaluation's prompt.count)")
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
                        "else a local SQLite store ./mlflow.db); a resumed run continues the same MLflow runs")

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
    p.add_argument("--held-out", action="store_true",
                   help="with a fold model an evaluation saved (RUN/folds/fold-NN-model, save_models: true): only "
                        "the segments of that fold's test subjects, which the model never saw")
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
                   help="also report each member of an ensemble run (seeds, depths, models) as a run of its own "
                        "(the same fits), and how far the members spread")

    p = sub.add_parser("import", help="segments from OpenFace/py-feat, Whisper/SRT/VTT/ELAN, NOVA, CSV tables")
    p.add_argument("--config", type=Path, required=True, help="import YAML (see examples/import/import.yaml)")
    p.add_argument("--out", type=Path, required=True, help="segments JSONL to write")

    p = sub.add_parser("serve", help="serve a trained model over HTTP for live sessions")
    p.add_argument("model_dir", type=Path, help="a folder written by `emoreg train`")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000, help="TCP port, 1-65535 (default 8000)")
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

    p = sub.add_parser("play", help="replay recorded sessions into a running service (demonstrations)")
    p.add_argument("corpus", help="the recorded sessions: a segments JSONL file (what `emoreg import` writes) or "
                                  "deep-example")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default http://127.0.0.1:8000)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="1: as fast as the session happened (default); 10: ten times faster")
    p.add_argument("--session", dest="sessions", action="append", default=None, metavar="SESSION_ID",
                   help="replay only this recorded session (repeatable; default: all, one after another)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="file holding the service's API token (default: $EMOREG_API_TOKEN)")

    p = sub.add_parser("data", help="download corpora")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = data_sub.add_parser("fetch", help="download a corpus and verify its checksums")
    f.add_argument("name", choices=["annomi"])
    f.add_argument("--dest", type=Path, default=None,
                   help="data folder (default: $EMOREG_DATA_DIR, else the user cache)")
    return parser


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
