"""Progress bars: shown on a terminal, silent in CI (CI=true), when output is not a terminal, and
in all but the main process of a distributed run."""

from __future__ import annotations

import os

from tqdm.auto import tqdm

from .distributed import rank


def progress(iterable=None, **kwargs):
    quiet = os.environ.get("CI", "").lower() == "true" or rank() != 0
    disable = True if quiet else None
    return tqdm(iterable, disable=disable, **kwargs)
