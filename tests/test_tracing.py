"""Every request has an X-Request-ID; the id travels with the task to the worker's log lines."""

import json
import uuid

import pytest
import requests

from tests.helpers import TRACING_DB, Process, db_url, launch_worker, wait_for_state, wait_until

# A database of its own: the task must run on the JSON-logging worker, not the session's.


def test_a_sane_client_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "client-id_1.2:3"})
    assert response.headers["X-Request-ID"] == "client-id_1.2:3"


def test_a_request_without_an_id_gets_a_new_one(client):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert len(first.headers["X-Request-ID"]) == 32
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


@pytest.mark.parametrize("bad_id", ["x" * 129, "has space", "tab\tid", 'quote"', "semi;colon", "ünïcode", ""])
def test_an_unsafe_client_request_id_is_replaced(client, bad_id):
    response = client.get("/healthz", headers={"X-Request-ID": bad_id})
    assert response.headers["X-Request-ID"] != bad_id
    assert len(response.headers["X-Request-ID"]) == 32


def test_error_responses_carry_the_request_id(make_app, worker_redis_url):
    secured = make_app(worker_redis_url, API_TOKENS="secret-token").test_client()
    assert secured.get("/tasks", headers={"X-Request-ID": "r-401"}).headers["X-Request-ID"] == "r-401"
    assert secured.get("/no/such/route", headers={"X-Request-ID": "r-404"}).headers["X-Request-ID"] == "r-404"


@pytest.fixture(scope="module")
def json_worker(redis_server, tmp_path_factory):
    redis_url = db_url(redis_server, TRACING_DB)
    process, _ = launch_worker(redis_url, tmp_path_factory.mktemp("json-worker"), concurrency=1, LOG_FORMAT="json")
    yield redis_url, process
    process.stop()


def _json_lines(process: Process) -> list[dict]:
    """The worker's log lines. Celery's text format ("[2026-...: INFO/...]") must not appear;
    warnings printed before logging is set up (running as root) are not log lines."""
    lines = process.log_path.read_text().splitlines()
    assert not [line for line in lines if line.startswith("[")], "a log line in text format"
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.mark.parametrize("idempotency_key", [None, "trace-idem-key"])
def test_worker_json_log_lines_carry_the_request_id_of_the_submit(make_app, json_worker, idempotency_key):
    redis_url, process = json_worker
    client = make_app(redis_url).test_client()
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    headers = {"X-Request-ID": request_id}
    if idempotency_key:
        headers["Idempotency-Key"] = f"{idempotency_key}-{request_id}"
    response = client.post("/add", json={"x": 1, "y": 2}, headers=headers)
    assert response.status_code == 202
    task_id = response.get_json()["task_id"]
    wait_for_state(client, task_id, {"SUCCESS"})

    def traced_lines():
        return [line for line in _json_lines(process) if line.get("request_id") == request_id]

    lines = wait_until(traced_lines, timeout=10, what="the worker to log the task's end")
    assert {line["task_id"] for line in lines} == {task_id}
    assert {line["task_name"] for line in lines} == {"add"}
    assert any("succeeded" in line["message"] for line in lines)
    assert all({"time", "level", "name", "message"} <= line.keys() for line in lines)


def test_worker_json_log_names_the_task_of_the_received_line(make_app, json_worker):
    redis_url, process = json_worker
    client = make_app(redis_url).test_client()
    task_id = client.post("/add", json={"x": 2, "y": 2}).get_json()["task_id"]
    wait_for_state(client, task_id, {"SUCCESS"})
    # Logged by the worker's main process before the task runs: the id comes from the message.
    (received,) = wait_until(
        lambda: [
            line for line in _json_lines(process) if line.get("task_id") == task_id and "received" in line["message"]
        ],
        timeout=10,
        what="the worker's received line",
    )
    assert received["task_name"] == "add"


def test_gunicorn_json_logs_have_the_request_id_in_access_lines(start_gunicorn, worker_redis_url):
    process, url = start_gunicorn(worker_redis_url, "gunicorn-json", GUNICORN_WORKERS="1", LOG_FORMAT="json")
    response = requests.get(f"{url}/status/not-a-task", headers={"X-Request-ID": "gunicorn-trace-1"}, timeout=5)
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "gunicorn-trace-1"

    def access_line():
        lines = [json.loads(line) for line in process.log_path.read_text().splitlines() if line.strip()]
        return [line for line in lines if line.get("request_id") == "gunicorn-trace-1"]

    (line,) = wait_until(access_line, timeout=10, what="gunicorn's access line")
    assert line["name"] == "gunicorn.access"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/status/not-a-task", 404)
    # gunicorn's own lines ("Booting worker ...") are JSON too: access_line() parsed every line.
    lines = map(json.loads, process.log_path.read_text().splitlines())
    assert any(line.get("name") == "gunicorn.error" for line in lines)
