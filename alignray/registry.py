"""The one error every name lookup raises: the field, the value received, the closest known name, all known names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["unknown_name"]


def unknown_name(field: str, name: object, known: Iterable[str]) -> ValueError:
    """``ValueError("field='x' is unknown; did you mean 'y'? Known: a, b")`` for the caller to raise."""
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ValueError(f"{field}={name!r} is unknown; {hint}Known: {', '.join(known)}")
