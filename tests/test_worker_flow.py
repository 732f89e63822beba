"""Tasks run by a real Celery worker, observed through the API."""

import json
import time
import uuid

import redis

from backend.jobs import extensions
from backend.jobs.states import FINAL_STATES
from backend.tasks import long_task
from tests.helpers import QUEUE, wait_for_state, wait_until
from tests.support_tasks import fail, retry_once


def submit_long_task(client, steps=4, step_seconds=0.3) -> str:
    response = client.post("/longtask", json={"steps": steps, "step_seconds": step_seconds})
    assert response.status_code == 202
    return response.get_json()["task_id"]


def states_until_final(client, task_id: str, timeout: float = 30.0) -> tuple[list[dict], dict]:
    seen = []

    def final():
        body = client.get(f"/status/{task_id}").get_json()
        seen.append(body)
        return body if body["state"] in FINAL_STATES else None

    return seen, wait_until(final, timeout, interval=0.05, what=f"task {task_id} to end")


def test_long_task_goes_through_started_and_progress_to_success(client, worker):
    task_id = submit_long_task(client)
    seen, final = states_until_final(client, task_id)
    progress = [body["progress"] for body in seen if body["state"] == "PROGRESS"]
    assert progress, [body["state"] for body in seen]
    assert all(p["total"] == 4 and 1 <= p["current"] <= 4 for p in progress)
    assert progress[0]["message"].startswith("step ")
    assert progress[-1]["percent"] == round(100 * progress[-1]["current"] / 4, 1)
    assert final["state"] == "SUCCESS"
    assert final["result"] == {"steps": 4, "message": "completed 4 steps"}
    assert final["submitted_at"] <= final["started_at"] <= final["finished_at"]


def test_add_succeeds_with_a_json_result(client, worker):
    task_id = client.post("/add", json={"x": 2, "y": 0.5}).get_json()["task_id"]
    body = wait_for_state(client, task_id, {"SUCCESS"})
    assert body["result"] == 2.5
    assert body["error"] is None


def test_a_failing_task_reports_failure_with_its_error_and_no_traceback(client, worker):
    task_id = fail.apply_async(args=["boom"]).id
    body = wait_for_state(client, task_id, {"FAILURE"})
    assert body["error"] == {"type": "ValueError", "message": "boom"}
    assert body["result"] is None
    assert "Traceback" not in str(body)


def test_a_retrying_task_reports_retry_then_success(client, worker):
    task_id = retry_once.apply_async(args=[2.0]).id
    retry = wait_for_state(client, task_id, {"RETRY"})
    assert retry["error"] == {"type": "RuntimeError", "message": "transient failure"}
    assert wait_for_state(client, task_id, {"SUCCESS"})["result"] == "succeeded on retry"


def test_a_task_sent_with_delay_from_python_code_has_a_status_too(client, worker):
    task_id = long_task.delay(steps=1, step_seconds=0).id
    assert wait_for_state(client, task_id, {"SUCCESS"})["name"] == "long_task"


def test_a_job_sent_by_other_code_with_a_countdown_is_queued_while_a_worker_holds_it(app, client, worker):
    """send_task, as `celery call` does, bypasses our task class: no record is written
    before publishing. The worker that receives the message writes it, so the job is
    never a 404 while the worker holds it for its countdown."""
    job_id = extensions.celery_app(app).send_task("add", kwargs={"x": 2, "y": 3}, countdown=4).id
    queued = wait_until(
        lambda: (answer := client.get(f"/status/{job_id}")).status_code == 200 and answer.get_json(),
        timeout=3,
        what="the worker to receive the job",
    )
    assert queued["state"] == "QUEUED"
    assert queued["name"] == "add"
    assert wait_for_state(client, job_id, FINAL_STATES)["result"] == 5


def test_cancelling_a_running_long_task_stops_it_at_its_next_step(client, worker):
    task_id = submit_long_task(client, steps=50, step_seconds=0.2)
    wait_for_state(client, task_id, {"PROGRESS"})
    response = client.post(f"/status/{task_id}/cancel")
    assert response.status_code == 202
    body = wait_for_state(client, task_id, {"REVOKED"}, timeout=5)
    assert body["error"]["type"] == "TaskRevokedError"
    assert body["started_at"] is not None and body["finished_at"] is not None


def test_cancelling_a_finished_task_is_409(client, worker):
    task_id = client.post("/add", json={"x": 1, "y": 1}).get_json()["task_id"]
    wait_for_state(client, task_id, {"SUCCESS"})
    response = client.post(f"/status/{task_id}/cancel")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "task_finished"
    assert client.get(f"/status/{task_id}").get_json()["state"] == "SUCCESS"


def test_readyz_names_the_worker_that_answered(client, worker):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert worker in body["workers"]["names"]


def test_storing_a_state_renews_the_task_record_with_the_result(client, worker, worker_redis_url):
    redis_client = redis.Redis.from_url(worker_redis_url, socket_timeout=2)
    task_id = submit_long_task(client, steps=3, step_seconds=0.4)
    wait_for_state(client, task_id, {"STARTED", "PROGRESS"})
    # As if the record were older than the result about to be stored.
    redis_client.expire(f"job:{task_id}", 100)
    wait_for_state(client, task_id, {"SUCCESS"})
    result_ttl = redis_client.ttl(f"celery-task-meta-{task_id}")
    assert result_ttl > 1000
    assert redis_client.ttl(f"job:{task_id}") >= result_ttl - 5


def test_a_later_attempt_stores_started_over_the_earlier_attempts_state(app, worker_redis_url):
    # A retry, or a redelivery after a lost worker, must not show the earlier attempt's
    # RETRY or last progress while it runs: the start script stores STARTED and publishes it.
    redis_client = redis.Redis.from_url(worker_redis_url, socket_timeout=2)
    records = extensions.services(app).records
    task_id = f"later-attempt-{uuid.uuid4().hex}"
    result_key = f"celery-task-meta-{task_id}"
    retry = {"status": "RETRY", "result": {"exc_type": "RuntimeError"}, "task_id": task_id}
    redis_client.set(result_key, json.dumps(retry))
    started = json.dumps({"status": "STARTED", "result": {"pid": 1, "hostname": "w@h"}, "task_id": task_id})
    subscriber = redis_client.pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(result_key)
    subscriber.get_message(timeout=1)  # the subscribe confirmation

    assert records.start_unless_cancelled(task_id, "add", attempt=1, started=(result_key, started)) == 1

    assert json.loads(redis_client.get(result_key))["status"] == "STARTED"
    assert 0 < redis_client.ttl(result_key) <= records.ttl
    assert json.loads(subscriber.get_message(timeout=2)["data"])["status"] == "STARTED"
    assert app.test_client().get(f"/status/{task_id}").get_json()["state"] == "STARTED"
    subscriber.close()


def test_a_copy_of_an_ended_jobs_message_is_dropped_not_run_again(
    client, worker, worker_redis_url, idle_app, idle_redis_url
):
    # A copy arrives when an ack reached Redis but its answer did not (the worker hands the
    # message back), or when a failover lost the ack: the job has ended, so it is not run.
    task_id = idle_app.test_client().post("/add", json={"x": 2, "y": 3}).get_json()["task_id"]
    message = redis.Redis.from_url(idle_redis_url, socket_timeout=2).lindex(QUEUE, 0)
    worker_redis = redis.Redis.from_url(worker_redis_url, socket_timeout=2)
    worker_redis.lpush(QUEUE, message)  # sent by other code, as it were: the worker makes its record

    def ended_status():
        body = client.get(f"/status/{task_id}").get_json()
        return body if body.get("state") == "SUCCESS" else None

    ended = wait_until(ended_status, 20, what="the job to end")
    assert worker_redis.hget(f"job:{task_id}", "deliveries") == b"1"

    worker_redis.lpush(QUEUE, message)
    wait_until(lambda: worker_redis.llen(QUEUE) == 0 and not worker_redis.hexists("unacked", json.loads(message)[
        "properties"]["delivery_tag"]), 10, what="the worker to take the copy and settle it")
    time.sleep(0.5)  # the copy's start (it would store STARTED) is done or never happens
    assert client.get(f"/status/{task_id}").get_json() == ended
    assert worker_redis.hget(f"job:{task_id}", "deliveries") == b"1"
