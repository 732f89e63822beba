"""Fixtures: a private redis-server, real Celery workers, gunicorn and Flower.

Everything runs on free ports and is stopped at the end, so the tests never
touch a developer's Redis. Two Redis databases keep concerns apart:
db 0 is served by a worker; db 1 has no worker, so what is queued there stays queued.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
import redis
import requests

from backend import create_app
from backend import extensions
from config import TestingConfig
from devtools.redis_server import RedisServer, free_port
from tests.processes import PROJECT_ROOT, VENV_BIN, Process, service_env, wait_until

QUEUE = "celery"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"), appendonly=True)
    server.start()
    yield server
    server.stop()


def db_url(server: RedisServer, db: int) -> str:
    return f"redis://127.0.0.1:{server.port}/{db}"


@pytest.fixture(scope="session")
def worker_redis_url(redis_server):
    return db_url(redis_server, 0)


@pytest.fixture(scope="session")
def idle_redis_url(redis_server):
    return db_url(redis_server, 1)


def make_app(redis_url: str, **overrides: str):
    return create_app(TestingConfig({"REDIS_URL": redis_url, **overrides}))


@pytest.fixture
def app(worker_redis_url):
    """The API on the database a worker consumes."""
    return make_app(worker_redis_url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def idle_app(idle_redis_url):
    """The API on a database no worker consumes: submitted tasks stay QUEUED."""
    return make_app(idle_redis_url)


@pytest.fixture
def idle_client(idle_app):
    return idle_app.test_client()


@pytest.fixture
def idle_queue_length(idle_redis_url):
    client = redis.Redis.from_url(idle_redis_url, socket_timeout=2)
    return lambda: client.llen(QUEUE)


def start_worker(
    redis_url: str, log_dir, name: str | None = None, concurrency: int = 2, **env: str
) -> tuple[Process, str]:
    """A real worker through ./celery_worker.sh, returned once it answers a ping."""
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


@pytest.fixture(scope="session")
def worker(worker_redis_url, tmp_path_factory):
    """One real Celery worker (2 pool processes) consuming db 0 for the whole session."""
    process, hostname = start_worker(worker_redis_url, tmp_path_factory.mktemp("worker"))
    yield hostname
    process.stop()


def wait_until_http_ok(process: Process, url: str) -> None:
    def answers():
        assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
        try:
            return requests.get(url, timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still booting its workers
            return False

    wait_until(answers, timeout=30, what=f"{process.name} to answer {url}")


def start_gunicorn(
    redis_url: str, log_dir, name: str = "gunicorn", project: Path = PROJECT_ROOT, **env: str
) -> tuple[Process, str]:
    """The API under a real gunicorn (gunicorn.conf.py, as production runs it) on a free
    port, from `project`, returned with its URL once it answers /healthz; stopped if it never does."""
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


@pytest.fixture(scope="session")
def gunicorn_url(worker_redis_url, tmp_path_factory):
    """The API served by a real gunicorn, as `make run` and production serve it."""
    process, url = start_gunicorn(worker_redis_url, tmp_path_factory.mktemp("gunicorn"), GUNICORN_WORKERS="2")
    yield url
    process.stop()


FLOWER_AUTH = ("flower-user", "flower-secret-for-tests")


@pytest.fixture(scope="session")
def flower_url(worker_redis_url, worker, tmp_path_factory):
    port = free_port()
    process = Process(
        "flower",
        ["./flower.sh"],
        service_env(worker_redis_url, FLOWER_PORT=str(port), FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH)),
        tmp_path_factory.mktemp("flower"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_http_ok(process, f"{url}/healthcheck")
    yield url
    process.stop()


def wait_for_state(client, task_id: str, states: set[str], timeout: float = 20.0) -> dict:
    """Poll /status until the task reaches one of `states`; returns that status body."""

    def reached():
        body = client.get(f"/status/{task_id}").get_json()
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
