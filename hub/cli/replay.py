"""``feedback-hub replay``: process stored raw events again.

Pending events are deliveries nothing processed yet (the process died after
the 2xx, or a batch failed); failed ones (``--failed``) kept their reason and
are tried again once the plugin or the data is fixed.  Import-light: the
engine loads inside the command.
"""

from __future__ import annotations

import click

from hub.cli.commands import Ctx, _audit_now, pass_ctx


def _line(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {counts[key]}" for key in ("processed", "skipped", "failed", "items"))


@click.command()
@click.option("--source", "source", metavar="NAME", help="Only this source instance.")
@click.option("--failed", "include_failed", is_flag=True, help="Also re-run raw events that failed before.")
@pass_ctx
def replay(c: Ctx, source: str | None, include_failed: bool) -> None:
    """Re-run pending (and with --failed, failed) raw events into items."""
    from hub.engine.raw_events import replay as run_replay

    hub = c.hub()
    if source is not None and source not in hub.registry.sources:
        raise click.ClickException(f"unknown source {source!r} (configured: {', '.join(sorted(hub.registry.sources))})")
    _audit_now(hub, "raw_events.replay", source=source, failed=include_failed)
    per_source: dict[str, dict[str, int]] = {}

    def progress(name: str, counts: dict[str, int]) -> None:
        done = per_source.setdefault(name, dict.fromkeys(counts, 0))
        for key, n in counts.items():
            done[key] += n
        click.echo(f"  {name}: +{sum(counts[k] for k in ('processed', 'skipped', 'failed'))} events", err=True)

    totals = run_replay(hub, source=source, include_failed=include_failed, progress=progress)
    for name, counts in sorted(per_source.items()):
        click.echo(f"{name}: {_line(counts)}")
    click.echo(f"total: {_line(totals)}")
