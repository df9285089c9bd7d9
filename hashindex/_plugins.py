"""Entry points of installed packages that extend the core (CLI verbs, bench datasets): the one
place that reads them, so the core names no application."""
from __future__ import annotations

from importlib import metadata
from typing import Any, cast


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The entry points of ``group``, sorted by name (Python 3.9's API too)."""
    found = metadata.entry_points()
    if hasattr(found, "select"):
        points = list(found.select(group=group))
    else:  # Python 3.9: a dict of group -> entry points
        points = list(cast(Any, found).get(group, []))
    return sorted(points, key=lambda e: e.name)
