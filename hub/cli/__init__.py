"""The ``feedback-hub`` command line (click).

May import anything of the hub, but lazily: ``feedback-hub --help`` must not
pay for SQLAlchemy, Flask or the plugins (``tests/test_startup.py``).
"""

from hub.cli.commands import main

__all__ = ["main"]
