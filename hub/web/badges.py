"""The icons, badges and small cells of the web pages, as Python (they were Jinja macros).

Why not macros: an inbox page calls them seven times a row, 350 times a page, and
a Jinja macro call costs ~10 us before it writes a character (arguments, a
frame, a new output buffer); these are dict look-ups and one format each.  The
HTML is what the macros wrote; every value that is not ours is escaped.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from hub.web.filters import localtime, reltime, risk_level, weight
from hub.web.i18n import gettext, signal_label

#: Inline SVG shapes by icon name (no icon font, no CDN); paths are our own simple shapes.
_SHAPES = {
    "survey": (
        '<path d="M6 3h9l4 4v14H6z" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/>'
        '<path d="M9 11h7M9 15h7M9 7h4" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/>'
    ),
    "social": (
        '<path d="M4 5h16v11H9l-5 4z" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/>'
        '<circle cx="9" cy="10.5" r="1.2" fill="currentColor"/>'
        '<circle cx="12" cy="10.5" r="1.2" fill="currentColor"/>'
        '<circle cx="15" cy="10.5" r="1.2" fill="currentColor"/>'
    ),
    "email": (
        '<rect x="3" y="5" width="18" height="14" rx="2" fill="none" stroke="currentColor" stroke-width="1.8"/>'
        '<path d="M3.5 6l8.5 7 8.5-7" fill="none" stroke="currentColor" stroke-width="1.8"/>'
    ),
    "phone": (
        '<path d="M6 3h3l2 5-2.5 1.5a11 11 0 0 0 6 6L16 13l5 2v3a3 3 0 0 1-3 3A15 15 0 0 1 3 6a3 3 0 0 1 3-3z" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/>'
    ),
    "chat": (
        '<path d="M4 4h16v12H8l-4 4z" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/>'
        '<path d="M8 9h8M8 12h5" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/>'
    ),
    "inbox": (
        '<path d="M3 13l3-8h12l3 8v6H3z" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/>'
        '<path d="M3 13h5l1.5 2.5h5L16 13h5" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round"/>'
    ),
    "chart": (
        '<path d="M4 20V4M4 20h16" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/>'
        '<path d="M8 16v-5M12 16V7M16 16v-8" stroke="currentColor" stroke-width="2.4" stroke-linecap="round"/>'
    ),
    "gear": (
        '<circle cx="12" cy="12" r="3.2" fill="none" stroke="currentColor" stroke-width="1.8"/>'
        '<path d="M12 2.5v3M12 18.5v3M2.5 12h3M18.5 12h3M5.3 5.3l2.1 2.1M16.6 16.6l2.1 2.1M5.3 18.7l2.1-2.1M16.6 7.4l2.1-2.1" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/>'
    ),
    "logo": (
        '<path d="M12 3a9 9 0 1 0 8.5 6" fill="none" stroke="currentColor" stroke-width="2.4" stroke-linecap="round"/>'
        '<path d="M20.5 3.5v5.5H15" fill="none" stroke="currentColor" stroke-width="2.4" stroke-linecap="round" stroke-linejoin="round"/>'
        '<circle cx="12" cy="12" r="3" fill="currentColor"/>'
    ),
    "link": (
        '<path d="M14 4h6v6M20 4l-9 9M18 14v6H4V6h6" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"/>'
    ),
    "clock": (
        '<circle cx="12" cy="12" r="8.5" fill="none" stroke="currentColor" stroke-width="1.8"/>'
        '<path d="M12 7v5l3 2" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round"/>'
    ),
    "user": (
        '<circle cx="12" cy="8" r="4" fill="none" stroke="currentColor" stroke-width="1.8"/>'
        '<path d="M4 21a8 8 0 0 1 16 0" fill="none" stroke="currentColor" stroke-width="1.8"/>'
    ),
}
_DEFAULT_SHAPE = '<circle cx="12" cy="12" r="5" fill="currentColor"/>'
_SVG = '<svg class="icon {cls}" viewBox="0 0 24 24" aria-hidden="true" focusable="false">{shape}</svg>'


def icon(name: str, cls: str = "") -> Markup:
    """An inline SVG icon (``cls``: extra CSS classes); an unknown name is a dot."""
    return Markup(_SVG.format(cls=escape(cls), shape=_SHAPES.get(name, _DEFAULT_SHAPE)))


def channel_badge(channel: str) -> Markup:
    label = escape(gettext(channel))
    return Markup(f'<span class="channel channel-{escape(channel)}" title="{label}">{icon(channel)}'
                  f"<span>{label}</span></span>")


def risk_badge(risk: int) -> Markup:
    value = escape(risk)
    return Markup(f'<span class="risk risk-{risk_level(risk)}" title="{escape(gettext("Risk"))} {value}/100">'
                  f"{value}</span>")


def status_badge(status: str | None) -> Markup:
    if status:
        return Markup(f'<span class="status status-{escape(status)}">{escape(gettext(status))}</span>')
    return Markup(f'<span class="status status-none">{escape(gettext("no case"))}</span>')


def _signal(reason: dict) -> str:
    return f'{escape(signal_label(reason.get("signal") or ""))} '


def why(reasons: list[dict]) -> Markup:
    """The two heaviest reasons of a risk, the others in the title of a "+n"."""
    out = [f'<span class="why" title="{escape(s.get("detail", ""))}">{_signal(s)}<b>{escape(weight(s.get("weight")))}'
           f"</b></span>" for s in reasons[:2]]
    if len(reasons) > 2:
        rest = "; ".join(f'{_signal(s)}{escape(weight(s.get("weight")))}: {escape(s.get("detail", ""))}'
                         for s in reasons[2:])
        out.append(f'<span class="why more" title="{rest}">+{len(reasons) - 2}</span>')
    return Markup("".join(out))


#: The case statuses whose SLA still runs.
_SLA_RUNS = ("new", "assigned", "scheduled")


def due(when, status: str | None) -> Markup:
    """The SLA due time as "in 3 h" / "overdue 2 d" (the exact time in its title), or a dash."""
    if when and status in _SLA_RUNS:
        return Markup(f'<span title="{escape(localtime(when))}">{icon("clock")}{escape(reltime(when))}</span>')
    return Markup('<span class="muted">-</span>')


#: What the templates call, as Jinja globals (hub.web.init_app).
TEMPLATE_GLOBALS = {"icon": icon, "channel_badge": channel_badge, "risk_badge": risk_badge,
                    "status_badge": status_badge, "why": why, "due": due}
