"""With Redis unreachable the API answers a JSON 503 with Retry-After, and stays alive."""

import pytest

from devtools.redis_server import free_port


@pytest.fixture
def client_without_redis(make_app):
    # A free port: nothing listens there, so every Redis call is refused.
    return make_app(f"redis://127.0.0.1:{free_port()}/0").test_client()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/add", {"x": 1, "y": 2}),
        ("get", "/longtask", None),
        ("get", "/status/00000000-0000-4000-8000-000000000000", None),
        ("post", "/status/00000000-0000-4000-8000-000000000000/cancel", None),
        ("post", "/status/00000000-0000-4000-8000-000000000000/retry", None),
        ("get", "/jobs?state=FAILURE", None),
        ("get", "/jobs/stats", None),
        ("post", "/jobs/retry", {"name": "add"}),
        ("post", "/jobs/cancel", {}),
        ("get", "/queues", None),
        ("post", "/add?delay_seconds=30", {"x": 1, "y": 2}),
    ],
)
def test_requests_needing_redis_are_503_with_retry_after(client_without_redis, method, path, body):
    response = getattr(client_without_redis, method)(path, json=body)
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert response.get_json()["error"]["code"] == "service_unavailable"


def test_invalid_input_is_still_422_without_redis(client_without_redis):
    assert client_without_redis.post("/add", json={"x": "a"}).status_code == 422


def test_healthz_still_answers_and_readyz_says_why_not_ready(client_without_redis):
    assert client_without_redis.get("/healthz").status_code == 200
    response = client_without_redis.get("/readyz")
    assert response.status_code == 503
    assert "Redis" in response.get_json()["workers"]["error"]
