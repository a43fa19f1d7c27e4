"""``feedback-hub import-load FILE.csv``: an hourly call-volume series for the planner.

The CSV has a header with ``timestamp`` and ``inbound_calls`` (also accepted:
``time``/``hour``/``datetime`` and ``calls``/``inbound``/``volume``); times
without a zone are the call centre's local time (``[planner] timezone``).
Rows of one hour add up; an hour imported before is replaced, so importing a
file twice changes nothing.  A bad row stops the import with its line number
and nothing is stored.  Import-light: the engine loads inside the command.
"""

from __future__ import annotations

from pathlib import Path

import click

from hub.cli.commands import Ctx, _audit_now, pass_ctx

MAX_FILE_BYTES = 100 * 1024 * 1024


@click.command("import-load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default="import", show_default=True, metavar="NAME",
              help="Name of the series (e.g. telephony); re-importing it replaces its hours.")
@pass_ctx
def import_load(c: Ctx, file: Path, source: str) -> None:
    """Import inbound call volumes per hour; the planner learns its peaks from them."""
    from zoneinfo import ZoneInfo

    from hub.engine import load

    if file.stat().st_size > MAX_FILE_BYTES:
        raise click.ClickException(f"{file}: larger than {MAX_FILE_BYTES // 2**20} MB; split it")
    if not 1 <= len(source) <= 100:
        raise click.ClickException("--source: 1 to 100 characters")
    hub = c.hub()
    tz = ZoneInfo(hub.config.get("planner", {}).get("timezone", "UTC"))
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        series = load.parse_series(text, tz)
    except load.ImportError_ as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    if not series:
        raise click.ClickException(f"{file}: no rows")
    with hub.db.session() as s:
        hours = load.import_series(s, series, source=source)
    load.forget_profiles(hub)
    _audit_now(hub, "planner.load_imported", source=source, hours=hours)
    first, last = min(series), max(series)
    click.echo(f"imported {hours} hours of inbound calls ({sum(series.values()):g} calls) "
               f"from {first.isoformat()} to {last.isoformat()} as {source!r}")
