"""Operator commands on the API's own service layer (backend/jobs.py, backend/health.py):

    flask tasks submit add --json '{"x": 1, "y": 2}'   # prints the id, then the status
    flask tasks status <id> [--wait SECONDS]
    flask tasks cancel <id>
    flask workers                                      # each worker and its running tasks

Errors are the API's messages on stderr with exit status 1, never a traceback; a
Redis outage fails within the Redis timeouts, as the API's 503 does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click
import redis
from flask import Flask, current_app, g
from flask.cli import AppGroup, with_appcontext
from kombu.exceptions import OperationalError

from backend import jobs, tracing
from backend.errors import APIError
from backend.health import readiness
from backend.schemas import TaskStatus
from backend.views import parse_json

REDIS_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError)

tasks = AppGroup("tasks", help="Submit, look up and cancel tasks, as the API does.")


@contextmanager
def service_errors() -> Iterator[None]:
    """The API's error message as a one-line error (exit status 1) instead of a traceback."""
    try:
        yield
    except APIError as exc:
        raise click.ClickException(exc.message) from None
    except REDIS_UNAVAILABLE as exc:
        raise click.ClickException(f"Redis is unavailable, retry later ({exc})") from None


def _echo_status(status: TaskStatus) -> None:
    click.echo(json.dumps(status.model_dump(mode="json")))


@tasks.command("submit")
@click.argument("name")
@click.option("--json", "payload", default="{}", show_default=True, help="The task's input: a JSON object.")
def submit_command(name: str, payload: str) -> None:
    """Submit the public task NAME (see GET /tasks): prints its id, then its status."""
    # The worker's log lines for this task carry this id, as for an API request.
    g.request_id = f"cli-{tracing.new_request_id()}"
    with service_errors():
        submission = jobs.submit(name, parse_json(payload))
        status = jobs.task_status(submission.task_id)
    click.echo(submission.task_id)
    _echo_status(status)


@tasks.command("status")
@click.argument("task_id")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    help="Seconds to wait for a change of state or progress (at most STATUS_MAX_WAIT).",
)
def status_command(task_id: str, wait: float) -> None:
    """Print the status of task TASK_ID (the API's status object)."""
    with service_errors():
        status = jobs.wait_for_change(task_id, wait)
    _echo_status(status)


@tasks.command("cancel")
@click.argument("task_id")
def cancel_command(task_id: str) -> None:
    """Cancel task TASK_ID: a queued task never runs, a running long task stops at its next step."""
    with service_errors():
        status = jobs.cancel(task_id)
    _echo_status(status)


@click.command("workers")
@with_appcontext
def workers_command() -> None:
    """Ping every worker and list the tasks each one is running."""
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
        active = current_app.extensions["celery"].control.inspect(destination=names, timeout=timeout).active() or {}
    for name in names:
        running = active.get(name)
        if running is None:
            click.echo(f"{name}: answers pings; did not list its tasks within {timeout:g} s")
            continue
        click.echo(f"{name}: {len(running)} active task{'' if len(running) == 1 else 's'}")
        for task in running:
            click.echo(f"  {task['id']}  {task['name']}  {json.dumps(task.get('kwargs') or {})}")


def register_commands(app: Flask) -> None:
    app.cli.add_command(tasks)
    app.cli.add_command(workers_command)
