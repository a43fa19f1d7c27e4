"""``feedback-hub``: the command line (click).

Every command builds the app from the same three configuration layers
(``--config`` or ``HUB_CONFIG``, ``HUB_*``).  Configuration errors stop with
the file, key and reason and exit status 2.

Imports of the hub (SQLAlchemy, Flask, the engine) happen inside the commands
that need them: ``feedback-hub --help`` pays only for click and the plugins'
own modules (for their commands).  ``tests/test_cli.py`` checks that importing
this module loads neither SQLAlchemy nor Flask; ``bench/startup.py`` times it.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click


class Ctx:
    def __init__(self, config_file: str | None):
        self.config_file = config_file
        self._app = None
        self.overrides: dict[str, Any] = {}

    def app(self, **kwargs):
        if self._app is None:
            from hub.app import create_app
            from hub.config import ConfigError

            try:
                self._app = create_app(self.overrides or None, site_file=self.config_file, **kwargs)
            except ConfigError as exc:
                raise click.ClickException(f"configuration error: {exc}") from None
        return self._app

    def hub(self, **kwargs):
        return self.app(**kwargs).extensions["hub"]


def _upgrade(hub) -> None:
    from hub.storage.migrate import upgrade

    upgrade(hub.db.engine)


#: The plugins' entry-point group (``hub.sdk.hookspecs.PROJECT``, written out
#: here because importing the SDK would load ``requests`` for ``--help``).
ENTRY_POINT_GROUP = "feedback_hub"
COMMANDS_HOOK = "hub_register_commands"


def plugins_may_add_commands() -> bool:
    """Whether an installed plugin's module mentions ``hub_register_commands``.

    Read as text, not imported: loading every plugin (and with it requests and
    its SSL stack) would triple the time ``--help`` takes, for plugins that
    almost never add commands.  A module that implements the hook names it, so
    this errs only towards loading.
    """
    import importlib.util
    from importlib import metadata

    only = os.environ.get("HUB_LOAD_PLUGINS")
    allowed = {p.strip() for p in only.split(",")} if only is not None else None
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        try:
            spec = importlib.util.find_spec(ep.module)
            source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else None
        except (ImportError, OSError, ValueError, UnicodeDecodeError):
            return True  # cannot tell: load it
        if source is None or COMMANDS_HOOK in source:
            return True
    return False


class HubGroup(click.Group):
    """Adds plugin commands (``hub_register_commands``) when they are needed:
    a name that is no core command, shell completion, and ``--help`` when a
    plugin may add commands (:func:`plugins_may_add_commands`)."""

    _plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        try:
            from hub.plugin_manager import make_plugin_manager

            make_plugin_manager().hook.hub_register_commands(cli=self)
        except Exception as exc:  # a broken plugin must not take the CLI down
            click.echo(f"warning: plugin commands not loaded: {exc}", err=True)

    def list_commands(self, ctx):
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def format_commands(self, ctx, formatter):
        if not self._plugins_loaded and not plugins_may_add_commands():
            self._plugins_loaded = True  # nothing to add: spare --help the plugins' imports
        super().format_commands(ctx, formatter)

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None:
            self._load_plugin_commands()
            cmd = super().get_command(ctx, name)
        return cmd


@click.group(cls=HubGroup)
@click.option("--config", "config_file", envvar="HUB_CONFIG", type=click.Path(dir_okay=False),
              help="Site TOML file (default: $HUB_CONFIG).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug output.")
@click.version_option(package_name="feedback-hub")
@click.pass_context
def main(ctx: click.Context, config_file: str | None, verbose: bool) -> None:
    """feedback-hub: surveys and social media in, scored cases and callbacks out."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "apscheduler"):  # per-job "executed successfully" lines drown the useful ones
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    if os.environ.get("HUB_LOG_FORMAT", "").lower() == "json":  # before the config loads: its own errors too
        from hub.engine.logging_json import use_json_logs

        use_json_logs()
    ctx.obj = Ctx(config_file)


pass_ctx = click.make_pass_decorator(Ctx)


# -- set-up ----------------------------------------------------------------
@main.command()
@pass_ctx
def init(c: Ctx) -> None:
    """Create the instance folder and database schema."""
    hub = c.hub()
    Path(hub.instance_path).mkdir(parents=True, exist_ok=True)
    _upgrade(hub)
    click.echo(f"database ready: {hub.db.engine.url.render_as_string(hide_password=True)}")
    click.echo("next: feedback-hub user create admin --role admin; feedback-hub token create my-system")


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(c: Ctx) -> None:
    """Apply Alembic migrations up to the newest revision."""
    _upgrade(c.hub())
    click.echo("database schema is up to date")


@main.command()
@click.option("--settings", "show_settings", is_flag=True,
              help="List every source and sink kind with its settings: type, default, range or choices, help.")
@pass_ctx
def plugins(c: Ctx, show_settings: bool) -> None:
    """List installed plugins, their versions and the hooks they implement."""
    from hub.plugin_manager import make_plugin_manager, plugin_infos

    pm = make_plugin_manager()
    if show_settings:
        _echo_plugin_settings(pm)
        return
    for info in plugin_infos(pm):
        click.echo(f"{info.name}  {info.version or '-'}  ({info.source})")
        click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")


def _echo_plugin_settings(pm) -> None:
    """The declared settings (hub.sdk.settings) of every kind, as the registry validates them."""
    from hub.engine.registry import plugin_kinds
    from hub.sdk.settings import INSTANCE_SETTINGS

    for section, kinds in zip(("sources", "sinks"), plugin_kinds(pm), strict=True):
        for name, cls in sorted(kinds.items()):
            click.echo(f"[{section}.<name>] plugin = \"{name}\"" + (f"  - {cls.description}" if cls.description else ""))
            own = cls.all_settings()
            for setting in own:
                click.echo(_setting_line(setting))
            if not own:
                click.echo("    (no settings of its own)")
            click.echo("")
    click.echo("every instance also takes:")
    for setting in INSTANCE_SETTINGS:
        click.echo(_setting_line(setting))


def _setting_line(s) -> str:
    """``    name: type, required|default ..., secret, range`` and the help text below it."""
    facts = [s.type_name()]
    if s.required:
        facts.append("required")
    elif s.default is not None and not s.secret:
        facts.append(f"default {json.dumps(s.default)}")
    facts += ["secret"] * s.secret + [s.bounds()] * bool(s.bounds())
    return f"    {s.name}: {', '.join(facts)}" + (f"\n        {s.help}" if s.help else "")


# -- tokens and users --------------------------------------------------------
@main.group()
def token() -> None:
    """API tokens."""


def _audit(hub, session, action: str, **detail: Any) -> None:
    """Record a CLI action (actor ``cli``) in ``session``'s transaction."""
    from hub.engine import audit

    audit.record(session, actor="cli", action=action, at=hub.clock.utcnow(), **detail)


def _audit_now(hub, action: str, **detail: Any) -> None:
    with hub.db.session() as s:
        _audit(hub, s, action, **detail)


@token.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), default="write", show_default=True,
              help="read: GET only; write: also POST/PATCH; admin: also DELETE and admin actions.")
@click.option("--expires-days", type=click.IntRange(1, 3650), default=None,
              help="Expire after N days (default: never; revoke it when done).")
@pass_ctx
def token_create(c: Ctx, name: str, scope: str, expires_days: int | None) -> None:
    """Create an API token; it is printed once, as the last line."""
    from hub.engine.accounts import create_token, expiry_after

    hub = c.hub()
    expires_at = expiry_after(hub.clock.utcnow(), expires_days)
    with hub.db.session() as s:
        value = create_token(s, name, scope=scope, expires_at=expires_at)
        _audit(hub, s, "token.created", name=name, prefix=value[:10], scope=scope,
               expires_at=expires_at.isoformat() if expires_at else None)
    until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    click.echo(f"token {name!r} ({scope}{until}) created; store it now, it is not shown again:", err=True)
    click.echo(value)


@token.command("list")
@pass_ctx
def token_list(c: Ctx) -> None:
    """List tokens (names and prefixes, never the tokens)."""
    from sqlalchemy import select

    from hub.storage import models as m

    with c.hub().db.Session() as s:
        now = c.hub().clock.utcnow()
        for t in s.scalars(select(m.ApiToken).order_by(m.ApiToken.id)):
            expired = t.expires_at is not None and t.expires_at <= now
            state = "revoked" if t.revoked_at else "expired" if expired else "active"
            until = f"expires {t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "no expiry"
            click.echo(f"{t.id}  {t.name}  {t.prefix}...  {t.scope}  {until}  {state}")


@token.command("revoke")
@click.argument("name")
@pass_ctx
def token_revoke(c: Ctx, name: str) -> None:
    """Revoke every token with this name."""
    from sqlalchemy import select

    from hub.storage import models as m

    hub = c.hub()
    with hub.db.session() as s:
        rows = s.scalars(select(m.ApiToken).where(m.ApiToken.name == name, m.ApiToken.revoked_at.is_(None))).all()
        for t in rows:
            t.revoked_at = hub.clock.utcnow()
            _audit(hub, s, "token.revoked", name=t.name, prefix=t.prefix)
    if not rows:
        raise click.ClickException(f"no active token named {name!r}")
    click.echo(f"revoked {len(rows)} token(s)")


@main.group()
def user() -> None:
    """Dashboard users."""


@user.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "agent", "viewer"]), default="agent", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              envvar="HUB_NEW_USER_PASSWORD", help="Asked for when not given ($HUB_NEW_USER_PASSWORD).")
@pass_ctx
def user_create(c: Ctx, username: str, role: str, password: str) -> None:
    """Create (or reset) a dashboard user."""
    from hub.engine.accounts import create_user

    hub = c.hub()
    try:
        with hub.db.session() as s:
            create_user(s, username, password, role)
            _audit(hub, s, "user.created", username=username, role=role)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username!r} ({role}) ready")


# -- sources ---------------------------------------------------------------------
def _fmt_time(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "never"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def sources(c: Ctx, as_json: bool) -> None:
    """Configured source instances with last run, lag and last error."""
    from hub.engine.pulls import source_status

    rows = source_status(c.hub())
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        click.echo("no sources configured (add [sources.<name>] tables to your site TOML)")
    for r in rows:
        lag = f"{r['lag_seconds'] / 60:.0f} min" if r["lag_seconds"] is not None else "-"
        click.echo(f"{r['name']:<20} {r['plugin']:<18} last run {_fmt_time(r['last_run_at'])}  lag {lag}  "
                   f"items {r['items_total']}")
        extra = {k: v for k, v in r.items() if k not in
                 ("name", "plugin", "last_run_at", "lag_seconds", "items_total", "cursor", "last_error")}
        for k, v in extra.items():
            click.echo(f"    {k}: {v}")
        if r["last_error"]:
            click.echo(f"    last error: {r['last_error']}")


def _progress(hub, label: str, *, total: int | None = None, unit: str = "records"):
    """A bar on a terminal, a log line every [progress] log_seconds elsewhere (hub.engine.progress)."""
    from hub.engine.progress import Progress, interval_from, monotonic_of

    try:
        interval = interval_from(hub.config)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    return Progress(label, total=total, unit=unit, interval=interval, monotonic=monotonic_of(hub.clock))


def _run_pull(c: Ctx, name: str, since: dt.datetime | None) -> None:
    from hub.engine.pulls import pull
    from hub.sdk.http import HttpError

    hub = c.hub()
    if name not in hub.registry.sources:
        raise click.ClickException(f"no source named {name!r} (configured: {', '.join(hub.registry.sources) or 'none'})")
    # The total (and so the ETA) arrives with the first page when the vendor gives one.
    bar = _progress(hub, f"{'backfill' if since else 'pull'} {name}")
    _audit_now(hub, "source.backfill" if since else "source.pull", instance=name,
               since=since.isoformat() if since else None)
    failure: BaseException | None = None
    try:
        report = pull(hub, name, since=since, progress=bar)
    except HttpError as exc:
        failure = exc
        raise click.ClickException(f"pull of {name} failed: {exc}") from None
    except BaseException as exc:
        failure = exc
        raise
    finally:
        bar.close(failure)
    click.echo(f"{name}: {report.records} records in {report.pages} pages, {report.new_items} new items, "
               f"{report.duplicates} duplicates, {report.failed} failed")


@main.command("pull")
@click.argument("name")
@pass_ctx
def pull_cmd(c: Ctx, name: str) -> None:
    """Run one incremental pull of source NAME now."""
    _run_pull(c, name, None)


@main.command()
@click.argument("name")
@click.option("--since", required=True, type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Start date (UTC), e.g. 2026-01-01.")
@pass_ctx
def backfill(c: Ctx, name: str, since: dt.datetime) -> None:
    """Walk source NAME's history from --since (the cursor never moves back)."""
    _run_pull(c, name, since.replace(tzinfo=dt.UTC))


@main.command()
@click.option("--all", "everything", is_flag=True, help="Ignore retry times: push every pending follow-up.")
@pass_ctx
def dispatch(c: Ctx, everything: bool) -> None:
    """Push due follow-ups to their sinks now, then exit."""
    from hub.engine.dispatch import dispatch as run_dispatch

    hub = c.hub()
    _audit_now(hub, "outbox.dispatch", all=everything)
    report = run_dispatch(hub, ignore_schedule=everything)
    click.echo(f"sent {report.sent}, to retry {report.retried}, dead {report.dead}")
    if report.invitations is not None:
        inv = report.invitations
        click.echo(f"invitations: sent {inv.sent}, not sent {inv.skipped}, to retry {inv.retried}, dead {inv.dead}")
    for err in report.errors[:20]:
        click.echo(f"  {err}", err=True)


@main.command("sync")
@pass_ctx
def sync_cmd(c: Ctx) -> None:
    """Read follow-up completion from the sinks now (loop closure)."""
    from hub.engine.completion import sync_completions

    click.echo(f"completed {sync_completions(c.hub())} follow-up(s)")


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", required=True, help="Source name the items are stored under (e.g. legacy_crm).")
@click.option("--workers", type=click.IntRange(1, 32), default=1, show_default=True,
              help="Processes to import in, by customer (PostgreSQL only; 2 on a 2-core machine).")
@pass_ctx
def import_cmd(c: Ctx, file: str, source: str, workers: int) -> None:
    """Import FILE (JSONL or CSV in the common schema)."""
    from functools import partial

    from hub.app import create_app
    from hub.engine.importer import count_lines, import_file

    hub = c.hub()
    if source in hub.registry.sinks:
        raise click.ClickException(f"{source!r} is a sink, not a source")
    path = Path(file)
    _audit_now(hub, "feedback.import", source=source, file=path.name)
    with _progress(hub, f"import {path.name}", total=count_lines(path), unit="lines") as bar:
        try:
            report = import_file(hub, path, source, progress=bar.update, workers=workers,
                                 make_app=partial(create_app, c.overrides or None, site_file=c.config_file))
        except (ValueError, RuntimeError) as exc:
            raise click.ClickException(str(exc)) from None
    for number, reason in report.bad:
        click.echo(f"line {number}: {reason}", err=True)
    click.echo(f"imported {report.created} new item(s), {report.duplicates} already present, "
               f"{len(report.bad)} bad line(s) of {report.lines}")
    if report.bad:
        sys.exit(1 if report.created == 0 else 0)


# -- processes -------------------------------------------------------------------
def _serve(app, host: str, port: int) -> None:
    from werkzeug.serving import run_simple

    from hub.app import settle_for_serving

    settle_for_serving(app)
    run_simple(host, port, app, threaded=True, use_reloader=False)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@pass_ctx
def serve(c: Ctx, host: str, port: int) -> None:
    """Serve the web app and API only (no scheduler). For production use
    gunicorn 'hub:create_app()' behind a proxy and run one `scheduler`."""
    _serve(c.app(), host, port)


def _health_options(fn):
    fn = click.option("--health-host", default="127.0.0.1", show_default=True,
                      help="Address of the health endpoint.")(fn)
    return click.option("--health-port", type=click.IntRange(1, 65535), default=None,
                        help="Answer GET /healthz on this port (200 working, 503 stuck): for docker or systemd "
                             "health checks (docs/deploying.md).")(fn)


def _start_health(check, host: str, port: int | None):
    if port is None:
        return None
    from hub.engine.health import HealthServer

    try:
        return HealthServer(check, host, port).start()
    except OSError as exc:
        raise click.ClickException(f"health endpoint {host}:{port}: {exc.strerror}") from None


@main.command()
@_health_options
@pass_ctx
def scheduler(c: Ctx, health_port: int | None, health_host: str) -> None:
    """Run the scheduler (pulls, dispatch, completion sync). One leads per database:
    start one on a second node and it waits as a standby, taking over when the leader stops or dies."""
    from hub.engine.health import scheduler_check
    from hub.engine.scheduler import HubScheduler

    hub = c.hub()
    sched = HubScheduler(hub)
    stop = _stop_event()
    _start_health(scheduler_check(sched), health_host, health_port)
    click.echo("scheduler running (a standby until elected); Ctrl-C to stop")
    sched.serve(stop)  # SIGTERM: jobs stop and leadership is released at once
    _exit_past_lingering_jobs(sched.runs_under_way())


@main.command()
@click.option("--interval", default=5.0, show_default=True, help="Seconds between rounds (without Celery).")
@click.option("--queues", "queues", default=None, metavar="KINDS",
              help="executor celery: kinds of work to take, comma-separated: pull,ingest,dispatch,default "
                   "(default [celery] queues).")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64),
              help="executor celery: jobs run at once.")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork", show_default=True,
              help="executor celery: processes (a job's crash cannot take the worker down) or threads.")
@_health_options
@pass_ctx
def worker(c: Ctx, interval: float, queues: str | None, concurrency: int, pool: str, health_port: int | None,
           health_host: str) -> None:
    """Run background jobs: a Celery worker when executor is celery (docs/celery.md),
    else process pending webhook events and dispatch follow-ups in a loop.

    Safe to run several: raw events and outbox rows are claimed one by one."""
    from hub.engine.dispatch import dispatch as run_dispatch
    from hub.engine.health import worker_check
    from hub.engine.scheduler import replay_pending

    app = c.app()
    hub = app.extensions["hub"]
    last_round = [time.monotonic()]
    celery_mode = hub.config["executor"] == "celery"
    _start_health(worker_check(hub, None if celery_mode else lambda: last_round[0], max(60.0, 3 * interval)),
                  health_host, health_port)
    if celery_mode:
        from hub.engine.celery_app import run_worker, worker_queues

        kinds = [k.strip() for k in queues.split(",") if k.strip()] if queues else None
        try:
            worker_queues(hub.config, kinds)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--queues") from None
        sys.exit(run_worker(app, kinds=kinds, concurrency=concurrency, pool=pool,
                            loglevel="DEBUG" if logging.getLogger().level == logging.DEBUG else "INFO"))
    from hub.engine.pipeline import warm_up
    from hub.engine.waiting import wait_unless

    took = warm_up(hub)  # language models and lexicons loaded now, not inside the first batch's lock
    logging.getLogger(__name__).info("worker warmed up in %.2f s", took)
    # What is loaded by now (plugins, lexicons, language models) lives as long as the process:
    # frozen, a full garbage collection no longer walks it.  It did, ~100 ms at a time, inside
    # batches that hold SQLite's one write lock while webhook deliveries wait for it.
    gc.freeze()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo("worker running; Ctrl-C to stop")
    while not stop.is_set():
        try:
            replay_pending(hub, older_than_seconds=10)
            if hub.config.get("webhook_processing") == "worker":
                from hub.engine.raw_events import drain_pending

                drain_pending(hub)  # fresh deliveries too: the web nodes only store them
            run_dispatch(hub)
        except Exception as exc:  # keep the worker alive through outages
            logging.getLogger(__name__).exception("worker round failed: %s", exc)
        last_round[0] = time.monotonic()
        wait_unless(stop, interval)


def _stop_event() -> threading.Event:
    """An event SIGINT and SIGTERM set (systemd and docker stop with SIGTERM)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Emulated vendors, generated feedback and a demo login.")
@pass_ctx
def run(c: Ctx, host: str, port: int, demo: bool) -> None:
    """Web app + scheduler in one process (the embedded default, SQLite)."""
    from hub.demo import mode as demo_mod
    from hub.plugin_manager import make_plugin_manager

    hub_url = f"http://{host}:{port}"
    if demo:
        pm = make_plugin_manager()
        c.overrides = demo_mod.demo_overrides(pm, hub_url)
        c.overrides.setdefault("public_url", hub_url)
        # A lively demo: pull, dispatch and close loops within seconds, not minutes.
        sched_cfg = c.overrides.setdefault("scheduler", {})
        for key, seconds in (("pull_interval_seconds", 15), ("dispatch_interval_seconds", 5),
                             ("sync_interval_seconds", 20)):
            sched_cfg.setdefault(key, seconds)
        os.environ.setdefault("HUB_DEMO", "1")
    app = c.app()
    hub = app.extensions["hub"]
    _upgrade(hub)
    extra_jobs = []
    if demo:
        _demo_database(hub, demo_mod)
        emus = demo_mod.emulators(hub.pm)
        demo_mod.mount_emulators(app, emus)
        rng = random.Random()
        with hub.db.Session() as s:
            from sqlalchemy import func, select

            from hub.storage import models as m

            seeded = s.scalar(select(func.count()).select_from(m.FeedbackItem)) or 0
        if not seeded:
            demo_mod.feed(hub, random.Random(7), 300, days_back=21, prefix="seed")
        extra_jobs.append(("demo-feed", lambda: demo_mod.feed(hub, rng, rng.randint(1, 4)), 5))
        for emu in emus:
            if emu.tick:
                extra_jobs.append((f"tick:{emu.name}", lambda e=emu: e.tick(f"{hub_url}{demo_mod.SANDBOX_PREFIX}/{e.name}",
                                                                          hub_url), 10))
    from werkzeug.serving import make_server

    from hub.app import settle_for_serving

    settle_for_serving(app)
    # Bind first: the scheduler's first pulls and demo ticks call this very
    # server (the mounted emulators), so it must be listening before they run.
    server = make_server(host, port, app, threaded=True)
    from hub.engine.scheduler import HubScheduler

    # The embedded scheduler campaigns in the background: with another
    # scheduler on this database it stays a standby and the web still serves.
    # On Ctrl-C or SIGTERM it gives up the lease at once; a job run under way
    # (a pull holding SQLite's write lock can delay even that) gets 5 s more.
    sched, stop = HubScheduler(hub, extra_jobs), _stop_event()
    campaign = threading.Thread(target=sched.serve, args=(stop,), name="scheduler", daemon=True)
    web = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    web.start()
    campaign.start()
    click.echo(f"feedback-hub is running at {hub_url}/")
    click.echo(f"  API health: {hub_url}/api/v1/health   API docs: {hub_url}/api/v1/openapi.json")
    if demo:
        click.echo(f"  demo login: {demo_mod.DEMO_USER} / {demo_mod.DEMO_PASSWORD}")
        click.echo(f"  vendor emulators: {hub_url}{demo_mod.SANDBOX_PREFIX}/")
    try:
        # Wake up now and then: a signal that lands on another thread runs its
        # Python handler only when the main thread executes again.
        from hub.engine.waiting import join_within, wait_unless

        while not wait_unless(stop, 0.5):
            pass
    finally:
        stop.set()
        join_within(campaign, 5)
        server.shutdown()
        server.server_close()
        _exit_past_lingering_jobs(sched.runs_under_way())


def _exit_past_lingering_jobs(runs: int) -> None:
    """Leave now even if a job run still retries a vendor: the interpreter's exit
    joins every pool thread, and a run retrying a vendor holds it for minutes.

    The lease is released already; what the run did not finish is claimed
    again by the next run (raw events stay pending, outbox claims time out).
    """
    lingering = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if runs or lingering:
        logging.getLogger(__name__).warning("stopping with %d job run(s) unfinished; they are retried later",
                                            runs or len(lingering))
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


DEMO_MARK = "demo.database"


def _demo_database(hub, demo_mod) -> None:
    """Refuse a database ``run --demo`` did not start; add the demo login only when it is absent.

    A demo writes generated feedback, emulator instances and an admin with a
    published password: pointed at a real database by mistake, it must stop
    before it changes anything, and it never resets a ``demo`` user's password.
    A database is a demo's when it was empty at its first demo run (which marks
    it in the audit) or carries that mark.
    """
    from sqlalchemy import func, select

    from hub.engine.accounts import create_user
    from hub.storage import models as m

    with hub.db.session() as s:
        marked = s.scalar(select(m.AuditEvent.id).where(m.AuditEvent.action == DEMO_MARK).limit(1))
        if marked is None:
            users = s.scalar(select(func.count()).select_from(m.User)) or 0
            items = s.scalar(select(func.count()).select_from(m.FeedbackItem)) or 0
            if users or items:
                raise click.ClickException(
                    f"{hub.db.engine.url.render_as_string(hide_password=True)} is not a demo database "
                    f"({users} user(s), {items} feedback item(s) that run --demo did not make); run --demo "
                    "on a new database (HUB_DATABASE_URL or another HUB_INSTANCE_PATH), or run without --demo")
            _audit(hub, s, DEMO_MARK)
        if s.scalars(select(m.User).where(m.User.username == demo_mod.DEMO_USER)).first() is None:
            create_user(s, demo_mod.DEMO_USER, demo_mod.DEMO_PASSWORD, "admin")
            _audit(hub, s, "user.created", username=demo_mod.DEMO_USER, role="admin")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5050, show_default=True, type=int)
def sandbox(host: str, port: int) -> None:
    """Serve every installed plugin's vendor emulator (for tests and trials)."""
    from hub.demo.sandbox import make_sandbox_app

    app, emus = make_sandbox_app()
    for emu in emus:
        click.echo(f"  {emu.name}: http://{host}:{port}/{emu.name}  {emu.description}")
    if not emus:
        click.echo("no plugin brings an emulator yet")
    _serve(app, host, port)



from hub.cli.score import score as _score_commands  # noqa: E402, I001  (import-light: click only)
main.add_command(_score_commands)
from hub.cli.replay import replay as _replay_command  # noqa: E402, I001  (import-light: click only)
main.add_command(_replay_command)
from hub.cli.load import import_load as _import_load_command  # noqa: E402, I001  (import-light: click only)
main.add_command(_import_load_command)
from hub.cli.outbox import outbox as _outbox_commands  # noqa: E402, I001  (import-light: click only)
main.add_command(_outbox_commands)
from hub.cli.gdpr import gdpr as _gdpr_commands, retention as _retention_commands  # noqa: E402, I001
main.add_command(_gdpr_commands)
main.add_command(_retention_commands)
from hub.cli.invite import invite as _invite_command, suppress as _suppress_command  # noqa: E402, I001
main.add_command(_invite_command)
main.add_command(_suppress_command)
