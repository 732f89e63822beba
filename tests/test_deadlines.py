"""Deadlines: a job not started by its `deadline_seconds` or `expires_at` (or Celery's
`expires` from code) never runs, and ends REVOKED with DeadlineExceeded, retryable."""

from __future__ import annotations

import time

import pytest

from backend.jobs import extensions
from tests.helpers import DEADLINES_DB, empty_db, wait_for_state


@pytest.fixture
def deadlines_url(redis_server):
    return empty_db(redis_server, DEADLINES_DB)


@pytest.fixture
def deadlines_app(make_app, deadlines_url):
    return make_app(deadlines_url)


def test_a_job_whose_deadline_passes_while_it_waits_never_runs_and_ends_deadline_exceeded(
    deadlines_app, deadlines_url, start_worker
):
    client = deadlines_app.test_client()
    job_id = client.post("/add?deadline_seconds=0.5", json={"x": 1, "y": 2}).get_json()["task_id"]
    waiting = client.get(f"/status/{job_id}").get_json()
    assert waiting["state"] == "QUEUED" and waiting["deadline_at"] > waiting["submitted_at"]
    time.sleep(1)  # no worker until the deadline has passed
    start_worker(deadlines_url, "deadlines@localhost", concurrency=1)
    ended = wait_for_state(client, job_id, {"REVOKED", "SUCCESS"}, timeout=20)
    assert (ended["state"], ended["error"]["type"]) == ("REVOKED", "DeadlineExceeded")
    # Refused by the start script: it never started (the worker's task_prerun saw the message,
    # but the task's body did not run: no started_at, no result).
    assert ended["started_at"] is None and ended["result"] is None
    listed = client.get("/jobs?state=REVOKED").get_json()["jobs"]
    assert [job["task_id"] for job in listed] == [job_id]

    retried = client.post(f"/status/{job_id}/retry")
    assert retried.status_code == 202
    assert wait_for_state(client, retried.get_json()["task_id"], {"SUCCESS"}, timeout=20)["result"] == 3


def test_a_job_that_starts_before_its_deadline_runs(deadlines_app, deadlines_url, start_worker):
    start_worker(deadlines_url, "deadlines@localhost", concurrency=1)
    client = deadlines_app.test_client()
    job_id = client.post("/add?deadline_seconds=30", json={"x": 2, "y": 2}).get_json()["task_id"]
    done = wait_for_state(client, job_id, {"SUCCESS", "REVOKED"}, timeout=20)
    assert done["state"] == "SUCCESS" and done["deadline_at"] is not None


def test_celerys_expires_from_code_is_the_same_deadline(deadlines_app, deadlines_url, start_worker):
    with deadlines_app.app_context():
        job_id = extensions.celery_app().tasks["add"].apply_async((1, 1), expires=0.3).id
    time.sleep(0.6)
    start_worker(deadlines_url, "deadlines@localhost", concurrency=1)
    ended = wait_for_state(deadlines_app.test_client(), job_id, {"REVOKED", "SUCCESS"}, timeout=20)
    assert (ended["state"], ended["error"]["type"]) == ("REVOKED", "DeadlineExceeded")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("deadline_seconds=0", "deadline_seconds"),
        ("deadline_seconds=-5", "deadline_seconds"),
        ("expires_at=2030-01-01T00:00:00", "expires_at"),  # no zone
        ("deadline_seconds=5&expires_at=2030-01-01T00:00:00Z", None),
        ("delay_seconds=10&deadline_seconds=5", "deadline_seconds"),  # before the job is due
        ("expires_at=2020-01-01T00:00:00Z", "expires_at"),  # passed already
        ("deadline_seconds=1e16", "deadline_seconds"),  # beyond any date: a 422, not an overflow
    ],
)
def test_a_bad_deadline_is_a_422_naming_it(deadlines_app, query, parameter):
    response = deadlines_app.test_client().post(f"/add?{query}", json={"x": 1, "y": 1})
    assert response.status_code == 422
    assert parameter is None or parameter in response.get_json()["error"]["message"]
