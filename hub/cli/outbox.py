"""``feedback-hub outbox``: look after the follow-ups waiting for their sink.

``outbox requeue`` puts failed follow-ups (with ``--dead`` also dead ones, e.g.
after a configuration fix) back to pending, due now; ``outbox status`` shows
the counts per sink and state and which sinks are failing.  Import-light: the
engine loads inside the commands.
"""

from __future__ import annotations

import click

from hub.cli.commands import Ctx, pass_ctx


@click.group()
def outbox() -> None:
    """The outbox of follow-ups (callbacks) waiting to be pushed to a sink."""


@outbox.command()
@click.option("--dead", "include_dead", is_flag=True, help="Also dead follow-ups (given up on).")
@click.option("--sink", metavar="NAME", help="Only follow-ups routed to this sink.")
@pass_ctx
def requeue(c: Ctx, include_dead: bool, sink: str | None) -> None:
    """Put failed (and with --dead, dead) follow-ups back to pending, due now."""
    from hub.engine.dispatch import requeue as run_requeue

    hub = c.hub()
    if sink is not None and sink not in hub.registry.sinks:
        raise click.ClickException(f"unknown sink {sink!r} (configured: {', '.join(sorted(hub.registry.sinks))})")
    n = run_requeue(hub, include_dead=include_dead, sink=sink)
    click.echo(f"requeued {n} follow-up{'s' if n != 1 else ''}; `feedback-hub dispatch` pushes them now")


@outbox.command()
@pass_ctx
def status(c: Ctx) -> None:
    """Follow-ups per sink and state, and the sinks failing right now."""
    from sqlalchemy import func, select

    from hub.engine.dispatch import sink_outages
    from hub.storage import models as m

    hub = c.hub()
    with hub.db.Session() as s:
        counts = s.execute(select(m.Followup.sink, m.Followup.status, func.count())
                           .group_by(m.Followup.sink, m.Followup.status).order_by(m.Followup.sink)).all()
    for sink, state, n in counts:
        click.echo(f"{sink}\t{state}\t{n}")
    for sink, outage in sorted(sink_outages(hub).items()):
        wait = f", waiting until {outage['retry_at']}" if outage.get("retry_at") else ""
        click.echo(f"{sink}: failing since {outage['since']}{wait}: {outage.get('reason')}", err=True)
