"""Bearer-token auth: with API_TOKENS set, every API route but the health checks
needs a valid token; a refused request is a 401 JSON and enqueues nothing."""

import pytest

TOKEN = "a" * 40
NEXT_TOKEN = "b" * 40  # two tokens at once: rotation without downtime
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def secured(make_app, idle_redis_url):
    return make_app(idle_redis_url, API_TOKENS=f"{TOKEN},{NEXT_TOKEN}").test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/add"),
        ("get", "/longtask"),
        ("post", "/tasks/add"),
        ("get", "/tasks"),
        ("get", f"/status/{UNKNOWN_ID}"),
        ("post", f"/status/{UNKNOWN_ID}/cancel"),
    ],
)
def test_every_api_route_needs_a_token(secured, method, path):
    response = getattr(secured, method)(path, json={"x": 1, "y": 2} if method == "post" else None)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_token_is_401_and_enqueues_nothing(secured, idle_queue_length):
    before = idle_queue_length()
    response = secured.post("/add", json={"x": 1, "y": 2}, headers=bearer("c" * 40))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert idle_queue_length() == before


@pytest.mark.parametrize("header", [f"Basic {TOKEN}", TOKEN, "Bearer", "Bearer  "])
def test_anything_but_a_bearer_token_is_refused(secured, header):
    assert secured.get("/tasks", headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize("token", [TOKEN, NEXT_TOKEN])
def test_each_configured_token_is_accepted(secured, token):
    submitted = secured.post("/add", json={"x": 1, "y": 2}, headers=bearer(token))
    assert submitted.status_code == 202
    status = secured.get(submitted.headers["Location"], headers=bearer(token))
    assert status.get_json()["state"] == "QUEUED"


def test_health_checks_stay_open(secured):
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/readyz").status_code in {200, 503}  # no worker here; never 401


def test_readiness_details_are_for_token_holders_only(secured):
    anonymous = secured.get("/readyz").get_json()
    assert anonymous["workers"] == {"ok": False}  # no names, no error text
    assert anonymous["redis"] == {"ok": True}
    detailed = secured.get("/readyz", headers=bearer(TOKEN)).get_json()
    assert "error" in detailed["workers"] and "latency_ms" in detailed["redis"]
    assert secured.get("/readyz", headers=bearer("c" * 40)).get_json()["workers"] == {"ok": False}


def test_the_openapi_document_is_open_and_declares_the_bearer_scheme(secured):
    spec = secured.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_without_api_tokens_the_api_is_open(idle_client):
    assert idle_client.get("/tasks").status_code == 200
