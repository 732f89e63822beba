"""Hostile input, generated: schemathesis fuzzes the API from its own /openapi.json.

Every documented operation gets examples, schemathesis' coverage cases (boundary
values, wrong types, missing and malformed bodies, wrong content types, odd
methods) and random cases, positive and negative, with every check on: no 5xx,
only documented status codes, content types and headers, bodies that match the
document, invalid input refused, valid input accepted, auth enforced. A stateful
run then follows the document's links (submit -> status -> cancel), so 200s and
202s with real task ids are checked too, not only 404s for random ids.

Three times: with the API open; with API_TOKENS set (the token sent on every request;
schemathesis also replays requests without it and expects a 401); and with the token of a
`submit` client of a clients file, on a Redis that already holds a job of another client.
No response of that third run may hold the other client's job id, its input or its name:
the random cases use that job's id as a path parameter and its owner as the `owner` filter
among the values generated, so every job route is asked about it, not only about random ids.

In-process through WSGI rather than against gunicorn: on two shared cores a
thousand requests take seconds instead of minutes, nothing is timing-dependent,
and a 500 comes with its traceback. What gunicorn adds is HTTP framing, which
tests/test_hostile_input.py covers. The app uses a private Redis with no worker,
so submitted tasks just queue there and are thrown away with it.

Reproducible: derandomized, no example database, no shrinking (a failure is
reported as found, with a curl command), a fixed number of examples.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from schemathesis.core.failures import CustomFailure, ServerError
from schemathesis.errors import FailureGroup

from backend.jobs.errors import ServiceError
from backend.jobs.timestamps import now_iso
from backend.jobs.timing import TIMING_PARAMETERS, when
from backend.ops.clients import token_digest
from backend.tasks import LONG_TASK_MAX_SECONDS
from config import SCHEDULE_MAX_SECONDS
from tests.helpers import PROJECT_ROOT, make_app
from tests.reliability import figures

TOKEN = "fuzz-" + "0123456789abcdef" * 3
# The third run's clients: the one whose token the run sends, and the one whose job it must never see.
FUZZER, FUZZER_TOKEN = "fuzzer", "fuzz-client-" + "0123456789abcdef" * 3
OTHER, OTHER_TOKEN = "neighbour-7c1e", "fuzz-other-" + "fedcba9876543210" * 3
OTHER_INPUT = {"x": 271828.1828, "y": 314159.2653}  # numbers nothing else sends: a marker
LEAKED = "another client's data in a response"
# The document needs no Redis: it is read from an app that never connects.
# Requests go to the `open_app` / `token_app` fixtures, on a private Redis.
UNUSED_REDIS_URL = "redis://127.0.0.1:1/0"
MAX_EXAMPLES = 100  # random cases per operation, on top of the explicit and coverage cases
MIN_REQUESTS = 1_000
MIN_CLIENT_RESPONSES = 300  # of the third run
MIN_AIMED_AT_OTHER = 100  # of those, asking about the other client's job id or name

# Hypothesis keeps caches (constants, unicode tables) even without a database: in var/, not the repo root.
set_hypothesis_home_dir(PROJECT_ROOT / "var" / "hypothesis")
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # explicit: examples and coverage cases; no shrinking
    # The app fixture is shared by the cases of one operation on purpose: it is stateless.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STATEFUL_SETTINGS = settings(FUZZ_SETTINGS, max_examples=30, stateful_step_count=6)


def load_schema(**env: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_wsgi("/openapi.json", make_app(UNUSED_REDIS_URL, **env))


open_schema = load_schema()
token_schema = load_schema(API_TOKENS=TOKEN)
token_schema.config.update(headers={"Authorization": f"Bearer {TOKEN}"})
client_schema = load_schema(API_CLIENTS_FILE="unused-clients.json")
client_schema.config.update(headers={"Authorization": f"Bearer {FUZZER_TOKEN}"})
OPERATIONS = {result.ok().label for result in open_schema.get_all_operations()}


def fuzz_app(redis_url: str, **env: str):
    # /readyz pings workers, ?wait= long-polls and event streams last until a final state;
    # nothing changes here, so do not wait.
    return make_app(redis_url, READYZ_PING_TIMEOUT="0.05", STATUS_MAX_WAIT="0.05", EVENTS_MAX_SECONDS="0.05", **env)


@pytest.fixture
def open_app(private_redis):
    return fuzz_app(private_redis.url)


@pytest.fixture
def token_app(private_redis):
    return fuzz_app(private_redis.url, API_TOKENS=TOKEN)


def write_clients_file(path: Path) -> None:
    """The clients file as docs/clients.md shows it, for tokens known in advance (the
    schema above sends one); `flask clients add` would make random ones."""
    clients = {
        name: {"role": "submit", "tokens": [{"sha256": token_digest(token), "added_at": now_iso()}]}
        for name, token in ((FUZZER, FUZZER_TOKEN), (OTHER, OTHER_TOKEN))
    }
    path.write_text(json.dumps({"clients": clients}))


@dataclass
class OtherJob:
    """The other client's job of the current test, which the fuzzing client must never see."""

    job_id: str = "not-submitted-yet"

    def secrets(self) -> list[str]:
        return [self.job_id, OTHER, *(str(value) for value in OTHER_INPUT.values())]


other_job = OtherJob()


@pytest.fixture
def client_app(private_redis, tmp_path):
    """The API with a clients file, and a job of the other client already in its Redis."""
    path = tmp_path / "clients.json"
    write_clients_file(path)
    app = fuzz_app(private_redis.url, API_CLIENTS_FILE=str(path))
    response = app.test_client().post("/add", json=OTHER_INPUT, headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert response.status_code == 202, response.get_json()
    other_job.job_id = response.get_json()["task_id"]
    return app


@client_schema.hook("flatmap_path_parameters")
def sometimes_the_other_clients_job(context, path_parameters: dict[str, Any] | None):
    if not path_parameters or "task_id" not in path_parameters:
        return st.just(path_parameters)
    # Drawn when a case is generated, after the fixture has submitted the job.
    return st.sampled_from([path_parameters, None]).map(
        lambda parameters: parameters or {**path_parameters, "task_id": other_job.job_id}
    )


@client_schema.hook("flatmap_query")
def sometimes_the_other_clients_name(context, query: dict[str, Any] | None):
    if context.operation is None or "owner" not in {parameter.name for parameter in context.operation.query}:
        return st.just(query)
    return st.sampled_from([query, {**(query or {}), "owner": OTHER}])


def nothing_of_the_other_client(ctx, response, case) -> None:
    """A check of the third run: the other client's job id, input and name appear nowhere in
    a response (body or headers), unless the request sent it (a 404 names the id it was asked for)."""
    sent = f"{response.request.url} {response.request.body!r}"
    received = response.text + " ".join(f"{name}: {value}" for name, value in response.headers.items())
    tally.client_responses += 1
    tally.aimed_at_other += any(secret in sent for secret in other_job.secrets())
    found = leaked(sent, received)
    if found:
        tally.leaks += 1
        raise AssertionError(f"{LEAKED}: {found}")


def leaked(sent: str, received: str) -> list[str]:
    """What of the other client's job `received` holds that `sent` did not ask about."""
    return [secret for secret in other_job.secrets() if secret in received and secret not in sent]


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    violations: int = 0
    client_responses: int = 0  # responses of the third run, checked for the other client's data
    aimed_at_other: int = 0  # of which the request named the other client's job id or name
    leaks: int = 0
    fuzzed: set[tuple[str, str]] = field(default_factory=set)
    started: float | None = None
    finished: float = 0.0

    def count(self, mode: str, case) -> None:
        if self.started is None:
            self.started = time.perf_counter()
        self.requests += 1
        self.fuzzed.add((mode, case.operation.label))

    def failed(self, group: FailureGroup) -> None:
        for failure in group.exceptions:
            if isinstance(failure, ServerError):
                self.server_errors += 1
            elif not (isinstance(failure, CustomFailure) and LEAKED in str(failure)):  # counted as leaks
                self.violations += 1


tally = Tally()


def excluded_checks(case) -> list:
    excluded = []
    if case.operation.path == "/readyz":
        # With no worker, 503 is /readyz's documented answer (its body is still checked).
        excluded.append(not_a_server_error)
    if case.operation.path == "/jobs" and (case.query or {}).get("cursor"):
        # A cursor is opaque: only one the service returned is valid, which no schema can say.
        excluded.append(positive_data_acceptance)
    if exceeds_time_limit(case) or breaks_a_timing_rule(case):
        # steps × step_seconds over the time limit, delay_seconds with run_at, a deadline
        # before the job is due, a time beyond SCHEDULE_MAX_SECONDS: each is refused with a 422
        # that says so, a rule between fields or of the configuration, which JSON Schema
        # cannot express. The other checks still run.
        excluded.append(positive_data_acceptance)
    return excluded


def breaks_a_timing_rule(case) -> bool:
    """Whether the service's own timing rules (backend/jobs/timing.py) refuse the query: both
    forms of a time, a deadline before the job is due, a time too far ahead."""
    query = {name: value for name, value in (case.query or {}).items() if name in TIMING_PARAMETERS}
    try:
        when(query, SCHEDULE_MAX_SECONDS)
    except ServiceError:
        return True
    return False


def exceeds_time_limit(case) -> bool:
    if case.operation.path not in {"/longtask", "/tasks/long_task"}:
        return False
    values = case.body if isinstance(case.body, dict) else (case.query or {})
    try:
        total = float(values.get("steps", 10)) * float(values.get("step_seconds", 1.0))
    except (TypeError, ValueError):
        return False
    return math.isfinite(total) and total > LONG_TASK_MAX_SECONDS


def extra_checks(mode: str) -> list:
    return [nothing_of_the_other_client] if mode == "client" else []


def call_and_validate(mode: str, case, app) -> None:
    tally.count(mode, case)
    try:
        case.call_and_validate(app=app, excluded_checks=excluded_checks(case), additional_checks=extra_checks(mode))
    except FailureGroup as group:
        tally.failed(group)
        raise
    finally:
        tally.finished = time.perf_counter()


@open_schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_the_open_api(case, open_app):
    call_and_validate("open", case, open_app)


@token_schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_the_api_with_tokens(case, token_app):
    call_and_validate("token", case, token_app)


@client_schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_the_api_as_a_submit_client_finds_no_other_clients_job(case, client_app):
    call_and_validate("client", case, client_app)


def run_workflow(mode: str, schema: schemathesis.BaseSchema, app) -> None:
    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"app": app}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            tally.count(mode, case)
            try:
                case.validate_response(
                    response,
                    additional_checks=[*(additional_checks or []), *extra_checks(mode)],
                    excluded_checks=excluded_checks(case),
                    transport_kwargs=kwargs,
                    recorder=self.recorder,  # stateful checks look up earlier steps
                )
            except FailureGroup as group:
                tally.failed(group)
                raise
            finally:
                tally.finished = time.perf_counter()

    Workflow.run(settings=STATEFUL_SETTINGS)


def test_the_leak_check_finds_the_other_clients_job_where_its_owner_sees_it(client_app):
    """The check of the third run is not vacuous: the owner's own listing shows what it looks for."""
    owners_view = client_app.test_client().get("/jobs", headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert sorted(leaked("GET /jobs", owners_view.get_data(as_text=True))) == sorted(other_job.secrets())


def test_follow_links_submit_status_cancel_open(open_app):
    run_workflow("open", open_schema, open_app)


def test_follow_links_submit_status_cancel_with_tokens(token_app):
    run_workflow("token", token_schema, token_app)


def test_follow_links_submit_status_cancel_as_a_submit_client(client_app):
    run_workflow("client", client_schema, client_app)


def test_fuzzing_sent_over_a_thousand_requests_without_a_failure():
    """Runs last: the totals of the tests above, recorded as figures."""
    expected = {(mode, label) for mode in ("open", "token", "client") for label in OPERATIONS}
    if not expected <= tally.fuzzed:
        pytest.skip("run the whole module: the totals need every operation fuzzed in both modes")
    seconds = tally.finished - tally.started
    figures.record("hostile input", "fuzz requests generated", tally.requests, "", f"≥ {MIN_REQUESTS:,}",
                   tally.requests >= MIN_REQUESTS)
    figures.record("hostile input", "fuzz server errors", tally.server_errors, "", "0", tally.server_errors == 0)
    figures.record("hostile input", "fuzz schema violations", tally.violations, "", "0", tally.violations == 0)
    figures.record("security", "fuzz responses to a submit client checked for another client's job",
                   tally.client_responses, "", f"≥ {MIN_CLIENT_RESPONSES:,}",
                   tally.client_responses >= MIN_CLIENT_RESPONSES)
    figures.record("security", "fuzz requests of a submit client naming another client's job or name",
                   tally.aimed_at_other, "", f"≥ {MIN_AIMED_AT_OTHER}", tally.aimed_at_other >= MIN_AIMED_AT_OTHER)
    figures.record("security", "fuzz responses holding another client's job id, input or name", tally.leaks, "",
                   "0", tally.leaks == 0)
    # Bounded by the fixed number of examples; the time itself depends on the machine, so it is not asserted.
    figures.record("hostile input", "fuzz run time", seconds, "s", "≤ 120 s", seconds <= 120)
    assert tally.requests >= MIN_REQUESTS
    assert tally.server_errors == 0
    assert tally.violations == 0
    assert tally.client_responses >= MIN_CLIENT_RESPONSES
    assert tally.aimed_at_other >= MIN_AIMED_AT_OTHER
    assert tally.leaks == 0
