"""Internal periodic tasks, sent by celery beat (`beat_schedule` in config.py).

Not public: they are not in the registry (backend/jobs/registry.py), so clients can
neither list nor submit them. The heartbeat proves that beat sends and a worker runs
what it sends; /readyz reports its last run (backend/ops/health.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from celery import Task, shared_task
from flask import current_app

from backend.jobs import extensions

HEARTBEAT_TASK = "periodic.heartbeat"
HEARTBEAT_KEY = "periodic:heartbeat"


# job_record=False: a heartbeat every 30 s would leave 2,880 job:<id> records a day
# that nobody looks up (see RecordedTask.job_record). ignore_result: no result keys either.
@shared_task(name=HEARTBEAT_TASK, bind=True, ignore_result=True, job_record=False)
def heartbeat(self: Task) -> None:
    """Record when this ran and on which worker."""
    client = extensions.job_records().client
    # Kept as long as results: a heartbeat that stopped says when, for a day.
    record_heartbeat(client, self.request.hostname or "unknown", current_app.config["RESULT_EXPIRES"])


def record_heartbeat(client: redis.Redis, hostname: str, ttl_seconds: int, at: float | None = None) -> None:
    value = {"at": time.time() if at is None else at, "hostname": hostname}
    client.set(HEARTBEAT_KEY, json.dumps(value), ex=ttl_seconds)


def last_heartbeat(client: redis.Redis) -> dict[str, Any] | None:
    """{"at": epoch seconds, "hostname": str} of the last run, or None if none is recorded."""
    raw = client.get(HEARTBEAT_KEY)
    return None if raw is None else json.loads(raw)
