"""``python -m hub.cli`` = ``feedback-hub``."""

from hub.cli import main

main()
