"""Celery bound to the Flask app: the `make_celery` helper and the task base class."""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery, Task
from celery.states import STARTED
from celery.exceptions import Ignore
from celery.utils import uuid
from flask import Flask

from backend.leases import RenewLeases
from backend.records import TaskRecords
from backend.transport import use_for_redis_urls

PROGRESS = "PROGRESS"


class DeliveryLimitExceeded(Exception):
    """The task's earlier runs all died with their worker; it is not run again."""


class JobTask(Task):
    """Base class of every task: task records, progress and cooperative cancel.

    `records` is set by make_celery on the app's subclass.
    """

    abstract = True
    records: TaskRecords
    max_deliveries: int = 3
    # False for internal tasks (backend/periodic.py): no job:<id> record, so no
    # status lookup, cancel or delivery count; they must be safe to run twice.
    job_record: bool = True

    def apply_async(self, args=None, kwargs=None, task_id=None, *, record_written=False, **options):
        """Publish, with the task's record written first (unless the caller did:
        `record_written`, as an idempotency-key claim does).

        The record makes the id known (QUEUED) before any worker can see the
        message; if publishing fails it is removed again, so a failed submit
        leaves nothing behind.
        """
        if self.app.conf.task_always_eager or not self.job_record:
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        task_id = task_id or uuid()
        if not record_written:
            self.records.create(task_id, self.name)
        try:
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        except BaseException:
            self.records.delete(task_id)
            raise

    def begin(self) -> None:
        """Called by the worker before run(): stop here if cancelled while queued,
        or if every earlier delivery died with its worker (a task that kills it)."""
        request = self.request
        deliveries = self.records.start_unless_cancelled(
            request.id, self.name, request.retries or 0, started=self._started_state()
        )
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
            "status": STARTED,
            "result": {"pid": os.getpid(), "hostname": request.hostname},
            "traceback": None,
            "children": [],
            "date_done": None,
            "task_id": request.id,
        }
        return self.backend.get_key_for_task(request.id), json.dumps(meta)

    def report_progress(self, current: int, total: int, message: str = "") -> None:
        if self._runs_in_worker():
            self.update_state(
                state=PROGRESS, meta={"current": current, "total": total, "message": message}
            )

    def raise_if_cancelled(self) -> None:
        """Cooperative cancel: long tasks call this between steps."""
        if self._runs_in_worker() and self.records.is_cancel_requested(self.request.id):
            self.end_revoked("cancelled by request")

    def end_revoked(self, reason: str) -> None:
        self.backend.mark_as_revoked(self.request.id, reason, request=self.request)
        # Ignore: the REVOKED state just stored is final; Celery must not overwrite it.
        raise Ignore(reason)

    def _runs_in_worker(self) -> bool:
        request = self.request
        return request.id is not None and not request.called_directly and not request.is_eager


def make_celery(app: Flask) -> Celery:
    """Create the Celery app for a Flask app: config from app.config["CELERY"],
    every task run inside app.app_context(), stored in app.extensions["celery"]."""

    class FlaskTask(JobTask):
        records = app.extensions["task_records"]
        max_deliveries = app.config["TASK_MAX_DELIVERIES"]

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                if self.job_record and self._runs_in_worker():
                    # The record's expiry follows each state stored (backend/results.py).
                    self.begin()
                return self.run(*args, **kwargs)

    # kombu's Redis transport minus a new redis-py client per publish and ack: the worker
    # ran 0.88-0.90x of Celery's defaults with kombu's own, 1.03-1.10x with it (make bench).
    use_for_redis_urls()
    celery = Celery(app.import_name, task_cls=FlaskTask)
    celery.config_from_object(app.config["CELERY"])
    celery.steps["consumer"].add(RenewLeases)
    # @shared_task binds to the default app; tasks never import the Flask app.
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
