"""Importers: segments from the files of the tools people already use."""

from __future__ import annotations

from pathlib import Path


def read_table(path: str | Path, what: str, **options):
    """A CSV as a pandas DataFrame, or an ``EmoregError`` that names the file and says what is
    wrong: not UTF-8, empty, unreadable or malformed. ``what`` names the kind of file."""
    import pandas as pd

    from ..errors import EmoregError

    try:
        return pd.read_csv(path, **options)
    except UnicodeDecodeError as exc:
        raise EmoregError(f"{path}: not UTF-8 text (byte {exc.start + 1}); save the {what} as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise EmoregError(f"{path}: the {what} is empty (no header, no rows)") from None
    except (OSError, pd.errors.ParserError) as exc:
        raise EmoregError(f"cannot read {what} {path}: {exc}") from None
