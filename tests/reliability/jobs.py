"""A test's view of one Redis: submit tasks through the service's own code, read
their status through the API and count their executions (tests/support_tasks.py)."""

from __future__ import annotations

import os
import signal
import time

import redis

import tests.support_tasks  # noqa: F401  (registers the tests.* tasks)
from backend.jobs import extensions
from tests.helpers import QUEUE, Process, make_app, wait_for_state, wait_until
from tests.support_tasks import EXECUTIONS


class Jobs:
    def __init__(self, redis_url: str, **config: str):
        self.app = make_app(redis_url, **config)
        self.client = self.app.test_client()
        self.celery = extensions.celery_app(self.app)
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5, decode_responses=True)

    def submit(self, name: str, **kwargs) -> str:
        """Publish as the API does (task record first), for tasks that have no route."""
        with self.app.app_context():
            return self.celery.tasks[name].apply_async(kwargs=kwargs).id

    def status(self, task_id: str) -> dict:
        return self.client.get(f"/status/{task_id}").get_json()

    def wait_for(self, task_id: str, states: set[str], timeout: float, headers=None) -> dict:
        return wait_for_state(self.client, task_id, states, timeout, headers)

    def executions(self, task_id: str) -> int:
        return int(self.redis.hget(EXECUTIONS, task_id) or 0)

    def all_executions(self) -> dict[str, int]:
        return {task_id: int(count) for task_id, count in self.redis.hgetall(EXECUTIONS).items()}

    def ran_on(self, task_id: str) -> list[str]:
        return self.redis.lrange(f"test:ran_on:{task_id}", 0, -1)

    def queue_length(self) -> int:
        return self.redis.llen(QUEUE)

    def running_pid(self, task_id: str, timeout: float = 20) -> int:
        """The pid of the pool process running a tests.sleep task, once it runs."""
        return int(wait_until(lambda: self.redis.get(f"test:pid:{task_id}"), timeout, what=f"{task_id} to start"))

    def lease_score(self, task_id_tag: str) -> float | None:
        return self.redis.zscore("unacked_index", task_id_tag)


def kill_worker(process: Process) -> float:
    """SIGKILL a worker's main process and its pool at once, like the OOM killer or a
    lost machine; returns the moment of the kill (time.monotonic())."""
    os.killpg(process.popen.pid, signal.SIGKILL)
    process.popen.wait(5)
    return time.monotonic()
