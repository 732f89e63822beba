"""The API the benchmark serves: the product's factory, plus the `noop` task.

    gunicorn --config gunicorn.conf.py 'bench.app:create_app()'

With BENCH_CELERY_SETTINGS (a JSON object, from `python -m bench --celery NAME=VALUE`),
those Celery settings replace the project's: a way to measure a candidate setting
before changing config.py. Unset, the app is exactly the product's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery
    from flask import Flask

SETTINGS_VARIABLE = "BENCH_CELERY_SETTINGS"


def candidate_settings(environ: Mapping[str, str] = os.environ) -> dict:
    return json.loads(environ.get(SETTINGS_VARIABLE) or "{}")


def apply_candidate_settings(celery: Celery, environ: Mapping[str, str] = os.environ) -> None:
    """Before the app is finalized, so task options (acks_late, track_started) follow too."""
    settings = candidate_settings(environ)
    if settings:
        celery.conf.update(settings)


def create_app() -> Flask:
    # Registered before the factory builds the routes, so POST /tasks/noop exists.
    import bench.tasks  # noqa: F401
    from backend import create_app as create_api
    from backend.jobs import extensions

    app = create_api()
    apply_candidate_settings(extensions.celery_app(app))
    return app
