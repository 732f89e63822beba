"""A deploy by `kill -HUP`, gunicorn's graceful reload: the new workers run the deployed
code, also the modules gunicorn.conf.py imported into the master (config, backend.logs
and what they import)."""


import signal

import pytest
import requests

from tests.helpers import copy_project, wait_until

pytestmark = pytest.mark.e2e



def test_after_kill_hup_new_workers_run_the_deployed_code(start_gunicorn, idle_redis_url, tmp_path):
    project = tmp_path / "project"
    copy_project(project)
    gunicorn, base_url = start_gunicorn(idle_redis_url, "gunicorn-hup", project, GUNICORN_WORKERS="1")
    url = f"{base_url}/healthz"
    assert "X-Request-ID" in requests.get(url, timeout=5).headers
    # The deploy: a module that the master itself imported (backend.logs imports it) changes.
    tracing = project / "backend" / "ops" / "tracing.py"
    tracing.write_text(tracing.read_text().replace('HEADER = "X-Request-ID"', 'HEADER = "X-Deployed-ID"'))
    gunicorn.popen.send_signal(signal.SIGHUP)
    wait_until(
        lambda: "X-Deployed-ID" in requests.get(url, timeout=5).headers, 30,
        what="a worker started after the HUP to run the deployed backend/ops/tracing.py",
    )
