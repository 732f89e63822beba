"""A Flask API that runs long work on Celery workers, with Redis as broker and result backend.

Importing this package opens no connection and starts nothing: call create_app().
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from config import BaseConfig


def create_app(config: BaseConfig | None = None) -> Flask:
    """The application factory: config (from the environment unless given), Celery, routes."""
    import redis
    from flask import Flask

    from backend.celery_app import make_celery
    from backend.errors import register_error_handlers
    from backend.openapi import create_spec, register_openapi
    from backend.records import TaskRecords
    from backend.views import create_blueprint
    from config import load_config

    config = config or load_config()
    app = Flask(__name__)
    app.config.from_mapping(config.to_flask())
    app.json.sort_keys = False

    # Task records live beside the results; the client connects lazily, on first use.
    records_client = redis.Redis.from_url(
        config.RESULT_BACKEND,
        socket_timeout=config.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=config.REDIS_CONNECT_TIMEOUT,
    )
    app.extensions["task_records"] = TaskRecords(records_client, config.RESULT_EXPIRES)
    make_celery(app)

    spec = create_spec()
    app.register_blueprint(create_blueprint(spec))
    register_openapi(app, spec)
    register_error_handlers(app)
    return app
