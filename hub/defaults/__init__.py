"""The core's own behaviour as default plugins (datasette-style): language
and sentiment enrichment, risk scoring, the escalation decision, the ``local``
sink and the core identity kinds.  Registered before any other plugin, and
replaceable like any of them.

May import: ``hub.sdk`` only, exactly like a bundled plugin.
"""
