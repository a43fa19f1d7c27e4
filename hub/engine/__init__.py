"""The engine: what happens to feedback between a source and a sink.

Ingest steps (:mod:`hub.engine.pipeline`), raw events and webhook processing
(:mod:`hub.engine.raw_events`), pulls and backfills (:mod:`hub.engine.pulls`),
dispatch of the outbox (:mod:`hub.engine.dispatch`), completion sync
(:mod:`hub.engine.completion`), the callback planner, the case lifecycle
(:mod:`hub.engine.cases`: the one table of status moves), the importer, the
scheduler and the executor seam, and the configured instances
(:mod:`hub.engine.registry`).

May import: ``hub.sdk``, ``hub.storage``, ``hub.config``.
Not: ``hub.api``, ``hub.web``, ``hub.cli``, ``hub.demo``, bundled plugins.
"""
