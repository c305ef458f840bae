"""Where the memory of one fold of an LLM config goes: resident memory stage by stage.

    python benchmarks/llm_memory.py configs/llm/annomi-llm-head18.yaml [--fold 0] [--cold] [--set KEY=VALUE ...]

Runs one fold of the config (``split.only=[fold]``) in this process, exactly as ``emoreg evaluate``
does, into a temporary run folder, and samples this process's resident memory every 50 ms from
``/proc/self/status``: anonymous memory (the heap: weights, states, activations, allocator slack)
apart from file-backed pages (memory-mapped files such as the state cache's shards, which the
kernel can drop and read back when memory runs short). The stages are marked where the run
enters and leaves them: loading the model, the states entering the tuned layers (training
prompts), the training, the test prompts' states and the scoring. For each stage it prints the
highest anonymous and total resident memory seen in it and the anonymous memory at its end;
last, the peak resident memory of the whole fold (``VmHWM``, what ``/usr/bin/time -v`` reports).

``--cold`` points the state cache at an empty temporary folder, so the fold computes every state
(a fold of a fresh machine); by default the cache at ``$EMOREG_STATE_CACHE`` or
``~/.cache/emoreg/states`` is used as ``emoreg evaluate`` would. Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

GIB = 2 ** 30


def status() -> dict[str, float]:
    """This process's resident memory in GiB: anonymous, file-backed, and the peak so far."""
    text = Path("/proc/self/status").read_text()
    kib = {k: int(re.search(rf"^{k}:\s+(\d+)", text, re.M).group(1)) for k in ("RssAnon", "RssFile", "VmRSS", "VmHWM")}
    return {"anon": kib["RssAnon"] * 1024 / GIB, "file": kib["RssFile"] * 1024 / GIB,
            "rss": kib["VmRSS"] * 1024 / GIB, "peak": kib["VmHWM"] * 1024 / GIB}


class Sampler:
    """Samples ``status()`` in a thread; ``stage(name)`` starts a new stage."""

    def __init__(self, every: float = 0.05):
        self.every, self.rows, self._stop = every, [], threading.Event()
        self._current = None
        self.stage("start")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stage(self, name: str) -> None:
        now = status()
        if self._current is not None:
            self._current.update(end_anon=now["anon"], seconds=time.perf_counter() - self._current["began"])
        self._current = {"stage": name, "began": time.perf_counter(), "max_anon": now["anon"],
                         "max_rss": now["rss"], "start_rss": now["rss"], "end_anon": now["anon"]}
        self.rows.append(self._current)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            now, row = status(), self._current
            row["max_anon"] = max(row["max_anon"], now["anon"])
            row["max_rss"] = max(row["max_rss"], now["rss"])

    def close(self) -> list[dict]:
        self._stop.set()
        self._thread.join()
        self.stage("end")
        return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "began"}
                for r in self.rows[:-1]]


def _mark(sampler: Sampler, module, name: str, before: str, after: str | None = None) -> None:
    """Wrap ``module.name`` so that calling it starts stage ``before`` (and returning, ``after``)."""
    inner = getattr(module, name)

    def wrapped(*args, **kwargs):
        sampler.stage(before)
        try:
            return inner(*args, **kwargs)
        finally:
            if after:
                sampler.stage(after)

    setattr(module, name, wrapped)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--cold", action="store_true", help="compute every state (an empty state cache)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as emoreg evaluate --set")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emoreg-memory-") as tmp:
        if args.cold:
            os.environ["EMOREG_STATE_CACHE"] = str(Path(tmp) / "states")
        sampler = Sampler()
        from emoreg.evaluation.config import load_config
        from emoreg.evaluation.runner import evaluate
        from emoreg.models.llm import head, model

        sampler.stage("imports done, corpus and prompts")
        _mark(sampler, model, "load_base", "load the model", "prompts, set-up")
        states, fit, predict = head.entering_states, head.fit_head, head.predict_head
        mode = {"now": "fit"}

        def entering(clf, prefixes, start, also=()):
            sampler.stage(f"{mode['now']}: states entering layer {start} ({len(prefixes)} prompts)")
            try:
                return states(clf, prefixes, start, also=also)
            finally:
                sampler.stage("training" if mode["now"] == "fit" else "scoring")

        def in_mode(name, inner):
            def wrapped(*args, **kwargs):
                mode["now"] = name
                return inner(*args, **kwargs)
            return wrapped

        head.entering_states = entering
        head.fit_head, head.predict_head = in_mode("fit", fit), in_mode("predict", predict)
        config = load_config(args.config, [*args.set, f"split.only=[{args.fold}]", "save_models=false"])
        began = time.perf_counter()
        evaluate(config, Path(tmp) / "run")
        seconds = time.perf_counter() - began
        rows = sampler.close()
    result = {"config": args.config, "fold": args.fold, "cold": args.cold, "overrides": args.set,
              "seconds": round(seconds, 1), "stages": rows, "peak_rss_gib": round(status()["peak"], 3),
              "malloc": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}
    width = max(len(r["stage"]) for r in rows)
    print(f"{'stage':<{width}}  {'seconds':>8}  {'max anon':>9}  {'max rss':>8}  {'anon at end':>11}  (GiB)")
    for r in rows:
        print(f"{r['stage']:<{width}}  {r['seconds']:8.1f}  {r['max_anon']:9.2f}  {r['max_rss']:8.2f}  {r['end_anon']:11.2f}")
    print(f"peak resident memory of the fold: {result['peak_rss_gib']:.2f} GiB in {seconds:.0f} s")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
