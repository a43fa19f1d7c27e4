"""The engine: what happens to feedback between a source and a sink.

Ingest steps (:mod:`hub.engine.pipeline`), raw events and webhook processing
(:mod:`hub.engine.raw_events`), pulls and backfills (:mod:`hub.engine.pulls`),
dispatch of the outbox (:mod:`hub.engine.dispatch`), completion sync
(:mod:`hub.engine.completion`), the callback planner in business time
(:mod:`hub.engine.planner`, :mod:`hub.engine.business_time`, :mod:`hub.engine.teams`,
:mod:`hub.engine.load`), SLA operations (:mod:`hub.engine.sla`), the two-way CRM
sync (:mod:`hub.engine.crm_sync`), the case lifecycle (:mod:`hub.engine.cases`:
the one table of status moves) and what staff do with a case
(:mod:`hub.engine.case_actions`, for the UI and the API alike), the importer, the
scheduler and the executor seam, and the configured instances
(:mod:`hub.engine.registry`).

May import: ``hub.sdk``, ``hub.storage``, ``hub.config``.
Not: ``hub.api``, ``hub.web``, ``hub.cli``, ``hub.demo``, bundled plugins.
"""
