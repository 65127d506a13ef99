"""User-facing errors: one line naming the bad value and the valid choices, exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user. The CLI prints ``error: <message>`` and exits 2."""


def unknown_choice(what: str, value: str, choices: Iterable[str]) -> UserError:
    choices = sorted(choices)
    close = difflib.get_close_matches(str(value).lower(), choices, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserError(f"unknown {what} {value!r}{hint}; valid: {', '.join(choices)}")
