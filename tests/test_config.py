"""Configuration comes from the environment; production refuses unsafe defaults."""


import pytest

from backend.jobs import extensions
from backend.jobs.redis_client import redis_client
from backend.taskqueue.results import JobsSentinelResultBackend
from backend.taskqueue.transport import SentinelTransport, Transport
from config import DEFAULT_REDIS_URL, ConfigError, DevelopmentConfig, ProductionConfig, load_config
from tests.helpers import PROJECT_ROOT, run_command

SAFE_PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "x" * 48,
    "FLOWER_BASIC_AUTH": "admin:a-long-random-password",
    "API_TOKENS": "t" * 40,
}


def test_development_is_the_default_environment():
    assert isinstance(load_config({}), DevelopmentConfig)


def test_broker_and_result_backend_default_to_redis_url():
    config = load_config({"REDIS_URL": "redis://example:6380/2"})
    assert config.BROKER_URL == config.RESULT_BACKEND == "redis://example:6380/2"
    assert load_config({}).BROKER_URL == DEFAULT_REDIS_URL


def test_broker_and_result_backend_can_differ():
    config = load_config({"BROKER_URL": "redis://a:1/0", "RESULT_BACKEND": "redis://b:2/0"})
    assert config.CELERY["broker_url"] == "redis://a:1/0"
    assert config.CELERY["result_backend"].endswith("+redis://b:2/0")


def test_celery_accepts_json_only():
    celery = load_config({}).CELERY
    assert celery["accept_content"] == ["json"]
    assert celery["task_serializer"] == celery["result_serializer"] == "json"


def test_a_dead_workers_task_comes_back_within_a_few_minutes():
    # Renewed leases make a short visibility timeout safe for long tasks (tests/reliability).
    options = load_config({}).CELERY["broker_transport_options"]
    assert options["visibility_timeout"] + options["unacked_restore_interval"] <= 180
    assert options["unacked_restore_throttle"] == 1


def test_debug_is_off_unless_asked():
    assert load_config({}).DEBUG is False
    assert load_config({"FLASK_DEBUG": "1"}).DEBUG is True


def test_unknown_environment_name_is_refused():
    with pytest.raises(ConfigError, match="APP_ENV"):
        load_config({"APP_ENV": "staging"})


def test_a_non_numeric_setting_is_refused_with_its_name():
    with pytest.raises(ConfigError, match="RESULT_EXPIRES"):
        load_config({"RESULT_EXPIRES": "a day"})


def test_production_starts_with_safe_settings():
    assert isinstance(load_config(SAFE_PRODUCTION), ProductionConfig)


def test_production_refuses_the_default_secret_key():
    with pytest.raises(ConfigError, match="set SECRET_KEY"):
        load_config({k: v for k, v in SAFE_PRODUCTION.items() if k != "SECRET_KEY"})


def test_production_refuses_debug():
    with pytest.raises(ConfigError, match="FLASK_DEBUG"):
        load_config({**SAFE_PRODUCTION, "FLASK_DEBUG": "true"})


def test_production_refuses_an_open_api():
    with pytest.raises(ConfigError, match="API_TOKENS and API_CLIENTS_FILE are unset"):
        load_config({k: v for k, v in SAFE_PRODUCTION.items() if k != "API_TOKENS"})


def test_production_starts_with_a_clients_file_and_no_api_tokens():
    # The file may name no client yet (`flask clients add` creates the first): the API asks for a token anyway.
    without_tokens = {k: v for k, v in SAFE_PRODUCTION.items() if k != "API_TOKENS"}
    config = load_config({**without_tokens, "API_CLIENTS_FILE": "var/clients.json"})
    assert config.API_CLIENTS_FILE == str(PROJECT_ROOT / "var" / "clients.json")


def test_production_refuses_short_api_tokens():
    with pytest.raises(ConfigError, match="shorter than 32"):
        load_config({**SAFE_PRODUCTION, "API_TOKENS": f"{'a' * 40},short"})


def test_api_tokens_are_comma_separated_for_rotation():
    assert load_config({"API_TOKENS": " old-token , new-token ,"}).API_TOKENS == ("old-token", "new-token")


def test_production_refuses_unauthenticated_flower():
    with pytest.raises(ConfigError, match="set FLOWER_BASIC_AUTH"):
        load_config({k: v for k, v in SAFE_PRODUCTION.items() if k != "FLOWER_BASIC_AUTH"})


def test_flower_script_refuses_production_without_auth():
    result = run_command(["./flower.sh"], APP_ENV="production")
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr


def test_the_app_factory_refuses_unsafe_production_settings(monkeypatch):
    from backend import create_app

    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="refusing to start in production"):
        create_app()


def test_a_dotenv_file_is_read_and_the_environment_wins_over_it(tmp_path):
    from config import read_environment

    dotenv = tmp_path / ".env"
    dotenv.write_text("REDIS_URL=redis://from-dotenv:6379/0\nSECRET_KEY=from-dotenv\n")
    values = read_environment({"SECRET_KEY": "from-environment"}, dotenv_path=dotenv)
    config = load_config(values)
    assert config.REDIS_URL == "redis://from-dotenv:6379/0"
    assert config.SECRET_KEY == "from-environment"


def test_a_mistyped_rate_limit_is_refused_not_silently_ignored():
    with pytest.raises(ConfigError, match="SUBMIT_RATE_LIMIT"):
        load_config({"SUBMIT_RATE_LIMIT": "20/secnd"})


def test_the_shutdown_grace_must_end_before_a_lease_could_expire():
    with pytest.raises(ConfigError, match="WORKER_SOFT_SHUTDOWN_TIMEOUT"):
        load_config({"BROKER_VISIBILITY_TIMEOUT": "30", "WORKER_SOFT_SHUTDOWN_TIMEOUT": "25"})


def test_log_format_is_text_unless_json_is_asked_and_a_typo_is_refused():
    assert load_config({}).LOG_FORMAT == "text"
    assert load_config({"LOG_FORMAT": "JSON"}).LOG_FORMAT == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_config({"LOG_FORMAT": "jsno"})


@pytest.mark.parametrize("scheme, tls", [("redis", False), ("rediss", True)])
def test_redis_broker_urls_get_our_transport_and_keep_their_scheme_and_tls(make_app, scheme, tls):
    # Flower picks its broker view from the scheme; kombu turns TLS on from it.
    app = make_app(f"{scheme}://127.0.0.1:6390/0")
    with extensions.celery_app(app).connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
        assert connection.as_uri().startswith(f"{scheme}://")
        assert bool(connection.ssl) is tls


SENTINELS = "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380/2"


def test_sentinel_urls_are_read_as_celery_writes_them_each_url_complete():
    config = load_config({"REDIS_URL": SENTINELS, "REDIS_PASSWORD": "p@ss"})
    location = config.RESULT_BACKEND_LOCATION
    assert location.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert (location.db, location.password) == (2, "p@ss")
    assert config.BROKER_URL == "sentinel://:p%40ss@10.0.0.1:26379/2;sentinel://:p%40ss@10.0.0.2:26380/2"
    assert config.REDIS_SENTINEL_MASTER == "mymaster"


def test_a_password_in_the_url_wins_over_redis_password():
    config = load_config({"REDIS_URL": "sentinel://:inurl@h:1/0", "REDIS_PASSWORD": "other"})
    assert config.RESULT_BACKEND_LOCATION.password == "inurl"
    assert load_config({"REDIS_URL": "redis://h:1/0", "REDIS_PASSWORD": "a b"}).BROKER_URL == "redis://:a%20b@h:1/0"


@pytest.mark.parametrize(
    "url",
    [
        "sentinel://h:1;redis://h:2/0",
        "sentinel://:26379/0",
        "sentinel://h:1/zero",
        "sentinel://h:1/0;sentinel://h:2/1",
        "sentinel://h:99999/0",
        "sentinel://h:1/0;",
        "redis://a:1/0;redis://b:1/0",
    ],
)
def test_a_malformed_sentinel_url_is_refused_naming_the_setting(url):
    with pytest.raises(ConfigError, match="BROKER_URL"):
        load_config({"BROKER_URL": url})


def test_sentinel_settings_reach_the_broker_and_the_result_backend():
    config = load_config({"REDIS_URL": SENTINELS, "REDIS_SENTINEL_MASTER": "jobs", "REDIS_SENTINEL_PASSWORD": "s"})
    sentinel = {"master_name": "jobs", "sentinel_kwargs": {"socket_timeout": 2.0, "socket_connect_timeout": 1.0,
                                                           "password": "s"}}
    assert config.CELERY["broker_transport_options"].items() >= {**sentinel, "replica_wait_ms": 500}.items()
    assert config.CELERY["result_backend_transport_options"] == sentinel
    assert config.CELERY["result_backend"].startswith("backend.taskqueue.results:JobsSentinelResultBackend+sentinel:")


def test_a_replica_wait_as_long_as_the_socket_timeout_is_refused():
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_WAIT_MS"):
        load_config({"REDIS_URL": SENTINELS, "REDIS_SENTINEL_WAIT_MS": "2000"})


def test_sentinel_urls_get_our_transport_backend_and_a_sentinel_client(make_app):
    app = make_app(SENTINELS)
    celery = extensions.celery_app(app)
    with celery.connection_for_write() as connection:
        assert isinstance(connection.transport, SentinelTransport)
    assert isinstance(celery.backend, JobsSentinelResultBackend)
    pool = redis_client(load_config({"REDIS_URL": SENTINELS})).connection_pool
    assert (pool.service_name, pool.connection_kwargs["db"]) == ("mymaster", 2)
