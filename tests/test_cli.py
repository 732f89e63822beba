"""The operator CLI (`flask jobs ...`, `flask workers`) on the API's service layer."""

import json
import subprocess
import time

import pytest

from devtools.redis_server import free_port
from tests.helpers import PROJECT_ROOT, VENV_BIN, service_env, wait_until


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


@pytest.mark.parametrize(
    "args",
    [
        ("jobs", "submit", "add", "--json", '{"x": 1, "y": 2}'),
        ("jobs", "status", "some-id"),
        ("jobs", "cancel", "some-id"),
        ("workers",),
    ],
    ids=["submit", "status", "cancel", "workers"],
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
