"""GET /me: who a token names, so that the dashboard offers only what the caller may do."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.api.auth import client_id_for
from backend.jobs.callers import ROLE_LABELS, Role
from backend.ops.clients import ClientsFile
from tests.helpers import CLIENTS_DB, empty_db, make_app

API_TOKEN = "m" * 40


@pytest.fixture
def secured_app(redis_server, tmp_path):
    return make_app(empty_db(redis_server, CLIENTS_DB), API_CLIENTS_FILE=str(tmp_path / "clients.json"),
                    API_TOKENS=API_TOKEN)


def me(app, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.test_client().get("/me", headers=headers)


@pytest.mark.parametrize("role", ["read", "submit", "admin"])
def test_me_names_the_client_of_the_token_and_its_role(secured_app, role):
    _, token = ClientsFile(Path(secured_app.config["API_CLIENTS_FILE"])).add("billing", Role.named(role))
    response = me(secured_app, token)
    assert response.status_code == 200
    assert response.get_json() == {"client": "billing", "role": role, "max_running": None}


def test_me_names_a_token_of_api_tokens_an_admin_by_its_id(secured_app):
    assert me(secured_app, API_TOKEN).get_json() == {
        "client": client_id_for(API_TOKEN), "role": "admin", "max_running": None,
    }


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_me_without_a_valid_token_is_401(secured_app, token):
    response = me(secured_app, token)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == ("unauthorized" if token is None else "invalid_token")


def test_with_the_api_open_me_is_the_anonymous_admin(idle_app):
    assert me(idle_app).get_json() == {"client": "anonymous", "role": "admin", "max_running": None}


def test_me_says_how_many_of_the_clients_jobs_run_at_once(redis_server, tmp_path):
    clients = ClientsFile(tmp_path / "clients.json")
    _, limited = clients.add("billing", Role.SUBMIT)
    _, own_limit = clients.add("reports", Role.SUBMIT, max_running=5)
    _, unlimited = clients.add("batch", Role.SUBMIT, max_running=0)
    app = make_app(empty_db(redis_server, CLIENTS_DB), API_CLIENTS_FILE=str(clients.path), CLIENT_MAX_RUNNING="2")
    assert [me(app, token).get_json()["max_running"] for token in (limited, own_limit, unlimited)] == [2, 5, None]


def test_me_is_documented_with_its_shape(idle_app):
    document = idle_app.test_client().get("/openapi.json").get_json()
    answer = document["paths"]["/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/Me"}
    assert document["components"]["schemas"]["Me"]["properties"]["role"]["enum"] == list(ROLE_LABELS)
