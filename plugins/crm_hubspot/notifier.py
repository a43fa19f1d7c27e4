"""Invitations through HubSpot: the link goes onto the customer's contact, a HubSpot workflow sends it.

Some teams want every message to a customer to leave from the CRM (its
templates, its sending domain, its e-mail log on the contact).  This notifier
writes the invitation onto the contact - the survey link, its kind and the
unsubscribe link - in properties a HubSpot workflow watches ("when
``feedback_hub_survey_link`` is known or changes: send the re-survey e-mail").
The hub still decides whom to invite and when (contact rules, cooldown,
opt-out); HubSpot only delivers.  The customer's address is their HubSpot
contact id (identity kind ``crm_id``), which the sink learns when it pushes the
callback.  The properties must exist in the portal (Settings > Properties).
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar
from urllib.parse import quote

from hub.sdk import FatalError, HttpError, RetriableError, Setting
from hub.sdk.notifiers import DeliveryError, Message, Notifier


class HubSpotPropertyNotifier(Notifier):
    plugin_name = "crm_hubspot_property"
    channel = "crm_id"
    description = "Invitation links written to HubSpot contact properties; a HubSpot workflow sends them"
    default_base_url = "https://api.hubapi.com"
    rate_limit = (100, 10.0)
    settings: ClassVar[list[Setting]] = [
        Setting("token", secret=True, required=True, help="private app access token (pat-...)"),
        Setting("link_property", default="feedback_hub_survey_link", help="contact property for the survey link"),
        Setting("kind_property", default="feedback_hub_survey_kind", help="contact property for resurvey/survey/review"),
        Setting("unsubscribe_property", default="feedback_hub_unsubscribe_link",
                help="contact property for the opt-out link the workflow's e-mail must carry"),
        Setting("sent_at_property", default="feedback_hub_survey_sent_at", help="contact property for when it was asked"),
    ]

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.get('token', '')}"}

    def send(self, message: Message) -> str:
        cfg = self.config
        sent_at = dt.datetime.fromtimestamp(self.clock.time(), dt.UTC).isoformat(timespec="seconds")
        properties = {cfg["link_property"]: message.link, cfg["kind_property"]: message.kind,
                      cfg["unsubscribe_property"]: message.unsubscribe_url, cfg["sent_at_property"]: sent_at}
        try:
            self.http.request("PATCH", f"/crm/v3/objects/contacts/{quote(message.to, safe='')}",
                              json={"properties": properties})
        except FatalError as exc:
            # 401: a token fixed in the config brings it back; 404: the contact is gone; 400: a property missing.
            raise DeliveryError(f"HubSpot refused the contact update: {exc}", retriable=exc.status == 401) from None
        except RetriableError as exc:
            raise DeliveryError(f"HubSpot unavailable: {exc}", retriable=True,
                                retry_after=getattr(exc, "retry_after", None)) from None
        except HttpError as exc:
            raise DeliveryError(f"HubSpot: {exc}", retriable=True) from None
        return f"hubspot-contact-{message.to}-{sent_at}"
