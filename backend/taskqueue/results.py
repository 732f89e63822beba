"""The result backend: Celery's Redis backend, minus the subscription on every
submit, plus the job record's expiry in every state it stores.

On each apply_async, Celery's Redis backend subscribes the calling thread to the
task's result channel, in case the caller later waits with AsyncResult.get(). The
API never calls it: it reads states from the backend, and its long-poll
(backend.jobs.service.wait_for_change) subscribes on a connection of its own, only while it waits.
So every submit left a subscribe and an unsubscribe reply unread on the gunicorn
thread's connection, about 170 bytes each, growing without bound (celery#6963,
#4983, #3808).
AsyncResult.get() still works: it subscribes when it is called, then reads the
stored state, so it cannot miss a result that arrived first.
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend

from backend.jobs.records import JobRecords


class JobsResultBackend(RedisBackend):
    """Selected by config.RESULTS_BACKEND_CLASS."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Do not subscribe to the result: nothing in the API waits for it."""

    def _set(self, key: bytes | str, value: bytes | str, expires: int | None = None) -> None:
        """Celery's own _set (store and publish in one pipeline), plus an EXPIRE that
        keeps the job's record (backend/jobs/records.py) as long as the state just stored:
        a status lookup needs both. In the same round trip as the state, where the
        worker used to send it on its own after every task: one round trip less per task."""
        if expires is None:
            expires = self.expires
        # Celery keeps both as bytes; str is accepted in case that changes.
        task_prefix, key_bytes = (v if isinstance(v, bytes) else v.encode() for v in (self.task_keyprefix, key))
        with self.client.pipeline() as pipe:
            # SET with EX, not Celery's SETEX, which redis-py 8 deprecates (a warning per task).
            pipe.set(key, value, ex=expires or None)
            pipe.publish(key, value)
            if expires and key_bytes.startswith(task_prefix):
                pipe.expire(JobRecords.key(key_bytes[len(task_prefix):].decode()), expires)
            pipe.execute()
