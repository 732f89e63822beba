"""The container files run the project's own commands, bake in no secret, and give
production what it requires. No Docker engine runs here: these tests read the files."""

from __future__ import annotations

import re
import secrets

import pytest
import yaml

from config import load_config
from tests.helpers import PROJECT_ROOT

SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|AUTH|_KEY$")
# ${NAME:?message}: compose refuses to start when NAME is unset or empty.
REQUIRED_REFERENCE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*):\?[^}]+\}")
# user:password@ inside a URL, unless the password is a ${...} reference.
URL_WITH_LITERAL_PASSWORD = re.compile(r"://[^/@\s:]*:(?!\$\{)[^/@\s]+@")
OWN_COMMANDS = {
    "api": ["gunicorn", "--config", "gunicorn.conf.py", "backend:create_app()"],
    "worker": ["./celery_worker.sh"],
    "beat": ["./celery_beat.sh"],
    "flower": ["./flower.sh"],
}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile():
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def strings_in(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str):
        yield value


def test_compose_runs_exactly_redis_api_worker_beat_and_flower(services):
    assert set(services) == {"redis", *OWN_COMMANDS}


@pytest.mark.parametrize("name", sorted(OWN_COMMANDS))
def test_each_service_runs_the_projects_own_command(services, name):
    assert services[name]["command"] == OWN_COMMANDS[name]
    assert services[name]["build"] == "."


def test_the_api_listens_on_every_interface_of_its_container(services):
    assert services["api"]["environment"]["GUNICORN_BIND"] == "0.0.0.0:5000"
    assert services["flower"]["environment"]["FLOWER_ADDRESS"] == "0.0.0.0"


def test_redis_keeps_an_append_only_file_on_a_volume(compose, services):
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    volume = redis["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


@pytest.mark.parametrize("name", ["redis", *sorted(OWN_COMMANDS)])
def test_each_service_has_a_healthcheck(services, name):
    assert services[name]["healthcheck"]["test"]


@pytest.mark.parametrize(
    ("name", "probe"),
    [
        ("redis", "redis-cli ping"),
        ("api", "/healthz"),
        ("worker", "inspect ping --destination worker@"),
        ("beat", "inspect ping --destination celerybeat@"),
        ("flower", "/healthcheck"),
    ],
)
def test_each_healthcheck_probes_its_own_service(services, name, probe):
    assert probe in " ".join(services[name]["healthcheck"]["test"])


@pytest.mark.parametrize("name", sorted(OWN_COMMANDS))
def test_services_start_once_redis_is_healthy(services, name):
    assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_a_stopping_worker_gets_longer_than_its_soft_shutdown(services):
    grace = services["worker"]["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace[:-1]) > load_config({}).WORKER_SOFT_SHUTDOWN_TIMEOUT


@pytest.mark.parametrize("name", sorted(OWN_COMMANDS))
def test_every_service_runs_in_production(services, name):
    assert services[name]["environment"]["APP_ENV"] == "production"


@pytest.mark.parametrize("name", sorted(OWN_COMMANDS))
def test_secrets_are_required_references_to_the_environment_never_values(services, name):
    environment = services[name]["environment"]
    for variable in ("SECRET_KEY", "API_TOKENS", "FLOWER_BASIC_AUTH"):
        assert variable in environment, f"{name} lacks {variable}: production refuses to start without it"
    for variable, value in environment.items():
        if SECRET_NAME.search(variable):
            match = REQUIRED_REFERENCE.fullmatch(str(value))
            assert match and match["name"] == variable, f"{name}: {variable}={value!r} is not ${{{variable}:?...}}"


def test_no_url_or_command_anywhere_holds_a_literal_password(compose):
    for text in strings_in(compose):
        assert not URL_WITH_LITERAL_PASSWORD.search(text), text
        assert "requirepass" not in text or "${" in text, text


def test_production_accepts_the_compose_environment_once_the_secrets_are_set(services):
    def strong_value(reference: re.Match) -> str:
        return f"admin:{secrets.token_hex(16)}" if reference["name"] == "FLOWER_BASIC_AUTH" else secrets.token_hex(32)

    declared = services["worker"]["environment"]
    environment = {name: REQUIRED_REFERENCE.sub(strong_value, str(value)) for name, value in declared.items()}
    assert load_config(environment).ENV_NAME == "production"


def test_the_image_is_python_311_slim(dockerfile):
    assert dockerfile[0] == ("FROM", "python:3.11-slim")


def test_the_image_installs_the_compiled_lock(dockerfile):
    runs = [arguments for keyword, arguments in dockerfile if keyword == "RUN"]
    assert any("pip install --no-cache-dir -r requirements.txt" in run for run in runs)
    assert ("COPY", "requirements.txt ./") in dockerfile


def test_the_image_does_not_run_as_root(dockerfile):
    users = [arguments.strip() for keyword, arguments in dockerfile if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_the_image_bakes_in_no_secret(dockerfile):
    for keyword, arguments in dockerfile:
        if keyword in {"ENV", "ARG"}:
            # NAME=value pairs, or the older `ENV NAME value` form.
            names = re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", arguments) or arguments.split()[:1]
            assert not [name for name in names if SECRET_NAME.search(name)], f"{keyword} {arguments}"


@pytest.mark.parametrize("pattern", [".env", ".venv/", "var/", ".git/"])
def test_the_build_context_leaves_out_local_state_and_secrets(pattern):
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    assert pattern in ignored
