"""Celery bound to the Flask app: the `make_celery` helper."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from flask import Flask

from backend.jobs import extensions
from backend.jobs.records import JobRecords
from backend.jobs.schedule import Schedule

# Celery imports the result backend and consumer classes by name (config.py) on first
# use, which in beat can happen in two threads at once (the scheduler and remote
# control): one of them then found the module half-imported and beat exited. Imported
# here, by the thread that builds the app, they are complete before any other starts.
from backend.taskqueue import consumer, results  # noqa: F401
from backend.taskqueue.index_trimmer import TrimJobIndex
from backend.taskqueue.leases import RenewLeases
from backend.taskqueue.running_limits import LimitRunningJobs
from backend.taskqueue.schedule_mover import MoveDueJobs
from backend.taskqueue.task import RecordedTask
from backend.taskqueue.transport import use_for_redis_urls

logger = logging.getLogger(__name__)

# The `celery` command reads its --broker and --result-backend options from BROKER_URL and
# RESULT_BACKEND, our settings' names, and exports them as these, which Celery prefers to any
# configuration: every process then stored states with Celery's plain Redis backend, past the
# job records and the index (listed STARTED forever). config.py read the same variables.
CELERY_URL_OVERRIDES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def make_celery(app: Flask, records: JobRecords) -> Celery:
    """Create the Celery app for a Flask app: config from app.config["CELERY"], every
    task run inside app.app_context() with its job's record, stored as the app's
    `celery` extension (backend.jobs.extensions.celery_app())."""

    class FlaskTask(RecordedTask):
        max_deliveries = app.config["TASK_MAX_DELIVERIES"]
        index_trim_seconds = app.config["JOB_INDEX_TRIM_SECONDS"]

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                if self.job_record and self.runs_in_worker():
                    # The record's expiry follows each state stored (backend/taskqueue/results.py).
                    self.begin()
                return self.run(*args, **kwargs)

    FlaskTask.records = records
    FlaskTask.schedule = Schedule(records.client)
    # One Redis database for queues and records: a submit writes both with one script.
    FlaskTask.record_with_message = app.config["BROKER_LOCATION"] == app.config["RESULT_BACKEND_LOCATION"]
    for name in CELERY_URL_OVERRIDES:
        if os.environ.pop(name, None) not in (None, app.config["BROKER_URL"], app.config["RESULT_BACKEND"]):
            logger.warning("%s is ignored: set BROKER_URL or RESULT_BACKEND (config.py) instead", name)
    # kombu's Redis transport minus a new redis-py client per publish and ack
    # (backend/taskqueue/transport.py; docs/performance.md has the figures).
    use_for_redis_urls()
    celery = Celery(app.import_name, task_cls=FlaskTask)
    celery.config_from_object(app.config["CELERY"])
    celery.steps["consumer"].add(RenewLeases)
    celery.steps["consumer"].add(TrimJobIndex)
    celery.steps["consumer"].add(LimitRunningJobs)
    celery.steps["consumer"].add(MoveDueJobs)
    # @shared_task binds to the default app; tasks never import the Flask app.
    celery.set_default()
    app.extensions[extensions.CELERY] = celery
    return celery
