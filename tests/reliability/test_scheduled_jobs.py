"""Scheduled jobs on real workers (backend/jobs/schedule.py, backend/taskqueue/schedule_mover.py):

- 10,000 jobs due over 20 s, moved by the movers of two workers at once: each runs exactly
  once, and each reaches its queue within 1 s of its time (p99);
- 1,000 scheduled jobs live through a restart of Redis (AOF) and of every worker, and each
  runs exactly once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.helpers import wait_until
from tests.reliability import figures

AREA = "scheduled jobs"
SPREAD_S = 20
JOBS = 10_000
LATENESS_P99_TARGET_S = 1.0
SEND_LEAD_S = 10


def _schedule_adds(jobs, count: int, first_due: float, spread_s: float) -> tuple[dict[str, float], int]:
    """`count` add jobs sent from code with an eta, due from `first_due` over `spread_s`, in order.

    Returns id -> due time, and how many were sent only after they were due (their lateness
    would measure the sending, not the schedule).
    """
    due, sent_late = {}, 0
    with jobs.app.app_context():
        add = jobs.celery.tasks["add"]
        for n in range(count):
            when = first_due + spread_s * n / count
            due[add.apply_async((n, 0), eta=datetime.fromtimestamp(when, UTC)).id] = when
            sent_late += time.time() >= when
    return due, sent_late


def _succeeded(jobs) -> int:
    return jobs.client.get("/jobs/stats?state=SUCCESS").get_json()["total"]


def test_10000_jobs_due_over_20_s_run_once_each_and_reach_their_queue_on_time(jobs, start_workers):
    for name in ("scheduled-1", "scheduled-2"):
        start_workers(name, concurrency=2, CELERY_PREFETCH_MULTIPLIER="4")
    # Jobs are sent in the order they fall due, one every 2 ms of due time: sending need only
    # keep ahead of that. On a slow, shared machine sending took 2.5 ms a job once the first
    # were due (the workers running them take the same 2 cores), so 5 s of lead fell behind
    # near the end; SEND_LEAD_S lets the first two thirds go out before anything runs.
    first_due = time.time() + SEND_LEAD_S
    due, sent_late = _schedule_adds(jobs, JOBS, first_due, SPREAD_S)
    assert sent_late == 0, f"{sent_late} jobs were sent only after they were due"

    wait_until(lambda: _succeeded(jobs) == JOBS, SEND_LEAD_S + SPREAD_S + 60, interval=0.5,
               what="every scheduled job to run")
    pipe = jobs.redis.pipeline(transaction=False)
    for job_id in due:
        pipe.hget(f"job:{job_id}", "queued_ms")
    # The schedule keeps due times in milliseconds, as `queued_ms`.
    lateness = sorted((int(queued_ms) - int(when * 1000)) / 1000
                      for queued_ms, when in zip(pipe.execute(), due.values(), strict=True))
    executions = jobs.all_executions()
    runs = [executions.get(job_id, 0) for job_id in due]
    p50, p99 = figures.percentile(lateness, 0.5), figures.percentile(lateness, 0.99)
    figures.record(AREA, f"{JOBS:,} jobs due over {SPREAD_S} s, 2 movers: run other than once",
                   sum(run != 1 for run in runs), "", "0", set(runs) == {1})
    figures.record(AREA, "lateness to the queue p50", p50, "s", "—", True)
    figures.record(AREA, "lateness to the queue p99", p99, "s", f"≤ {LATENESS_P99_TARGET_S:g} s",
                   p99 <= LATENESS_P99_TARGET_S)
    assert set(runs) == {1}
    assert lateness[0] >= 0, "a job reached its queue before its time"
    assert p99 <= LATENESS_P99_TARGET_S


def test_scheduled_jobs_live_through_a_restart_of_redis_and_of_every_worker(private_redis, jobs, start_workers):
    first = start_workers("before-restart", concurrency=2)
    due, _ = _schedule_adds(jobs, 1000, time.time() + 4, 1)
    first.stop()
    private_redis.restart()
    start_workers("after-restart", concurrency=2, CELERY_PREFETCH_MULTIPLIER="4")
    wait_until(lambda: _succeeded(jobs) == 1000, 40, interval=0.5, what="the 1,000 scheduled jobs to run")
    executions = jobs.all_executions()
    runs = [executions.get(job_id, 0) for job_id in due]
    figures.record(AREA, "1,000 jobs scheduled across a Redis and worker restart: run other than once",
                   sum(run != 1 for run in runs), "", "0", set(runs) == {1})
    assert set(runs) == {1}
