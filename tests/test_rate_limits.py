"""Per-client submit limits: 429 JSON with Retry-After; a limited submit enqueues nothing."""

import itertools

import pytest

_addresses = (f"10.0.{n // 250}.{n % 250 + 1}" for n in itertools.count())


@pytest.fixture
def limited(make_app, idle_redis_url):
    return make_app(idle_redis_url, SUBMIT_RATE_LIMIT="3/minute").test_client()


@pytest.fixture
def address():
    """A fresh client address per test: the counts live in Redis for a minute."""
    return {"REMOTE_ADDR": next(_addresses)}


def test_submits_beyond_the_limit_are_429_with_retry_after(limited, address, idle_queue_length):
    for _ in range(3):
        assert limited.post("/add", json={"x": 1, "y": 2}, environ_base=address).status_code == 202
    before = idle_queue_length()

    response = limited.post("/add", json={"x": 1, "y": 2}, environ_base=address)

    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "too_many_requests"
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert idle_queue_length() == before


def test_the_limit_is_shared_by_every_submit_route(limited, address):
    assert limited.post("/add", json={"x": 1, "y": 2}, environ_base=address).status_code == 202
    assert limited.get("/longtask?steps=1", environ_base=address).status_code == 202
    assert limited.post("/tasks/add", json={"x": 1, "y": 2}, environ_base=address).status_code == 202
    assert limited.post("/longtask", json={}, environ_base=address).status_code == 429


def test_each_client_has_its_own_budget(limited, address):
    for _ in range(3):
        limited.post("/add", json={"x": 1, "y": 2}, environ_base=address)
    other = {"REMOTE_ADDR": next(_addresses)}
    assert limited.post("/add", json={"x": 1, "y": 2}, environ_base=other).status_code == 202


def test_authenticated_clients_are_limited_per_token_not_per_address(make_app, idle_redis_url, address):
    tokens = ["limited-a" * 5, "limited-b" * 5]  # used by no other test: their counts start at 0
    client = make_app(idle_redis_url, SUBMIT_RATE_LIMIT="1/minute", API_TOKENS=",".join(tokens)).test_client()
    def submit(token):
        headers = {"Authorization": f"Bearer {token}"}
        return client.post("/add", json={"x": 1, "y": 2}, headers=headers, environ_base=address).status_code

    assert submit(tokens[0]) == 202
    assert submit(tokens[1]) == 202  # same address, another token: its own budget
    assert submit(tokens[0]) == 429  # the first token's budget is spent


def test_status_lookups_are_not_limited(limited, address):
    task_id = limited.post("/add", json={"x": 1, "y": 2}, environ_base=address).get_json()["task_id"]
    for _ in range(5):
        assert limited.get(f"/status/{task_id}", environ_base=address).status_code == 200
