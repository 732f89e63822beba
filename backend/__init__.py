"""A Flask API that runs long work on Celery workers, with Redis as broker and result backend.

    backend/api/        HTTP: routes, errors, auth, limits, event stream, OpenAPI, dashboard
    backend/jobs/       the job domain: states, records, watch, registry, the service layer
    backend/taskqueue/  Celery on Redis: make_celery, the task base class, transport, worker side
    backend/ops/        request ids, logs, metrics, health checks, the CLI
    backend/tasks.py    the public tasks (the file you edit)
    backend/worker.py   the worker's entry point (celery -A backend.worker)

Importing this package opens no connection and starts nothing: call create_app().
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from config import BaseConfig


def create_app(config: BaseConfig | None = None) -> Flask:
    """The application factory: config (from the environment unless given), Celery, routes."""
    import importlib

    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from backend.api import auth, errors, openapi, routes
    from backend.api.auth import NoSessions
    from backend.api.dashboard import bp as dashboard
    from backend.api.rate_limits import submit_limit
    from backend.jobs import extensions
    from backend.jobs.index import JobIndex
    from backend.jobs.queues import QueueStats
    from backend.jobs.records import JobRecords
    from backend.jobs.redis_client import redis_client as connect_redis
    from backend.jobs.waiting import WaitingSlots
    from backend.jobs.watch import Subscriptions
    from backend.ops import cli, health, metrics, tracing
    from backend.taskqueue.celery_app import make_celery
    from config import DEFAULT_QUEUE, load_config

    config = config or load_config()
    # The task modules fill the registry of public tasks, which the routes are made from.
    for module in config.TASK_MODULES:
        importlib.import_module(module)
    app = Flask(__name__)
    app.config.from_mapping(config.to_flask())
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's
    app.session_interface = NoSessions()
    # First: every later hook (auth, limits, metrics) may end the request, and its
    # response must still carry the request id.
    tracing.init_app(app)
    auth.init_app(app)
    metrics.init_app(app, auth.authenticate_admin)
    if config.TRUSTED_PROXY_HOPS:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=config.TRUSTED_PROXY_HOPS, x_proto=config.TRUSTED_PROXY_HOPS
        )

    # Job records live beside the results (plain or through Sentinel); the client connects lazily.
    redis_client = connect_redis(config)
    records = JobRecords(redis_client, config.RESULT_EXPIRES, config.JOB_INPUT_MAX_BYTES)
    extensions.init_app(
        app,
        extensions.Services(
            records=records,
            index=JobIndex(redis_client, config.RESULT_EXPIRES),
            subscriptions=Subscriptions(redis_client),
            queues=QueueStats(
                # The queues live in the broker's database: the same client where it is the records'.
                redis_client if config.BROKER_LOCATION == config.RESULT_BACKEND_LOCATION
                else connect_redis(config, config.BROKER_LOCATION),
                default_queue=DEFAULT_QUEUE,
                default_exchange=DEFAULT_QUEUE,
                lease_seconds=config.BROKER_VISIBILITY_TIMEOUT,
            ),
            waiting_slots=WaitingSlots(config.MAX_WAITING_REQUESTS),
        ),
    )
    health.init_app(app)
    make_celery(app, records)

    spec = openapi.create_spec(bearer_auth=bool(config.API_TOKENS or config.API_CLIENTS_FILE))
    app.register_blueprint(routes.create_blueprint(spec, submit_limit(app, redis_client)))
    app.register_blueprint(dashboard)
    openapi.init_app(app, spec)
    errors.init_app(app)
    cli.init_app(app)
    return app
