"""GET /status/<id>?wait=<seconds>: answers as soon as the state or progress changes,
or when the wait is over; a finished task is answered at once."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.jobs import extensions
from backend.jobs.states import FINAL_STATES
from tests.helpers import cancel_during_long_poll, wait_for_state, wait_until


def submit_queued(idle_client) -> str:
    return idle_client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]


def test_without_a_change_it_answers_the_same_state_when_the_wait_is_over(idle_client):
    task_id = submit_queued(idle_client)
    started = time.monotonic()
    response = idle_client.get(f"/status/{task_id}?wait=0.3")
    assert response.status_code == 200
    assert response.get_json()["state"] == "QUEUED"
    assert time.monotonic() - started >= 0.3


def test_a_change_ends_the_wait_at_once(idle_app, idle_client):
    task_id = submit_queued(idle_client)
    body = cancel_during_long_poll(idle_app, task_id, after=0.3, wait=20)
    assert body["state"] == "REVOKED"


def test_a_finished_task_is_answered_without_waiting(client, worker):
    task_id = client.post("/add", json={"x": 2, "y": 3}).get_json()["task_id"]
    wait_for_state(client, task_id, {"SUCCESS"})
    started = time.monotonic()
    assert client.get(f"/status/{task_id}?wait=20").get_json()["result"] == 5
    assert time.monotonic() - started < 10  # far below the 20 s asked for


def test_following_a_task_takes_one_request_per_change_not_a_polling_loop(client, worker):
    task_id = client.post("/longtask", json={"steps": 3, "step_seconds": 0.3}).get_json()["task_id"]
    states, requests_made = [], 0
    while not states or states[-1] not in FINAL_STATES:
        body = client.get(f"/status/{task_id}?wait=10").get_json()
        requests_made += 1
        states.append(body["state"] if body["state"] != "PROGRESS" else f"PROGRESS {body['progress']['current']}")
        assert requests_made <= 12, states
    assert states[-1] == "SUCCESS"
    assert "PROGRESS 1" in states and "PROGRESS 2" in states


def test_the_wait_is_capped_by_status_max_wait(make_app, idle_redis_url):
    client = make_app(idle_redis_url, STATUS_MAX_WAIT="0.2").test_client()
    task_id = submit_queued(client)
    started = time.monotonic()
    assert client.get(f"/status/{task_id}?wait=60").get_json()["state"] == "QUEUED"
    assert time.monotonic() - started < 10  # capped at 0.2 s, not 60


@pytest.mark.parametrize("wait", ["-1", "61", "soon", "nan"])
def test_a_bad_wait_is_422(idle_client, wait):
    task_id = submit_queued(idle_client)
    response = idle_client.get(f"/status/{task_id}?wait={wait}")
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "wait"


def test_an_unknown_task_is_404_at_once(idle_client):
    assert idle_client.get("/status/00000000-0000-4000-8000-000000000000?wait=20").status_code == 404


def test_a_process_lets_only_so_many_requests_wait_and_answers_the_next_503(make_app, idle_redis_url):
    # Each waiting request holds a gunicorn thread: past MAX_WAITING_REQUESTS they would
    # leave none for submits or /healthz, so the next one is refused at once instead.
    app = make_app(idle_redis_url, MAX_WAITING_REQUESTS="1")
    client = app.test_client()
    task_id = client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]  # stays QUEUED: no worker
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.get, f"/status/{task_id}?wait=2")
        wait_until(lambda: extensions.services(app).waiting_slots.in_use == 1, timeout=5, what="the long-poll to wait")
        refused = client.get(f"/status/{task_id}?wait=2")
        stream = client.get(f"/status/{task_id}/events")
        assert refused.status_code == stream.status_code == 503
        assert refused.get_json()["error"]["code"] == "too_many_waiting_requests"
        assert refused.headers["Retry-After"]
        assert client.get(f"/status/{task_id}").status_code == 200  # no wait, no slot needed
        assert waiting.result().status_code == 200
    assert client.get(f"/status/{task_id}?wait=0.1").status_code == 200  # the slot is free again


def test_a_long_poll_refused_for_an_unknown_id_keeps_the_threads_subscriber_connection(idle_app, idle_client):
    # A caller's error leaves the kept pub/sub connection as it was: no reconnect per 404.
    subscriptions = extensions.services(idle_app).subscriptions
    idle_client.get(f"/status/{submit_queued(idle_client)}?wait=0.1")
    kept = subscriptions._kept.pubsub
    assert idle_client.get("/status/00000000-0000-4000-8000-000000000000?wait=1").status_code == 404
    assert subscriptions._kept.pubsub is kept
