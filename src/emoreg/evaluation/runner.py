"""Cross-subject evaluation: one fresh model per fold, predictions and metrics into a run folder.

Interrupted work resumes: every finished fold is a file of its own, written atomically, and a
second call with the same configuration and data skips the folds that are done. Each fold's
model is seeded the same way whether or not earlier folds ran in this process, so a resumed run
gives the same predictions as an uninterrupted one.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .. import distributed, heap
from ..atomic import atomic_write_text
from ..corpora import load_corpus
from ..errors import EmoregError
from ..models.llm import numerics
from ..progress import progress
from ..runs import RunFolder, environment, fold_path, prediction_row, read_config, read_json, write_json, write_jsonl
from ..segments import source_counts
from ..yamlio import dump_yaml
from .config import EvalConfig
from .results import fold_results
from .splits import Fold, make_folds


def evaluate(config: EvalConfig, out: str | Path, command: str = "", units: list[int] | None = None,
             collect_only: bool = False) -> Path:
    """Run (or resume) the evaluation of ``config`` into the run folder ``out``.

    ``units``: run only these folds (one unit of work each, for spreading a run over machines);
    metrics are written once every fold is finished, by whichever call finishes last or by
    ``collect_only`` (which fits nothing and says which folds are missing)."""
    out = Path(out)
    corpus = load_corpus(config.corpus, config.task)
    segments = corpus.segments
    unlabelled = sum(1 for s in segments if s.label is None)
    if unlabelled:
        raise EmoregError(f"{corpus.name}: {unlabelled} segment(s) have no label; evaluation needs "
                          "labelled segments")
    split = config.split
    within = None
    if split.get("within_fold") is not None:  # a validation split: fold K's test subjects never enter
        outer = make_folds(segments, split["kind"], split.get("folds"), config.split_seed)
        k = split["within_fold"]
        if k not in {f.index for f in outer}:
            raise EmoregError(f"split.within_fold is {k} but the split has folds 0-{len(outer) - 1}")
        held_out = set(outer[k].test_subjects)
        kept = [s for s in segments if s.subject_id not in held_out]
        within = {"fold": k, "excluded_subjects": len(held_out), "excluded_segments": len(segments) - len(kept)}
        segments = kept
    all_folds = make_folds(segments, split["kind"], split.get("folds"), config.split_seed)
    folds = all_folds
    if split.get("only"):
        unknown = sorted(set(split["only"]) - {f.index for f in all_folds})
        if unknown:
            raise EmoregError(f"split.only names fold(s) {unknown} but the split has folds 0-{len(all_folds) - 1}")
        folds = [f for f in all_folds if f.index in set(split["only"])]
    resolved = config.to_dict() | {"task": corpus.task.name}
    data = {"corpus": corpus.name, "task": corpus.task.name, "files": corpus.files,
            "notes": corpus.notes, "source_notes": corpus.source_notes,
            "n_segments": len(segments), "n_subjects": len({s.subject_id for s in segments}),
            "sources_present": source_counts(segments)}
    if within is not None:
        data["within_fold"] = within
    # in a distributed run (see emoreg.distributed) the main process writes, the others check
    if distributed.is_main():
        _start_or_resume(out, resolved, data, all_folds, {f.index for f in folds}, command)
    distributed.barrier()
    if not distributed.is_main():
        _start_or_resume(out, resolved, data, all_folds, {f.index for f in folds}, command)
    if units is not None:
        unknown = sorted(set(units) - {f.index for f in folds})
        if unknown:
            raise EmoregError(f"--fold {unknown}: this run has folds {[f.index for f in folds]}")
    todo = [] if collect_only else [f for f in folds if units is None or f.index in units]

    config.prompt_config()  # a bad prompt section fails before any fold
    bar = progress(todo, desc=f"{config.model} folds", unit="fold")
    for fold in bar:
        done = fold_path(out, fold.index)
        if done.is_file():
            continue
        train, test = fold.split(segments)
        model = proba = None  # the previous fold's model goes before this fold's is built
        if distributed.world_size() == 1:  # precaution: a forced collection once aborted a 2-process run
            heap.release()
        model = config.build_model(corpus.task)
        checkpoint = fold_path(out, fold.index, ".checkpoint")
        if hasattr(model, "checkpoint_dir"):  # long fits save their state there and resume from it
            model.checkpoint_dir = checkpoint
        started = time.perf_counter()
        bar.set_postfix_str(f"fold {fold.index}: fit on {len(train)}")
        model.fit(train)
        fitted = time.perf_counter()
        bar.set_postfix_str(f"fold {fold.index}: predict {len(test)}")
        proba = model.predict_proba(test)
        predicted = time.perf_counter()
        if not distributed.is_main():
            continue
        if config.save_models:
            from ..models.sealing import seal

            seal(model.save(fold_path(out, fold.index, "-model")))
        labels = corpus.task.labels
        rows = [prediction_row(s, p, labels, fold=fold.index) for s, p in zip(test, proba)]
        write_json(fold_path(out, fold.index, ".meta.json"), {
            "n_train": len(train), "n_test": len(test), "fit_seconds": fitted - started,
            "predict_seconds": predicted - fitted,
            "train_subjects": len({s.subject_id for s in train}),
            "model": model.describe() if hasattr(model, "describe") else {}})
        write_jsonl(done, rows)  # last: its presence marks the fold as finished
        shutil.rmtree(checkpoint, ignore_errors=True)
    bar.close()
    if not distributed.is_main():
        return out

    missing = [f.index for f in folds if not fold_path(out, f.index).is_file()]
    if missing:
        if collect_only:
            raise EmoregError(f"{out}: fold(s) {missing} are not finished; run them with "
                              f"`emoreg evaluate CONFIG --out {out} --fold K` (or without --fold for all)")
        return out  # other units are still to come
    rows, metrics = fold_results(out, [f.index for f in folds], list(corpus.task.labels), config.seed,
                                 len(all_folds))
    folder = RunFolder(out)
    write_jsonl(folder.predictions_file, rows)
    write_json(folder.metrics_file, metrics)
    return out


def _start_or_resume(out: Path, resolved: dict, data: dict, folds: list[Fold], run: set[int], command: str) -> None:
    folder = RunFolder(out)
    folds_json = [{"fold": f.index, "run": f.index in run, "test_subjects": list(f.test_subjects)} for f in folds]
    if folder.config_file.is_file():
        previous = read_config(out)
        if previous != resolved:
            changed = sorted(k for k in set(previous) | set(resolved) if previous.get(k) != resolved.get(k))
            raise EmoregError(f"{out} holds a run of a different configuration (differs in: "
                              f"{', '.join(changed)}); use another --out folder or delete {out}")
        if read_json(folder.data_file)["files"] != data["files"] or read_json(folder.folds_file) != folds_json:
            raise EmoregError(f"{out} was made from different data or folds; use another --out folder")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(folder.environment_file, environment(numerics()))
    write_json(folder.data_file, data)
    write_json(folder.folds_file, folds_json)
    atomic_write_text(folder.command_file, command + "\n")
    atomic_write_text(folder.config_file, dump_yaml(resolved))
