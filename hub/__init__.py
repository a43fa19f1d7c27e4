"""feedback-hub: a self-hosted closed-loop feedback hub.

Public names for plugins: ``hub.hookimpl``, ``hub.sdk.schema``, ``hub.sdk.connectors``,
``hub.sdk.http``.  The app factory is ``hub.create_app`` (``gunicorn 'hub:create_app()'``).
"""

from hub.sdk.hookspecs import hookimpl

__version__ = "0.1.0"


def create_app(*args, **kwargs):
    from hub.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["hookimpl", "create_app", "__version__"]
