"""Time limits and retry policies, declared where each task is defined (backend/jobs/registry.py).

A policy's next attempt waits in the server-side schedule, and /status shows it meanwhile:
RETRY with `attempt`, `max_attempts` and `next_attempt_at`. After the last attempt the job is
FAILURE, retryable by hand. Past its soft limit a task may clean up; past its hard limit it is
stopped and ends FAILURE, TimeLimitExceeded. GET /tasks says all of it for each public task.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import redis

import tests.support_tasks  # noqa: F401  (the tasks below, as the shared worker has them)
from backend.jobs import extensions, states
from backend.jobs.schedule import SCHEDULED_ENTRIES
from backend.tasks import FLAKY_BACKOFF_SECONDS, FLAKY_MAX_ATTEMPTS
from tests.helpers import wait_for_state
from tests.support_tasks import EXECUTIONS

# How much later than its backoff an attempt may start: the schedule's move (every 0.2 s),
# the worker's pick-up, a shared machine's hiccups.
SLACK_S = 2.0


def _send(app, name: str, **kwargs) -> str:
    with app.app_context():
        return extensions.celery_app().tasks[name].apply_async(kwargs=kwargs).id


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.fixture
def store(worker_redis_url):
    return redis.Redis.from_url(worker_redis_url)


def _executions(store, job_id: str) -> int:
    return int(store.hget(EXECUTIONS, job_id) or 0)


def _retries_seen(client, store, job_id: str, timeout: float) -> tuple[list[dict], dict]:
    """Poll /status until the job ends: each distinct RETRY status seen (with, under
    `due_in_schedule`, the due time in ms of the job's entry in the schedule then, if
    it had one), and the final status."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/status/{job_id}").get_json()
        if status["state"] in states.FINAL_STATES:
            return seen, status
        if status["state"] == states.RETRY and status["attempt"] not in [s["attempt"] for s in seen]:
            due_set = store.hget(SCHEDULED_ENTRIES, job_id)
            status["due_in_schedule"] = store.zscore(due_set, job_id) if due_set else None
            seen.append(status)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end within {timeout} s; retries seen: {seen}")


def test_a_policy_tries_again_with_exponential_backoff_each_next_attempt_waiting_in_the_schedule(
    app, client, store, worker
):
    # tests.backs_off: 3 attempts at most, after 1 s then 2 s (no jitter); it fails twice.
    job_id = _send(app, "tests.backs_off", failures=2)
    retries, final = _retries_seen(client, store, job_id, timeout=30)

    assert [(s["attempt"], s["max_attempts"]) for s in retries] == [(1, 3), (2, 3)]
    assert [s["error"]["type"] for s in retries] == ["Flaky", "Flaky"]
    first_wait = _at(retries[0]["next_attempt_at"]) - _at(final["submitted_at"])
    second_wait = _at(retries[1]["next_attempt_at"]) - _at(retries[0]["next_attempt_at"])
    assert 1.0 <= first_wait <= 1.0 + SLACK_S
    assert 2.0 <= second_wait <= 2.0 + SLACK_S
    # While it waits, the next attempt is in Redis's schedule, due when /status says: no worker holds it.
    for status in retries:
        assert status["due_in_schedule"] == _at(status["next_attempt_at"]) * 1000

    assert (final["state"], final["result"], final["attempt"], final["max_attempts"]) == (states.SUCCESS, 3, 3, 3)
    assert final["next_attempt_at"] is None
    assert _executions(store, job_id) == 3


def test_after_its_last_attempt_a_job_is_failure_and_can_be_retried_by_hand(app, client, store, worker):
    # flaky's own policy: FLAKY_MAX_ATTEMPTS attempts, backoff from FLAKY_BACKOFF_SECONDS with jitter.
    job_id = client.post("/tasks/flaky", json={"failures": 10}).get_json()["task_id"]
    longest = sum(FLAKY_BACKOFF_SECONDS * 2**n + SLACK_S for n in range(FLAKY_MAX_ATTEMPTS - 1))
    retries, final = _retries_seen(client, store, job_id, timeout=longest + 10)

    # With full jitter a wait may be 0 s: a RETRY that short may pass between two polls.
    seen = [s["attempt"] for s in retries]
    assert seen == sorted(set(seen)) and set(seen) <= set(range(1, FLAKY_MAX_ATTEMPTS))
    assert all(s["max_attempts"] == FLAKY_MAX_ATTEMPTS and s["next_attempt_at"] for s in retries)
    assert (final["state"], final["error"]["type"]) == (states.FAILURE, "TransientError")
    assert (final["attempt"], final["max_attempts"]) == (FLAKY_MAX_ATTEMPTS, FLAKY_MAX_ATTEMPTS)
    assert _executions(store, job_id) == FLAKY_MAX_ATTEMPTS
    assert job_id in [job["task_id"] for job in client.get("/jobs?state=FAILURE&name=flaky").get_json()["jobs"]]

    retried = client.post(f"/status/{job_id}/retry")
    assert retried.status_code == 202
    again = client.get(f"/status/{retried.get_json()['task_id']}").get_json()
    assert again["retry_of"] == job_id and again["input"] == {"failures": 10}


def test_a_job_cancelled_while_it_waits_to_try_again_is_revoked_at_once_and_never_runs_again(
    app, client, store, worker
):
    # tests.retry_once retries after `countdown` seconds: here, long after this test is done.
    job_id = _send(app, "tests.retry_once", countdown=60)
    waiting = wait_for_state(client, job_id, {states.RETRY})
    assert (waiting["attempt"], waiting["max_attempts"]) == (1, 2)
    assert _at(waiting["next_attempt_at"]) > time.time() + 50

    cancelled = client.post(f"/status/{job_id}/cancel").get_json()
    assert cancelled["state"] == states.REVOKED
    assert store.hget(SCHEDULED_ENTRIES, job_id) is None
    assert _executions(store, job_id) == 1


def test_past_its_hard_time_limit_a_job_is_stopped_and_ends_failure_time_limit_exceeded(app, client, store, worker):
    # tests.overruns: soft limit 1 s, hard limit 2 s; asked not to clean up, it sleeps on.
    job_id = _send(app, "tests.overruns", seconds=10, clean_up=False)
    ended = wait_for_state(client, job_id, set(states.FINAL_STATES), timeout=20)
    assert (ended["state"], ended["error"]["type"]) == (states.FAILURE, "TimeLimitExceeded")
    # Timed by the pool from a moment just before the task's start is recorded: a little under 2 s may show.
    assert 1.5 <= _at(ended["finished_at"]) - _at(ended["started_at"]) < 2.0 + SLACK_S
    # Stopped for good: its message was acknowledged, not handed to a worker again.
    time.sleep(1)
    assert _executions(store, job_id) == 1
    # And the worker goes on with a new pool process.
    assert wait_for_state(client, client.post("/add", json={"x": 1, "y": 1}).get_json()["task_id"],
                          {states.SUCCESS})["result"] == 2


def test_past_its_soft_time_limit_a_task_may_clean_up_and_finish(app, client, store, worker):
    job_id = _send(app, "tests.overruns", seconds=10, clean_up=True)
    ended = wait_for_state(client, job_id, set(states.FINAL_STATES), timeout=20)
    assert (ended["state"], ended["result"]) == (states.SUCCESS, "cleaned up after the soft time limit")
    assert 0.5 <= _at(ended["finished_at"]) - _at(ended["started_at"]) < 2.5


def test_the_task_list_says_each_tasks_time_limits_and_retry_policy(idle_client):
    tasks = {task["name"]: task for task in idle_client.get("/tasks").get_json()["tasks"]}
    flaky = tasks["flaky"]
    assert (flaky["soft_time_limit_seconds"], flaky["time_limit_seconds"]) == (20, 30)
    assert flaky["retry_policy"] == {
        "on": ["TransientError"],
        "max_attempts": FLAKY_MAX_ATTEMPTS,
        "backoff_seconds": FLAKY_BACKOFF_SECONDS,
        "backoff_max_seconds": 60,
        "jitter": True,
        "delay_seconds": 180.0,
    }
    # A task that declares none has the worker's defaults (config.py), and no policy.
    assert tasks["add"]["retry_policy"] is None
    assert tasks["add"]["time_limit_seconds"] == idle_client.application.config["CELERY"]["task_time_limit"]
    # And so does the OpenAPI document.
    schema = idle_client.get("/openapi.json").get_json()["components"]["schemas"]
    assert "retry_policy" in next(s for name, s in schema.items() if name.startswith("TaskDescription"))["properties"]
