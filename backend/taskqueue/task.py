"""The base class of every task: each run is tied to its job's record.

Before a job runs, the worker marks its record started in one atomic step that
also refuses a job cancelled while queued and a job whose earlier deliveries all
died with their worker. While it runs, a task reports progress and checks for a
cooperative cancel. Publishing writes the record first, so a job's id is known
(QUEUED) before any worker can see its message: with the message, in one script, where
the queues and the records share a Redis database (recorded_publish.py).

In a worker, every write of a job's own (its start, its progress and states, a
retry's resend) waits while Redis is full (results.wait_while_full): a job pauses
there, it does not fail.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any

from celery import Task
from celery.exceptions import Ignore
from celery.result import AsyncResult
from celery.utils import uuid

from backend.jobs import states
from backend.jobs.records import ALREADY_ENDED, CODE_OWNER, NOT_STARTED_BY_DEADLINE, JobRecords
from backend.jobs.registry import attempts_allowed
from backend.jobs.schedule import Schedule
from backend.taskqueue.recorded_publish import PendingRecord, publishing
from backend.taskqueue.results import wait_while_full

logger = logging.getLogger(__name__)

# In the headers of every message RecordedTask publishes: its job's record exists already,
# so the worker that receives it need not ask Redis (backend/taskqueue/consumer.py).
RECORDED_HEADER = "job_recorded"
# The client that submitted the job, and how many of its jobs may run at once (0: no
# limit): the API stamps them, the worker's running limits read them (running_limits.py).
OWNER_HEADER = "job_owner"
CLIENT_LIMIT_HEADER = "client_max_running"


def _deadline_ms(options: dict[str, Any]) -> int | None:
    """The deadline of a job sent with Celery's `expires` (taken out of `options`: the start
    script enforces it, and ends the job DeadlineExceeded), in epoch milliseconds."""
    expires = options.pop("expires", None)
    if expires is None:
        return None
    if isinstance(expires, str):
        expires = datetime.fromisoformat(expires)
    if isinstance(expires, datetime):
        return int((expires if expires.tzinfo else expires.replace(tzinfo=UTC)).timestamp() * 1000)
    return int((time.time() + float(expires)) * 1000)


def _due_ms(options: dict[str, Any]) -> int | None:
    """When a job sent with Celery's `countdown` or `eta` (taken out of `options`: no worker
    holds it) is due, in epoch milliseconds; None for now (none given, or not in the future).
    A naive `eta` is in UTC, as Celery reads it (enable_utc)."""
    countdown, eta = options.pop("countdown", None), options.pop("eta", None)
    now = time.time()
    if eta is not None:
        if isinstance(eta, str):
            eta = datetime.fromisoformat(eta)
        due = (eta if eta.tzinfo else eta.replace(tzinfo=UTC)).timestamp()
    elif countdown is not None:
        due = now + float(countdown)
    else:
        return None
    return int(due * 1000) if due > now else None


class DeliveryLimitExceeded(Exception):
    """The job's earlier runs all died with their worker; it is not run again."""


class DeadlineExceeded(Exception):
    """The job had not started by its deadline (`deadline_seconds`, `expires_at`, Celery's
    `expires`): it never runs, and ends REVOKED with this error."""


class RecordedTask(Task):
    """A task whose every job has a record (`job:<id>`): progress, cancel, delivery count.

    `records`, `max_deliveries` and `record_with_message` are set by make_celery on the
    app's subclass.
    """

    abstract = True
    records: JobRecords
    max_deliveries: int = 3
    # Seconds between trims of the job index by each worker (backend/taskqueue/index_trimmer.py).
    index_trim_seconds: float = 10.0
    # False for internal tasks (backend/taskqueue/periodic.py): no job:<id> record, so no
    # status lookup, cancel or delivery count; they must be safe to run twice.
    job_record: bool = True
    # How many jobs of this task may run at once across the cluster (0: no limit): declared
    # with the task, `@public_task(Model, max_running=2)` (backend/taskqueue/running_limits.py).
    max_running: int = 0
    # Where a job due later waits (backend/jobs/schedule.py); set by make_celery.
    schedule: Schedule
    # True where the broker's queues and the records share a Redis database: the transport
    # then writes a new job's record in the script that pushes its message (recorded_publish.py).
    record_with_message: bool = False

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        *,
        record_written: bool = False,
        owner: str = CODE_OWNER,
        client_max_running: int = 0,
        max_attempts: int | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Publish, with the job's record and index entry written first (unless the
        caller did: `record_written`, as the service does for an idempotency key or
        a retry). `owner` is the client that submits; `code` outside the API.
        `client_max_running` limits how many of the owner's jobs run at once (0: no limit).
        `max_attempts` is for a retry's next attempt (retry() passes it; 0: no limit).

        The record makes the id known (QUEUED) and listed before any worker can see
        the message; if publishing fails it is removed again, so a failed submit
        leaves nothing behind. A `countdown` or `eta` in the future puts the message in the
        server-side schedule (backend/jobs/schedule.py), not in a worker, and the job is
        SCHEDULED until then.
        """
        if self.app.conf.task_always_eager or not self.job_record:
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        job_id = task_id or uuid()
        # Celery's Task.retry() sends the same job again (retries ≥ 1): its record exists,
        # and stays when that send fails (Celery then ends the job FAILURE).
        resent = bool(options.get("retries"))
        due_ms, deadline_ms = _due_ms(options), _deadline_ms(options)
        record = None
        if not (record_written or resent):
            record = self.records.new_record(
                job_id, self.name, owner, self.input_of(args, kwargs), due_ms=due_ms, deadline_ms=deadline_ms
            )
            if not self.record_with_message:
                self.records.create(record)
                record = None  # written: the transport schedules the message alone, if due later
        pending = None
        if record is not None or due_ms is not None:
            pending = PendingRecord(job_id, self.records, record, due_ms, self.schedule)
        headers = {**(options.get("headers") or {}), RECORDED_HEADER: True}
        if not resent:  # a resend carries its first send's headers
            headers[OWNER_HEADER] = owner
            if client_max_running:
                headers[CLIENT_LIMIT_HEADER] = client_max_running
        options["headers"] = headers
        publish = partial(super().apply_async, args, kwargs, task_id=job_id, **options)
        if resent:
            self._note_next_attempt(job_id, due_ms, max_attempts)
        try:
            with publishing(pending):
                if resent:
                    # Sent by its worker (Task.retry): a full Redis pauses the job, as its states do.
                    result = wait_while_full(publish, f"the retry of job {job_id}")
                else:
                    result = publish()
        except BaseException:
            if not resent:
                self.records.delete(job_id)
            raise
        if pending is not None and not pending.written:
            # Routed where the transport pushes no list (a fanout exchange, a queue with an
            # expiry): the message is out, now, and a worker may have recorded the job as `code`'s.
            logger.warning("job %s was published straight to its queue, not through the schedule", job_id)
            if pending.record is not None:
                self.records.create_if_missing(pending.record)
        return result

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Celery's retry (a policy's autoretry calls it too), telling the next attempt's
        publish how many attempts this job may make: `max_retries` can differ per call."""
        limit = attempts_allowed(self.max_retries if max_retries is None else max_retries)
        return super().retry(
            args=args, kwargs=kwargs, exc=exc, throw=throw, eta=eta, countdown=countdown,
            max_retries=max_retries, max_attempts=limit or 0, **options,
        )

    def _note_next_attempt(self, job_id: str, due_ms: int | None, max_attempts: int | None) -> None:
        """Before a retry's next attempt is published: its record says when it is due and
        how many attempts the job may make, for its RETRY status."""
        if max_attempts is None:  # a resend not made by retry(): the task's own limit
            max_attempts = attempts_allowed(self.max_retries) or 0
        next_ms = due_ms if due_ms is not None else int(time.time() * 1000)
        note = partial(self.records.note_retry, job_id, next_ms, max_attempts or None)
        wait_while_full(note, f"the next attempt of job {job_id}")

    def input_of(self, args: Any, kwargs: Any) -> dict[str, Any]:
        """The job's input as keyword arguments (what a retry validates and submits):
        positional arguments are named after the task's parameters."""
        args, named = tuple(args or ()), dict[str, Any](kwargs or {})
        if not args:
            return named
        try:
            arguments: dict[str, Any] = inspect.signature(self.run).bind_partial(*args, **named).arguments
            return dict(arguments)
        except TypeError:
            return {"args": list(args), "kwargs": named}  # does not fit: kept as sent, for the record

    def begin(self) -> None:
        """Called by the worker before run(): stop here if cancelled while queued, if the job
        has ended already, or if every earlier delivery died with its worker (a task that kills it)."""
        request = self.request
        start = partial(
            self.records.start_unless_cancelled,
            request.id,
            self.name,
            request.retries or 0,
            started=self._started_state(),
            job_input=self.input_of(request.args, request.kwargs),
        )
        deliveries = wait_while_full(start, f"the start of job {request.id}")
        if deliveries == ALREADY_ENDED:
            # Ignore, not end_revoked: the state stored is final and stays as it is.
            raise Ignore("ended already: this copy of its message is not run")
        if deliveries == NOT_STARTED_BY_DEADLINE:
            self.end_revoked(DeadlineExceeded("not started by its deadline; it never ran"))
        if not deliveries:
            self.end_revoked("cancelled before it started")
        if deliveries > self.max_deliveries:
            # Raised, not returned: Celery stores FAILURE and acks, ending the loop.
            raise DeliveryLimitExceeded(
                f"delivered {deliveries} times; the {deliveries - 1} earlier runs never finished "
                "(worker killed, out of memory, or cut off from Redis), so it is not run again"
            )

    def _started_state(self) -> tuple[bytes, str]:
        """The result key and Celery's STARTED meta, which the start script stores and
        publishes in its own round trip (so task_track_started, a write of its own, is off)."""
        request = self.request
        meta = {
            "status": states.STARTED,
            "result": {"pid": os.getpid(), "hostname": request.hostname},
            "traceback": None,
            "children": [],
            "date_done": None,
            "task_id": request.id,
        }
        return self.backend.get_key_for_task(request.id), json.dumps(meta)

    def report_progress(self, current: int, total: int, message: str = "") -> None:
        if self.runs_in_worker():
            self.update_state(
                state=states.PROGRESS, meta={"current": current, "total": total, "message": message}
            )

    def raise_if_cancelled(self) -> None:
        """Cooperative cancel: long tasks call this between steps."""
        if self.runs_in_worker() and self.records.is_cancel_requested(self.request.id):
            self.end_revoked("cancelled by request")

    def end_revoked(self, reason: str | Exception) -> None:
        """End the job REVOKED: with Celery's TaskRevokedError(reason), or with `reason`
        itself when it is an exception (its class names the outcome in the status's error)."""
        if isinstance(reason, Exception):
            self.backend.store_result(self.request.id, reason, states.REVOKED, request=self.request)
        else:
            self.backend.mark_as_revoked(self.request.id, reason, request=self.request)
        # Ignore: the REVOKED state just stored is final; Celery must not overwrite it.
        raise Ignore(str(reason))

    def runs_in_worker(self) -> bool:
        request = self.request
        return request.id is not None and not request.called_directly and not request.is_eager
