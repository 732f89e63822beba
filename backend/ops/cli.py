"""Operator commands on the API's own service layer (backend/jobs/service.py,
backend/jobs/history.py, backend/ops/health.py):

    flask jobs submit add --json '{"x": 1, "y": 2}'   # prints the job's id, then its status
    flask jobs status <id> [--wait SECONDS]
    flask jobs list [--state FAILURE] [--name add] [--owner cli] [--limit N] [--cursor C] [--json]
    flask jobs retry <id>                             # prints the new job's id, then its status
    flask jobs retry --state FAILURE [--name add]     # every match, at most BULK_ACTION_MAX_JOBS
    flask jobs cancel <id>
    flask jobs cancel --state QUEUED [--name add]
    flask workers                                     # each worker and the jobs it runs
    flask clients add NAME --role submit              # prints a new token of the API client NAME
    flask clients list
    flask clients limit NAME 4                        # at most 4 of NAME's jobs run at once
    flask clients revoke NAME [--token ID]

The jobs commands act as an admin (every job); what they submit or retry belongs to `cli`.

The filters are GET /jobs's, validated by the same models; retry and cancel take a job
id or filters, never both. Errors are the API's messages on stderr with exit status 1,
never a traceback; a Redis outage fails within the Redis timeouts, as the API's 503
does. `flask tasks` is the former name of `flask jobs`, kept as a deprecated alias.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import redis
from flask import Flask, current_app, g
from flask.cli import AppGroup, with_appcontext
from pydantic import BaseModel

from backend.jobs import extensions, history, service
from backend.jobs.callers import ROLE_LABELS, Caller, Role
from backend.jobs.errors import REDIS_FULL_MESSAGE, REDIS_UNAVAILABLE, ServiceError, is_redis_full
from backend.jobs.history import BulkOutcome, CancelFilters, JobListQuery, RetryFilters
from backend.jobs.index import MAX_PAGE_SIZE
from backend.jobs.inputs import parse_json, validate_input
from backend.jobs.status import JobStatus
from backend.ops import tracing
from backend.ops.clients import ClientsFile, ClientsFileError
from backend.ops.health import readiness

# Jobs submitted (and retried) here belong to this client (idempotency keys are per client).
CLI_CLIENT = "cli"
# An operator at the command line sees and acts on every job.
CLI_CALLER = Caller(CLI_CLIENT, Role.ADMIN)
# The options that select jobs, as GET /jobs names them.
FILTERS = ("state", "name", "owner", "since", "until")

F = TypeVar("F", bound=Callable[..., Any])
Model = TypeVar("Model", bound=BaseModel)

jobs = AppGroup("jobs", help="Submit, look up, list, retry and cancel jobs, as the API does.")


# Redis not answering, or answering with an error (such as the refusal of a full Redis).
REDIS_ERRORS: tuple[type[Exception], ...] = (*REDIS_UNAVAILABLE, redis.RedisError)


@contextmanager
def service_errors() -> Iterator[None]:
    """The API's error message as a one-line error (exit status 1) instead of a traceback."""
    try:
        yield
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    except REDIS_ERRORS as exc:
        # First: kombu wraps a publish that a full Redis refused in an OperationalError.
        if is_redis_full(exc):
            raise click.ClickException(f"{REDIS_FULL_MESSAGE}; retry later") from None
        if isinstance(exc, REDIS_UNAVAILABLE):
            raise click.ClickException(f"Redis is unavailable, retry later ({exc})") from None
        raise


def _echo_status(status: JobStatus) -> None:
    click.echo(json.dumps(status.model_dump(mode="json")))


def _trace() -> None:
    """The worker's log lines for the jobs this command sends carry this id, as for an API request."""
    g.request_id = f"cli-{tracing.new_request_id()}"


def filter_options(command: F) -> F:
    """--state, --name, --owner, --since, --until: GET /jobs's filters."""
    options = [
        click.option(
            "--state",
            multiple=True,
            help="Jobs in this state; repeat it or separate states with commas: FAILURE,REVOKED.",
        ),
        click.option("--name", help="Jobs of this task."),
        click.option("--owner", help="Jobs submitted by this client id (or `anonymous`, `cli`, `code`)."),
        click.option("--since", help="Submitted at or after this time (ISO 8601 with a zone)."),
        click.option("--until", help="Submitted at or before this time (ISO 8601 with a zone)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _given_filters(options: dict[str, Any]) -> dict[str, str]:
    """The filters given on the command line, as the query string would carry them."""
    given = {name: options[name] for name in FILTERS if options.get(name)}
    if "state" in given:
        given["state"] = ",".join(given["state"])
    return given


def _validated(model: type[Model], arguments: dict[str, Any]) -> Model:
    # Text, like a query string: validated (and converted) as GET /jobs does.
    with service_errors():
        return validate_input(model, arguments, from_query=True)


def _one_job_or_filters(job_id: str | None, filters: dict[str, str], example: str) -> None:
    if job_id is not None and filters:
        raise click.UsageError("give a job ID or filters (--state, --name, --owner, --since, --until), not both")
    if job_id is None and not filters:
        raise click.UsageError(f"give a job ID, or filters to act on every matching job ({example})")


@jobs.command("submit")
@click.argument("task_name", metavar="TASK")
@click.option("--json", "payload", default="{}", show_default=True, help="The task's input: a JSON object.")
def submit_command(task_name: str, payload: str) -> None:
    """Submit a job of the public TASK (see GET /tasks): prints its id, then its status."""
    _trace()
    with service_errors():
        submission = service.submit(task_name, parse_json(payload), caller=CLI_CALLER)
        status = service.job_status(submission.job_id, caller=CLI_CALLER)
    click.echo(submission.job_id)
    _echo_status(status)


@jobs.command("status")
@click.argument("job_id")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    help="Seconds to wait for a change of state or progress (at most STATUS_MAX_WAIT).",
)
def status_command(job_id: str, wait: float) -> None:
    """Print the status of job JOB_ID (the API's status object)."""
    with service_errors():
        status = service.wait_for_change(job_id, wait, caller=CLI_CALLER)
    _echo_status(status)


@jobs.command("list")
@filter_options
@click.option(
    "--limit",
    metavar="N",
    help=f"Jobs per page (default {JobListQuery.model_fields['limit'].default}, at most {MAX_PAGE_SIZE}).",
)
@click.option("--cursor", help="The next cursor the previous page printed, with the same filters.")
@click.option("--json", "as_json", is_flag=True, help="Print GET /jobs's JSON instead of a table.")
def list_command(limit: str | None, cursor: str | None, as_json: bool, **filters: Any) -> None:
    """List jobs, newest first, with the number in each state (all pages), as GET /jobs does."""
    arguments: dict[str, Any] = _given_filters(filters)
    arguments.update({name: value for name, value in (("limit", limit), ("cursor", cursor)) if value is not None})
    query = _validated(JobListQuery, arguments)
    with service_errors():
        listing = history.list_jobs(query, caller=CLI_CALLER)
    if as_json:
        click.echo(json.dumps(listing.model_dump(mode="json")))
        return
    if listing.jobs:
        header = ["ID", "NAME", "STATE", "OWNER", "SUBMITTED", "FINISHED", "RETRY"]
        for line in _aligned([header, *(_row(job) for job in listing.jobs)]):
            click.echo(line)
    else:
        click.echo("no jobs on this page" if query.cursor else "no jobs match")
    click.echo(_counts_line(listing.counts))
    if listing.next_cursor:
        click.echo(f"next page: --cursor {listing.next_cursor}")


def _row(job: JobStatus) -> list[str]:
    links = [f"{link} {other}" for link, other in (("retry of", job.retry_of), ("retried by", job.retried_by)) if other]
    return [
        job.task_id,
        job.name,
        job.state,
        job.owner or "-",
        job.submitted_at or "-",
        job.finished_at or "-",
        ", ".join(links) or "-",
    ]


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _counts_line(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    by_state = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    return f"{total} job{'' if total == 1 else 's'} match" + (f": {by_state}" if by_state else "")


@jobs.command("retry")
@click.argument("job_id", required=False)
@filter_options
def retry_command(job_id: str | None, **filters: Any) -> None:
    """Retry job JOB_ID, or every FAILURE and REVOKED job the filters match, as a new job.

    One job: prints the new job's id, then its status. With filters (--state
    FAILURE,REVOKED by default), as POST /jobs/retry: jobs not retried yet, newest first,
    at most BULK_ACTION_MAX_JOBS per call; run it again while it says more jobs match.
    """
    given = _given_filters(filters)
    _one_job_or_filters(job_id, given, "--state FAILURE")
    _trace()
    if job_id is not None:
        with service_errors():
            submission = history.retry(job_id, caller=CLI_CALLER)
            status = service.job_status(submission.job_id, caller=CLI_CALLER)
        click.echo(submission.job_id)
        _echo_status(status)
        return
    selected = _validated(RetryFilters, given)
    with service_errors():
        outcome = history.retry_matching(selected, caller=CLI_CALLER)
    _echo_outcome("retried", outcome, [f"{job['task_id']} -> {job['retry_id']}  {job['name']}" for job in outcome.jobs])


@jobs.command("cancel")
@click.argument("job_id", required=False)
@filter_options
def cancel_command(job_id: str | None, **filters: Any) -> None:
    """Cancel job JOB_ID, or every job not ended that the filters match: a queued job never
    runs, a running long task stops at its next step.

    One job: prints its status. With filters, as POST /jobs/cancel: newest first, at most
    BULK_ACTION_MAX_JOBS per call; run it again while it says more jobs match.
    """
    given = _given_filters(filters)
    _one_job_or_filters(job_id, given, "--state QUEUED")
    if job_id is not None:
        with service_errors():
            status = service.cancel(job_id, caller=CLI_CALLER)
        _echo_status(status)
        return
    selected = _validated(CancelFilters, given)
    with service_errors():
        outcome = history.cancel_matching(selected, caller=CLI_CALLER)
    _echo_outcome("cancelled", outcome, [f"{job['task_id']}  {job['state']}" for job in outcome.jobs])


def _echo_outcome(done: str, outcome: BulkOutcome, lines: list[str]) -> None:
    click.echo(f"{done} {outcome.done} job{'' if outcome.done == 1 else 's'}")
    for line in lines:
        click.echo(f"  {line}")
    if outcome.skipped:
        click.echo("skipped: " + ", ".join(f"{count} {reason}" for reason, count in sorted(outcome.skipped.items())))
    if outcome.more:
        click.echo(f"more jobs match: run the command again (at most {outcome.limit} per call)")


@click.command("workers")
@with_appcontext
def workers_command() -> None:
    """Ping every worker and list the jobs each one is running."""
    timeout = current_app.config["READYZ_PING_TIMEOUT"]
    # readiness() pings Redis before any broadcast: kombu retries a broadcast to a
    # dead broker without limit, so this command would hang instead of failing.
    _, checks = readiness()
    if not checks["redis"]["ok"]:
        raise click.ClickException(f"Redis is unavailable, retry later ({checks['redis']['error']})")
    names = checks["workers"]["names"]
    if not names:
        raise click.ClickException(f"no worker answered a ping within {timeout:g} s")
    with service_errors():
        active = extensions.celery_app().control.inspect(destination=names, timeout=timeout).active() or {}
    for name in names:
        running = active.get(name)
        if running is None:
            click.echo(f"{name}: answers pings; did not list its jobs within {timeout:g} s")
            continue
        click.echo(f"{name}: {len(running)} active job{'' if len(running) == 1 else 's'}")
        for job in running:
            click.echo(f"  {job['id']}  {job['name']}  {json.dumps(job.get('kwargs') or {})}")


clients = AppGroup("clients", help="Add, list and revoke the API's clients (API_CLIENTS_FILE, docs/clients.md).")


def _clients_file() -> ClientsFile:
    path = current_app.config["API_CLIENTS_FILE"]
    if not path:
        raise click.ClickException("API_CLIENTS_FILE is unset: set it (in .env, e.g. var/clients.json) first")
    return ClientsFile(Path(path))


@contextmanager
def clients_file_errors() -> Iterator[None]:
    try:
        yield
    except ClientsFileError as exc:
        raise click.ClickException(str(exc)) from None


@clients.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLE_LABELS), help="read, submit or admin; required for a new client.")
@click.option("--max-running", type=click.IntRange(min=0), metavar="N",
              help="A new client's jobs running at once at most (0: no limit); default: CLIENT_MAX_RUNNING.")
def add_client_command(name: str, role: str | None, max_running: int | None) -> None:
    """Add client NAME, or a token to it (rotation): prints the new token, once; only its hash is kept."""
    with clients_file_errors():
        client, token = _clients_file().add(name, Role.named(role) if role else None, max_running)
    added, count = client.tokens[-1].id, len(client.tokens)
    click.echo(
        f"client {client.name} ({client.role.label}): token {added} added, {count} in all; "
        "this is the only time it is shown:",
        err=True,
    )
    click.echo(token)


@clients.command("list")
def list_clients_command() -> None:
    """Each client's name, role, tokens and running limit (a token: the start of its hash, and when it was added)."""
    with clients_file_errors():
        listed = _clients_file().read()
    if not listed:
        click.echo("no clients")
        return
    rows = [["NAME", "ROLE", "TOKENS", "MAX_RUNNING", "TOKEN IDS (ADDED)"]]
    for client in sorted(listed.values(), key=lambda client: client.name):
        ids = ", ".join(f"{token.id} ({token.added_at})" for token in client.tokens)
        rows.append([client.name, client.role.label, str(len(client.tokens)), _limit_label(client.max_running), ids])
    for line in _aligned(rows):
        click.echo(line)


def _limit_label(max_running: int | None) -> str:
    """A client's running limit in one word: `4`, `unlimited`, or `default(…)` (CLIENT_MAX_RUNNING)."""
    if max_running is None:
        return f"default({current_app.config['CLIENT_MAX_RUNNING'] or 'unlimited'})"
    return str(max_running) if max_running else "unlimited"


@clients.command("limit")
@click.argument("name")
@click.argument("max_running", metavar="N|default")
def limit_client_command(name: str, max_running: str) -> None:
    """Run at most N of client NAME's jobs at once (0: no limit; `default`: CLIENT_MAX_RUNNING).
    Jobs it submits from then on carry the new limit."""
    if max_running == "default":
        limit = None
    elif max_running.isdigit():
        limit = int(max_running)
    else:
        raise click.BadParameter(f"{max_running!r} is neither a whole number nor `default`", param_hint="N")
    with clients_file_errors():
        client = _clients_file().set_limit(name, limit)
    click.echo(f"{client.name}: max running {_limit_label(client.max_running)}")


@clients.command("revoke")
@click.argument("name")
@click.option("--token", "token_id", metavar="ID", help="Revoke only this token (its id in `flask clients list`).")
def revoke_client_command(name: str, token_id: str | None) -> None:
    """Revoke every token of client NAME (the client is gone), or one with --token. Every API
    process stops accepting it within a few seconds, without a restart."""
    with clients_file_errors():
        revoked = _clients_file().revoke(name, token_id)
    click.echo(f"revoked {revoked} token{'' if revoked == 1 else 's'} of {name}")


def init_app(app: Flask) -> None:
    app.cli.add_command(jobs)
    app.cli.add_command(clients)
    # The same commands under their former name, hidden from --help.
    former = AppGroup("tasks", help="Deprecated: use `flask jobs`.", hidden=True, deprecated=True)
    for name, command in jobs.commands.items():
        former.add_command(command, name)
    app.cli.add_command(former)
    app.cli.add_command(workers_command)
