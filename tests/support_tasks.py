"""Tasks that exist only for the tests: they fail, retry, sleep or kill their worker on purpose.

Workers started by the tests load this module with `--include tests.support_tasks`.
Every execution of every task is counted in the Redis hash `test:executions`
(task id -> runs), so tests can prove nothing ran twice and nothing was lost.
"""

from __future__ import annotations

import os
import signal
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_prerun

from backend.jobs import extensions

EXECUTIONS = "test:executions"


def _redis():
    return extensions.job_records().client


@task_prerun.connect
def count_execution(task_id, task, **_):
    # task_prerun runs in the pool process just before the task body: one count per execution.
    task.records.client.hincrby(EXECUTIONS, task_id, 1)


@shared_task(name="tests.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@shared_task(name="tests.retry_once", bind=True, max_retries=1)
def retry_once(self, countdown: float) -> str:
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("transient failure"), countdown=countdown)
    return "succeeded on retry"


@shared_task(name="tests.sleep", bind=True)
def sleep(self, seconds: float, slow_seconds: float = 0, slow_runs: int = 0) -> dict:
    """Sleep (`slow_seconds` on the first `slow_runs` executions), having published
    its pool process's pid and its worker's name (`test:pid:<id>`, `test:ran_on:<id>`),
    so a test can stop or kill it mid-run."""
    if int(_redis().hget(EXECUTIONS, self.request.id) or 0) <= slow_runs:
        seconds = slow_seconds
    pipe = _redis().pipeline()
    pipe.set(f"test:pid:{self.request.id}", os.getpid(), ex=600)
    pipe.rpush(f"test:ran_on:{self.request.id}", self.request.hostname)
    pipe.expire(f"test:ran_on:{self.request.id}", 600)
    pipe.execute()
    time.sleep(seconds)
    return {"slept": seconds, "hostname": self.request.hostname}


@shared_task(name="tests.kill_own_process", bind=True)
def kill_own_process(self) -> None:
    """Die like an out-of-memory kill, every time: the pool process SIGKILLs itself.
    Each run that got this far is counted in `test:kills:<id>`."""
    _redis().incr(f"test:kills:{self.request.id}")
    os.kill(os.getpid(), signal.SIGKILL)


@shared_task(name="tests.one_at_a_time", max_running=1)
def one_at_a_time(seconds: float) -> None:
    """Sleep; declared to run at most once at a time across the cluster."""
    time.sleep(seconds)


class Flaky(Exception):
    """The failure backs_off's retry policy retries."""


@shared_task(name="tests.backs_off", bind=True, autoretry_for=(Flaky,), max_retries=2,
             retry_backoff=1, retry_jitter=False)
def backs_off(self, failures: int) -> int:
    """Fail the first `failures` attempts; a policy of 3 attempts, after 1 s then 2 s (no jitter)."""
    attempt = self.request.retries + 1
    if attempt <= failures:
        raise Flaky(f"attempt {attempt} failed")
    return attempt


@shared_task(name="tests.overruns", bind=True, soft_time_limit=1, time_limit=2)
def overruns(self, seconds: float, clean_up: bool) -> str:
    """Sleep past the soft limit (1 s): clean up and return when `clean_up`, else sleep on
    into the hard limit (2 s), where the pool process is killed."""
    started = time.monotonic()
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        if clean_up:
            return "cleaned up after the soft time limit"
        time.sleep(seconds - (time.monotonic() - started))
    return "finished"
