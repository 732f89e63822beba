"""GET /queues and the queue gauges of /metrics (backend/jobs/queues.py): per queue, the jobs
ready, scheduled and running, and how long the oldest ready one has waited."""

from __future__ import annotations

import time

import pytest

from backend.jobs import extensions
from tests.helpers import QUEUES_DB, empty_db, wait_until

API_TOKEN = "q" * 40


@pytest.fixture
def queues_url(redis_server):
    return empty_db(redis_server, QUEUES_DB)


@pytest.fixture
def queues_app(make_app, queues_url):
    return make_app(queues_url)


def figures(client, name: str = "celery") -> dict:
    response = client.get("/queues")
    assert response.status_code == 200, response.get_data(as_text=True)
    return next(queue for queue in response.get_json()["queues"] if queue["name"] == name)


def test_an_empty_queue_has_nothing_ready_scheduled_or_running(queues_app):
    assert figures(queues_app.test_client()) == {
        "name": "celery", "ready": 0, "scheduled": 0, "running": 0, "oldest_ready_age_seconds": None,
    }


def test_ready_and_scheduled_jobs_are_counted_and_the_oldest_ready_ages(queues_app):
    client = queues_app.test_client()
    for _ in range(3):
        client.post("/add", json={"x": 1, "y": 1})
    client.post("/add?delay_seconds=60", json={"x": 1, "y": 1})
    with queues_app.app_context():  # a priority job goes on a list of its own: still this queue's
        extensions.celery_app().tasks["add"].apply_async((1, 1), priority=6)
    time.sleep(1)
    counted = figures(client)
    assert (counted["ready"], counted["scheduled"], counted["running"]) == (4, 1, 0)
    assert 1 <= counted["oldest_ready_age_seconds"] < 10


def test_a_job_a_worker_runs_is_running_not_ready(queues_app, queues_url, start_worker):
    client = queues_app.test_client()
    start_worker(queues_url, "queues@localhost", concurrency=1)
    job_id = client.post("/longtask", json={"steps": 1, "step_seconds": 3}).get_json()["task_id"]
    wait_until(lambda: figures(client)["running"] == 1, 15, what="the worker to hold the job")
    assert figures(client)["ready"] == 0
    wait_until(lambda: client.get(f"/status/{job_id}").get_json()["state"] == "SUCCESS", 15, what="the job to end")
    assert figures(client)["running"] == 0


def test_queue_figures_are_prometheus_gauges(queues_app):
    client = queues_app.test_client()
    client.post("/add", json={"x": 1, "y": 1})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'queue_ready_jobs{queue="celery"} 1.0' in text
    assert 'queue_scheduled_jobs{queue="celery"} 0.0' in text
    assert 'queue_running_jobs{queue="celery"} 0.0' in text
    assert 'queue_oldest_ready_age_seconds{queue="celery"}' in text
    assert "queues_up 1.0" in text


def test_queues_are_for_admins(make_app, queues_url, tmp_path):
    from backend.jobs.callers import Role
    from backend.ops.clients import ClientsFile

    clients = ClientsFile(tmp_path / "clients.json")
    _, submitter = clients.add("billing", Role.SUBMIT)
    app = make_app(queues_url, API_TOKENS=API_TOKEN, API_CLIENTS_FILE=str(clients.path))
    client = app.test_client()
    assert client.get("/queues", headers={"Authorization": f"Bearer {submitter}"}).status_code == 403
    assert client.get("/queues", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
