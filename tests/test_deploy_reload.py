"""A deploy by `kill -HUP`, gunicorn's graceful reload: the new workers run the deployed
code, also the modules gunicorn.conf.py imported into the master (config, backend.logs
and what they import)."""

import shutil
import signal

import pytest
import requests

from devtools.redis_server import free_port
from tests.conftest import wait_until_http_ok
from tests.processes import PROJECT_ROOT, VENV_BIN, Process, service_env, wait_until

pytestmark = pytest.mark.e2e

NOT_DEPLOYED = shutil.ignore_patterns(".git", ".venv", ".env", "var", "__pycache__", ".pytest_cache")


def test_after_kill_hup_new_workers_run_the_deployed_code(idle_redis_url, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(PROJECT_ROOT, project, ignore=NOT_DEPLOYED)
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    gunicorn = Process(
        "gunicorn-hup",
        [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", "backend:create_app()"],
        service_env(idle_redis_url, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1"),
        tmp_path,
        cwd=project,
    )
    try:
        wait_until_http_ok(gunicorn, url)
        assert "X-Request-ID" in requests.get(url, timeout=5).headers
        # The deploy: a module that the master itself imported (backend.logs imports it) changes.
        tracing = project / "backend" / "tracing.py"
        tracing.write_text(tracing.read_text().replace('HEADER = "X-Request-ID"', 'HEADER = "X-Deployed-ID"'))
        gunicorn.popen.send_signal(signal.SIGHUP)
        wait_until(
            lambda: "X-Deployed-ID" in requests.get(url, timeout=5).headers, 30,
            what="a worker started after the HUP to run the deployed backend/tracing.py",
        )
    finally:
        gunicorn.stop()
