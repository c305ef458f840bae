"""What one prompt budget keeps under each count (``prompt.count``): for every segment of a corpus,
the history turns the budget keeps when it counts words and punctuation (what TF-IDF on the prompt
counts under ``count: model``) and when it counts a tokenizer's tokens (what an LLM counts), how
often the two keep different history, and the tokenizer's tokens per word of the prompts.

    EMOREG_DATA_DIR=../shared/data python benchmarks/prompt_budget.py --budgets 128 192

Prints one JSON line per budget. Reads only the tokenizer, never the model's weights (a shipped
model is resolved to its folder once, as a run would).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="annomi")
    parser.add_argument("--task", default=None, help="default: the corpus's own task")
    parser.add_argument("--tokenizer", default="smollm2-135m", help="a short model name or a model folder")
    parser.add_argument("--budgets", type=int, nargs="+", default=[128, 192])
    parser.add_argument("--sources", default="context,history,utterance")
    parser.add_argument("--template", default="emoreg-v1-compact")
    args = parser.parse_args(argv)

    from emoreg.corpora import load_corpus
    from emoreg.models.base import prompt_counter
    from emoreg.prompts import PromptConfig, approx_token_count, render_prompt

    corpus = load_corpus(args.corpus, args.task)
    segments = corpus.segments
    history = np.array([max(len(s.transcript or ()) - 1, 0) for s in segments])
    out = []
    for budget in args.budgets:
        config = PromptConfig(sources=args.sources, max_tokens=budget, template=args.template)
        words = [render_prompt(s, corpus.task, config) for s in segments]
        count = prompt_counter(PromptConfig(count=args.tokenizer))
        tokens = [render_prompt(s, corpus.task, config, count_tokens=count) for s in segments]
        kept_words = history - np.array([p.dropped_turns for p in words])
        kept_tokens = history - np.array([p.dropped_turns for p in tokens])
        out.append({
            "corpus": args.corpus, "task": corpus.task.name, "budget": budget, "tokenizer": args.tokenizer,
            "segments": len(segments), "turns_kept_counting_words": round(float(kept_words.mean()), 2),
            "turns_kept_counting_tokens": round(float(kept_tokens.mean()), 2),
            "share_with_different_history": round(float(np.mean(kept_words != kept_tokens)), 3),
            "tokens_per_word": round(float(np.mean([count(p.text) / max(approx_token_count(p.text), 1)
                                                     for p in words])), 2)})
        print(json.dumps(out[-1]))
    return out


if __name__ == "__main__":
    main()
