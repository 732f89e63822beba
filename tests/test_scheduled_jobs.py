"""Jobs for later: `delay_seconds` or `run_at` on any submit, and a countdown from code, wait
in Redis (backend/jobs/schedule.py), SCHEDULED, until a worker's mover queues them when due."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from backend.jobs import extensions
from backend.jobs.schedule import SCHEDULE_PREFIX, SCHEDULE_SETS, SCHEDULED_MESSAGES
from tests.helpers import QUEUE, wait_for_state, wait_until
from tests.support_tasks import EXECUTIONS

SCHEDULE = SCHEDULE_PREFIX + QUEUE


@pytest.fixture
def store(worker_redis_url):
    return redis.Redis.from_url(worker_redis_url, decode_responses=True)


def state_of(client, job_id: str) -> str:
    return client.get(f"/status/{job_id}").get_json()["state"]


def test_a_job_scheduled_5_s_ahead_has_not_started_at_4_s_and_has_ended_by_6_5_s(client, worker, store):
    submitted_at = time.monotonic()
    response = client.post("/add?delay_seconds=5", json={"x": 2, "y": 3})
    assert response.status_code == 202
    body = response.get_json()
    job_id = body["task_id"]
    assert body["state"] == "SCHEDULED"
    due = datetime.fromisoformat(body["run_at"])
    assert timedelta(seconds=4.9) < due - datetime.now(UTC) <= timedelta(seconds=5)
    assert store.zscore(SCHEDULE, job_id) is not None

    time.sleep(max(0.0, 4 - (time.monotonic() - submitted_at)))
    status = client.get(f"/status/{job_id}").get_json()
    assert (status["state"], status["started_at"], status["run_at"]) == ("SCHEDULED", None, body["run_at"])

    done = wait_for_state(client, job_id, {"SUCCESS"}, timeout=6.5 - (time.monotonic() - submitted_at))
    assert done["result"] == 5 and done["started_at"] >= body["run_at"]
    assert store.zscore(SCHEDULE, job_id) is None and not store.hexists(SCHEDULED_MESSAGES, job_id)


def test_run_at_schedules_the_job_for_that_time(client, worker):
    run_at = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    body = client.post(f"/tasks/add?run_at={run_at.replace('+', '%2B')}", json={"x": 1, "y": 1}).get_json()
    assert body["state"] == "SCHEDULED"
    assert abs(datetime.fromisoformat(body["run_at"]) - datetime.fromisoformat(run_at)) < timedelta(milliseconds=1)
    assert wait_for_state(client, body["task_id"], {"SUCCESS"}, timeout=5)["result"] == 2


def test_a_time_that_has_passed_queues_the_job_at_once(idle_client, idle_queue_length):
    before = idle_queue_length()
    body = idle_client.post("/add?run_at=2020-01-01T00:00:00Z", json={"x": 1, "y": 1}).get_json()
    assert body["state"] == "QUEUED" and "run_at" not in body
    assert idle_queue_length() == before + 1


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("delay_seconds=-1", "delay_seconds"),
        ("delay_seconds=soon", "delay_seconds"),
        ("delay_seconds=inf", "delay_seconds"),
        ("run_at=2030-01-01T00:00:00", "run_at"),  # no zone
        ("run_at=tomorrow", "run_at"),
        ("delay_seconds=60&run_at=2030-01-01T00:00:00Z", None),
        ("delay_seconds=3601", "delay_seconds"),  # beyond SCHEDULE_MAX_SECONDS
        ("delay_seconds=1e16", "delay_seconds"),  # beyond any date: a 422, not an overflow
    ],
)
def test_a_bad_time_is_a_422_naming_it_and_enqueues_nothing(make_app, idle_redis_url, idle_queue_length, query,
                                                            parameter):
    client = make_app(idle_redis_url, SCHEDULE_MAX_SECONDS="3600").test_client()
    before = idle_queue_length()
    response = client.post(f"/add?{query}", json={"x": 1, "y": 1})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert parameter is None or parameter in error["message"]
    assert idle_queue_length() == before


def test_a_scheduled_job_cancelled_is_revoked_at_once_and_never_runs(client, worker, store):
    job_id = client.post("/add?delay_seconds=1", json={"x": 1, "y": 1}).get_json()["task_id"]
    cancelled = client.post(f"/status/{job_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.get_json()["state"] == "REVOKED"
    assert store.zscore(SCHEDULE, job_id) is None and not store.hexists(SCHEDULED_MESSAGES, job_id)
    time.sleep(2)
    assert state_of(client, job_id) == "REVOKED"
    assert store.hget(EXECUTIONS, job_id) is None


def test_a_countdown_from_code_waits_in_redis_not_in_a_worker(app, client, worker, store):
    with app.app_context():
        job_id = extensions.celery_app().tasks["add"].apply_async((4, 5), countdown=1.5).id
    assert state_of(client, job_id) == "SCHEDULED"
    assert store.zscore(SCHEDULE, job_id) is not None
    held = store.hvals("unacked")
    assert not any(job_id in message for message in held)
    assert wait_for_state(client, job_id, {"SUCCESS"}, timeout=5)["result"] == 9


def test_a_scheduled_job_is_listed_as_scheduled_until_it_is_due(client, worker):
    job_id = client.post("/add?delay_seconds=1", json={"x": 1, "y": 1}).get_json()["task_id"]
    listed = client.get("/jobs?state=SCHEDULED").get_json()["jobs"]
    assert job_id in [job["task_id"] for job in listed]
    wait_for_state(client, job_id, {"SUCCESS"}, timeout=5)
    assert job_id not in [job["task_id"] for job in client.get("/jobs?state=SCHEDULED").get_json()["jobs"]]


def test_get_longtask_takes_delay_seconds_beside_its_input(idle_client, idle_redis_url):
    body = idle_client.get("/longtask?steps=2&step_seconds=0&delay_seconds=30").get_json()
    assert body["state"] == "SCHEDULED"
    status = idle_client.get(f"/status/{body['task_id']}").get_json()
    assert status["input"] == {"steps": 2, "step_seconds": 0.0, "fail_at_step": None}
    assert idle_client.post(f"/status/{body['task_id']}/cancel").get_json()["state"] == "REVOKED"


def test_the_openapi_document_has_the_scheduled_state_and_the_timing_parameters(idle_client):
    document = idle_client.get("/openapi.json").get_json()
    assert "SCHEDULED" in document["components"]["schemas"]["JobStatus"]["properties"]["state"]["enum"]
    parameters = {parameter["name"] for parameter in document["paths"]["/add"]["post"]["parameters"]}
    assert {"delay_seconds", "run_at"} <= parameters


def test_the_schedule_keeps_no_key_once_its_jobs_have_moved(client, worker, store):
    job_id = client.post("/add?delay_seconds=0.3", json={"x": 1, "y": 1}).get_json()["task_id"]
    wait_for_state(client, job_id, {"SUCCESS"}, timeout=5)
    wait_until(lambda: not store.exists(SCHEDULE) and not store.sismember(SCHEDULE_SETS, SCHEDULE), 2,
               what="the schedule's keys to go")
