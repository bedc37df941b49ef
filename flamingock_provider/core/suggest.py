"""Did-you-mean suggestions for unknown keys, templates and targets."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest choice, or a list of valid choices."""
    options = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if options and len(options) <= 12:
        return f" (expected one of: {', '.join(options)})"
    return ""
