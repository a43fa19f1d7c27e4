"""feedback-hub: a self-hosted closed-loop feedback hub.

Plugins import from :mod:`hub.sdk` only.  The app factory is
``hub.create_app`` (``gunicorn 'hub:create_app()'``).  ``__version__`` is the
one place the version is written (``setup.cfg`` reads it with
``version = attr: hub.__version__``).

This module stays cheap to import (every ``hub.*`` import runs it first), so
``hookimpl`` and ``create_app`` load their modules on first use.
"""

__version__ = "0.1.0"


def create_app(*args, **kwargs):
    from hub.app import create_app as _create_app

    return _create_app(*args, **kwargs)


def __getattr__(name: str):
    if name == "hookimpl":  # kept for plugins written before hub.sdk existed
        from hub.sdk.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["hookimpl", "create_app", "__version__"]
