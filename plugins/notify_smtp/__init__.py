"""notify_smtp: the hub's invitations (re-surveys, surveys, review requests) as e-mail over SMTP.

The module is the plugin object pluggy registers (entry point
``notify_smtp = plugins.notify_smtp``); the work lives in :mod:`.notifier`,
the wording in ``data/<kind>.<language>.txt`` (Dutch and English).
"""

from __future__ import annotations

from hub.sdk import hookimpl

from .notifier import SmtpNotifier, render

__all__ = ["SmtpNotifier", "render"]


@hookimpl
def hub_register_notifiers():
    return [SmtpNotifier]
