"""The operator CLI (`flask jobs ...`, `flask workers`) on the API's service layer."""

import json
import subprocess
import time
from datetime import UTC, datetime

import pytest

from backend.jobs import states
from devtools.redis_server import free_port
from tests.helpers import (
    CLI_DB,
    PROJECT_ROOT,
    VENV_BIN,
    empty_db,
    make_app,
    service_env,
    wait_for_state,
    wait_until,
)

# A database of the session's Redis that only this module uses, emptied for each test
# that takes it: listings count, and bulk actions act on, every job of their database.
# No worker consumes it: its jobs stay QUEUED.


def invoke(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def status_of(app, task_id: str, *options: str) -> dict:
    result = invoke(app, "jobs", "status", task_id, *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_fails_with(result, message: str) -> None:
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {message}"
    assert "Traceback" not in result.output


def submitted_id(app, task: str, payload: dict) -> str:
    result = invoke(app, "jobs", "submit", task, "--json", json.dumps(payload))
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[0]


def succeeds(result) -> list[str]:
    """The lines a command printed, once it exited 0."""
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


@pytest.fixture
def empty_idle_url(redis_server):
    return empty_db(redis_server, CLI_DB)


@pytest.fixture
def empty_idle_app(empty_idle_url):
    """The API on an empty database no worker consumes."""
    return make_app(empty_idle_url)


def test_submit_prints_the_task_id_then_its_status(app, worker):
    result = invoke(app, "jobs", "submit", "add", "--json", '{"x": 1, "y": 2}')
    assert result.exit_code == 0, result.output
    task_id, status_line = result.stdout.splitlines()
    status = json.loads(status_line)
    assert status["task_id"] == task_id
    assert status["name"] == "add"
    final = wait_until(lambda: (s := status_of(app, task_id, "--wait", "5"))["state"] == "SUCCESS" and s, 20)
    assert final["result"] == 3.0


def test_status_of_an_unknown_id_fails_with_the_apis_message(app, client):
    api_message = client.get("/status/never-submitted").get_json()["error"]["message"]
    assert_fails_with(invoke(app, "jobs", "status", "never-submitted"), api_message)


@pytest.mark.parametrize(
    ("cli_args", "method", "path", "body"),
    [
        (("add", "--json", '{"x": 1,'), "post", "/add", '{"x": 1,'),
        (("add", "--json", '{"x": 1, "y": "a"}'), "post", "/add", '{"x": 1, "y": "a"}'),
        (("add", "--json", "[1, 2]"), "post", "/add", "[1, 2]"),
        (("no_such_task",), "post", "/tasks/no_such_task", "{}"),
    ],
    ids=["malformed-json", "invalid-input", "not-an-object", "unknown-task"],
)
def test_bad_submits_fail_with_the_apis_message_and_enqueue_nothing(
    idle_app, idle_client, idle_queue_length, cli_args, method, path, body
):
    answer = getattr(idle_client, method)(path, data=body, content_type="application/json")
    api_message = answer.get_json()["error"]["message"]
    queued = idle_queue_length()
    assert_fails_with(invoke(idle_app, "jobs", "submit", *cli_args), api_message)
    assert idle_queue_length() == queued


def test_cancel_of_a_queued_task_revokes_it(idle_app):
    task_id = invoke(idle_app, "jobs", "submit", "long_task", "--json", '{"steps": 2}').stdout.splitlines()[0]
    result = invoke(idle_app, "jobs", "cancel", task_id)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "REVOKED"
    assert_fails_with(invoke(idle_app, "jobs", "cancel", task_id), f"task {task_id} already ended in state REVOKED")


def test_workers_lists_each_worker_and_the_jobs_it_runs(app, worker):
    submitted = invoke(app, "jobs", "submit", "long_task", "--json", '{"steps": 20, "step_seconds": 0.2}')
    task_id = submitted.stdout.split()[0]
    try:
        wait_until(lambda: status_of(app, task_id)["state"] in {"STARTED", "PROGRESS"}, 20)
        result = invoke(app, "workers")
        assert result.exit_code == 0, result.output
        assert f"{worker}: " in result.stdout
        assert any(line.split()[:2] == [task_id, "long_task"] for line in result.stdout.splitlines())
    finally:
        invoke(app, "jobs", "cancel", task_id)


def test_workers_fails_when_no_worker_answers(idle_app):
    assert_fails_with(invoke(idle_app, "workers"), "no worker answered a ping within 1 s")


# --- the job history: list, retry, bulk retry and cancel --------------------------------


def test_list_prints_the_jobs_the_filters_select_and_the_counts_per_state(empty_idle_app):
    adds = [submitted_id(empty_idle_app, "add", {"x": i, "y": 0}) for i in range(3)]
    long_one = submitted_id(empty_idle_app, "long_task", {"steps": 1})
    succeeds(invoke(empty_idle_app, "jobs", "cancel", adds[0]))

    header, *rows, counts = succeeds(invoke(empty_idle_app, "jobs", "list", "--name", "add"))
    assert header.split() == ["ID", "NAME", "STATE", "OWNER", "SUBMITTED", "FINISHED", "RETRY"]
    assert [row.split()[:4] for row in rows] == [
        [adds[2], "add", "QUEUED", "cli"],
        [adds[1], "add", "QUEUED", "cli"],
        [adds[0], "add", "REVOKED", "cli"],
    ]
    assert counts == "3 jobs match: 2 QUEUED, 1 REVOKED"

    def listed(*options: str) -> list[str]:
        return [line.split()[0] for line in succeeds(invoke(empty_idle_app, "jobs", "list", *options))[1:-1]]

    assert listed("--state", "REVOKED") == [adds[0]]
    assert listed("--state", "QUEUED", "--state", "REVOKED") == [long_one, *reversed(adds)]
    assert listed("--state", "QUEUED,REVOKED", "--owner", "cli") == [long_one, *reversed(adds)]
    assert listed("--name", "long_task", "--since", datetime.now(UTC).isoformat()) == []
    assert succeeds(invoke(empty_idle_app, "jobs", "list", "--owner", "code")) == ["no jobs match", "0 jobs match"]


def test_list_json_is_the_apis_listing_and_its_cursor_gives_the_next_page(empty_idle_app):
    ids = [submitted_id(empty_idle_app, "add", {"x": i, "y": 0}) for i in range(3)]
    printed = json.loads(succeeds(invoke(empty_idle_app, "jobs", "list", "--limit", "2", "--json"))[0])
    assert printed == empty_idle_app.test_client().get("/jobs?limit=2").get_json()
    assert [job["task_id"] for job in printed["jobs"]] == [ids[2], ids[1]]

    first = succeeds(invoke(empty_idle_app, "jobs", "list", "--limit", "2"))
    assert first[-1] == f"next page: --cursor {printed['next_cursor']}"
    second = succeeds(invoke(empty_idle_app, "jobs", "list", "--limit", "2", "--cursor", printed["next_cursor"]))
    assert [line.split()[0] for line in second[1:-1]] == [ids[0]]
    assert second[-1] == "3 jobs match: 3 QUEUED"  # the last page: no next cursor


def test_retry_of_one_job_prints_the_new_job_owned_by_the_cli(empty_idle_app):
    client = empty_idle_app.test_client()
    cancelled = client.post("/add", json={"x": 1, "y": 2}).get_json()["task_id"]
    client.post(f"/status/{cancelled}/cancel")

    retry_id, status_line = succeeds(invoke(empty_idle_app, "jobs", "retry", cancelled))
    status = json.loads(status_line)
    assert status == client.get(f"/status/{retry_id}").get_json()
    assert (status["retry_of"], status["owner"], status["state"]) == (cancelled, "cli", states.QUEUED)
    assert status["input"] == {"x": 1, "y": 2}
    assert client.get(f"/status/{cancelled}").get_json()["retried_by"] == retry_id
    retry_row, cancelled_row = succeeds(invoke(empty_idle_app, "jobs", "list"))[1:-1]
    assert retry_row.startswith(retry_id) and retry_row.endswith(f"  retry of {cancelled}")
    assert cancelled_row.startswith(cancelled) and cancelled_row.endswith(f"  retried by {retry_id}")

    api_message = client.post(f"/status/{cancelled}/retry").get_json()["error"]["message"]
    assert_fails_with(invoke(empty_idle_app, "jobs", "retry", cancelled), api_message)


def test_retry_by_state_retries_every_failure_once_as_jobs_owned_by_the_cli(app, client, worker):
    since = datetime.now(UTC).isoformat()
    failing = {"steps": 1, "step_seconds": 0, "fail_at_step": 1}
    failures = [submitted_id(app, "long_task", failing) for _ in range(2)]
    done = submitted_id(app, "add", {"x": 1, "y": 1})
    for task_id in failures:
        wait_for_state(client, task_id, {states.FAILURE})
    wait_for_state(client, done, {states.SUCCESS})

    # --since keeps the jobs of earlier tests on this database out.
    lines = succeeds(invoke(app, "jobs", "retry", "--state", "FAILURE", "--since", since))
    assert lines[0] == "retried 2 jobs"
    retried = {}
    for line in lines[1:]:
        failure, arrow, retry_id, name = line.split()
        assert (arrow, name) == ("->", "long_task")
        retried[failure] = retry_id
    assert sorted(retried) == sorted(failures)
    for failure, retry_id in retried.items():
        assert client.get(f"/status/{failure}").get_json()["retried_by"] == retry_id
        assert client.get(f"/status/{retry_id}").get_json()["owner"] == "cli"


def test_bulk_retry_says_what_it_skipped_and_when_more_jobs_match(make_app, empty_idle_url):
    app = make_app(empty_idle_url, BULK_ACTION_MAX_JOBS="2", JOB_INPUT_MAX_BYTES="20")
    small = [submitted_id(app, "add", {"x": i, "y": 0}) for i in range(3)]
    too_big = submitted_id(app, "add", {"x": 123456789, "y": 987654321})  # its input is not kept
    for _ in range(2):
        succeeds(invoke(app, "jobs", "cancel", "--state", "QUEUED"))

    assert succeeds(invoke(app, "jobs", "retry", "--name", "add")) == [
        "retried 2 jobs",
        *(f"  {job} -> {app.test_client().get(f'/status/{job}').get_json()['retried_by']}  add"
          for job in (small[2], small[1])),
        "skipped: 1 input_not_kept",
        "more jobs match: run the command again (at most 2 per call)",
    ]
    assert app.test_client().get(f"/status/{too_big}").get_json()["retried_by"] is None


def test_cancel_by_state_cancels_the_matching_queued_jobs_newest_first(make_app, empty_idle_url):
    app = make_app(empty_idle_url, BULK_ACTION_MAX_JOBS="2")
    adds = [submitted_id(app, "add", {"x": i, "y": 0}) for i in range(3)]
    long_one = submitted_id(app, "long_task", {"steps": 1})

    assert succeeds(invoke(app, "jobs", "cancel", "--state", "QUEUED", "--name", "add")) == [
        "cancelled 2 jobs",
        f"  {adds[2]}  REVOKED",
        f"  {adds[1]}  REVOKED",
        "more jobs match: run the command again (at most 2 per call)",
    ]
    assert succeeds(invoke(app, "jobs", "cancel", "--state", "QUEUED", "--name", "add")) == [
        "cancelled 1 job",
        f"  {adds[0]}  REVOKED",
    ]
    assert status_of(app, long_one)["state"] == states.QUEUED


def test_retry_of_an_unknown_id_fails_with_the_apis_message(idle_app, idle_client):
    api_message = idle_client.post("/status/never-submitted/retry").get_json()["error"]["message"]
    assert_fails_with(invoke(idle_app, "jobs", "retry", "never-submitted"), api_message)


@pytest.mark.parametrize(
    ("cli_args", "method", "path", "request_args"),
    [
        (("list", "--state", "BROKEN"), "get", "/jobs", {"query_string": {"state": "BROKEN"}}),
        (("list", "--limit", "500"), "get", "/jobs", {"query_string": {"limit": "500"}}),
        (("list", "--cursor", "not-a-cursor"), "get", "/jobs", {"query_string": {"cursor": "not-a-cursor"}}),
        (("retry", "--state", "QUEUED"), "post", "/jobs/retry", {"json": {"state": "QUEUED"}}),
        (("cancel", "--state", "SUCCESS,QUEUED"), "post", "/jobs/cancel", {"json": {"state": "SUCCESS,QUEUED"}}),
        (("cancel", "--since", "yesterday"), "post", "/jobs/cancel", {"json": {"since": "yesterday"}}),
    ],
    ids=["unknown-state", "limit-too-high", "bad-cursor", "retry-of-queued", "cancel-of-success", "bad-since"],
)
def test_bad_filters_fail_with_the_apis_message_naming_them(
    idle_app, idle_client, cli_args, method, path, request_args
):
    api_error = getattr(idle_client, method)(path, **request_args).get_json()["error"]
    option = cli_args[1].removeprefix("--")
    assert api_error["message"].startswith(option)
    assert_fails_with(invoke(idle_app, "jobs", *cli_args), api_error["message"])


@pytest.mark.parametrize("command", ["retry", "cancel"])
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("some-id", "--state", "FAILURE"), "give a job ID or filters"),
        ((), "give a job ID, or filters to act on every matching job"),
    ],
    ids=["both", "neither"],
)
def test_retry_and_cancel_take_a_job_id_or_filters(idle_app, idle_queue_length, command, args, error):
    queued = idle_queue_length()
    result = invoke(idle_app, "jobs", command, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: ")
    assert f"Error: {error}" in result.stderr
    assert idle_queue_length() == queued


@pytest.mark.parametrize(
    "args",
    [
        ("jobs", "submit", "add", "--json", '{"x": 1, "y": 2}'),
        ("jobs", "status", "some-id"),
        ("jobs", "cancel", "some-id"),
        ("jobs", "list"),
        ("jobs", "retry", "some-id"),
        ("jobs", "retry", "--state", "FAILURE"),
        ("jobs", "cancel", "--state", "QUEUED"),
        ("workers",),
    ],
    ids=["submit", "status", "cancel", "list", "retry", "bulk-retry", "bulk-cancel", "workers"],
)
def test_a_redis_outage_fails_fast_with_one_line(make_app, args):
    app = make_app(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    result = invoke(app, *args)
    assert time.monotonic() - started < 5
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Redis is unavailable, retry later (")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_the_flask_command_finds_the_app_from_the_project_root(worker_redis_url, worker):
    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "flask"), *args],
            cwd=PROJECT_ROOT,
            env=service_env(worker_redis_url),
            capture_output=True,
            text=True,
            timeout=60,
        )

    submitted = flask("jobs", "submit", "add", "--json", '{"x": 20, "y": 22}')
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.splitlines()[0]

    def succeeded():
        status = json.loads(flask("jobs", "status", task_id, "--wait", "5").stdout)
        return status if status["state"] == "SUCCESS" else None

    assert wait_until(succeeded, 30)["result"] == 42.0

    unknown = flask("jobs", "status", "never-submitted")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "Error: no task with id 'never-submitted' (never submitted, or expired)"
