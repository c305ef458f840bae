"""How many tokens the states pass through the frozen layers would run under each way of reusing keys
and values, for every prompt of a corpus: counted, not timed (the tokenizer only, never the weights).

Consecutive prompts of a conversation share most of their tokens, so a pass could reuse more than the
system message and instruction that every prompt of a batch begins with (emoreg's pass, ``states.py``).
This counts what each scheme would run, padding included (a padded token costs what a real one does):

- ``whole``: every prompt run whole, batches of ``--batch`` sorted by length;
- ``shared``: emoreg's pass: the same batches, the prefix common to a batch run once (and not again
  when the next batch begins with it); on the sliding history, the reference of ``fewer_than_emoreg``;
- ``reuse``: one prompt at a time in conversation order, each reusing the keys and values of what it
  has in common with the prompt before (batch 1: small matmuls, slower per token);
- ``streams-G``: ``--batch`` rows, each walking its own stretch of the conversations in order and
  reusing its previous prompt's keys and values, every step's rows run in at most G forward calls of
  rows of similar length (each call padded to its longest row).

Each under two histories: ``sliding`` (emoreg's prompts: the fewest oldest turns dropped that make a
prompt fit, so once a conversation fills the budget every new turn shifts the history and the prefix
shared with the prompt before ends where the history starts) and ``block`` (hold the first kept turn
while the prompt fits; when it overflows, drop turns until it fits in ``--keep`` of the budget: the
prefix stays put between drops, at the price of less context on average, a change of the prompts
that would need the quality guard).

    EMOREG_DATA_DIR=../shared/data python benchmarks/prefix_reuse.py --model smollm2-135m --max-tokens 192

Prints one JSON line per history and scheme.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections import defaultdict


def block_prompts(segments, task, config, count, keep: float) -> list[str]:
    """The prompts under the block history: per session in order, the first kept turn held while the
    prompt fits the budget, moved on until the prompt fits ``keep`` of it when it overflows."""
    from emoreg.prompts import _render

    out, dropped, session = [], 0, None
    for s in segments:
        if s.session_id != session:
            session, dropped = s.session_id, 0
        history = max(len(s.transcript or ()) - 1, 0)
        dropped = min(dropped, history)
        text = _render(s, task, config, dropped)[0]
        if count(text) > config.max_tokens:
            while dropped < history and count(_render(s, task, config, dropped)[0]) > keep * config.max_tokens:
                dropped += 1
            text = _render(s, task, config, dropped)[0]
        out.append(text)
    return out


def common(a, b) -> int:
    """Leading tokens ``a`` shares with ``b``, ``a`` keeping at least its last one (the states pass's own
    count, ``states._common``)."""
    from emoreg.models.llm.states import _common

    return 0 if b is None else _common(a, [b], min(len(a) - 1, len(b)))


def _batches(ids: list, batch: int) -> list:
    """The states pass's batches: the distinct prompts sorted by length, ``batch`` at a time."""
    todo = sorted({tuple(p) for p in ids}, key=len)
    return [todo[at:at + batch] for at in range(0, len(todo), batch)]


def whole_pass(ids: list, batch: int) -> tuple[int, int]:
    """Tokens run (padding included) and forward calls when every prompt runs whole."""
    batches = _batches(ids, batch)
    return sum(len(rows) * max(map(len, rows)) for rows in batches), len(batches)


def shared_pass(ids: list, batch: int) -> tuple[int, int]:
    """Tokens run (padding included) and forward calls of emoreg's states pass over ``ids``."""
    from emoreg.models.llm.states import MIN_SHARED, shared_prefix

    run, calls, kept = 0, 0, ()
    for rows in _batches(ids, batch):
        width, prefix = max(map(len, rows)), shared_prefix(rows)
        if prefix >= MIN_SHARED and rows[0][:prefix] == kept:  # the prefix kept from the batch before
            run, calls = run + len(rows) * (width - prefix), calls + 1
        elif prefix >= MIN_SHARED:
            run, calls, kept = run + prefix + len(rows) * (width - prefix), calls + 2, rows[0][:prefix]
        else:
            run, calls = run + len(rows) * width, calls + 1
    return run, calls


def grouped(lengths: list[int], groups: int) -> int:
    """Tokens run when ``lengths`` go in at most ``groups`` calls of similar length, each padded to its
    longest (the split into contiguous runs of the sorted lengths that runs the fewest)."""
    a = sorted(lengths)

    @functools.cache
    def best(i: int, g: int) -> int:
        if i == len(a):
            return 0
        if g == 1:
            return (len(a) - i) * a[-1]
        return min((j - i) * a[j - 1] + best(j, g - 1) for j in range(i + 1, len(a) + 1))

    return best(0, groups)


def streams_pass(ids: list, rows: int, groups: int) -> tuple[int, int]:
    """Tokens run and forward calls when ``rows`` rows each walk a stretch of ``ids`` in order."""
    size = -(-len(ids) // rows)
    stretches = [ids[r * size:(r + 1) * size] for r in range(rows)]
    run = calls = 0
    for step in range(size):
        new = [len(s[step]) - common(s[step], s[step - 1] if step else None) for s in stretches if step < len(s)]
        run, calls = run + grouped(new, groups), calls + min(groups, len(new))
    return run, calls


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="annomi")
    parser.add_argument("--task", default=None, help="default: the corpus's own task")
    parser.add_argument("--model", default="smollm2-135m", help="a short model name or a model folder (its tokenizer)")
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--sources", default="context,history,utterance")
    parser.add_argument("--template", default="emoreg-v1-compact")
    parser.add_argument("--batch", type=int, default=16, help="the states pass's batch (score_batch)")
    parser.add_argument("--keep", type=float, default=0.5, help="block history: a drop refills to this share")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from emoreg.corpora import load_corpus
    from emoreg.models.base import prompt_counter, token_counter
    from emoreg.models.llm.loading import resolve
    from emoreg.models.llm.tokens import chat_ids
    from emoreg.progress import progress
    from emoreg.prompts import PromptConfig, render_prompt

    corpus = load_corpus(args.corpus, args.task)
    tokenizer = AutoTokenizer.from_pretrained(str(resolve(args.model)))
    config = PromptConfig(sources=args.sources, max_tokens=args.max_tokens, template=args.template)
    count = prompt_counter(config, own=token_counter(tokenizer))
    by_session = defaultdict(list)
    for s in corpus.segments:  # conversation order: each session's segments by start time
        by_session[s.session_id].append(s)
    segments = [s for session in by_session.values()
                for s in sorted(session, key=lambda s: (s.start_s is None, s.start_s or 0.0))]
    texts = {"sliding": [render_prompt(s, corpus.task, config, count_tokens=count).text
                         for s in progress(segments, desc="sliding prompts", unit="prompt", leave=False)],
             "block": block_prompts(progress(segments, desc="block prompts", unit="prompt", leave=False),
                                    corpus.task, config, count, args.keep)}
    out, reference = [], None
    for history, prompts in texts.items():
        ids = [tuple(chat_ids(tokenizer, t)) for t in prompts]
        reuse = sum(len(p) - common(p, ids[i - 1] if i else None) for i, p in enumerate(ids))
        schemes = {"whole": whole_pass(ids, args.batch),
                   "shared": shared_pass(ids, args.batch), "reuse": (reuse, len(ids))}
        schemes.update({f"streams-{g}": streams_pass(ids, args.batch, g) for g in args.groups})
        reference = reference or schemes["shared"][0]  # sliding first: its shared pass is the reference
        for scheme, (run, calls) in schemes.items():
            out.append({"corpus": args.corpus, "model": args.model, "budget": args.max_tokens, "history": history,
                        "scheme": scheme, "prompts": len(ids), "prompt_tokens": round(sum(map(len, ids)) / len(ids), 1),
                        "tokens_run_a_prompt": round(run / len(ids), 1),
                        "fewer_than_emoreg": round(reference / run, 2),
                        "prompts_a_call": round(len(ids) / calls, 1)})
            print(json.dumps(out[-1]))
    return out


if __name__ == "__main__":
    main()
