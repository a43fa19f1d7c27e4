"""``feedback-hub invite FILE.csv`` and ``feedback-hub suppress ADDRESS``.

``invite`` queues a survey invitation per row (columns ``email``, ``phone``,
``crm_id``, ``name``; at least one identity per row) for ``--source``, sent by
the next dispatch through the notifier and under the contact rules, exactly as
``POST /api/v1/invitations``.  The file is checked first: one bad row and
nothing is queued, with the row's line and field named.  ``suppress`` puts an
address on the suppression list (never invited again); ``--remove`` takes it
off.  Import-light: the engine loads inside the commands.
"""

from __future__ import annotations

import csv
from pathlib import Path

import click

from hub.cli.commands import Ctx, pass_ctx

COLUMNS = ("email", "phone", "crm_id", "name")


def _read(path: Path) -> list:
    from pydantic import ValidationError

    from hub.sdk.contracts import CustomerInput, customer_ref, input_error

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read it ({exc})") from None
    reader = csv.DictReader(text.splitlines(), delimiter=";" if text.split("\n", 1)[0].count(";") else ",")
    unknown = [c for c in reader.fieldnames or [] if c not in COLUMNS]
    if not reader.fieldnames or unknown:
        raise click.ClickException(f"{path}: columns must be some of {', '.join(COLUMNS)} "
                                   f"(unknown: {', '.join(unknown) or 'none'})")
    refs = []
    for line, row in enumerate(reader, start=2):
        try:
            ref = customer_ref(CustomerInput.model_validate({k: v for k, v in row.items() if k in COLUMNS and v}))
        except ValidationError as exc:
            problem = input_error(exc, row)
            raise click.ClickException(f"{path}:{line}: {problem.field}: {problem.message}") from None
        if not ref.identities():
            raise click.ClickException(f"{path}:{line}: no email, phone or crm_id")
        refs.append(ref)
    if not refs:
        raise click.ClickException(f"{path}: no customers in it")
    return refs


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", metavar="NAME", help="Survey source whose link is sent (default: loop.invitation_source).")
@click.option("--trigger", default="csv", show_default=True, help="What happened, e.g. deal_closed (reported per trigger).")
@pass_ctx
def invite(c: Ctx, file: Path, source: str | None, trigger: str) -> None:
    """Invite the customers in FILE.csv to a survey (sent by the next dispatch)."""
    import re

    from hub.engine.loop import invitations

    hub = c.hub()
    source = source or hub.config.get("loop", {}).get("invitation_source")
    if not source or source not in hub.registry.sources:
        raise click.ClickException(f"--source: name a configured source (configured: "
                                   f"{', '.join(sorted(hub.registry.sources)) or 'none'})")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,49}", trigger):
        raise click.ClickException("--trigger: lower-case letters, digits and _ (e.g. deal_closed)")
    refs = _read(file)
    with hub.db.session() as s:
        made = invitations.invite(s, hub, refs, source=source, trigger=trigger, now=hub.clock.utcnow(), actor="cli")
    new = sum(created for _, created in made)
    click.echo(f"queued {new} invitation{'s' if new != 1 else ''}, {len(made) - new} already queued; "
               "`feedback-hub dispatch` sends them now")


@click.command()
@click.argument("address")
@click.option("--remove", is_flag=True, help="Take the address off the list again.")
@pass_ctx
def suppress(c: Ctx, address: str, remove: bool) -> None:
    """Never invite ADDRESS (an e-mail address or phone number) again."""
    from sqlalchemy import delete

    from hub.engine import audit
    from hub.engine.loop import contact_rules
    from hub.storage import models as m

    hub = c.hub()
    now = hub.clock.utcnow()
    value = address.strip().lower()
    with hub.db.session() as s:
        if remove:
            n = s.execute(delete(m.Suppression).where(m.Suppression.address == value)).rowcount
            audit.record(s, actor="cli", action="contact.unsuppressed", at=now, removed=n)
            click.echo(f"removed {n} entr{'ies' if n != 1 else 'y'}")
            return
        added = contact_rules.suppress(s, now=now, reason="manual", address=value)
        if added:
            audit.record(s, actor="cli", action="contact.suppressed", at=now)
    click.echo("on the suppression list" if added else "already on the suppression list")
