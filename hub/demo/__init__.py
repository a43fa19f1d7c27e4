"""Demo mode (``make run``) and ``feedback-hub sandbox``: every plugin's vendor
emulator mounted locally, demo instances pointed at them, generated feedback.

May import: ``hub.sdk``, ``hub.engine``, ``hub.storage``, ``hub.config``,
``hub.plugin_manager``.  Not: ``hub.web``, ``hub.api``, ``hub.cli``.
"""
