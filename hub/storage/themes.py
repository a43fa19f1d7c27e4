"""Themes (drivers) of a feedback item: stored by the enricher in ``extra["themes"]``.

One place reads them from a row and one SQL test filters on them, so the
API and the inbox agree.  ``extra`` is a plain JSON column, and JSON
containment is spelled differently per database: SQLite walks the array with
``json_each``, PostgreSQL uses ``jsonb @>``; both compare whole strings, so
"app" never matches "apparaat".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from hub.storage import models as m


def themes_of_extra(extra: Mapping[str, Any] | None) -> list[str]:
    """The themes stored in an item's ``extra`` (an empty list when none or malformed)."""
    themes = (extra or {}).get("themes") if isinstance(extra, Mapping) else None
    if not isinstance(themes, list):
        return []
    return [t for t in themes if isinstance(t, str)]


class _HasTheme(FunctionElement):
    """``extra`` holds ``theme`` in its ``themes`` array (compiled per dialect below)."""

    type = Boolean()
    inherit_cache = True
    name = "has_theme"


def has_theme(theme: str) -> _HasTheme:
    """A WHERE clause: the feedback item is tagged with ``theme``."""
    return _HasTheme(m.FeedbackItem.extra, theme)


@compiles(_HasTheme, "sqlite")
def _sqlite(element: _HasTheme, compiler, **kw) -> str:
    extra, theme = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXISTS (SELECT 1 FROM json_each({extra}, '$.themes') AS t WHERE t.value = {theme})"


@compiles(_HasTheme, "postgresql")
def _postgresql(element: _HasTheme, compiler, **kw) -> str:
    extra, theme = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST({extra} AS JSONB) -> 'themes') @> jsonb_build_array(CAST({theme} AS TEXT))"
