"""Moves the jobs that are due from the server-side schedule to their queues.

Every worker's main process runs the mover on a timer of its event loop, every
MOVE_SECONDS: jobs move as long as one worker runs, and with none, nothing could run
them anyway. Beat does not move jobs. Each call of the move script is atomic and takes
each job off the schedule as it pushes it (backend/jobs/schedule.py), so movers in
several workers at once, or one killed mid-batch, never move a job twice or lose one.
A tick moves batches until none is full or MOVE_BUDGET_SECONDS have passed, so a
100,000-job burst moves at Redis' pace without stalling the worker's event loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from backend.jobs.schedule import MOVE_BATCH, Schedule
from backend.taskqueue.timer_step import TimerStep

logger = logging.getLogger(__name__)

# Seconds between two moves by each worker: with the time a move takes, how late a
# scheduled job reaches its queue at most.
MOVE_SECONDS = 0.2
# Most of a tick spent moving, so that the worker's event loop goes on meanwhile (a batch
# of 1,000 takes about 50 ms of Redis time on 2 cores: ~13,000 jobs a second per mover).
MOVE_BUDGET_SECONDS = 0.15


class MoveDueJobs(TimerStep):
    def start(self, c: Any) -> None:
        channel = c.task_consumer.channel
        if not hasattr(channel, "_shared_client"):
            return  # not the Redis transport
        schedule = Schedule(channel._shared_client)
        move_records = bool(c.app.Task.record_with_message)
        self.repeat(c, MOVE_SECONDS, move_due_jobs, (schedule, move_records))


def move_due_jobs(schedule: Schedule, move_records: bool) -> int:
    """Move what is due, batch after batch, for at most MOVE_BUDGET_SECONDS; how many moved."""
    started = time.monotonic()
    moved = 0
    try:
        while True:
            batch = schedule.move_due(int(time.time() * 1000), move_records=move_records)
            moved += batch
            if batch < MOVE_BATCH or time.monotonic() - started > MOVE_BUDGET_SECONDS:
                break
    except redis.RedisError as exc:
        # The consumer reconnects on its own; the next tick moves what is due.
        logger.warning("could not move due jobs from the schedule: %r", exc)
    if moved:
        logger.debug("moved %d due jobs to their queues", moved)
    return moved
