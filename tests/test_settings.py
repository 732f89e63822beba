"""One source of settings: every process reads the environment and `.env` through
config.py, each value parsed once, and a value that cannot be parsed stops startup
with a message naming the variable."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from config import FALSE_WORDS, TRUE_WORDS, ConfigError, load_config
from devtools.redis_server import free_port
from tests.helpers import VENV_BIN, Process, copy_project, run_command, service_env, wait_until


@pytest.mark.parametrize("word", sorted(TRUE_WORDS) + [word.upper() for word in TRUE_WORDS] + [" On "])
def test_a_boolean_accepts_each_spelling_of_true(word):
    assert load_config({"FLASK_DEBUG": word}).DEBUG is True


@pytest.mark.parametrize("word", sorted(FALSE_WORDS) + [word.title() for word in FALSE_WORDS])
def test_a_boolean_accepts_each_spelling_of_false(word):
    assert load_config({"FLASK_DEBUG": word}).DEBUG is False


def test_an_empty_boolean_takes_its_default():
    assert load_config({"FLASK_DEBUG": ""}).DEBUG is False


@pytest.mark.parametrize("typo", ["ture", "2", "yes please", "enabled"])
def test_a_mistyped_boolean_is_refused_naming_the_variable(typo):
    with pytest.raises(ConfigError, match=f"FLASK_DEBUG must be one of .* got '{typo}'"):
        load_config({"FLASK_DEBUG": typo})


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["./celery_worker.sh"], id="worker"),
        pytest.param(["./celery_beat.sh"], id="beat"),
        pytest.param(["./flower.sh"], id="flower"),
        pytest.param([str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "backend:create_app()"],
                     id="gunicorn"),
        pytest.param([sys.executable, "run.py"], id="run.py"),
    ],
)
def test_flask_debug_typo_stops_every_process_with_a_clear_message(command):
    result = run_command(command, FLASK_DEBUG="ture")
    assert result.returncode != 0
    assert "configuration error: FLASK_DEBUG must be one of" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_worker_concurrency_and_prefetch_are_celery_settings():
    settings = load_config({"CELERY_CONCURRENCY": "3", "CELERY_PREFETCH_MULTIPLIER": "4"}).CELERY
    assert settings["worker_concurrency"] == 3
    assert settings["worker_prefetch_multiplier"] == 4
    defaults = load_config({}).CELERY
    assert defaults["worker_concurrency"] is None  # Celery's own default: one per CPU
    assert defaults["worker_prefetch_multiplier"] == 1


def test_the_scripts_command_lines_come_from_the_settings():
    config = load_config({"CELERY_QUEUES": "short,long", "CELERY_HOSTNAME": "w9@%h", "FLOWER_PORT": "5999"})
    worker = config.command_line("worker")
    assert worker[worker.index("--queues") + 1] == "short,long"
    assert worker[worker.index("--hostname") + 1] == "w9@%h"
    assert "--port=5999" in config.command_line("flower")
    assert config.FLOWER_URL == "http://127.0.0.1:5999"


def test_threads_set_only_in_dotenv_size_gunicorn_and_the_waiting_slots(idle_redis_url, tmp_path):
    """A bare `gunicorn --config gunicorn.conf.py` with GUNICORN_THREADS=6 in `.env` only:
    gunicorn runs 6 threads and the app lets 6 - 4 = 2 requests wait at once."""
    project = tmp_path / "project"
    copy_project(project)
    port = free_port()
    (project / ".env").write_text(
        f"GUNICORN_THREADS=6\nGUNICORN_WORKERS=1\nGUNICORN_LOGLEVEL=debug\nGUNICORN_BIND=127.0.0.1:{port}\n"
    )
    env = service_env(idle_redis_url)
    for name in ("GUNICORN_THREADS", "GUNICORN_WORKERS", "GUNICORN_BIND", "GUNICORN_LOGLEVEL", "MAX_WAITING_REQUESTS"):
        env.pop(name, None)
    gunicorn = Process(
        "gunicorn-dotenv",
        [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "backend:create_app()"],
        env,
        tmp_path,
        cwd=project,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(gunicorn, f"{base}/healthz"), timeout=30, what="gunicorn to answer")
        # gunicorn logs its whole configuration at debug level.
        assert "threads: 6" in gunicorn.log_path.read_text()
        job_id = requests.post(f"{base}/add", json={"x": 1, "y": 2}, timeout=5).json()["task_id"]
        # Three long-polls at once, each waiting 5 s on a job no worker takes: two slots, so one is refused.
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: requests.get(f"{base}/status/{job_id}?wait=5", timeout=20), range(3)))
        assert sorted(answer.status_code for answer in answers) == [200, 200, 503]
        refused = next(answer.json() for answer in answers if answer.status_code == 503)
        assert refused["error"]["code"] == "too_many_waiting_requests"
        assert "already holds 2 long-polls" in refused["error"]["message"]
    finally:
        gunicorn.stop()


def _answers(process: Process, url: str) -> bool:
    assert process.alive(), f"gunicorn exited:\n{process.log_tail()}"
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False



def test_a_line_break_in_a_setting_cannot_smuggle_an_argument_into_a_script():
    with pytest.raises(ConfigError, match="line break"):
        load_config({"CELERY_QUEUES": "celery\n--pool=solo"}).shell_arguments("worker")


def test_secrets_are_kept_exactly_as_set():
    config = load_config({"FLOWER_BASIC_AUTH": "admin:pass word ", "SECRET_KEY": " spaced "})
    assert config.FLOWER_BASIC_AUTH == "admin:pass word "
    assert config.SECRET_KEY == " spaced "


@pytest.mark.parametrize("value, access_log", [(None, "-"), ("", None), ("var/access.log", "var/access.log")])
def test_an_empty_access_log_setting_turns_the_access_log_off(value, access_log):
    environ = {} if value is None else {"GUNICORN_ACCESSLOG": value}
    assert load_config(environ).GUNICORN_ACCESSLOG == access_log
