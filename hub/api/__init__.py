"""``/api/v1`` (JSON, bearer tokens) and ``/webhooks/<instance>``.

May import: ``hub.sdk``, ``hub.engine``, ``hub.storage``, ``hub.config``.
Not: ``hub.web``, ``hub.cli``, ``hub.demo``, bundled plugins.
"""
