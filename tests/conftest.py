"""Fixtures: a private redis-server, real Celery workers, gunicorn and Flower.

Everything runs on free ports and is stopped at the end, so the tests never
touch a developer's Redis. Two Redis databases keep concerns apart:
db 0 is served by a worker; db 1 has no worker, so what is queued there stays queued.
What the fixtures are built from (and what tests import) is in tests/helpers.py.
"""

from __future__ import annotations

import pytest
import redis

from devtools.redis_server import RedisServer, free_port
from tests.helpers import (
    FLOWER_AUTH,
    IDLE_DB,
    PROJECT_ROOT,
    QUEUE,
    WORKER_DB,
    Process,
    db_url,
    launch_gunicorn,
    launch_worker,
    make_app,
    service_env,
    wait_until_http_ok,
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"), appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker_redis_url(redis_server):
    return db_url(redis_server, WORKER_DB)


@pytest.fixture(scope="session")
def idle_redis_url(redis_server):
    return db_url(redis_server, IDLE_DB)


# Named apart from the function it returns, which this module imports (and the fixtures
# below use) under the same name.
@pytest.fixture(name="make_app")
def fixture_make_app():
    """The app factory: make_app(redis_url, **config overrides) -> a Flask app in testing mode."""
    return make_app


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


@pytest.fixture(scope="session")
def worker(worker_redis_url, tmp_path_factory):
    """One real Celery worker (2 pool processes) consuming db 0 for the whole session."""
    process, hostname = launch_worker(worker_redis_url, tmp_path_factory.mktemp("worker"))
    yield hostname
    process.stop()


@pytest.fixture
def started_processes():
    """Processes a test started through the fixtures below; each is stopped at its end
    (stopping one earlier, or killing it, is fine)."""
    started: list[Process] = []
    yield started
    for process in reversed(started):
        process.stop()


@pytest.fixture
def start_worker(tmp_path, started_processes):
    """Start real workers: start_worker(redis_url, name=None, concurrency=2, **env) ->
    (process, hostname), once it answers a ping; stopped at the end of the test."""

    def start(redis_url: str, name: str | None = None, concurrency: int = 2, **env: str) -> tuple[Process, str]:
        process, hostname = launch_worker(redis_url, tmp_path, name, concurrency, **env)
        started_processes.append(process)
        return process, hostname

    return start


@pytest.fixture(scope="session")
def gunicorn_url(worker_redis_url, tmp_path_factory):
    """The API served by a real gunicorn, as `make run` and production serve it."""
    process, url = launch_gunicorn(worker_redis_url, tmp_path_factory.mktemp("gunicorn"), GUNICORN_WORKERS="2")
    yield url
    process.stop()


@pytest.fixture
def start_gunicorn(tmp_path, started_processes):
    """Start the API under a real gunicorn: start_gunicorn(redis_url, name="gunicorn",
    project=PROJECT_ROOT, **env) -> (process, url), once it answers /healthz; stopped at
    the end of the test."""

    def start(redis_url: str, name: str = "gunicorn", project=PROJECT_ROOT, **env: str) -> tuple[Process, str]:
        process, url = launch_gunicorn(redis_url, tmp_path, name, project, **env)
        started_processes.append(process)
        return process, url

    return start


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
