"""Operator commands on the API's own service layer (backend/jobs/service.py, backend/ops/health.py):

    flask jobs submit add --json '{"x": 1, "y": 2}'   # prints the job's id, then its status
    flask jobs status <id> [--wait SECONDS]
    flask jobs cancel <id>
    flask workers                                     # each worker and the jobs it runs

Errors are the API's messages on stderr with exit status 1, never a traceback; a
Redis outage fails within the Redis timeouts, as the API's 503 does. `flask tasks`
is the former name of `flask jobs`, kept as a deprecated alias.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask, current_app, g
from flask.cli import AppGroup, with_appcontext

from backend.jobs import extensions, service
from backend.jobs.errors import REDIS_UNAVAILABLE, ServiceError
from backend.jobs.inputs import parse_json
from backend.jobs.status import JobStatus
from backend.ops import tracing
from backend.ops.health import readiness

# Jobs submitted here belong to this client (idempotency keys are per client).
CLI_CLIENT = "cli"

jobs = AppGroup("jobs", help="Submit, look up and cancel jobs, as the API does.")


@contextmanager
def service_errors() -> Iterator[None]:
    """The API's error message as a one-line error (exit status 1) instead of a traceback."""
    try:
        yield
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    except REDIS_UNAVAILABLE as exc:
        raise click.ClickException(f"Redis is unavailable, retry later ({exc})") from None


def _echo_status(status: JobStatus) -> None:
    click.echo(json.dumps(status.model_dump(mode="json")))


@jobs.command("submit")
@click.argument("task_name", metavar="TASK")
@click.option("--json", "payload", default="{}", show_default=True, help="The task's input: a JSON object.")
def submit_command(task_name: str, payload: str) -> None:
    """Submit a job of the public TASK (see GET /tasks): prints its id, then its status."""
    # The worker's log lines for this job carry this id, as for an API request.
    g.request_id = f"cli-{tracing.new_request_id()}"
    with service_errors():
        submission = service.submit(task_name, parse_json(payload), client_id=CLI_CLIENT)
        status = service.job_status(submission.job_id)
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
        status = service.wait_for_change(job_id, wait)
    _echo_status(status)


@jobs.command("cancel")
@click.argument("job_id")
def cancel_command(job_id: str) -> None:
    """Cancel job JOB_ID: a queued job never runs, a running long task stops at its next step."""
    with service_errors():
        status = service.cancel(job_id)
    _echo_status(status)


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


def init_app(app: Flask) -> None:
    app.cli.add_command(jobs)
    # The same commands under their former name, hidden from --help.
    former = AppGroup("tasks", help="Deprecated: use `flask jobs`.", hidden=True, deprecated=True)
    for name, command in jobs.commands.items():
        former.add_command(command, name)
    app.cli.add_command(former)
    app.cli.add_command(workers_command)
