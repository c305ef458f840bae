"""What each model parameter may be, checked when a config is read (before anything is written).

A rule is ``(what, test)``: ``what`` says in words what the value must be, ``test`` says whether
a value is one. Models list theirs in ``rules``; ``SegmentClassifier.check_params`` reports every
value that breaks one, all at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Rule = tuple[str, Callable[[Any], bool]]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive() -> Rule:
    return "a number above 0", lambda v: _number(v) and v > 0


def at_least(low: float) -> Rule:
    return f"a number of at least {low}", lambda v: _number(v) and v >= low


def share() -> Rule:
    return "a share from 0 up to (not including) 1", lambda v: _number(v) and 0 <= v < 1


def whole(low: int = 1) -> Rule:
    return f"a whole number of at least {low}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def whole_list(low: int = 0) -> Rule:
    """A non-empty list of distinct whole numbers of at least ``low``."""
    def test(v: Any) -> bool:
        return (isinstance(v, list) and bool(v) and len(set(v)) == len(v)
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= low for x in v))

    return f"a non-empty list of distinct whole numbers of at least {low}", test


def choice(*options: Any) -> Rule:
    names = ", ".join("null" if o is None else str(o) for o in options)

    def test(v: Any) -> bool:  # True is not 1 here, nor "1" the number 1
        return any(v is o if isinstance(o, (bool, type(None))) else (type(v) is type(o) and v == o) for o in options)

    return f"one of {names}", test


def text() -> Rule:
    return "a non-empty string", lambda v: isinstance(v, str) and bool(v.strip())


def or_null(rule: Rule) -> Rule:
    what, test = rule
    return f"{what}, or null", lambda v: v is None or test(v)


def broken(rules: dict[str, Rule], params: dict[str, Any]) -> dict[str, str]:
    """Each parameter whose value breaks its rule, with the message that says so."""
    return {key: f"{key} must be {rules[key][0]}, found {value!r}"
            for key, value in params.items() if key in rules and not rules[key][1](value)}
