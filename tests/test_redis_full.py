"""Redis at its memory limit (noeviction refuses every write that may add data): the API
answers a JSON 503 `redis_full` to what needs a write and keeps answering reads, leaves
nothing half-done, and the writes a worker must make still go through or wait.

Against a Redis of this module's own, filled by CONFIG SET maxmemory 1 (every write
refused from the first byte) and emptied of that limit after each test. The whole
story, with real workers, is tests/reliability/test_redis_full.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from kombu.exceptions import OperationalError

from backend.jobs import extensions
from backend.jobs.errors import REDIS_FULL_MESSAGE, is_redis_full
from backend.jobs.index import INDEX_SETS
from backend.taskqueue import results
from backend.taskqueue.leases import held_delivery_tags, renew_leases
from backend.taskqueue.results import wait_while_full
from devtools.redis_server import RedisServer, free_port
from tests.helpers import QUEUE, make_app

OOM = "command not allowed when used memory > 'maxmemory'."


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RedisServer]:
    with RedisServer(free_port(), tmp_path_factory.mktemp("full-redis"), appendonly=False) as running:
        yield running


@pytest.fixture
def store(server) -> redis.Redis:
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    client.flushdb()
    return client


@pytest.fixture
def full(store):
    """full() -> a context in which the Redis refuses every write that may add data."""

    @contextmanager
    def filled() -> Iterator[None]:
        store.config_set("maxmemory", 1)
        try:
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                store.set("probe", "x")
            yield
        finally:
            store.config_set("maxmemory", 0)

    return filled


@pytest.fixture
def app(server, store):
    """The API on the module's Redis; no worker: a job stays QUEUED."""
    return make_app(server.url)


@pytest.fixture
def client(app):
    return app.test_client()


def submit(client, **headers: str) -> str:
    response = client.post("/add", json={"x": 1, "y": 2}, headers=headers)
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["task_id"])


def assert_redis_full(response) -> None:
    assert response.status_code == 503, response.get_json()
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Retry-After"].isdigit()
    error = response.get_json()["error"]
    assert error["code"] == "redis_full"
    assert REDIS_FULL_MESSAGE in error["message"]


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(redis.exceptions.OutOfMemoryError(OOM), id="a command (OutOfMemoryError)"),
        pytest.param(
            redis.exceptions.ExecAbortError(f"Transaction discarded because of: OOM {OOM}"), id="EXEC refused"
        ),
        pytest.param(
            redis.exceptions.ResponseError(f"Error running script (call to f_0): @user_script:1: -OOM {OOM}"),
            id="a script's write on Redis 6",
        ),
    ],
)
def test_every_form_of_the_refusal_is_redis_full_even_wrapped_by_kombu(error):
    assert is_redis_full(error)
    try:
        raise OperationalError(str(error)) from error  # as kombu's publish raises it
    except OperationalError as wrapped:
        assert is_redis_full(wrapped)


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis.exceptions.ConnectionError("Connection refused"),
        OperationalError("Connection refused"),
    ],
)
def test_other_redis_errors_are_not_redis_full(error):
    assert not is_redis_full(error)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/add", {"x": 1, "y": 2}),
        ("post", "/longtask", {"steps": 1}),
        ("get", "/longtask?steps=1", None),
    ],
)
def test_a_submit_is_503_redis_full_and_leaves_no_record_index_entry_or_message(
    client, store, full, method, path, body
):
    with full():
        assert_redis_full(getattr(client, method)(path, json=body))
    assert store.keys("job:*") == []
    assert store.scard(INDEX_SETS) == 0
    assert store.llen(QUEUE) == 0


def test_an_idempotency_key_refused_while_full_is_free_for_the_retry(client, full):
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    with full():
        assert_redis_full(client.post("/add", json={"x": 1, "y": 2}, headers=headers))
    retried = client.post("/add", json={"x": 1, "y": 2}, headers=headers)
    assert retried.status_code == 202
    assert "Idempotent-Replayed" not in retried.headers


def test_a_cancel_and_a_retry_are_503_redis_full_and_change_nothing(app, client, full):
    queued = submit(client)
    failed = submit(client)
    with app.app_context():
        extensions.celery_app().backend.mark_as_failure(failed, ValueError("failed for this test"))
    with full():
        assert_redis_full(client.post(f"/status/{queued}/cancel"))
        assert_redis_full(client.post(f"/status/{failed}/retry"))
    assert client.get(f"/status/{queued}").get_json()["state"] == "QUEUED"
    assert client.get(f"/status/{failed}").get_json()["retried_by"] is None


def test_reads_keep_answering_while_redis_is_full(client, full):
    job_id = submit(client)
    with full():
        assert client.get(f"/status/{job_id}").get_json()["state"] == "QUEUED"
        assert client.get("/jobs").get_json()["jobs"][0]["task_id"] == job_id
        assert client.get("/jobs/stats").status_code == 200
        assert client.get("/tasks").status_code == 200
        assert client.get("/healthz").status_code == 200


def test_readyz_says_redis_is_full_and_does_not_ping_the_workers(client, full):
    with full():
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["redis"]["ok"] is False and body["redis"]["full"] is True
    assert body["redis"]["error"] == REDIS_FULL_MESSAGE
    assert body["redis"]["used_memory"] >= body["redis"]["maxmemory"] == 1
    assert body["workers"]["error"] == "not checked: Redis is full"


def test_a_rate_limit_count_refused_is_503_redis_full(server, full):
    limited = make_app(server.url, SUBMIT_RATE_LIMIT="1000/second").test_client()
    with full():
        assert_redis_full(limited.post("/add", json={"x": 1, "y": 2}))


def test_a_record_whose_publish_failed_can_be_deleted_while_redis_is_full(app, store, full):
    with app.app_context():
        records = extensions.job_records()
        records.create(records.new_record("deleted-while-full", "add", "anonymous", {"x": 1, "y": 2}))
        with full():
            records.delete("deleted-while-full")
    assert store.exists("job:deleted-while-full") == 0
    assert store.scard(INDEX_SETS) == 0


def test_a_worker_records_the_message_it_took_and_renews_its_lease_while_redis_is_full(app, store, full):
    with extensions.celery_app(app).connection_for_write() as connection:
        channel = connection.default_channel
        raw = channel.prepare_message("body", properties={"delivery_tag": "taken-while-full"})
        raw["properties"]["delivery_info"] = {"exchange": "", "routing_key": QUEUE}
        with full():
            channel.qos.append(channel.Message(raw, channel=channel), "taken-while-full")
            recorded_at = store.zscore("unacked_index", "taken-while-full")
            assert store.hexists("unacked", "taken-while-full")
            assert held_delivery_tags(channel) == ["taken-while-full"]
            time.sleep(0.01)
            assert renew_leases(channel) == 1
            assert store.zscore("unacked_index", "taken-while-full") > recorded_at
            channel.qos.restore_visible(num=10, interval=1)  # skipped, not an error


def test_a_requeue_refused_because_redis_is_full_happens_at_the_first_sweep_after(app, store, full):
    with extensions.celery_app(app).connection_for_write() as connection:
        channel = connection.default_channel
        raw = channel.prepare_message("body", properties={"delivery_tag": "requeued-later"})
        raw["properties"]["delivery_info"] = {"exchange": "", "routing_key": QUEUE}
        channel.qos.append(channel.Message(raw, channel=channel), "requeued-later")
        with full():
            channel.qos.reject("requeued-later", requeue=True)  # its pool process died
            channel.qos.restore_visible(num=10, interval=1)
            assert held_delivery_tags(channel) == ["requeued-later"]  # held, and leased
            assert store.llen(QUEUE) == 0
        channel.qos.restore_visible(num=10, interval=1)
        assert store.llen(QUEUE) == 1
        assert store.zcard("unacked_index") == 0 and held_delivery_tags(channel) == []


def test_a_worker_write_refused_because_redis_is_full_is_tried_again_until_it_is_taken(monkeypatch):
    monkeypatch.setattr(results.time, "sleep", lambda seconds: None)
    refusals = iter([redis.exceptions.OutOfMemoryError(OOM)] * 3)

    def write() -> str:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        return "stored"

    assert wait_while_full(write, "a state") == "stored"


def test_a_worker_write_that_fails_for_another_reason_is_not_tried_again():
    def write() -> None:
        raise redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        wait_while_full(write, "a state")


def test_a_cli_write_while_redis_is_full_fails_with_one_line(app, full):
    with full():
        result = app.test_cli_runner().invoke(args=["jobs", "submit", "add", "--json", '{"x": 1, "y": 2}'])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: used memory at maxmemory")
    assert "Traceback" not in result.output
