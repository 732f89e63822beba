"""Fixtures of the reliability suite: a private Redis per test, so faults never leak.

Every test here gets the `reliability` marker (`make test PYTEST_ARGS="-m reliability"`
runs just this suite) and may record figures, printed as one table at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from devtools.redis_server import RedisServer, free_port
from tests.helpers import Process
from tests.reliability import figures
from tests.reliability.jobs import Jobs

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter):
    if not figures.has_figures():
        return
    figures.save()
    terminalreporter.write_sep("=", "reliability figures")
    for line in figures.table():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(saved to {figures.RESULTS_PATH.relative_to(figures.PROJECT_ROOT)})")


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of this test's own, with AOF on as `make run` configures it."""
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis_client(private_redis):
    return redis.Redis.from_url(private_redis.url, socket_timeout=5)


@pytest.fixture
def jobs(private_redis):
    return Jobs(private_redis.url)


@pytest.fixture
def start_workers(private_redis, start_worker):
    """Start real workers on the private Redis: start(name, concurrency=1, **env).
    Each is stopped at the end of the test (if a test has not killed it already)."""

    def start(name: str, concurrency: int = 1, **env: str) -> Process:
        process, _ = start_worker(private_redis.url, f"{name}@localhost", concurrency, **env)
        return process

    return start
