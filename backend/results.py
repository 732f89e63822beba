"""The result backend: Celery's Redis backend, minus the subscription on every submit.

On each apply_async, Celery's Redis backend subscribes the calling thread to the
task's result channel, in case the caller later waits with AsyncResult.get(). The
API never calls it: it reads states from the backend, and its long-poll
(jobs.wait_for_change) subscribes on a connection of its own, only while it waits.
So every submit left a subscribe and an unsubscribe reply unread on the gunicorn
thread's connection, about 170 bytes each, growing without bound (celery#6963,
#4983, #3808).
AsyncResult.get() still works: it subscribes when it is called, then reads the
stored state, so it cannot miss a result that arrived first.
"""

from __future__ import annotations

from celery.backends.redis import RedisBackend


class SubmitWithoutSubscribingBackend(RedisBackend):
    """Selected by config.RESULTS_BACKEND_CLASS."""

    def on_task_call(self, producer, task_id):
        """Do not subscribe to the result: nothing in the API waits for it."""
