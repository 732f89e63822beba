"""The states of a job, as GET /status/<id> reports them: defined here once, and
imported by the service, the worker side, the tests and the bench.

Celery's own states keep their names (a worker stores them); QUEUED is ours:
Celery says PENDING both for a queued job and for an id nobody ever submitted,
and the job record (records.py) tells them apart.
"""

from __future__ import annotations

from typing import Literal, get_args

from celery import states as celery_states

# Waiting in the server-side schedule until its time (backend/jobs/schedule.py).
SCHEDULED = "SCHEDULED"
QUEUED = "QUEUED"
STARTED = celery_states.STARTED
# Stored by RecordedTask.report_progress(); the only custom state our tasks use.
PROGRESS = "PROGRESS"
RETRY = celery_states.RETRY
SUCCESS = celery_states.SUCCESS
FAILURE = celery_states.FAILURE
REVOKED = celery_states.REVOKED
# Celery's answer for an id it knows nothing of: for us, a job no worker has taken yet.
CELERY_PENDING = celery_states.PENDING

JobState = Literal["SCHEDULED", "QUEUED", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]
# In the order a job moves through them (the OpenAPI document lists them so).
ALL_STATES: tuple[str, ...] = get_args(JobState)
# A job in one of these never changes again: long-polls answer at once, streams end.
FINAL_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
# States a worker stores in the result backend and that we report as they are.
STORED_STATES = frozenset({STARTED, PROGRESS, RETRY, SUCCESS, FAILURE, REVOKED})
# States whose status carries an `error` object.
ERROR_STATES = frozenset({FAILURE, RETRY, REVOKED})
