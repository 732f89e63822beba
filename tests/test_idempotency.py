"""Idempotency-Key: a client retrying a submit gets its original task, never a second one."""

import threading
import uuid

import pytest

from backend.jobs import extensions
from devtools.redis_server import free_port

ADD = {"x": 1, "y": 2}


def key_header(key: str | None = None) -> dict[str, str]:
    return {"Idempotency-Key": key or str(uuid.uuid4())}


def test_the_same_key_and_body_returns_the_original_task_and_enqueues_nothing(idle_client, idle_queue_length):
    headers = key_header()
    first = idle_client.post("/add", json=ADD, headers=headers)
    after_first = idle_queue_length()

    again = idle_client.post("/add", json=ADD, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert idle_queue_length() == after_first


def test_the_body_is_compared_by_meaning_not_by_bytes(idle_client):
    headers = {**key_header(), "Content-Type": "application/json"}
    first = idle_client.post("/add", data='{"x": 1, "y": 2}', headers=headers)
    again = idle_client.post("/add", data='{"y":2,"x":1}', headers=headers)
    assert again.get_json()["task_id"] == first.get_json()["task_id"]


@pytest.mark.parametrize(
    ("path", "body"),
    [("/add", {"x": 1, "y": 3}), ("/longtask", {"steps": 1})],
    ids=["different input", "different task"],
)
def test_the_same_key_with_another_request_is_422_and_enqueues_nothing(idle_client, idle_queue_length, path, body):
    headers = key_header()
    idle_client.post("/add", json=ADD, headers=headers)
    before = idle_queue_length()

    response = idle_client.post(path, json=body, headers=headers)

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    assert idle_queue_length() == before


def test_a_key_works_on_the_query_string_route_too(idle_client):
    headers = key_header()
    first = idle_client.get("/longtask?steps=2", headers=headers)
    again = idle_client.get("/longtask?steps=2", headers=headers)
    assert again.get_json()["task_id"] == first.get_json()["task_id"]


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "naïve"])
def test_a_malformed_key_is_400(idle_client, key):
    response = idle_client.post("/add", json=ADD, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"


def test_keys_expire_with_the_results(idle_app, idle_client):
    idle_client.post("/add", json=ADD, headers=key_header())
    redis_client = extensions.services(idle_app).records.client
    ttls = [redis_client.ttl(key) for key in redis_client.scan_iter("idempotency:*")]
    assert ttls and all(0 < ttl <= idle_app.config["RESULT_EXPIRES"] for ttl in ttls)


def test_concurrent_retries_with_one_key_create_one_task(idle_app, idle_queue_length):
    headers = key_header()
    before = idle_queue_length()
    task_ids: list[str] = []

    def submit():
        response = idle_app.test_client().post("/add", json=ADD, headers=headers)
        task_ids.append(response.get_json()["task_id"])

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(task_ids) == 8 and len(set(task_ids)) == 1
    assert idle_queue_length() == before + 1


def test_keys_are_scoped_per_api_token(make_app, idle_redis_url):
    tokens = ["a" * 40, "b" * 40]
    client = make_app(idle_redis_url, API_TOKENS=",".join(tokens)).test_client()
    headers = key_header()
    ids = {
        client.post("/add", json=ADD, headers={**headers, "Authorization": f"Bearer {token}"}).get_json()["task_id"]
        for token in tokens
    }
    assert len(ids) == 2


def test_a_submit_that_failed_to_publish_does_not_burn_its_key(make_app, idle_redis_url, idle_client):
    # Records and keys live on the result backend, the message goes to the broker:
    # a broker outage fails the submit after the key was claimed.
    unreachable_broker = f"redis://127.0.0.1:{free_port()}/0"
    broken = make_app(idle_redis_url, BROKER_URL=unreachable_broker).test_client()
    headers = key_header()
    assert broken.post("/add", json=ADD, headers=headers).status_code == 503

    retried = idle_client.post("/add", json=ADD, headers=headers)

    assert retried.status_code == 202
    assert "Idempotent-Replayed" not in retried.headers
    assert idle_client.get(retried.headers["Location"]).get_json()["state"] == "QUEUED"
