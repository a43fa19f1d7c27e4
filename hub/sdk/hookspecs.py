"""The one plugin contract of feedback-hub.

Every hook the core calls is specified here, with when it is called and what it
returns.  Hooks are always called with keyword arguments, so a spec's argument
list may grow without breaking plugins (a plugin implements only the arguments
it needs).  ``docs/plugin_hooks.md`` documents each hook for plugin authors and
``tests/test_hookspecs.py`` fails when a hook lacks a section there or a test.

The core's own behaviour ships as default plugins (``hub/defaults/*``),
registered before entry-point plugins, so any of it can be replaced or extended.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    import click
    import flask

    from hub.sdk.connectors import CrmSink, Emulator, SourceConnector
    from hub.sdk.notifiers import Notifier
    from hub.sdk.schema import (
        CaseView,
        Escalation,
        FeedbackIn,
        FeedbackView,
        FollowupView,
        IdentityKind,
        ScoringContext,
        Signal,
    )

PROJECT = "feedback_hub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(historic=True)
def hub_configure(config: dict[str, Any]) -> None:
    """Called once per app after the configuration is loaded and validated.

    Historic: a plugin registered later still receives the call.  ``config`` is
    the merged configuration (read-only by convention).  Returns nothing.
    """


@hookspec
def hub_register_connectors() -> list[type[SourceConnector]]:
    """Called when the app builds its registry of source plugin kinds.

    Return a list of :class:`hub.sdk.connectors.SourceConnector` subclasses.  Each
    class's ``plugin_name`` is what ``plugin = "..."`` in a ``[sources.*]``
    table refers to.  All results are collected.
    """


@hookspec
def hub_register_crm_sinks() -> list[type[CrmSink]]:
    """Called when the app builds its registry of sink plugin kinds.

    Return a list of :class:`hub.sdk.connectors.CrmSink` subclasses; ``plugin_name``
    is what ``[sinks.*] plugin = "..."`` refers to.  All results are collected.
    """


@hookspec
def hub_register_routes(app: flask.Flask) -> list[flask.Blueprint] | None:
    """Called once while the app is created, after the core's blueprints.

    Return blueprints to register on ``app`` (or register them yourself and
    return None).  Webhooks do not need this: ``/webhooks/<instance>`` already
    dispatches to the instance's connector.
    """


@hookspec
def hub_register_commands(cli: click.Group) -> None:
    """Called when the ``feedback-hub`` CLI is assembled.

    Add commands to ``cli`` (``@cli.command()``).  Returns nothing.
    """


@hookspec
def hub_register_notifiers() -> list[type[Notifier]]:
    """Called when the app builds its notifiers (the ``[notifiers.*]`` instances).

    Return a list of :class:`hub.sdk.notifiers.Notifier` subclasses; ``plugin_name``
    is what ``[notifiers.<name>] plugin = "..."`` refers to.  All results are
    collected.  The core calls a notifier's ``send`` from the invitation outbox
    (re-surveys, proactive invitations, promoter requests), after the contact
    rules allowed the message.
    """


@hookspec
def hub_register_emulators() -> list[Emulator]:
    """Called by ``feedback-hub sandbox`` and by demo mode.

    Return :class:`hub.sdk.connectors.Emulator` objects: a local stand-in for a
    vendor's API (a Flask blueprint) plus the demo instance configuration that
    points the plugin's real connector at it.  All results are collected.
    """


@hookspec
def hub_register_identity_kinds() -> list[IdentityKind]:
    """Called once when the app builds its registry, before any item is ingested.

    Return :class:`hub.sdk.schema.IdentityKind` objects for the kinds of
    identity your source puts in ``CustomerRef.handles`` (a social network's
    username or user id): whether a customer known by one can be called or mailed
    back (``reachable``), how people read it (``label``, ``display``) and how
    to normalize a value so equal identities match.  All results are
    collected; the core's own kinds (email, phone, crm_id) come from the
    default plugin ``hub.defaults.identity``, and a later registration of the
    same name replaces an earlier one.  Identities of undeclared kinds are
    stored as given and never make a customer reachable.
    """


@hookspec
def hub_enrich_feedback(item: FeedbackIn, config: dict[str, Any]) -> dict[str, Any] | None:
    """Called for each new item after normalization, before identity and scoring.

    Not called for duplicates.  Return a dict of :class:`~hub.sdk.schema.FeedbackIn`
    fields to fill (e.g. ``{"language": "nl"}``) or None.  Every implementation
    gets the item as the source normalized it (none sees another's answer).
    They are called in pluggy's order - the plugin registered last first, so
    test and entry-point plugins before the core's ``hub.defaults.enrich``;
    ``tryfirst``/``trylast`` move one to the front or back - and for each field
    the first non-None value in that order wins.  A field the source already
    set is never overwritten; ``extra`` is merged key by key by the same rule.
    """


@hookspec
def hub_score_feedback(item: FeedbackIn, context: ScoringContext) -> list[Signal] | None:
    """Called for each new item to collect risk signals.

    Return a list of :class:`hub.sdk.schema.Signal` (name, weight 0-100, human
    detail) or None.  All results are collected; the core sums the weights into
    the item's risk (capped at 100) and keeps every signal as a reason.
    """


@hookspec
def hub_enrich_feedback_batch(items: list[FeedbackIn], config: dict[str, Any]) -> list[dict[str, Any] | None] | None:
    """The batch form of :func:`hub_enrich_feedback`: one call per ingest batch.

    Return one answer per item, in the order of ``items`` (each what
    ``hub_enrich_feedback`` would return for it), or None for no answers.  The
    pipeline calls a plugin that implements this form only through it, in the
    place its ``hub_enrich_feedback`` has in the order (the same rules
    combine the answers); a plugin with only the per-item form is called per
    item as before.  Implement both when other callers (``feedback-hub score``)
    should see your enrichment too.
    """


@hookspec
def hub_score_feedback_batch(items: list[FeedbackIn], contexts: list[ScoringContext]
                             ) -> list[list[Signal] | None] | None:
    """The batch form of :func:`hub_score_feedback`: one call per ingest batch.

    ``contexts[i]`` is the :class:`~hub.sdk.schema.ScoringContext` of
    ``items[i]``.  Return one list of signals (or None) per item, in order, or
    None for no signals at all.  Used by the pipeline in place of the plugin's
    ``hub_score_feedback`` (at its place in the order, so reasons keep their
    order); a plugin with only the per-item form is called per item.
    """


@hookspec(firstresult=True)
def hub_decide_escalation(
    item: FeedbackIn, category: str | None, risk: int, signals: list[Signal], config: dict[str, Any],
    now: dt.datetime,
) -> Escalation | None:
    """Called for each new item after scoring; the first non-None result wins.

    ``now`` is the hub's clock at ingest (compare ``item.occurred_at`` with it,
    not with the wall clock, so replays and tests decide the same way).

    Return :class:`hub.sdk.schema.Escalation` saying whether to open (or merge into)
    a case, its priority and whether to schedule a follow-up.  The core's
    default implementation is ``trylast`` so any plugin can take precedence.
    """


@hookspec
def hub_feedback_ingested(item: FeedbackView) -> None:
    """Event: called after the transaction that stored a new item committed.

    Not called for duplicates.  Returns nothing; exceptions are logged, never
    undo the ingest.
    """


@hookspec
def hub_case_opened(case: CaseView) -> None:
    """Event: called after a new case was committed.  Returns nothing."""


@hookspec
def hub_followup_pushed(followup: FollowupView, external_id: str) -> None:
    """Event: called after a sink accepted a follow-up and the hub recorded it."""


@hookspec
def hub_followup_completed(followup: FollowupView, outcome: str | None) -> None:
    """Event: called after a follow-up was completed (in the CRM or in the hub)
    and its case moved to ``contacted``.  The loop-closure step hangs on it."""


@hookspec
def hub_sla_breached(case: CaseView, team: str | None, lead: str | None, late_by_hours: float) -> None:
    """Event: called once per case, after the SLA sweep found it past its
    business-hours deadline without a first contact and committed its
    escalation (priority one step up, owner ``lead``, the team lead of
    ``[teams.<team>]`` when configured).  ``late_by_hours`` counts business
    hours.  Notify someone here (a chat message, a pager); returns nothing.
    """
