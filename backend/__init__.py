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
    from werkzeug.middleware.proxy_fix import ProxyFix

    from backend import metrics, tracing
    from backend.auth import NoSessions
    from backend.celery_app import make_celery
    from backend.cli import register_commands
    from backend.dashboard import create_dashboard
    from backend.errors import register_error_handlers
    from backend.health import WorkerPings
    from backend.idempotency import IdempotencyKeys
    from backend.openapi import create_spec, register_openapi
    from backend.rate_limits import submit_limit
    from backend.records import TaskRecords
    from backend.views import create_blueprint
    from backend.waiting import WaitingSlots
    from config import load_config

    config = config or load_config()
    app = Flask(__name__)
    app.config.from_mapping(config.to_flask())
    app.json.sort_keys = False
    app.session_interface = NoSessions()
    # First: every later hook (auth, limits, metrics) may end the request, and its
    # response must still carry the request id.
    tracing.init_app(app)
    metrics.init_app(app)
    if config.TRUSTED_PROXY_HOPS:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.TRUSTED_PROXY_HOPS, x_proto=config.TRUSTED_PROXY_HOPS)

    # Task records live beside the results; the client connects lazily, on first use.
    records_client = redis.Redis.from_url(
        config.RESULT_BACKEND,
        socket_timeout=config.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=config.REDIS_CONNECT_TIMEOUT,
    )
    records = app.extensions["task_records"] = TaskRecords(records_client, config.RESULT_EXPIRES)
    app.extensions["waiting_slots"] = WaitingSlots(config.MAX_WAITING_REQUESTS)
    # A caller waits at most for one ping under way (its timeout), plus a margin.
    app.extensions["worker_pings"] = WorkerPings(config.READYZ_CACHE_SECONDS, 2 * config.READYZ_PING_TIMEOUT + 1)
    # Idempotency keys live and expire with the task records they point to.
    app.extensions["idempotency_keys"] = IdempotencyKeys(records)
    make_celery(app)

    spec = create_spec(bearer_auth=bool(config.API_TOKENS))
    app.register_blueprint(create_blueprint(spec, submit_limit(app)))
    app.register_blueprint(create_dashboard())
    register_openapi(app, spec)
    register_error_handlers(app)
    register_commands(app)
    return app
