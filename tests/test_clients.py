"""Clients with roles, and ownership: a client sees and acts on its own jobs only (another
client's job is the unknown id's 404), each route asks for a role, admins see every job.

On a database no worker consumes: jobs stay QUEUED unless cancelled.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from backend.api.auth import client_id_for
from backend.jobs import extensions, service, states
from backend.jobs.callers import Caller, Role
from backend.ops.clients import ClientsFile, token_digest
from tests.helpers import CLIENTS_DB, empty_db, make_app, wait_until

API_TOKEN = "t" * 40  # API_TOKENS: an admin named token-<hash>
ROLES = {"alpha": "submit", "beta": "submit", "watcher": "read", "ops": "admin"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Clients:
    """The clients of one test app, each with a test client that sends its token."""

    def __init__(self, app, path: Path) -> None:
        self.app = app
        self.file = ClientsFile(path)
        self.tokens = {name: self.file.add(name, Role.named(role))[1] for name, role in ROLES.items()}

    def as_(self, name: str):
        """A test client sending `name`'s token (or API_TOKENS' token for "token")."""
        client = self.app.test_client()
        token = API_TOKEN if name == "token" else self.tokens[name]
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return client

    def submit(self, name: str, x: int = 1) -> str:
        response = self.as_(name).post("/add", json={"x": x, "y": 2})
        assert response.status_code == 202, response.get_json()
        return response.get_json()["task_id"]


@pytest.fixture
def clients(redis_server, tmp_path) -> Clients:
    path = tmp_path / "clients.json"
    app = make_app(empty_db(redis_server, CLIENTS_DB), API_CLIENTS_FILE=str(path), API_TOKENS=API_TOKEN)
    return Clients(app, path)


def not_found_body(job_id: str) -> dict:
    return {"error": {"code": "task_not_found", "message": f"no task with id {job_id!r} (never submitted, or expired)"}}


# --- ownership ----------------------------------------------------------------------------


def test_a_job_belongs_to_the_client_that_submitted_it_by_name(clients):
    job_id = clients.submit("alpha")
    assert clients.as_("alpha").get(f"/status/{job_id}").get_json()["owner"] == "alpha"


def test_a_job_submitted_with_an_api_token_belongs_to_the_tokens_id(clients):
    job_id = clients.submit("token")
    assert clients.as_("token").get(f"/status/{job_id}").get_json()["owner"] == client_id_for(API_TOKEN)


# Each route of one job, and what it answers the owner about a cancelled (REVOKED) job:
# a cancel's 409 says the job was found, and has ended.
JOB_ROUTES = [
    ("get", "/status/{id}", 200),
    ("get", "/status/{id}?wait=1", 200),
    ("get", "/status/{id}/events", 200),
    ("post", "/status/{id}/cancel", 409),
    ("post", "/status/{id}/retry", 202),
]


@pytest.mark.parametrize(("method", "route", "_"), JOB_ROUTES)
def test_another_clients_job_is_the_same_404_as_an_unknown_id(clients, method, route, _):
    job_id = clients.submit("alpha")
    clients.as_("alpha").post(f"/status/{job_id}/cancel")  # REVOKED: retryable, and the stream ends
    unknown = str(uuid.uuid4())
    beta = clients.as_("beta")

    refused = getattr(beta, method)(route.format(id=job_id))
    never_submitted = getattr(beta, method)(route.format(id=unknown))
    assert (refused.status_code, never_submitted.status_code) == (404, 404)
    assert refused.get_json() == not_found_body(job_id)
    assert never_submitted.get_json() == not_found_body(unknown)
    assert clients.as_("alpha").get(f"/status/{job_id}").get_json()["retried_by"] is None  # beta changed nothing


@pytest.mark.parametrize(("method", "route", "expected"), JOB_ROUTES)
@pytest.mark.parametrize("caller", ["alpha", "ops", "token"])
def test_the_owner_and_admins_reach_the_job_on_every_route(clients, caller, method, route, expected):
    job_id = clients.submit("alpha")
    clients.as_("alpha").post(f"/status/{job_id}/cancel")
    response = getattr(clients.as_(caller), method)(route.format(id=job_id))
    assert response.status_code == expected, response.get_data(as_text=True)


def test_a_read_client_follows_its_own_jobs_but_not_others(clients):
    with clients.app.app_context():  # a read client's jobs: submitted under its name before it was read-only
        own = service.submit("add", {"x": 1, "y": 1}, caller=Caller("watcher", Role.READ)).job_id
    other = clients.submit("alpha")
    watcher = clients.as_("watcher")
    assert watcher.get(f"/status/{own}").status_code == 200
    assert watcher.get(f"/status/{other}").get_json() == not_found_body(other)
    assert [job["task_id"] for job in watcher.get("/jobs").get_json()["jobs"]] == [own]


def test_jobs_sent_by_code_or_the_cli_are_for_admins_only(clients):
    code_job = extensions.celery_app(clients.app).tasks["add"].delay(1, 2).id
    cli_job = clients.app.test_cli_runner().invoke(args=["jobs", "submit", "add", "--json", '{"x":1,"y":1}'])
    cli_job_id = cli_job.stdout.splitlines()[0]
    for job_id in (code_job, cli_job_id):
        assert clients.as_("alpha").get(f"/status/{job_id}").get_json() == not_found_body(job_id)
        assert clients.as_("ops").get(f"/status/{job_id}").status_code == 200


# --- listing and counts ---------------------------------------------------------------------


def listed(client, **query) -> list[str]:
    response = client.get("/jobs", query_string=query)
    assert response.status_code == 200
    return [job["task_id"] for job in response.get_json()["jobs"]]


def test_a_client_lists_and_counts_its_own_jobs_only(clients):
    alphas = [clients.submit("alpha", x) for x in range(2)]
    beta_job = clients.submit("beta")
    code_job = extensions.celery_app(clients.app).tasks["add"].delay(1, 2).id
    alpha = clients.as_("alpha")

    assert listed(alpha) == alphas[::-1]
    assert listed(alpha, owner="alpha") == alphas[::-1]
    assert alpha.get("/jobs").get_json()["counts"][states.QUEUED] == 2
    assert alpha.get("/jobs/stats").get_json() == {"counts": {**dict.fromkeys(states.ALL_STATES, 0), "QUEUED": 2},
                                                   "total": 2}
    assert set(listed(clients.as_("ops"))) == {*alphas, beta_job, code_job}


@pytest.mark.parametrize("owner", ["beta", "code", "nobody"])
def test_asking_for_another_owners_jobs_lists_none_as_for_an_owner_that_never_submitted(clients, owner):
    clients.submit("beta")
    alpha = clients.as_("alpha")
    response = alpha.get("/jobs", query_string={"owner": owner})
    assert response.get_json() == {"jobs": [], "next_cursor": None, "counts": dict.fromkeys(states.ALL_STATES, 0)}
    assert alpha.get("/jobs/stats", query_string={"owner": owner}).get_json()["total"] == 0


# --- roles --------------------------------------------------------------------------------

ROLE_ROUTES = [
    # (method, path, body, status for read, submit, admin)
    ("get", "/tasks", None, (200, 200, 200)),
    ("get", "/jobs", None, (200, 200, 200)),
    ("get", "/jobs/stats", None, (200, 200, 200)),
    ("post", "/add", {"x": 1, "y": 2}, (403, 202, 202)),
    ("post", "/tasks/add", {"x": 1, "y": 2}, (403, 202, 202)),
    ("get", "/longtask", None, (403, 202, 202)),
    ("post", "/jobs/retry", {}, (403, 403, 200)),
    ("post", "/jobs/cancel", {"name": "no-such-task"}, (403, 403, 200)),
    ("get", "/metrics", None, (403, 403, 200)),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), ROLE_ROUTES, ids=lambda v: str(v))
@pytest.mark.parametrize("role_index", [0, 1, 2], ids=["read", "submit", "admin"])
def test_each_route_answers_each_role(clients, method, path, body, expected, role_index):
    caller = ["watcher", "alpha", "ops"][role_index]
    response = getattr(clients.as_(caller), method)(path, json=body)
    assert response.status_code == expected[role_index], response.get_data(as_text=True)


def test_a_role_too_low_is_a_403_naming_the_role_needed_and_enqueues_nothing(clients):
    response = clients.as_("watcher").post("/add", json={"x": 1, "y": 2})
    assert response.status_code == 403
    assert response.get_json() == {"error": {
        "code": "forbidden",
        "message": "this route needs the submit role; client 'watcher' has the read role",
        "details": {"required_role": "submit", "role": "read"},
    }}
    assert listed(clients.as_("ops")) == []


@pytest.mark.parametrize(("path", "role"), [("/jobs/retry", "admin"), ("/jobs/cancel", "admin")])
def test_bulk_actions_are_for_admins_and_leave_other_jobs_alone(clients, path, role):
    job_id = clients.submit("beta")
    response = clients.as_("alpha").post(path, json={})
    assert response.status_code == 403
    assert response.get_json()["error"]["details"]["required_role"] == role
    assert clients.as_("beta").get(f"/status/{job_id}").get_json()["state"] == states.QUEUED


def test_a_read_or_submit_client_may_not_cancel_or_retry_beyond_its_role(clients):
    with clients.app.app_context():
        own = service.submit("add", {"x": 1, "y": 1}, caller=Caller("watcher", Role.READ)).job_id
    assert clients.as_("watcher").post(f"/status/{own}/cancel").status_code == 403
    assert clients.as_("watcher").post(f"/status/{own}/retry").status_code == 403


def test_readiness_details_are_for_admins_only(clients):
    assert "error" not in clients.as_("alpha").get("/readyz").get_json()["workers"]
    assert "error" in clients.as_("ops").get("/readyz").get_json()["workers"]  # no worker on this database


# --- what is per client -------------------------------------------------------------------


def test_idempotency_keys_are_per_client(clients):
    key = {"Idempotency-Key": "order-1"}
    alpha = clients.as_("alpha").post("/add", json={"x": 1, "y": 2}, headers=key).get_json()["task_id"]
    beta = clients.as_("beta").post("/add", json={"x": 1, "y": 2}, headers=key).get_json()["task_id"]
    again = clients.as_("alpha").post("/add", json={"x": 1, "y": 2}, headers=key).get_json()["task_id"]
    assert alpha != beta and again == alpha


def test_the_tokens_of_one_client_share_its_rate_limit(redis_server, tmp_path):
    path = tmp_path / "clients.json"
    app = make_app(empty_db(redis_server, CLIENTS_DB), API_CLIENTS_FILE=str(path), SUBMIT_RATE_LIMIT="1/minute")
    first, second = (ClientsFile(path).add("alpha", Role.SUBMIT)[1] for _ in range(2))
    client = app.test_client()
    assert client.post("/add", json={"x": 1, "y": 2}, headers=bearer(first)).status_code == 202
    assert client.post("/add", json={"x": 1, "y": 2}, headers=bearer(second)).status_code == 429


# --- the clients file, live ------------------------------------------------------------------


def test_a_revoked_client_is_refused_within_a_few_seconds_without_a_restart(clients):
    alpha = clients.as_("alpha")
    assert alpha.get("/jobs").status_code == 200
    clients.file.revoke("alpha")
    revoked_at = time.monotonic()
    wait_until(lambda: alpha.get("/jobs").status_code == 401, timeout=5, what="the revoked token to be refused")
    assert time.monotonic() - revoked_at < 3.5
    assert clients.as_("beta").get("/jobs").status_code == 200


def test_a_token_added_to_a_client_works_without_a_restart_and_the_old_one_until_revoked(clients):
    _, new_token = clients.file.add("alpha", None)
    job_id = clients.submit("alpha")
    renewed = clients.app.test_client()
    wait_until(lambda: renewed.get(f"/status/{job_id}", headers=bearer(new_token)).status_code == 200, timeout=5)
    old = next(token for token in clients.file.read()["alpha"].tokens if token.sha256 != token_digest(new_token))
    clients.file.revoke("alpha", old.id)
    wait_until(lambda: clients.as_("alpha").get("/jobs").status_code == 401, timeout=5)
    assert renewed.get(f"/status/{job_id}", headers=bearer(new_token)).status_code == 200


def test_a_clients_file_without_clients_keeps_the_api_closed(redis_server, tmp_path):
    app = make_app(empty_db(redis_server, CLIENTS_DB), API_CLIENTS_FILE=str(tmp_path / "none-yet.json"))
    client = app.test_client()
    assert client.get("/jobs").status_code == 401
    assert client.get("/jobs", headers=bearer("x" * 43)).status_code == 401
    assert client.get("/healthz").status_code == 200
