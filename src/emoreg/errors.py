"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from dataclasses import dataclass


class EmoregError(Exception):
    """A problem with the user's input, configuration or environment (not a bug in emoreg)."""


class NothingToReadError(EmoregError):
    """The chosen information sources give a model nothing to learn from (e.g. a Bayesian network
    asked to use only the utterance text). Ablation grids record such cells as skipped."""


@dataclass(frozen=True)
class Problem:
    """One problem found while validating input: where it is and what is wrong."""

    where: str  # "file.jsonl:12" or "file.yaml"
    field: str | None  # "transcript[2].speaker", or None for the whole line
    message: str

    def __str__(self) -> str:
        field = f" {self.field}:" if self.field else ""
        return f"{self.where}:{field} {self.message}"


class ValidationError(EmoregError):
    """Every problem found in one input, reported together so they can all be fixed at once."""

    def __init__(self, source: str, problems: list[Problem], limit: int = 50):
        self.source = source
        self.problems = list(problems)
        shown = self.problems[:limit]
        more = len(self.problems) - len(shown)
        lines = [f"{source}: {len(self.problems)} problem(s) found, nothing was written:"]
        lines += [f"  {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))
