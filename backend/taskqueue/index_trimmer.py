"""Trims the job index: the entries of jobs whose record expired leave it.

A record expires in Redis by itself (RESULT_EXPIRES); its entry in the index
(backend/jobs/index.py) is a member of a sorted set, which cannot expire alone.
Every worker trims on a timer of its event loop (JOB_INDEX_TRIM_SECONDS). The trim
is atomic and idempotent, so several workers trimming at once only repeat work,
and each call is bounded (index.TRIM_BUDGET) so Redis never stalls on it. Listings
skip an expired job before its entry is trimmed; only counts wait for the trim.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from backend.jobs.index import JobIndex
from backend.taskqueue.timer_step import TimerStep

logger = logging.getLogger(__name__)


class TrimJobIndex(TimerStep):
    def start(self, c: Any) -> None:
        task_class = c.app.Task
        index = JobIndex(task_class.records.client, task_class.records.ttl)
        self.repeat(c, task_class.index_trim_seconds, trim_index, (index,))


def trim_index(index: JobIndex) -> int:
    """One trim; the number of entries removed (0 when Redis cannot be reached)."""
    try:
        removed = index.trim()
    except redis.RedisError as exc:
        logger.warning("could not trim the job index: %r", exc)
        return 0
    if removed:
        logger.debug("trimmed %d expired jobs from the job index", removed)
    return removed
