"""The worker's consumer: Celery's, with four changes (config: worker_consumer).

- A job whose message arrives without a record (sent by code that does not use our
  task class: `celery call`, `send_task`) gets one when the worker receives it, so
  GET /status knows it as QUEUED while the worker holds it (a countdown, or behind a
  busy pool) instead of answering 404 until it starts. Messages RecordedTask
  published say in a header that their record exists: they cost no Redis call here.
- It reconnects to Redis within a second of its return. kombu retries a lost
  broker connection after 2, 4, 6 ... up to 30 seconds, so a worker could stay
  idle for half a minute after Redis is back, and Celery has no setting for it.
- A Redis at its memory limit never stops it. The writes of its main process that a
  full Redis refuses are paused where they happen (backend/taskqueue/transport.py,
  leases.py; the task's own in results.py); should one still reach the consumer, it
  is a connection-level error: the consumer reconnects, where Celery stopped the
  worker ("Unrecoverable error: OutOfMemoryError").
- Tasks it hands back on shutdown (cancelled after the soft-shutdown grace
  period, to go back on the queue) are not counted as deliveries that died:
  otherwise a few rolling deploys would fail a healthy long task with
  DeliveryLimitExceeded (see TASK_MAX_DELIVERIES).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import redis
from celery.signals import task_received
from celery.worker.consumer import Consumer
from celery.worker.state import active_requests

from backend.jobs.errors import REDIS_UNAVAILABLE, is_redis_full
from backend.jobs.records import CODE_OWNER
from backend.taskqueue.running_limits import start_within_limits
from backend.taskqueue.task import RECORDED_HEADER

logger = logging.getLogger(__name__)

# The refusals of a full Redis that kombu's own writes raise (a command, or an EXEC).
REDIS_FULL_ERRORS = (redis.exceptions.OutOfMemoryError, redis.exceptions.ExecAbortError)
# Seconds between reconnect attempts: first, step, and cap.
RECONNECT_INTERVALS = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 1.0}


class JobsConsumer(Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What start() recovers from by reconnecting; anything else ends the worker.
        self.connection_errors: tuple[type[BaseException], ...] = (*self.connection_errors, *REDIS_FULL_ERRORS)
        # Worker-only: connected by the worker's own consumer, never in an API process.
        task_received.connect(record_received_job, weak=False, dispatch_uid=f"{__name__}.record_received_job")
        # Set by the LimitRunningJobs step while connected to Redis; None: no limits apply.
        self.running_limits = None
        # Before the task strategies capture it (they are built when the consumer starts).
        self.on_task_request = start_within_limits(self, self.on_task_request)  # type: ignore[has-type]  # Celery's

    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        return super().ensure_connected(conn)

    def cancel_active_requests(self) -> Any:
        """Called by the cold (after soft) shutdown to cancel and requeue running tasks."""
        records = self.app.Task.records
        for request in tuple(active_requests):
            try:
                records.uncount_delivery(request.id, request.request_dict.get("retries") or 0)
            except Exception as exc:  # Redis may be gone too: the shutdown must go on
                logger.warning("could not uncount the delivery of %s: %r", request.id, exc)
        return super().cancel_active_requests()


def record_received_job(sender: Any, request: Any, **_: Any) -> None:
    """task_received, in the worker's main process: the record of a job sent by other code."""
    if request.request_dict.get(RECORDED_HEADER):
        return
    task = sender.app.tasks.get(request.name)
    if task is None or not getattr(task, "job_record", False):
        return  # unknown to this worker (Celery rejects it), or internal (no records)
    try:
        records = task.records
        records.create_if_missing(
            records.new_record(request.id, request.name, CODE_OWNER, task.input_of(request.args, request.kwargs))
        )
    except Exception as exc:
        if not (isinstance(exc, REDIS_UNAVAILABLE) or is_redis_full(exc)):
            raise
        # The start script writes the record when the job starts; until then it is a 404.
        logger.warning("could not record received job %s: %r", request.id, exc)
