"""Start and stop the real processes the tests talk to: workers, gunicorn, Flower
(devtools/processes.py), with an environment of their own."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from devtools.processes import PROJECT_ROOT, Process, wait_until  # noqa: F401 (the tests import them from here)

VENV_BIN = Path(sys.executable).parent


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
