"""Progress bars: a live bar on a terminal; in a log (SLURM, nohup, a pipe) one plain line per
minute (``EMOREG_PROGRESS_SECONDS``, default 60) so long runs show where they are; silent in CI
(CI=true), with ``EMOREG_PROGRESS=off``, and in all but the main process of a distributed run."""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager

from tqdm.auto import tqdm

from .distributed import rank

_CURSOR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # a nested bar moves the cursor up and back


class _Lines:
    """A file for tqdm that turns its carriage-return redraws into whole lines (and drops the cursor
    moves of nested bars, which mean nothing in a log, and a line that repeats the one before)."""

    def __init__(self, stream):
        self.stream = stream
        self.last = None

    def write(self, text: str) -> None:
        for line in _CURSOR.sub("", text).replace("\r", "\n").split("\n"):
            if line.strip() and line.strip() != self.last:
                self.last = line.strip()
                self.stream.write(self.last + "\n")


class _LogBar(tqdm):
    """In a log, a new postfix or description (the loss every few steps) waits for the next timed
    line instead of writing one of its own: one line a minute, as promised."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=False)

    def flush(self) -> None:
        self.stream.flush()


def _mode() -> str:
    """quiet, terminal or log."""
    if (os.environ.get("CI", "").lower() == "true" or os.environ.get("EMOREG_PROGRESS", "").lower() == "off"
            or rank() != 0):
        return "quiet"
    return "terminal" if hasattr(sys.stderr, "isatty") and sys.stderr.isatty() else "log"


def progress(iterable=None, **kwargs):
    mode = _mode()
    if mode == "quiet":
        return tqdm(iterable, disable=True, **kwargs)
    if mode == "terminal":
        return tqdm(iterable, **kwargs)
    seconds = float(os.environ.get("EMOREG_PROGRESS_SECONDS", "60"))
    kwargs = kwargs | {"leave": True}  # in a log, the last line of a finished bar is worth keeping
    return _LogBar(iterable, file=_Lines(sys.stderr), mininterval=seconds, maxinterval=max(seconds, 10 * 60),
                ascii=True, ncols=100, **kwargs)


@contextmanager
def library_bars():
    """Within: the Hugging Face libraries' own bars (loading weights, ...) only on a terminal; in a
    log they would be a line of carriage returns per load."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    if _mode() != "terminal":
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
