"""Notifiers: plugins that deliver the hub's outbound messages to customers.

A notifier is configured like a source or a sink, as an instance
(``[notifiers.<name>] plugin = "..."``), and registered through
``hub_register_notifiers``.  The core decides *whom* to invite, *when* and
*whether* (contact rules, cooldown, opt-out, quiet hours); the notifier only
says it, in the customer's language, and delivers it:

.. code-block:: python

    class PigeonNotifier(Notifier):
        plugin_name = "notify_pigeon"
        channel = "email"
        settings = [Setting("loft", required=True)]

        def send(self, message: Message) -> str:
            subject, body = self.render(message)     # your own templates
            return pigeon.fly(message.to, subject, body)   # an id of the delivery

``send`` raises :class:`DeliveryError` when the message did not go out:
``retriable`` (the server is down, greylisting, a 4xx reply) makes the outbox
try again later with backoff; otherwise (a 5xx reply: no such mailbox) the
invitation ends ``dead`` with the error.  A message is sent at most once per
``message.key``: the core claims each outbox row before handing it over, and a
notifier whose channel can deduplicate (an e-mail ``Message-ID``) uses the key
for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from hub.sdk.connectors import _Plugin

#: What an invitation asks for: a re-survey after a callback, a proactive
#: survey, or a promoter's review / referral; ``sla_alert`` tells a team lead
#: (staff, not a customer) that a case breached its SLA.
MESSAGE_KINDS = ("resurvey", "survey", "review", "sla_alert")


@dataclass(frozen=True)
class Message:
    """One message to one customer, as the core asks a notifier to send it.

    Holds facts, not wording: the notifier's templates say it in ``language``
    and sign it with ``company``.  ``link`` is what the customer should open (the
    survey with its hidden fields, or the review page); ``unsubscribe_url``
    opens the hub's opt-out page without a login.
    """

    kind: str
    to: str
    language: str
    company: str
    link: str
    unsubscribe_url: str
    #: Unique per invitation (the outbox's idempotency key).
    key: str
    name: str | None = None
    #: The case a re-survey asks about, if any.
    case_id: int | None = None
    #: Further facts a kind's wording uses (an SLA alert's team, lateness and
    #: risk), as text; never a customer's words.
    details: Mapping[str, str] = field(default_factory=dict)


class DeliveryError(Exception):
    """The message was not delivered; ``retriable`` says whether trying again may help."""

    def __init__(self, message: str, *, retriable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retriable = retriable
        self.retry_after = retry_after


class Notifier(_Plugin):
    """Base class of notifier plugins (e-mail, SMS, a messaging app)."""

    #: What kind of address the notifier needs: an identity kind of the
    #: customer (``email``, ``phone``...).  Customers without one are not invited
    #: through it (recorded with reason ``no_address``).
    channel: ClassVar[str] = "email"

    def send(self, message: Message) -> str:
        """Deliver ``message``; return an id of the delivery (e.g. the Message-ID).

        Raise :class:`DeliveryError` when it did not go out.
        """
        raise NotImplementedError


__all__ = ["MESSAGE_KINDS", "DeliveryError", "Message", "Notifier"]
