"""`flask clients add|list|revoke`: the clients file keeps only token hashes, a token is
printed once, and the API takes each change without a restart."""

from __future__ import annotations

import json
import stat

import pytest

from backend.ops.clients import token_digest
from tests.helpers import CLIENTS_DB, empty_db, make_app


@pytest.fixture
def clients_path(tmp_path):
    return tmp_path / "var" / "clients.json"


@pytest.fixture
def app(redis_server, clients_path):
    return make_app(empty_db(redis_server, CLIENTS_DB), API_CLIENTS_FILE=str(clients_path))


def invoke(app, *args: str):
    return app.test_cli_runner().invoke(args=["clients", *args])


def added_token(app, *args: str) -> str:
    result = invoke(app, "add", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def assert_fails_with(result, message: str) -> None:
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {message}"


def test_add_prints_a_new_token_once_and_keeps_only_its_hash(app, clients_path):
    result = invoke(app, "add", "billing", "--role", "submit")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert len(token) >= 43  # 32 random bytes
    assert result.stderr.startswith("client billing (submit): token ")
    text = clients_path.read_text()
    assert token not in text
    assert json.loads(text)["clients"]["billing"]["tokens"][0]["sha256"] == token_digest(token)
    assert stat.S_IMODE(clients_path.stat().st_mode) == 0o600
    submitted = app.test_client().post("/add", json={"x": 1, "y": 2}, headers={"Authorization": f"Bearer {token}"})
    assert submitted.status_code == 202


def test_adding_to_an_existing_client_adds_a_token_for_rotation(app):
    first = added_token(app, "billing", "--role", "submit")
    second = added_token(app, "billing")
    assert first != second
    client = app.test_client()
    for token in (first, second):
        assert client.get("/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_list_shows_names_roles_and_token_counts_never_a_whole_hash(app):
    billing = added_token(app, "billing", "--role", "submit")
    added_token(app, "billing")
    added_token(app, "grafana", "--role", "read")
    result = invoke(app, "list")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "ROLE", "TOKENS"]
    assert [row.split()[:3] for row in rows] == [["billing", "submit", "2"], ["grafana", "read", "1"]]
    assert token_digest(billing)[:8] in rows[0]
    assert token_digest(billing) not in result.stdout and billing not in result.stdout


def test_a_client_gets_its_own_running_limit_when_added_or_later(app, clients_path):
    added_token(app, "billing", "--role", "submit", "--max-running", "4")
    added_token(app, "reports", "--role", "submit")
    limits = {row.split()[0]: row.split()[3] for row in invoke(app, "list").stdout.splitlines()[1:]}
    assert limits == {"billing": "4", "reports": "default(unlimited)"}
    assert invoke(app, "limit", "reports", "0").stdout == "reports: max running unlimited\n"
    assert invoke(app, "limit", "billing", "default").stdout == "billing: max running default(unlimited)\n"
    stored = json.loads(clients_path.read_text())["clients"]
    assert stored["reports"]["max_running"] == 0 and "max_running" not in stored["billing"]
    refused = invoke(app, "limit", "reports", "many")
    assert refused.exit_code == 2 and "'many' is neither a whole number nor `default`" in refused.stderr
    assert_fails_with(
        invoke(app, "add", "reports", "--max-running", "2"),
        "'reports' exists: change its limit with `flask clients limit reports N`",
    )


def test_revoke_removes_the_client_or_one_token(app, clients_path):
    first = added_token(app, "billing", "--role", "submit")
    added_token(app, "billing")
    one = invoke(app, "revoke", "billing", "--token", token_digest(first)[:8])
    assert one.stdout == "revoked 1 token of billing\n"
    assert len(json.loads(clients_path.read_text())["clients"]["billing"]["tokens"]) == 1
    assert invoke(app, "revoke", "billing").stdout == "revoked 1 token of billing\n"
    assert invoke(app, "list").stdout == "no clients\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "billing"], "'billing' is a new client: give its role with --role"),
        (["add", "cli", "--role", "admin"],
         "'cli' is reserved: jobs of anonymous, cli, code and token-… belong to no client"),
        (["add", "token-abc", "--role", "read"],
         "'token-abc' is reserved: jobs of anonymous, cli, code and token-… belong to no client"),
        (["add", "Billing Team", "--role", "read"],
         "'Billing Team' is not a client name: 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"),
        (["revoke", "nobody"], None),
    ],
)
def test_refused_changes_say_why_and_change_nothing(app, clients_path, args, message):
    result = invoke(app, *args)
    assert result.exit_code == 1
    if message:
        assert result.stderr.strip() == f"Error: {message}"
    else:
        assert result.stderr.startswith("Error: no client named 'nobody'")
    assert not clients_path.exists()


def test_a_role_is_not_changed_by_adding_a_token(app):
    added_token(app, "billing", "--role", "submit")
    assert_fails_with(
        invoke(app, "add", "billing", "--role", "admin"),
        "'billing' has the submit role, not admin: revoke it and add it again to change its role",
    )


def test_without_a_clients_file_the_commands_say_what_to_set(redis_server):
    app = make_app(empty_db(redis_server, CLIENTS_DB))
    assert_fails_with(
        invoke(app, "list"), "API_CLIENTS_FILE is unset: set it (in .env, e.g. var/clients.json) first"
    )
