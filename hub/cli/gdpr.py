"""``feedback-hub gdpr`` and ``feedback-hub retention``: the person's rights, the data's lifetime.

``gdpr export`` prints (or writes) everything the hub holds on one person as
JSON; ``gdpr erase`` removes it (asking first unless ``--yes``) and has the
CRM sinks that support it delete the contact too; ``gdpr pending`` lists CRM
erasures still waiting for their CRM.  ``retention run`` applies the
retention policy now (the scheduler runs it daily).  Import-light: the
engine loads inside the commands.
"""

from __future__ import annotations

import json

import click

from hub.cli.commands import Ctx, pass_ctx


def _who(options):
    """Decorators for the three ways to name the person (exactly one)."""
    options = click.option("--customer", "customer_id", type=click.IntRange(1, 2**63 - 1), metavar="ID",
                           help="The customer's id.")(options)
    options = click.option("--handle", metavar="H", help="A social handle, e.g. @janb.")(options)
    return click.option("--email", metavar="E", help="An e-mail address.")(options)


def _query(email: str | None, handle: str | None, customer_id: int | None) -> dict:
    given = {k: v for k, v in {"email": email, "handle": handle, "customer_id": customer_id}.items() if v}
    if len(given) != 1:
        raise click.UsageError("name exactly one of --email, --handle or --customer")
    return given


@click.group()
def gdpr() -> None:
    """Privacy requests: export or erase everything the hub holds on a person."""


@gdpr.command("export")
@_who
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to this file (default: stdout).")
@pass_ctx
def export_cmd(c: Ctx, email, handle, customer_id, output) -> None:
    """Everything the hub holds on the person, as JSON."""
    from hub.engine.audit import record
    from hub.engine.privacy import SubjectNotFound, export

    query = _query(email, handle, customer_id)
    hub = c.hub()
    try:
        document = export(hub, **query)
    except SubjectNotFound as exc:
        raise click.ClickException(str(exc)) from None
    text = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        click.echo(f"wrote {output}: {len(document['customers'])} customer(s), {len(document['items'])} item(s)",
                   err=True)
    else:
        click.echo(text)
    with hub.db.session() as s:
        record(s, actor="cli", action="gdpr.export", at=hub.clock.utcnow(),
               customers=[r["id"] for r in document["customers"]])


@gdpr.command("erase")
@_who
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def erase_cmd(c: Ctx, email, handle, customer_id, yes) -> None:
    """Erase the person: customer, identities, items, payloads, cases, notes; and in the CRM."""
    from hub.engine.privacy import SubjectNotFound, erase, find_subject

    query = _query(email, handle, customer_id)
    hub = c.hub()
    with hub.db.Session() as s:
        try:
            subject = find_subject(hub, s, **query)
        except SubjectNotFound as exc:
            raise click.ClickException(str(exc)) from None
    what = f"{len(subject.customer_ids)} customer(s) ({', '.join(map(str, subject.customer_ids)) or 'none'})"
    if not yes:
        click.confirm(f"Erase {what} and everything about them? This cannot be undone", abort=True)
    report = erase(hub, actor="cli", **query)
    click.echo(f"erased {report.customers} customer(s), {report.identities} identities, {report.items} item(s), "
               f"{report.raw_events} raw event(s), {report.cases} case(s), {report.other_rows} related row(s); "
               f"{report.swept} mention(s) elsewhere replaced")
    if not report.compacted:
        click.echo("warning: the database was busy and is not compacted yet; run `feedback-hub gdpr compact`",
                   err=True)
    if report.crm_requests:
        click.echo(f"CRM erasures: {report.crm_delivered} done, {report.crm_waiting} waiting for the CRM "
                   "(retried by the scheduler; `feedback-hub gdpr pending`)")


@gdpr.command("compact")
@pass_ctx
def compact_cmd(c: Ctx) -> None:
    """Rebuild the database file so erased data leaves no bytes behind (SQLite VACUUM; PostgreSQL VACUUM)."""
    from hub.engine.privacy import compact

    compact(c.hub())
    click.echo("database compacted")


@gdpr.command("pending")
@pass_ctx
def pending_cmd(c: Ctx) -> None:
    """CRM erasures that are not done yet (and those the CRM refused)."""
    from sqlalchemy import select

    from hub.storage import models as m

    hub = c.hub()
    with hub.db.Session() as s:
        rows = s.scalars(select(m.PrivacyRequest).where(m.PrivacyRequest.status != "sent")
                         .order_by(m.PrivacyRequest.id)).all()
    for r in rows:
        click.echo(f"{r.id}\t{r.sink}\t{r.status}\tattempts={r.attempts}\tnext={r.next_attempt_at:%Y-%m-%d %H:%M}"
                   f"\t{r.last_error or ''}")
    if not rows:
        click.echo("no CRM erasures waiting")


@click.group()
def retention() -> None:
    """The retention policy: raw payloads and items older than the configured ages."""


@retention.command("run")
@pass_ctx
def retention_run(c: Ctx) -> None:
    """Apply the retention policy now (the scheduler runs it too)."""
    from hub.engine.retention import run_retention

    report = run_retention(c.hub(), actor="cli")
    for source, counts in sorted(report.items()):
        click.echo(f"{source}\traw payloads emptied: {counts['raw_events']}\titems emptied: {counts['items']}")
    if not report:
        click.echo("nothing older than the retention policy")
