"""Declared settings of a plugin instance (``[sources.<name>]`` / ``[sinks.<name>]``).

A plugin lists its keys as :class:`Setting` values on its class; the core
(:mod:`hub.engine.registry`) validates a site's table against them at start-up
through :func:`settings_model`, so a wrong key, type or out-of-range value
stops the hub with file, key and reason instead of failing at the first pull.
``feedback-hub plugins --settings`` prints the same declarations, so the
documentation cannot drift from the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
)
from pydantic_core import PydanticCustomError


@dataclass(frozen=True)
class Setting:
    """One configuration key of a plugin instance (declared on the class).

    ``minimum``/``maximum`` bound a number (for a ``list`` setting: each
    number in it); ``choices`` is the set of allowed values (for a ``list``:
    of each element).  Keep ``help`` to one line: it is what an operator
    reads in ``feedback-hub plugins --settings``.
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

    def __post_init__(self) -> None:
        if self.choices is not None:  # a list is what plugins write; keep it immutable
            object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def types(self) -> tuple[type, ...]:
        return self.type if isinstance(self.type, tuple) else (self.type,)

    def type_name(self) -> str:
        return "/".join(t.__name__ for t in self.types)

    def bounds(self) -> str:
        """The declared range or choices as text ('1-1000', '>= 0', 'one of: a, b'), or ''."""
        if self.choices is not None:
            return "one of: " + ", ".join(map(str, self.choices))
        if self.minimum is not None and self.maximum is not None:
            return f"{_num(self.minimum)}-{_num(self.maximum)}"
        if self.minimum is not None:
            return f">= {_num(self.minimum)}"
        if self.maximum is not None:
            return f"<= {_num(self.maximum)}"
        return ""


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


#: Keys every instance takes besides its plugin's own (read by the core).
INSTANCE_SETTINGS: tuple[Setting, ...] = (
    Setting("enabled", type=bool, default=True, help="false: the instance is configured but not started"),
    Setting("schedule_seconds", type=(int, float), minimum=1,
            help="pull every N seconds (default: scheduler.pull_interval_seconds)"),
    Setting("timeout", type=(int, float, list), minimum=0.1, maximum=600,
            help="HTTP timeout in seconds, or [connect, read]"),
    Setting("rate_limit", type=list, minimum=0.001, help="[requests, seconds]: at most that many requests per period"),
)


# -- validation ------------------------------------------------------------------
_STRICT = {bool: StrictBool, int: StrictInt, float: StrictFloat, str: StrictStr, list: list[Any], dict: dict[str, Any]}


def _one_of(choices: Sequence[Any]):
    allowed = list(choices)

    def check(value: Any) -> Any:
        for element in value if isinstance(value, list) else [value]:
            if element not in allowed or isinstance(element, bool) != any(isinstance(c, bool) for c in allowed):
                raise PydanticCustomError("choice", "must be one of {allowed} (got {value})",
                                          {"allowed": ", ".join(map(repr, allowed)), "value": repr(element)})
        return value

    return check


def _within(minimum: float | None, maximum: float | None):
    def check(value: Any) -> Any:
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, bool) or not isinstance(number, int | float):
                continue
            if minimum is not None and number < minimum:
                raise PydanticCustomError("range", "must be at least {minimum} (got {value})",
                                          {"minimum": _num(minimum), "value": repr(number)})
            if maximum is not None and number > maximum:
                raise PydanticCustomError("range", "must be at most {maximum} (got {value})",
                                          {"maximum": _num(maximum), "value": repr(number)})
        return value

    return check


def annotation(setting: Setting) -> Any:
    """The pydantic type of a setting: strict (TOML and JSON values are typed,
    so '5' is not 5, and true is not 1), with its range and choices."""
    # Other types (e.g. datetime.date, a TOML date) are checked with isinstance, as declared.
    members = tuple(_STRICT.get(t) or InstanceOf[t] for t in setting.types)
    kind: Any = members[0] if len(members) == 1 else Union[members]  # noqa: UP007 (built at run time)
    checks = []
    if setting.minimum is not None or setting.maximum is not None:
        checks.append(AfterValidator(_within(setting.minimum, setting.maximum)))
    if setting.choices is not None:
        checks.append(AfterValidator(_one_of(setting.choices)))
    return Annotated[kind, *checks] if checks else kind


def settings_model(name: str, settings: Sequence[Setting]) -> type[BaseModel]:
    """A pydantic model of an instance table: one optional field per setting.

    Required and default values stay with the caller (the registry), which
    knows which keys the table sets and where secrets come from.
    """
    fields = {s.name: (annotation(s) | None, Field(None, description=s.help or None)) for s in settings}
    return create_model(f"{name}_settings", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
                        **fields)
