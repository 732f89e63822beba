"""What the tests share that is not a fixture: constants, the app factory, the real
processes they start, and polling waits. The conftest.py files import these to build
their fixtures; tests import them too, or take the fixtures built on them:

    make_app(redis_url, **overrides)   also the `make_app` fixture
    launch_worker(redis_url, log_dir)  for a fixture of session or module scope; a test
                                       takes `start_worker`, which stops what it started
    launch_gunicorn(redis_url, log_dir)  likewise, with `start_gunicorn`

Child processes get an environment of their own (service_env): testing config, our
Redis, no developer settings. Process and wait_until are devtools/processes.py's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import redis
import requests

from backend import create_app
from backend.jobs import extensions
from config import DEFAULT_QUEUE, TestingConfig
from devtools.processes import PROJECT_ROOT, Process, wait_until
from devtools.redis_server import RedisServer, free_port

__all__ = [
    "FLOWER_AUTH", "PROJECT_ROOT", "QUEUE", "VENV_BIN", "Process", "cancel_during_long_poll", "db_url",
    "launch_gunicorn", "launch_worker", "make_app", "service_env", "wait_for_state", "wait_until",
    "wait_until_http_ok", "copy_project", "run_command",
]

VENV_BIN = Path(sys.executable).parent
# The queue a worker consumes unless told otherwise.
QUEUE = DEFAULT_QUEUE
FLOWER_AUTH = ("flower-user", "flower-secret-for-tests")
# What a deploy does not ship, left out of a copy of the project made by a test.
NOT_DEPLOYED = shutil.ignore_patterns(".git", ".venv", ".env", "var", "__pycache__", ".pytest_cache")


def service_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a child process: testing config, our Redis, no developer settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "BROKER_URL", "RESULT_BACKEND", "APP_ENV", "FLOWER_BASIC_AUTH", "SECRET_KEY"}
    }
    env.update(
        APP_ENV="testing",
        REDIS_URL=redis_url,
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# The session Redis' databases, one per purpose, so that no test sees another's jobs.
(
    WORKER_DB,  # the session's worker consumes it
    IDLE_DB,  # no worker: jobs stay QUEUED
    BEAT_DB,
    TRACING_DB,
    HISTORY_DB,  # the job history's worker
    IDLE_HISTORY_DB,
    EXPIRY_DB,
    CLI_DB,
    METRICS_DB,
    CLIENTS_DB,  # clients and ownership (tests/test_clients.py); no worker
    SPLIT_BROKER_DB,  # queues apart from their records' database (tests/test_queued_tasks.py)
    OBSERVER_DB,  # a connection that watches the others (MONITOR) and writes nothing
    QUEUES_DB,  # queue figures (tests/test_queues.py)
    DEADLINES_DB,  # jobs that must start by a deadline (tests/test_deadlines.py)
) = range(14)


def db_url(server: RedisServer, db: int) -> str:
    return f"redis://127.0.0.1:{server.port}/{db}"


def empty_db(server: RedisServer, db: int) -> str:
    """The URL of database `db`, emptied first."""
    url = db_url(server, db)
    redis.Redis.from_url(url).flushdb()
    return url


def make_app(redis_url: str, **overrides: str):
    """The API in testing mode on `redis_url`, with config overrides: make_app(url, API_TOKENS=...)."""
    return create_app(TestingConfig({"REDIS_URL": redis_url, **overrides}))


def launch_worker(
    redis_url: str, log_dir, name: str | None = None, concurrency: int = 2, **env: str
) -> tuple[Process, str]:
    """A real worker through ./celery_worker.sh, returned once it answers a ping; the
    caller stops it. In a test, prefer the `start_worker` fixture."""
    hostname = name or f"pytest-{uuid.uuid4().hex[:8]}@localhost"
    process = Process(
        hostname.split("@")[0],
        ["./celery_worker.sh", "--include", "tests.support_tasks"],
        service_env(
            redis_url,
            CELERY_HOSTNAME=hostname,
            CELERY_CONCURRENCY=str(concurrency),
            CELERY_LOGLEVEL="info",
            **env,
        ),
        log_dir,
    )
    celery = extensions.celery_app(make_app(redis_url))

    def answers_ping():
        assert process.alive(), f"worker exited:\n{process.log_tail()}"
        try:
            return celery.control.ping(destination=[hostname], timeout=0.5)
        except redis.ConnectionError:
            # kombu pools broker connections per URL process-wide: after a Redis
            # restart in a test, the first broadcast may draw a closed one.
            return False

    try:
        wait_until(answers_ping, timeout=30, what=f"worker {hostname} to answer a ping")
    except BaseException:
        process.stop()  # never leave a worker running behind a failed test
        raise
    return process, hostname


def wait_until_http_ok(process: Process, url: str) -> None:
    def answers():
        assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
        try:
            return requests.get(url, timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still booting its workers
            return False

    wait_until(answers, timeout=30, what=f"{process.name} to answer {url}")


def launch_gunicorn(
    redis_url: str, log_dir, name: str = "gunicorn", project: Path = PROJECT_ROOT, **env: str
) -> tuple[Process, str]:
    """The API under a real gunicorn (gunicorn.conf.py, as production runs it) on a free
    port, from `project`, returned with its URL once it answers /healthz; stopped if it never
    does, else by the caller. In a test, prefer the `start_gunicorn` fixture."""
    port = free_port()
    process = Process(
        name,
        [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "backend:create_app()"],
        service_env(redis_url, GUNICORN_BIND=f"127.0.0.1:{port}", **env),
        log_dir,
        cwd=project,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_http_ok(process, f"{url}/healthz")
    except BaseException:
        process.stop()
        raise
    return process, url


def wait_for_state(client, task_id: str, states: set[str], timeout: float = 20.0, headers=None) -> dict:
    """Poll /status until the task reaches one of `states`; returns that status body.
    `headers`: a client's Authorization, where the API asks for a token."""

    def reached():
        body = client.get(f"/status/{task_id}", headers=headers).get_json()
        return body if body["state"] in states else None

    return wait_until(reached, timeout, what=f"task {task_id} to reach {states}")


def cancel_during_long_poll(app, task_id: str, after: float, wait: float) -> dict:
    """GET /status/<id>?wait=`wait` while another client cancels the task `after` s in; its body."""
    cancel = threading.Timer(after, lambda: app.test_client().post(f"/status/{task_id}/cancel"))
    cancel.start()
    try:
        return app.test_client().get(f"/status/{task_id}?wait={wait:g}").get_json()
    finally:
        cancel.join()


def copy_project(destination: Path) -> Path:
    """A deployable copy of the project at `destination` (a test may change its files)."""
    shutil.copytree(PROJECT_ROOT, destination, ignore=NOT_DEPLOYED)
    return destination


def run_command(command: list[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one of the project's commands (a script, gunicorn, run.py) to its end, from the
    project root, in a test environment with a Redis nobody listens on unless `env` says."""
    return subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=service_env(env.pop("REDIS_URL", "redis://127.0.0.1:1/0"), **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
