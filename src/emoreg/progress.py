"""Progress bars: shown on a terminal, silent in CI (CI=true) and when output is not a terminal."""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress(iterable=None, **kwargs):
    disable = True if os.environ.get("CI", "").lower() == "true" else None
    return tqdm(iterable, disable=disable, **kwargs)
