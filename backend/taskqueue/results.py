"""The result backend: Celery's Redis backend, minus the subscription on every
submit, with each state stored by one script that also keeps the job record and
the job index in step.

On each apply_async, Celery's Redis backend subscribes the calling thread to the
task's result channel, in case the caller later waits with AsyncResult.get(). The
API never calls it: it reads states from the backend, and its long-poll
(backend.jobs.service.wait_for_change) subscribes on a connection of its own, only while it waits.
So every submit left a subscribe and an unsubscribe reply unread on the gunicorn
thread's connection, about 170 bytes each, growing without bound (celery#6963,
#4983, #3808).
AsyncResult.get() still works: it subscribes when it is called, then reads the
stored state, so it cannot miss a result that arrived first.

A state a worker stores while Redis is full (noeviction at maxmemory) waits until Redis
takes it (wait_while_full): the job neither fails nor loses its result because memory
ran out, and its message is acknowledged only after the store (late acks). A Redis that
does not answer is waited for too, for UNAVAILABLE_WAIT_SECONDS: a Sentinel failover
takes a few seconds, and a job that was starting meanwhile starts on the new master.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from celery.backends.redis import RedisBackend, SentinelBackend
from celery.exceptions import BackendStoreError

from backend.jobs import states
from backend.jobs.errors import REDIS_UNAVAILABLE, is_redis_full
from backend.jobs.records import JobRecords

logger = logging.getLogger(__name__)

# Seconds between two tries of a write a full Redis refused: once memory is freed, a
# paused worker goes on within this (docs/reliability.md: within 5 s).
FULL_RETRY_SECONDS = 0.5
# Seconds between two warnings that a write still waits.
FULL_WARNING_SECONDS = 30.0
# Seconds a worker's write waits for a Redis that does not answer before the error is
# raised: well above a Sentinel failover (docs/operations.md#redis-sentinel has its figures).
UNAVAILABLE_WAIT_SECONDS = 30.0

T = TypeVar("T")

JSON_CONTENT_TYPE = "application/json"


def wait_while_full(write: Callable[[], T], what: str) -> T:
    """`write()`, tried again every FULL_RETRY_SECONDS while Redis refuses it because it
    is full, or for up to UNAVAILABLE_WAIT_SECONDS while it does not answer; any other
    error is raised. For a worker only: the job it runs waits (its message stays held and
    leased, backend/taskqueue/leases.py), where an API request answers 503 instead."""
    refused_at: float | None = None
    warned_at = 0.0
    while True:
        try:
            done = write()
        except Exception as exc:
            now = time.monotonic()
            if refused_at is None:
                refused_at = now
            unavailable = isinstance(exc, REDIS_UNAVAILABLE) and now - refused_at < UNAVAILABLE_WAIT_SECONDS
            if not (is_redis_full(exc) or unavailable):
                raise
            if now - warned_at >= FULL_WARNING_SECONDS:
                warned_at = now
                logger.warning("Redis is full or unavailable: %s waits (%s: %s)", what, type(exc).__name__, exc)
            time.sleep(FULL_RETRY_SECONDS)
            continue
        if refused_at is not None:
            logger.info("Redis took %s after %.1f s", what, time.monotonic() - refused_at)
        return done


def index_state(celery_state: str) -> str | None:
    """The state a job is listed in once a worker stores `celery_state`: as GET /status
    reports it (a custom state of a user's task means it is running)."""
    if celery_state in states.STORED_STATES:
        return str(celery_state)
    if celery_state == states.CELERY_PENDING:
        return None
    started: str = states.STARTED
    return started


class JobsResultBackend(RedisBackend):
    """Selected by config.RESULTS_BACKEND_CLASS."""

    @property
    def records(self) -> JobRecords:
        """The app's job records, which make_celery gives its task class."""
        records: JobRecords = self.app.Task.records
        return records

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Do not subscribe to the result: nothing in the API waits for it."""

    def _store_result(
        self, task_id: str, result: Any, state: str, traceback: Any = None, request: Any = None, **kwargs: Any
    ) -> Any:
        """Celery's _store_result, minus the read of the current state before each write:
        the store script keeps its guard (a SUCCESS is never overwritten) in the same
        round trip, and moves the job in the index with its record."""
        meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
        task_id = task_id.decode() if isinstance(task_id, bytes) else task_id
        meta["task_id"] = task_id
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError("value too large for Redis backend", state=state, task_id=task_id)
        expires = self.failure_expires if state == states.FAILURE else self.expires
        store = partial(
            self.ensure,
            self.records.store_state,
            (task_id, self.get_key_for_task(task_id), value, int(expires or 0), index_state(state)),
        )
        if request is None:
            # Not a worker's: the API's cancel, whose client gets a 503 if Redis is full.
            store()
        else:
            wait_while_full(store, f"the {state} state of job {task_id}")
        return result

    def decode(self, payload: Any) -> Any:
        """Celery's decode, with plain json.loads for a JSON state that holds no value of a
        type kombu marks (`__type__`: a datetime, a Decimal, a UUID ...), which reads the same.
        kombu's loads calls its object hook for every object in it, and GET /jobs decodes
        fifty states a page: a third of a listing's CPU was this."""
        if (
            isinstance(payload, bytes)
            and self.content_type == JSON_CONTENT_TYPE
            and payload[:1] == b"{"  # neither compressed (celery.backends.base.compress_payload) nor odd
            and b'"__type__"' not in payload
        ):
            return json.loads(payload)
        return super().decode(payload)

    def _set(self, key: bytes | str, value: bytes | str, expires: int | None = None) -> None:
        """Celery's _set (groups and chords; task states go through _store_result), with
        SET EX instead of SETEX, which redis-py 8 deprecates (a warning per call)."""
        if expires is None:
            expires = self.expires
        with self.client.pipeline() as pipe:
            pipe.set(key, value, ex=expires or None)
            pipe.publish(key, value)
            pipe.execute()


class JobsSentinelResultBackend(JobsResultBackend, SentinelBackend):
    """JobsResultBackend through Redis Sentinel (config.SENTINEL_RESULTS_BACKEND_CLASS, for a
    sentinel:// RESULT_BACKEND): Celery's SentinelBackend finds the master, ours stores."""
