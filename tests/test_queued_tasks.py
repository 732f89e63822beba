"""Submitting: 202 with a Location, and QUEUED until a worker takes the task.

These tests use the database no worker consumes.
"""

import json

import redis

from backend.jobs import extensions
from backend.taskqueue.task import CLIENT_LIMIT_HEADER, OWNER_HEADER, RECORDED_HEADER
from tests.helpers import IDLE_DB, OBSERVER_DB, QUEUE, SPLIT_BROKER_DB, db_url, wait_for_state, wait_until

STATUS_FIELDS = {
    "task_id", "name", "state", "progress", "result", "error", "submitted_at", "run_at", "deadline_at",
    "started_at", "finished_at", "attempt", "max_attempts", "next_attempt_at", "owner", "input", "input_note",
    "retry_of", "retried_by",
}


def test_get_longtask_is_202_with_location_and_queued_state(idle_client):
    response = idle_client.get("/longtask")
    assert response.status_code == 202
    body = response.get_json()
    assert body["state"] == "QUEUED"
    assert response.headers["Location"] == body["status_url"] == f"/status/{body['task_id']}"


def test_post_longtask_accepts_a_json_body(idle_client):
    response = idle_client.post("/longtask", json={"steps": 3, "step_seconds": 0.5})
    assert response.status_code == 202


def test_post_longtask_without_a_body_uses_the_defaults(idle_client, idle_app):
    response = idle_client.post("/longtask")
    assert response.status_code == 202


def test_a_submitted_task_is_queued_not_unknown_while_no_worker_runs(idle_client, idle_queue_length):
    before = idle_queue_length()
    task_id = idle_client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    assert idle_queue_length() == before + 1
    status = idle_client.get(f"/status/{task_id}")
    assert status.status_code == 200
    body = status.get_json()
    assert set(body) == STATUS_FIELDS
    assert body["state"] == "QUEUED"
    assert body["name"] == "add"
    assert body["submitted_at"].endswith("Z")
    assert body["started_at"] is body["finished_at"] is body["result"] is body["error"] is body["progress"] is None


def test_the_registry_route_and_the_alias_submit_the_same_task(idle_client):
    via_registry = idle_client.post("/tasks/add", json={"x": 1, "y": 2}).get_json()
    via_alias = idle_client.post("/add", json={"x": 1, "y": 2}).get_json()
    names = {idle_client.get(f"/status/{s['task_id']}").get_json()["name"] for s in (via_registry, via_alias)}
    assert names == {"add"}


def test_cancelling_a_queued_task_revokes_it_at_once(idle_client):
    task_id = idle_client.post("/longtask", json={"steps": 1, "step_seconds": 0}).get_json()["task_id"]
    response = idle_client.post(f"/status/{task_id}/cancel")
    assert response.status_code == 202
    body = response.get_json()
    assert body["state"] == "REVOKED"
    assert body["finished_at"] is not None
    assert body["started_at"] is None


def test_a_cancelled_queued_task_never_runs_when_a_worker_arrives(
    start_worker, idle_client, idle_redis_url, idle_queue_length
):
    redis.Redis.from_url(idle_redis_url).delete(QUEUE)  # only this test's tasks for the new worker
    cancelled = idle_client.post("/add", json={"x": 1, "y": 1}).get_json()["task_id"]
    idle_client.post(f"/status/{cancelled}/cancel")
    kept = idle_client.post("/add", json={"x": 2, "y": 2}).get_json()["task_id"]

    process, _ = start_worker(idle_redis_url)
    try:
        assert wait_for_state(idle_client, kept, {"SUCCESS"})["result"] == 4
        wait_until(lambda: idle_queue_length() == 0, timeout=20, what="the queue to drain")
    finally:
        process.stop()
    body = idle_client.get(f"/status/{cancelled}").get_json()
    assert body["state"] == "REVOKED"
    assert body["started_at"] is None
    assert body["result"] is None


def test_readyz_is_503_with_details_when_no_worker_answers(idle_client):
    response = idle_client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["redis"]["ok"] is True
    assert body["workers"]["ok"] is False
    assert body["workers"]["error"]


def test_healthz_answers(idle_client):
    assert idle_client.get("/healthz").get_json() == {"status": "ok"}


def test_a_submit_does_not_subscribe_to_its_result(idle_client, idle_redis_url):
    # Celery's Redis backend subscribes on every apply_async; the API never reads the
    # replies, which would pile up on its connections (backend/results.py).
    stats = redis.Redis.from_url(idle_redis_url).info("commandstats")
    subscribes_before = stats.get("cmdstat_subscribe", {}).get("calls", 0)
    for _ in range(10):
        assert idle_client.post("/add", json={"x": 1, "y": 2}).status_code == 202
    stats = redis.Redis.from_url(idle_redis_url).info("commandstats")
    assert stats.get("cmdstat_subscribe", {}).get("calls", 0) == subscribes_before


def test_a_submitted_message_says_its_job_is_recorded(idle_client, idle_redis_url):
    """The worker that receives it then asks Redis nothing (backend/taskqueue/consumer.py)."""
    job_id = idle_client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    messages = [json.loads(raw) for raw in redis.Redis.from_url(idle_redis_url).lrange(QUEUE, 0, -1)]
    headers = next(message["headers"] for message in messages if message["headers"]["id"] == job_id)
    assert headers[RECORDED_HEADER] is True


def test_a_submitted_message_carries_its_owner_and_the_owners_running_limit(make_app, idle_redis_url):
    """What a worker's running limits read (backend/taskqueue/running_limits.py); none for code."""
    limited = make_app(idle_redis_url, CLIENT_MAX_RUNNING="3")
    job_id = limited.test_client().post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    with limited.app_context():
        by_code = extensions.celery_app().tasks["add"].delay(1, 2).id
    messages = {
        message["headers"]["id"]: message["headers"]
        for message in map(json.loads, redis.Redis.from_url(idle_redis_url).lrange(QUEUE, 0, -1))
    }
    assert (messages[job_id][OWNER_HEADER], messages[job_id][CLIENT_LIMIT_HEADER]) == ("anonymous", 3)
    assert messages[by_code][OWNER_HEADER] == "code" and CLIENT_LIMIT_HEADER not in messages[by_code]


def test_a_submit_is_one_command_to_redis_that_writes_the_record_and_pushes_the_message(
    idle_client, idle_redis_url, redis_server
):
    """Where the queues and the records share a database (the default), one script
    writes the record, its index entries and the message (backend/taskqueue/recorded_publish.py)."""
    assert idle_client.post("/add", json={"x": 1, "y": 2}).status_code == 202  # connections opened, script loaded
    observer = redis.Redis.from_url(db_url(redis_server, OBSERVER_DB))
    with observer.monitor() as monitor:
        job_ids = [idle_client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"] for _ in range(10)]
        observer.echo("submits done")
        sent = []  # the commands the API sent, not those its scripts ran (client type "lua")
        while (command := monitor.next_command())["command"] != "ECHO submits done":
            if command["db"] == IDLE_DB and command["client_type"] != "lua":
                sent.append(command["command"].split()[0])
    assert sent == ["EVALSHA"] * 10
    queued = {json.loads(raw)["headers"]["id"] for raw in redis.Redis.from_url(idle_redis_url).lrange(QUEUE, 0, -1)}
    assert set(job_ids) <= queued
    assert {idle_client.get(f"/status/{job_id}").get_json()["state"] for job_id in job_ids} == {"QUEUED"}


def test_with_the_queues_in_another_database_a_submit_still_records_its_job(make_app, idle_redis_url, redis_server):
    """Then the record is written first and the message pushed after, in two commands."""
    broker_url = db_url(redis_server, SPLIT_BROKER_DB)
    client = make_app(idle_redis_url, BROKER_URL=broker_url).test_client()
    job_id = client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    assert client.get(f"/status/{job_id}").get_json()["state"] == "QUEUED"
    broker = redis.Redis.from_url(broker_url)
    try:
        assert job_id in {json.loads(raw)["headers"]["id"] for raw in broker.lrange(QUEUE, 0, -1)}
    finally:
        broker.flushdb()
