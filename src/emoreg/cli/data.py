"""Corpus commands: check, prompts, import, data fetch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import EmoregError


def cmd_check(args: argparse.Namespace) -> int:
    from ..corpora import load_corpus
    from ..summary import format_summary, plot_labels_per_subject, summarise

    corpus = load_corpus(args.corpus, args.task)
    summary = summarise(corpus)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if args.out is not None:
        from ..atomic import atomic_write_text
        from ..prompts import render_prompt

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
    from ..corpora import load_corpus
    from ..prompts import PromptConfig, approx_token_count, render_prompt

    if args.limit < 1:
        raise EmoregError(f"--limit must be at least 1, got {args.limit}")
    from ..models.base import prompt_counter

    config = PromptConfig(sources=args.sources, max_tokens=args.max_tokens, template=args.template, count=args.count)
    count = prompt_counter(config)
    corpus = load_corpus(args.corpus, args.task)
    segments = corpus.segments
    if args.subject is not None:
        segments = [s for s in segments if s.subject_id == args.subject]
        if not segments:
            raise EmoregError(f"no segments of subject {args.subject!r} in {corpus.name}")
    for segment in segments[: args.limit]:
        prompt = render_prompt(segment, corpus.task, config, count_tokens=count)
        budget = f", {prompt.dropped_turns} oldest turns dropped" if prompt.dropped_turns else ""
        over = ", OVER BUDGET" if prompt.over_budget else ""
        print(f"=== {segment.segment_id} | subject {segment.subject_id} | label {segment.label} | "
              f"{'~' if count is approx_token_count else ''}{prompt.n_tokens} tokens{budget}{over}")
        print(prompt.text)
        print()
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from ..errors import ValidationError
    from ..importers.join import import_segments
    from ..segment_files import check_segments, write_segments
    from ..segments import segment_from_dict
    from ..summary import format_summary, summarise

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


def cmd_data(args: argparse.Namespace) -> int:
    from ..corpora.annomi import fetch_annomi

    for line in fetch_annomi(args.dest):
        print(line)
    return 0
