"""The service layer: submit jobs, read their status, wait for a change, cancel them.
The API's routes, the CLI and the tests all go through these functions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from celery.utils import uuid
from flask import current_app

from backend.jobs import extensions, states
from backend.jobs.callers import Caller
from backend.jobs.errors import ServiceError
from backend.jobs.idempotency import fingerprint, redis_key, replayed_job, validate_key
from backend.jobs.inputs import JOB_ID, validate_input
from backend.jobs.records import Created
from backend.jobs.registry import PublicTask, public_tasks
from backend.jobs.status import JobStatus, build_status
from backend.jobs.watch import Watch


@dataclass(frozen=True)
class Submission:
    job_id: str
    task_name: str
    # True when an Idempotency-Key matched an earlier submit: nothing new was enqueued.
    replayed: bool = False
    # When the job is due, if it waits in the schedule (SCHEDULED); None: queued now.
    run_at: datetime | None = None

    @property
    def state(self) -> str:
        return states.QUEUED if self.run_at is None else states.SCHEDULED


def find_task(name: str) -> PublicTask:
    task = public_tasks().get(name)
    if task is None:
        raise ServiceError(404, "unknown_task", f"no public task named {name!r}; see GET /tasks")
    return task


def running_limit(caller: Caller) -> int:
    """How many of the caller's jobs may run at once across the workers (0: no limit): its
    own limit (the clients file), else CLIENT_MAX_RUNNING."""
    if caller.max_running is not None:
        return caller.max_running
    limit: int = current_app.config["CLIENT_MAX_RUNNING"]
    return limit


def submit(
    task_name: str,
    data: Any,
    *,
    caller: Caller,
    from_query: bool = False,
    idempotency_key: str | None = None,
    run_at: datetime | None = None,
    deadline: datetime | None = None,
) -> Submission:
    """Validate the input for the named task and enqueue a job of it, owned by `caller`:
    now, or at `run_at` through the server-side schedule, and never if it has not started
    by `deadline` (backend/jobs/timing.py).

    Nothing is enqueued unless the input is valid. With an idempotency key, a repeat
    of an earlier submit by the same client returns that submit's job instead.
    """
    if idempotency_key is not None:
        validate_key(idempotency_key)
    task = find_task(task_name)
    # mode="json": URLs, dates, enums become plain JSON for the JSON-only serializer.
    params = validate_input(task.input_model, data, from_query=from_query).model_dump(mode="json")
    return enqueue(task, params, owner=caller, idempotency_key=idempotency_key, run_at=run_at, deadline=deadline)


def enqueue(
    task: PublicTask,
    params: dict[str, Any],
    *,
    owner: Caller,
    idempotency_key: str | None = None,
    retry_of: str | None = None,
    run_at: datetime | None = None,
    deadline: datetime | None = None,
) -> Submission:
    """Record, index and publish a job of `task` with validated `params`, owned by `owner`
    and run under its running limit; at `run_at`, if given, through the schedule.

    The record is written first: by the task's publish, in the same round trip as the
    message (backend/taskqueue/recorded_publish.py), or, for an idempotency key or a
    retry, before it, in one atomic step with the key's binding or the retry's link
    (JobRecords.create), which decide whether to publish at all. A failed publish
    removes the record again.
    """
    job_id = uuid()
    # This Flask app's Celery, not the process-wide default app that @shared_task points to.
    publish = partial(
        extensions.celery_app().tasks[task.name].apply_async,
        kwargs=params, task_id=job_id, owner=owner.name, client_max_running=running_limit(owner),
        **({} if run_at is None else {"eta": run_at}),
        **({} if deadline is None else {"expires": deadline}),
    )
    if idempotency_key is None and retry_of is None:
        publish()
        return Submission(job_id, task.name, run_at=run_at)
    idempotency = None
    if idempotency_key is not None:
        request = fingerprint(task.name, params) if retry_of is None else fingerprint("retry", {"job": retry_of})
        idempotency = (redis_key(owner.name, idempotency_key), request)
    records = extensions.job_records()
    due_ms = None if run_at is None else int(run_at.timestamp() * 1000)
    deadline_ms = None if deadline is None else int(deadline.timestamp() * 1000)
    record = records.new_record(job_id, task.name, owner.name, params, retry_of, due_ms=due_ms, deadline_ms=deadline_ms)
    created = records.create(record, idempotency)
    if idempotency is not None and (replayed := replayed_job(created, idempotency[1])):
        return Submission(replayed, task.name, replayed=True)
    if created.outcome != "created":
        raise _not_retried(retry_of or "", created)
    publish(record_written=True)
    return Submission(job_id, task.name, run_at=run_at)


def _not_retried(job_id: str, created: Created) -> ServiceError:
    """Why a retry lost its atomic check (another retry, or a state change, came first)."""
    if created.outcome == "already_retried":
        return already_retried(job_id, created.job_id or "")
    if created.outcome == "not_retryable":
        return not_retryable_state(job_id, created.state or "")
    return not_found(job_id)


def already_retried(job_id: str, retry_id: str) -> ServiceError:
    return ServiceError(
        409, "already_retried", f"task {job_id} was already retried by {retry_id}; retry that one if it failed",
        details={"retried_by": retry_id},
    )


def not_retryable_state(job_id: str, state: str) -> ServiceError:
    return ServiceError(
        409, "not_retryable", f"task {job_id} is {state}: only a FAILURE or REVOKED task can be retried"
    )


def job_status(job_id: str, *, caller: Caller) -> JobStatus:
    """The job's status; 404 for an id never submitted or expired, and for another
    client's job (the same 404: the caller does not learn that the id exists)."""
    # A malformed id was never submitted: answer 404 without asking Redis.
    if not JOB_ID.fullmatch(job_id):
        raise not_found(job_id)
    backend = extensions.celery_app().backend
    # Record and result in one round trip (both live in the result backend's Redis),
    # decoded as backend.get_task_meta() would: 301 -> 164 µs CPU per read, measured in-process.
    record, raw_meta = extensions.job_records().get_with(job_id, backend.get_key_for_task(job_id))
    if record is None or not caller.sees(record.get("owner")):
        raise not_found(job_id)
    return status_from(job_id, record, raw_meta)


def status_from(job_id: str, record: dict[str, str], raw_meta: bytes | None, backend: Any = None) -> JobStatus:
    """The status from a record and the raw result Celery stored (None: no worker has written one),
    decoded by `backend` (the app's result backend by default)."""
    backend = backend or extensions.celery_app().backend
    meta = backend.decode_result(raw_meta) if raw_meta else {"status": states.CELERY_PENDING, "result": None}
    return build_status(job_id, record, meta)


def not_found(job_id: str) -> ServiceError:
    # "task" in the code and message: the HTTP API's wording, kept for its clients.
    return ServiceError(404, "task_not_found", f"no task with id {job_id!r} (never submitted, or expired)")


def status_channel(job_id: str) -> bytes:
    """The pub/sub channel every state of the job is published on (its result key)."""
    key: bytes = extensions.celery_app().backend.get_key_for_task(job_id)
    return key


def wait_for_change(job_id: str, seconds: float, *, caller: Caller) -> JobStatus:
    """The job's status once its state or progress changes, or after `seconds`.

    Fed by the result backend's pub/sub (a Watch), not a sleep loop. A job that has
    already ended is answered at once.
    """
    seconds = min(seconds, current_app.config["STATUS_MAX_WAIT"])
    if seconds <= 0 or not JOB_ID.fullmatch(job_id):
        return job_status(job_id, caller=caller)
    deadline = time.monotonic() + seconds
    # Subscribed before the first read, so Redis' confirmation arrives while the status
    # is read: one round trip less per long-poll than subscribing after it.
    with extensions.subscriptions().subscribed(status_channel(job_id)) as subscription:
        first = job_status(job_id, caller=caller)
        if first.state in states.FINAL_STATES:
            return first
        # A long-poll holds a gunicorn thread while it waits: 503 when the process has none to spare.
        with extensions.waiting_slots().take():
            watch = Watch(subscription, lambda: job_status(job_id, caller=caller))
            while watch.status == first and (remaining := deadline - time.monotonic()) > 0:
                watch.next_change(remaining)
            return watch.status


def cancel(job_id: str, *, caller: Caller) -> JobStatus:
    """Cancel a job: a queued one never runs; a running long task stops at its next step."""
    status = job_status(job_id, caller=caller)
    if status.state in states.FINAL_STATES:
        # "task" in the code and message: the HTTP API's wording, kept for its clients.
        raise ServiceError(409, "task_finished", f"task {job_id} already ended in state {status.state}")
    celery = extensions.celery_app()
    if extensions.job_records().request_cancel(job_id):
        # The record's flag is what stops the job: the worker that takes the message
        # checks it atomically before running anything. No control.revoke broadcast:
        # kombu retries broadcasts without limit, so a cancel would hang while the
        # broker is down, and workers would keep every revoked id in memory.
        celery.backend.mark_as_revoked(job_id, "cancelled before it started")
        # A scheduled job leaves the schedule (where it shares the records' database; else
        # the worker that takes it when due refuses it, as any cancelled job).
        celery.Task.schedule.remove(job_id)
    elif status.state == states.RETRY and celery.Task.schedule.remove(job_id):
        # Its next attempt waited in the schedule and is gone from it: nothing of it can run
        # again, so it ends now rather than when that attempt would have been refused.
        celery.backend.mark_as_revoked(job_id, "cancelled while it waited to try again")
    return job_status(job_id, caller=caller)
