"""Declared settings of a plugin instance (``[sources.<name>]`` / ``[sinks.<name>]``).

A plugin lists its keys as :class:`Setting` values on its class; the core
(:mod:`hub.engine.registry`) validates a site's table against them at start-up,
so a wrong key, type or out-of-range value stops the hub with file, key and
reason instead of failing at the first pull.  ``feedback-hub plugins --settings``
prints the same declarations, so the documentation cannot drift from the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One configuration key of a plugin instance (declared on the class).

    ``minimum``/``maximum`` bound a number (or the length of a list, and each
    number in it, when ``type`` is ``list``); ``choices`` limits a value to a
    fixed set.  Keep ``help`` to one line: it is what an operator reads.
    """

    name: str
    type: type | tuple[type, ...] = str
    required: bool = False
    default: Any = None
    secret: bool = False
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: Sequence[Any] | None = None
