"""Model commands: train (with its model card), predict (and explain), serve."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import distributed
from ..errors import EmoregError


def cmd_train(args: argparse.Namespace) -> int:
    from ..corpora import load_corpus
    from ..evaluation import load_config
    from ..model_card import write_card

    config = load_config(args.config, args.overrides)
    corpus = load_corpus(config.corpus, config.task)
    if args.evaluated is not None:  # a wrong run fails now, not after the fit
        from ..model_card import check_same_config
        from ..runs import load_run

        check_same_config(config.to_dict(), load_run(args.evaluated).config, args.evaluated)
    model = config.build_model(corpus.task)
    model.fit(corpus.segments)
    if distributed.is_main():
        from ..models.sealing import seal

        folder = seal(model.save(args.out))
        write_card(folder, config.to_dict(), corpus, args.evaluated)
        print(folder.resolve())
    return 0


def held_out(model_dir: Path, segments: list) -> list:
    """The segments of the test subjects of the fold whose saved model is ``model_dir``
    (RUN/folds/fold-NN-model): what that model never saw."""
    from ..runs import fold_of_model, fold_tests

    found = fold_of_model(model_dir)
    if found is None:
        raise EmoregError(f"--held-out needs a fold model saved by an evaluation (RUN/folds/fold-NN-model, "
                          f"with save_models: true); {model_dir} is not one")
    run, fold = found
    subjects = fold_tests(run).get(fold, set())
    chosen = [s for s in segments if s.subject_id in subjects]
    if not chosen:
        raise EmoregError(f"--held-out: no segment of --corpus belongs to the {len(subjects)} test subjects of fold "
                          f"{fold} of {run}; give the corpus that run evaluated")
    return chosen


def cmd_predict(args: argparse.Namespace) -> int:
    from ..corpora import load_corpus
    from ..models import load_model
    from ..runs import prediction_row, write_jsonl

    model = load_model(args.model_dir)
    corpus = load_corpus(args.corpus, model.task)
    segments = held_out(args.model_dir, corpus.segments) if args.held_out else corpus.segments
    proba = model.predict_proba(segments)
    rows = [prediction_row(s, p, model.labels_) for s, p in zip(segments, proba)]
    if args.explain:
        from ..explain import occlusion, plot_summary, summarise

        for row, explained in zip(rows, occlusion(model, segments, proba)):
            row["explain"] = explained
    plan = None
    if args.export:  # planned and checked before anything is written: a failed export leaves nothing
        from ..exporters import plan_export

        folder = args.export_dir or args.out.with_name(f"{args.out.stem}-{args.export}")
        inputs = [args.corpus] if Path(args.corpus).is_file() else []
        plan = plan_export(segments, rows, model.task, args.export, folder, inputs=inputs + [args.out])
    write_jsonl(args.out, rows)
    if plan is not None:
        from ..exporters import write_plan

        for path in write_plan(plan):
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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..models import load_model
    from ..serve.app import create_app
    from ..serve.store import Store

    model = load_model(args.model_dir)  # once; a folder that holds no model fails here, readably
    token = _token(args.token_file)
    Store.check(args.db)
    print(f"emoreg: serving {args.model_dir} on http://{args.host}:{args.port}/ "
          f"({'API token required' if token else 'no API token: anyone who reaches the port can use it'})",
          file=sys.stderr)
    uvicorn.run(create_app(model, args.db, token, public_docs=args.public_docs, explain_live=args.explain),
                host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    from ..corpora import load_corpus
    from ..segment_files import read_segments
    from ..serve.play import Client, play

    # a file's labels are not needed to replay it (the service predicts them): read without a task
    segments = read_segments(args.corpus) if Path(args.corpus).is_file() else load_corpus(args.corpus).segments
    if args.sessions:
        known = {s.session_id for s in segments}
        unknown = sorted(set(args.sessions) - known)
        if unknown:
            raise EmoregError(f"--session {', '.join(unknown)}: not in {args.corpus} (sessions: "
                              f"{', '.join(sorted(known)[:10])}{' ...' if len(known) > 10 else ''})")
        segments = [s for s in segments if s.session_id in set(args.sessions)]
    token = _token(args.token_file)
    play(segments, Client(args.url, token), speed=args.speed)
    return 0


def _token(token_file: Path | None) -> str | None:
    """The API token of ``--token-file`` or $EMOREG_API_TOKEN (None: none), or a clear error."""
    from ..serve.app import read_token

    try:
        return read_token(token_file)
    except (OSError, ValueError) as exc:
        raise EmoregError(f"cannot read the API token: {exc}") from None
