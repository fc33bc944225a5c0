"""``wmproxy-admin`` commands for operators: ``jobs list`` / ``jobs show``, ``purge``,
``stats`` and ``check`` (registered on the group in :mod:`wmproxy.admin`).

Tables are printed with rich; ``--json`` prints one JSON document instead (times in UTC,
ISO 8601; sizes in bytes). A job id is never shortened (it is copied from the table into the
next command): its column takes the id's whole width, the owner column folds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import pwd
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from wmproxy.config import ConfigError, Settings
from wmproxy.domain import JobState, utcnow
from wmproxy.sandbox.trees import tree_totals
from wmproxy.text import log_text

if TYPE_CHECKING:
    from wmproxy.services.purge import RemoveWorkDir

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class AdminSetup:
    """What ``wmproxy-admin``'s own options say (``-c``) and which command runs. The settings
    are loaded and checked only when a command body runs (:func:`pass_settings`), after click
    parsed that command's arguments: its ``--help`` needs neither the configuration nor the
    store, however the arguments read.

    Args:
        config_file: the ``-c`` file, or None (``$WMPROXY_CONFIG``, else the defaults).
        command: the top-level command (``init``, ``jobs``...).
        check: loads the settings and runs the checks this command needs (raises
            :class:`click.ClickException` with the fix).
    """

    def __init__(self, config_file: str | None, command: str | None,
                 check: Callable[[str | None, str | None], Settings]) -> None:
        self.config_file = config_file
        self.command = command
        self._check = check
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._check(self.config_file, self.command)
        return self._settings


def pass_settings(command: Callable[..., Any]) -> Callable[..., Any]:
    """As :func:`click.pass_obj`, with the settings the group's :class:`AdminSetup` loads and checks."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        setup = click.get_current_context().find_object(AdminSetup)
        if setup is None:  # not under wmproxy-admin's group (a test invoking the command alone)
            raise click.ClickException("no wmproxy-admin setup: run the command through wmproxy-admin")
        return command(setup.settings(), *args, **kwargs)

    return run


def parse_age(text: str) -> dt.timedelta:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` → a timedelta.

    Raises:
        click.BadParameter: anything else, or an age longer than a timedelta holds.
    """
    match = _AGE.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r}: expected a number with an optional unit s, m, h, d or w (e.g. 7d)")
    try:
        return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    except OverflowError:
        raise click.BadParameter(f"{text!r}: too long an age") from None


def _age_option(_ctx: click.Context, _param: click.Parameter, text: str | None) -> dt.timedelta | None:
    """An AGE option (``--older-than``...): :func:`parse_age`, and the time that long ago must
    be a date (after the year 1), so that ``now - age`` cannot overflow."""
    if text is None:
        return None
    age = parse_age(text)
    try:
        utcnow() - age
    except OverflowError:
        raise click.BadParameter(f"{text!r}: too long an age (before the year 1)") from None
    return age


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _age(value: dt.datetime, now: dt.datetime) -> str:
    seconds = int((now - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _runtime(settings: Settings) -> Any:
    from wmproxy.services.runtime import Runtime

    return Runtime.from_settings(settings)


def _close(rt: Any) -> None:
    bind = rt.session_factory.kw.get("bind")
    if bind is not None:
        bind.dispose()


def _job_table(*others: str, title: str | None = None) -> Table:
    """A table whose first column is a job id, printed whole whatever the terminal's width
    (rich would end it with "…"); then ``owner``, folded rather than cut, and ``others``."""
    return Table(Column("job id", no_wrap=True, overflow="fold"), Column("owner", overflow="fold"), *others,
                 title=title)


def _add_row(table: Table, *values: object) -> None:
    """A row of ``values`` as plain text: what grid users wrote (owner DNs, reasons, file names in
    them) is never read as rich markup (``[link=...]``, ``[conceal]``, an unbalanced ``[/]`` that
    would raise), and control characters are shown as ``\\xNN`` (:func:`wmproxy.text.log_text`)."""
    table.add_row(*(Text(log_text("" if value is None else value)) for value in values))


def _print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


# --- jobs ------------------------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """List and show jobs."""


@jobs.command("list")
@click.option("--owner", default=None, metavar="DN", help="only jobs of this owner DN")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in JobState], case_sensitive=False),
              help="only jobs in this state (repeatable)")
@click.option("--older-than", default=None, metavar="AGE", callback=_age_option,
              help="registered more than AGE ago (e.g. 7d, 12h)")
@click.option("--newer-than", default=None, metavar="AGE", callback=_age_option, help="registered less than AGE ago")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_settings
def list_jobs(settings: Settings, owner: str | None, states: tuple[str, ...], older_than: dt.timedelta | None,
              newer_than: dt.timedelta | None, limit: int, as_json: bool) -> None:
    """Top-level jobs, newest first (nodes of a compound job: ``jobs show``)."""
    from wmproxy.store.housekeeping import SqlHousekeepingStore

    now = utcnow()
    wanted = [next(s.value for s in JobState if s.value.lower() == st.lower()) for st in states]
    rt = _runtime(settings)
    try:
        with rt.uow() as uow:
            rows = SqlHousekeepingStore(uow.session).jobs(
                owner_dn=owner, states=wanted, limit=limit,
                older_than=now - older_than if older_than is not None else None,
                newer_than=now - newer_than if newer_than is not None else None)
            found = [{"id": j.id, "owner": j.owner_dn, "state": j.state, "created": _iso(j.created_at),
                      "updated": _iso(j.updated_at), "age": _age(j.created_at, now), "destination": j.destination}
                     for j in rows]
    finally:
        _close(rt)
    if as_json:
        _print_json(found)
        return
    table = _job_table("state", "age", "updated")
    for job in found:
        _add_row(table, job["id"], job["owner"], job["state"], job["age"], job["updated"])
    Console().print(table)
    click.echo(f"{len(found)} job(s)")


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_settings
def show_job(settings: Settings, job_id: str, as_json: bool) -> None:
    """One job: owner, state, times, nodes and its state history (or when it was purged)."""
    from wmproxy.store.housekeeping import SqlHousekeepingStore

    rt = _runtime(settings)
    try:
        with rt.uow() as uow:
            job = uow.jobs.get(job_id)
            if job is None:
                tomb = SqlHousekeepingStore(uow.session).tombstone(job_id)
                if tomb is None:
                    raise click.ClickException(f"no job {job_id} (never registered here, or purged long ago)")
                data: dict[str, Any] = {"id": job_id, "owner": tomb.owner_dn, "state": tomb.state,
                                        "purged": _iso(tomb.purged_at), "purge_reason": tomb.reason}
            else:
                data = {"id": job.id, "owner": job.owner_dn, "state": job.state, "exit_code": job.exit_code,
                        "reason": job.reason, "delegation_id": job.delegation_id, "created": _iso(job.created_at),
                        "updated": _iso(job.updated_at), "worker": job.worker, "local_account": job.local_account,
                        "destination": job.destination, "sandbox_dir": job.sandbox_dir,
                        "nodes": [{"id": n.id, "name": n.node_name, "state": n.state}
                                  for n in uow.jobs.children(job.id)],
                        "events": [{"at": _iso(e.at), "state": e.state, "reason": e.reason}
                                   for e in uow.jobs.events(job.id)]}
    finally:
        _close(rt)
    if as_json:
        _print_json(data)
        return
    table = Table(Column(no_wrap=True), Column(overflow="fold"), show_header=False)
    for key, value in data.items():
        if key in ("nodes", "events"):
            continue
        _add_row(table, key, "" if value is None else str(value))
    Console().print(table)
    if data.get("nodes"):
        nodes = Table(Column("node", no_wrap=True, overflow="fold"), "name", "state", title="nodes")
        for node in data["nodes"]:
            _add_row(nodes, node["id"], node["name"] or "", node["state"])
        Console().print(nodes)
    if data.get("events"):
        events = Table("at", "state", "reason", title="history")
        for event in data["events"]:
            _add_row(events, event["at"], event["state"], event["reason"] or "")
        Console().print(events)


# --- purge -----------------------------------------------------------------------------------


def _work_dir_remover(settings: Settings) -> RemoveWorkDir:
    from wmproxy.execution.identity import remove_work_dir

    return functools.partial(remove_work_dir, Path(settings.execution.work_dir))


def _print_purge(report: Any) -> None:
    verb = "would purge" if report.dry_run else "purged"
    table = _job_table("state", "rule", title=f"jobs ({verb})")
    for job in report.jobs:
        _add_row(table, job.job_id, job.owner_dn, job.state, job.rule)
    Console().print(table)
    click.echo(f"{verb}: {len(report.jobs)} job(s), {len(report.work_dirs)} work dir(s), "
               f"{len(report.areas)} sandbox area(s) of no job, "
               f"{len(report.delegations)} expired delegation(s), {len(report.renewals)} orphan renewal record(s), "
               f"{report.requests} pending delegation request(s), {report.inspections} inspection request(s)")
    for error in report.errors:
        click.echo(f"error: {log_text(error)}", err=True)


@click.command()
@click.option("--dry-run", is_flag=True, help="only show what would be purged (whatever --yes says)")
@click.option("--yes", is_flag=True, help="purge without showing the dry run and asking first")
@click.option("--json", "as_json", is_flag=True, help="print JSON (with --dry-run or --yes)")
@pass_settings
def purge(settings: Settings, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Purge now with the [purge] policy: a dry run is shown first, then confirmed. Passes
    run until the backlog is gone (each bounded by ``pass_time``, the next going on after it).

    ``--dry-run`` only reports, also with ``--yes``; ``--json`` without ``--yes`` is a dry run
    (there is no question to answer)."""
    from wmproxy.services.purge import purge_until_done as run_purge

    rt = _runtime(settings)
    try:
        if dry_run or not yes:
            report = run_purge(rt, dry_run=True, remove_work_dir=_work_dir_remover(settings))
            if as_json or dry_run:
                _emit_purge(report, as_json)
                return
            _print_purge(report)
            if report.empty or not click.confirm("Purge these now?"):
                return
        report = run_purge(rt, remove_work_dir=_work_dir_remover(settings))
        _emit_purge(report, as_json)
    finally:
        _close(rt)
    if report.errors:
        raise SystemExit(1)


def _emit_purge(report: Any, as_json: bool) -> None:
    if not as_json:
        _print_purge(report)
        return
    _print_json({"dry_run": report.dry_run, "errors": report.errors, "requests": report.requests,
                 "inspections": report.inspections,
                 "jobs": [{"id": j.job_id, "owner": j.owner_dn, "state": j.state, "rule": j.rule} for j in report.jobs],
                 "work_dirs": report.work_dirs, "areas": report.areas,
                 "delegations": [list(d) for d in report.delegations], "renewals": [list(r) for r in report.renewals]})


# --- stats -----------------------------------------------------------------------------------


def tree_bytes(top: Path) -> int:
    """Bytes of the regular files under ``top`` (symlinks not followed; unreadable parts
    skipped), at any depth without recursion (:func:`wmproxy.sandbox.trees.tree_totals`: a
    job's work dir may be thousands of levels deep)."""
    return tree_totals(top, skip_unreadable=True).size


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_settings
def stats(settings: Settings, as_json: bool) -> None:
    """Jobs by state and owner, execution queue depth, disk used by sandboxes and work dirs."""
    from wmproxy.store.housekeeping import SqlHousekeepingStore

    rt = _runtime(settings)
    try:
        with rt.uow() as uow:
            store = SqlHousekeepingStore(uow.session)
            counts = store.counts_by_state_and_owner()
            depth = store.queue_depth()
    finally:
        _close(rt)
    by_state: dict[str, int] = {}
    by_owner: dict[str, int] = {}
    for state, owner, n in counts:
        by_state[state] = by_state.get(state, 0) + n
        by_owner[owner] = by_owner.get(owner, 0) + n
    data = {"jobs_by_state": by_state, "jobs_by_owner": by_owner, "queue_depth": depth,
            "sandbox_bytes": tree_bytes(Path(settings.sandbox.root) / settings.sandbox.dir_name),
            "work_dir_bytes": tree_bytes(Path(settings.execution.work_dir))}
    if as_json:
        _print_json(data)
        return
    table = Table("state", "jobs", title="jobs by state")
    for state, n in sorted(by_state.items()):
        _add_row(table, state, str(n))
    Console().print(table)
    owners = Table("owner", "jobs", title="jobs by owner")
    for owner, n in sorted(by_owner.items(), key=lambda item: -item[1]):
        _add_row(owners, owner, str(n))
    Console().print(owners)
    click.echo(f"queue depth: {depth}\nsandboxes: {data['sandbox_bytes']} bytes\n"
               f"work dirs: {data['work_dir_bytes']} bytes")


@click.command("recount-usage")
@click.option("--owner", default=None, metavar="DN", help="only this owner's counter (default: every owner)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_settings
def recount_usage(settings: Settings, owner: str | None, as_json: bool) -> None:
    """Set the per-user sandbox usage counters (the quota) to what the job areas' input and
    output sandboxes and perusal chunks hold on disk: after a crash, a restore or a manual
    change in the sandbox area."""
    from wmproxy.services.quota import recount_usage as recount

    rt = _runtime(settings)
    try:
        counted = recount(rt, owner)
    finally:
        _close(rt)
    if as_json:
        _print_json({"usage_bytes": counted})
        return
    table = Table("owner", "bytes", title="sandbox usage recounted")
    for dn, used in sorted(counted.items()):
        _add_row(table, dn, str(used))
    Console().print(table)


# --- check -----------------------------------------------------------------------------------


def check_ca_dir(ca_dir: str, now: dt.datetime | None = None, namespace_mode: str = "eugridpma_globus") -> list[str]:
    """Problems of a grid CA directory, one line each: missing, no ``<hash>.N`` CA file, a CRL
    (``<hash>.rN``) unreadable or past its nextUpdate, a namespace policy file
    (``<hash>.namespaces``, ``<hash>.signing_policy``) that cannot be parsed (not read with
    ``namespace_mode`` ``ignore``). Empty when fine. The directory is read as ``/readyz`` reads
    it (:func:`wmproxy.monitoring.health.read_ca_dir`)."""
    from wmproxy.monitoring.health import broken_policy_effect, read_ca_dir

    try:
        found = read_ca_dir(ca_dir, now or utcnow(), policies=namespace_mode != "ignore")
    except OSError as exc:
        return [f"CA directory {ca_dir}: {exc.strerror or exc}"]
    problems = []
    if not found.ca_files:
        problems.append(f"CA directory {ca_dir}: no CA certificate (<hash>.0)")
    for crl in found.stale_crls:
        if crl.next_update is None:
            problems.append(f"CRL {crl.name}: unreadable ({crl.error})")
        else:
            problems.append(f"CRL {crl.name}: expired at {_iso(crl.next_update)} (run fetch-crl)")
    problems.extend(f"CA policy file {policy.name}: cannot be parsed ({policy.error}); "
                    f"{broken_policy_effect(namespace_mode)}" for policy in found.broken_policies)
    return problems


def _owner_problems(settings: Settings, user: pwd.struct_passwd) -> list[str]:
    """The private files (store key, SQLite database and companions) that exist and are not the
    service user's: it cannot open them (a restore as root leaves them root's)."""
    from wmproxy.security.filemodes import private_files
    from wmproxy.services.storekey import account_name

    problems = []
    for path in private_files(settings):
        try:
            owner = path.stat().st_uid
        except FileNotFoundError:
            continue
        if owner != user.pw_uid:
            problems.append(f"{path} belongs to {account_name(owner)}, not to the service user {user.pw_name}: run "
                            f"`chown {user.pw_name} {path}` (as root; or wmproxy-admin init --user {user.pw_name})")
    return problems


#: The checks that read the schema's tables: not run when the schema check fails (their errors
#: would be the database's, SQL included, beside the schema's clear one).
_NEED_SCHEMA = ("store key", "sealed rows")


def _checks(settings: Settings, user: pwd.struct_passwd | None = None) -> list[tuple[str, Callable[[], str]]]:
    from wmproxy.monitoring import health
    from wmproxy.security.filemodes import check_private_file, private_files
    from wmproxy.services.storekey import check_schema, check_store_key, unopenable_sealed

    def modes() -> str:  # the host key's mode is the "host key" check's (health.host_pair_problem)
        for path in private_files(settings):
            check_private_file(path)
        present = [str(path) for path in private_files(settings) if path.exists()]
        if not present:
            return "no store key and no SQLite database file yet: nothing to check (wmproxy-admin init makes them)"
        if user is not None and (problems := _owner_problems(settings, user)):
            raise ConfigError("\n".join(problems))
        owned = f", owned by {user.pw_name}" if user is not None else ""
        return f"{', '.join(present)}: private (0600){owned}"

    def schema() -> str:
        check_schema(settings)
        return "current"

    def key() -> str:
        return check_store_key(settings)

    def ca() -> str:
        mode = settings.security.namespace_mode
        problems = check_ca_dir(settings.security.ca_dir, namespace_mode=mode)
        if problems:
            raise ConfigError("\n".join(problems))
        policies = "" if mode == "ignore" else ", CA policy files parse"
        return f"{settings.security.ca_dir}: CA certificates present, CRLs fresh{policies}"

    def host_cert() -> str:
        found = health.host_cert_check(settings.security.host_cert, utcnow())
        if not found.ok:
            raise ConfigError(found.detail)
        return f"{settings.security.host_cert}: {found.detail}"

    def host_key() -> str:
        problem = health.host_pair_problem(settings.security.host_cert, settings.security.host_key, user)
        if problem is not None:
            raise ConfigError(f"{problem}: the service cannot start")
        return f"{settings.security.host_key}: the host certificate's key{_read_by(user)}"

    def sealed() -> str:
        tried, bad = unopenable_sealed(settings)
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise ConfigError(f"{len(bad)} of {tried} sealed rows (the newest of each kind) cannot be opened with "
                              f"the store key: {shown}; sealed with another key (a process that ran through a key "
                              "rotation, or a node with another key): see docs/keys-and-lifecycle.md")
        return f"the store key opens the {tried} newest sealed rows"

    def policy() -> str:
        from wmproxy.services.authz import policy_file_problem

        problem = policy_file_problem(settings)
        if problem is not None:
            raise ConfigError(problem)
        return f"{settings.security.policy_file} reads" if settings.security.policy_file else "none set"

    def mapping() -> str:
        problems = health.mapping_problems(settings, user)
        if problems is None:
            return "[mapping] mode = none: jobs are not mapped, no file read"
        if problems:
            raise ConfigError(f"{'; '.join(problems)}: every submission is refused")
        return f"the [mapping] files read{_read_by(user)}"

    def catalogue() -> str:
        problem = health.catalogue_problem(settings, user)
        if problem is not None:
            raise ConfigError(f"{problem}: started jobs stay waiting")
        if not settings.jobs.ce_catalogue:
            return "none set: jobs run on the built-in local CE (docs/brokering.md)"
        return f"{settings.jobs.ce_catalogue} reads{_read_by(user)}"

    return [("configuration", lambda: "loads"), ("file modes", modes), ("schema", schema),
            ("store key", key), ("sealed rows", sealed), ("CA directory", ca), ("host certificate", host_cert),
            ("host key", host_key), ("policy file", policy), ("mapping files", mapping), ("CE catalogue", catalogue)]


def _read_by(user: pwd.struct_passwd | None) -> str:
    """How the files were judged readable: by the service user's modes, or as this process."""
    from wmproxy.services.storekey import account_name

    if user is not None:
        return f", readable by {user.pw_name}"
    return f", readable by {account_name(os.geteuid())} (this user; --user judges for the service user)"


def _service_user(name: str | None) -> pwd.struct_passwd | None:
    if name is None:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise click.BadParameter(f"no such user {name!r} (getent passwd {name})", param_hint="--user") from None


def state_owner(settings: Settings) -> tuple[pwd.struct_passwd | None, str]:
    """The service user as the state shows it, for ``check`` run as root without ``--user``: the
    one owner of the store key, the SQLite database (with one) and the ``[sandbox] root`` that
    exist, when it is not root and has an account (``wmproxy-admin init --user`` gives them all
    to the service user), with the owners shown; else None and the owners (or that none exists)."""
    from wmproxy.security.filemodes import sqlite_path
    from wmproxy.services.storekey import account_name

    places = [("store key", Path(settings.security.store_key_file)), ("[sandbox] root", Path(settings.sandbox.root))]
    if (db := sqlite_path(settings.database.url)) is not None:
        places.insert(1, ("SQLite database", db))
    owners: dict[str, int] = {}
    for label, path in places:
        with contextlib.suppress(OSError):
            owners[label] = path.stat().st_uid
    if not owners:
        return None, "none of " + ", ".join(label for label, _path in places) + " exists"
    shown = ", ".join(f"{label} {account_name(uid)}" for label, uid in owners.items())
    uids = set(owners.values())
    if len(uids) != 1 or 0 in uids:
        return None, shown
    try:
        return pwd.getpwuid(uids.pop()), shown
    except KeyError:
        return None, shown


def _judged_as(settings: Settings, user: str | None) -> pwd.struct_passwd | None:
    """The account ``check`` judges the files for: ``--user``'s; run as root without it, the
    owner of the service's state (:func:`state_owner`), said on stderr, or root itself with a
    warning naming ``--user`` when the state has no one owner but root (root reads every file:
    it would say ok where the service user cannot read one)."""
    if user is not None or os.geteuid() != 0:
        return _service_user(user)
    owner, shown = state_owner(settings)
    if owner is not None:
        click.echo(f"note: run as root without --user: the files are judged as {owner.pw_name} reads them, the "
                   f"owner of the service's state ({shown}); --user NAME names the service user", err=True)
        return owner
    click.echo(f"warning: run as root without --user, and the service's state has no one owner but root ({shown}): "
               "the files are judged as root reads them, and root reads every file; run `wmproxy-admin check "
               "--user <service user>` to judge them as the service reads them", err=True)
    return None


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--user", default=None, metavar="NAME",
              help="the service user (gunicorn's and the workers'): files are judged as it can read them, the "
                   "store key and SQLite database must be its own (as root without it: the owner of the state, "
                   "when it is one user other than root)")
@pass_settings
def check(settings: Settings, as_json: bool, user: str | None) -> None:
    """Check configuration, file modes, schema, store key, sealed rows, CA directory, host
    certificate and key, policy file, mapping files and CE catalogue; exit 1 on a problem.

    The files are read as the user running the command; run it as the service user, or as root
    with ``--user``; as root without it, as the owner of the service's state when it has one
    (not root; said on stderr), else as root with a warning naming ``--user``. The store key and
    sealed rows are not checked when the schema check fails."""
    account = _judged_as(settings, user)
    results: list[tuple[str, bool | None, str]] = []
    for name, run in _checks(settings, account):
        if name in _NEED_SCHEMA and not {n: ok for n, ok, _d in results}.get("schema", True):
            results.append((name, None, "not checked: the schema check failed"))
            continue
        try:
            results.append((name, True, run()))
        except (ConfigError, OSError, ValueError) as exc:
            results.append((name, False, str(exc)))
        except Exception as exc:  # noqa: BLE001 - e.g. the database is unreachable: a finding, not a crash
            results.append((name, False, f"{type(exc).__name__}: {exc}"))
    if as_json:
        _print_json([{"check": n, "ok": ok, "detail": d} for n, ok, d in results])
    else:
        table = Table("check", "result", "detail")
        for name, ok, detail in results:
            _add_row(table, name, "ok" if ok else "skipped" if ok is None else "PROBLEM", detail)
        Console(width=200).print(table)
    if not all(ok for _n, ok, _d in results if ok is not None):
        raise SystemExit(1)
