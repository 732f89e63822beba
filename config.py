"""Configuration: one class per environment, every value from the environment.

`APP_ENV` picks the class (development, testing, production). Values are read
when a config object is built, never at import time, so tests can build one
from a plain dict. A `.env` file in the project root is read too; the real
environment wins over it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from limits import parse_many

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# gunicorn's threads per worker process (gunicorn.conf.py, GUNICORN_THREADS).
DEFAULT_GUNICORN_THREADS = 16
# A recognisable placeholder: development works out of the box, production refuses it.
DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me"

# A task running longer than this is killed: a runaway task cannot hold a
# worker forever. Tasks may run longer than the visibility timeout: workers
# renew their messages' leases while they run (backend/taskqueue/leases.py).
LONG_TASK_TIME_LIMIT = 3600
LONG_TASK_SOFT_TIME_LIMIT = 3540
# Seconds after which a message held by a worker that stopped renewing (killed,
# out of memory, cut off) goes back to its queue for another worker. Live
# workers renew every timeout/6, so a short timeout re-runs nothing healthy.
BROKER_VISIBILITY_TIMEOUT = 60
# Seconds between each worker's sweeps for such messages (kombu's default
# sweep runs every 10 s but scans on every 10th call only, i.e. ~100 s).
UNACKED_RESTORE_INTERVAL = 5
# Celery's "<class>+<url>" form: the Redis result backend, minus a subscription per
# submit, plus the task record's expiry with every state stored (backend/taskqueue/results.py).
RESULTS_BACKEND_CLASS = "backend.taskqueue.results:JobsResultBackend"


class ConfigError(RuntimeError):
    """The configuration is unusable; the message says what to set."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _seconds_or_off(environ: Mapping[str, str], name: str, default: float) -> float:
    """Seconds (> 0), or 0.0 for "off" / "0"."""
    raw = (environ.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw == "off":
        return 0.0
    try:
        value = float(raw)
        valid = math.isfinite(value) and value >= 0
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f'{name} must be a number of seconds, or "off", got {environ[name]!r}')
    return value


class BaseConfig:
    """Settings shared by every environment. Uppercase attributes become app.config."""

    ENV_NAME = "base"
    DEBUG = False
    TESTING = False
    SUBMIT_RATE_LIMIT = "20/second;600/minute"
    # The modules that define tasks: create_app imports them (they fill the registry of
    # public tasks) and so does every worker (Celery's `imports`).
    TASK_MODULES = ("backend.tasks", "backend.taskqueue.periodic")

    def __init__(self, environ: Mapping[str, str]):
        self.SECRET_KEY = environ.get("SECRET_KEY") or DEFAULT_SECRET_KEY
        self.DEBUG = _bool(environ.get("FLASK_DEBUG"), default=type(self).DEBUG)
        redis_url = environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        self.REDIS_URL = redis_url
        self.BROKER_URL = environ.get("BROKER_URL") or redis_url
        self.RESULT_BACKEND = environ.get("RESULT_BACKEND") or redis_url
        # How long results, progress and task records are kept (seconds).
        self.RESULT_EXPIRES = _int(environ, "RESULT_EXPIRES", 86400)
        # Seconds before a Redis call gives up: a Redis outage is a fast 503, not a hang.
        self.REDIS_SOCKET_TIMEOUT = _float(environ, "REDIS_SOCKET_TIMEOUT", 2.0)
        self.REDIS_CONNECT_TIMEOUT = _float(environ, "REDIS_CONNECT_TIMEOUT", 1.0)
        # Request bodies above this size are refused with 413.
        self.MAX_CONTENT_LENGTH = _int(environ, "MAX_CONTENT_LENGTH", 64 * 1024)
        # "json": one JSON object per log line (API and workers) for log shippers; "text" for people.
        self.LOG_FORMAT = (environ.get("LOG_FORMAT") or "text").strip().lower()
        if self.LOG_FORMAT not in {"text", "json"}:
            raise ConfigError(f'LOG_FORMAT must be "text" or "json", got {environ["LOG_FORMAT"]!r}')
        self.FLOWER_BASIC_AUTH = environ.get("FLOWER_BASIC_AUTH", "")
        # Bearer tokens the API accepts, comma-separated (two during a rotation).
        # Unset: the API is open (development); production refuses to start without.
        self.API_TOKENS = tuple(t.strip() for t in environ.get("API_TOKENS", "").split(",") if t.strip())
        # Submits per client (API token, else address), Flask-Limiter syntax; "off" disables.
        self.SUBMIT_RATE_LIMIT = environ.get("SUBMIT_RATE_LIMIT") or type(self).SUBMIT_RATE_LIMIT
        # Behind a reverse proxy, how many X-Forwarded-For hops to trust for the client address.
        self.TRUSTED_PROXY_HOPS = _int(environ, "TRUSTED_PROXY_HOPS", 0)
        # See BROKER_VISIBILITY_TIMEOUT: a dead worker's task runs again after this.
        self.BROKER_VISIBILITY_TIMEOUT = _int(environ, "BROKER_VISIBILITY_TIMEOUT", BROKER_VISIBILITY_TIMEOUT)
        # A task whose worker dies this many times in a row (a task that kills it:
        # out of memory, a segfault) ends FAILURE instead of being redelivered forever.
        self.TASK_MAX_DELIVERIES = _int(environ, "TASK_MAX_DELIVERIES", 3)
        # Seconds a stopping worker (SIGTERM) lets running tasks finish before it
        # puts them back on the queue. Keep it below your supervisor's grace period.
        self.WORKER_SOFT_SHUTDOWN_TIMEOUT = _float(environ, "WORKER_SOFT_SHUTDOWN_TIMEOUT", 8.0)
        # Longest long-poll (GET /status/<id>?wait=): each waiting request holds a
        # gunicorn thread, so this bounds how long a client can keep one.
        self.STATUS_MAX_WAIT = _float(environ, "STATUS_MAX_WAIT", 30.0)
        # Long-polls and event streams one API process lets wait at once (backend/api/waiting.py);
        # the next gets a 503. By default gunicorn's threads minus 4 kept for short requests.
        self.GUNICORN_THREADS = _int(environ, "GUNICORN_THREADS", DEFAULT_GUNICORN_THREADS)
        self.MAX_WAITING_REQUESTS = _int(environ, "MAX_WAITING_REQUESTS", max(1, self.GUNICORN_THREADS - 4))
        if self.MAX_WAITING_REQUESTS < 1:
            raise ConfigError("MAX_WAITING_REQUESTS must be at least 1")
        # Longest life of one event stream (GET /status/<id>/events): each open stream
        # holds a gunicorn thread (or greenlet) and a Redis connection; clients reconnect.
        self.EVENTS_MAX_SECONDS = _float(environ, "EVENTS_MAX_SECONDS", 300.0)
        # Seconds between heartbeats of an idle stream: proxies keep it, dead clients are noticed.
        self.EVENTS_HEARTBEAT_SECONDS = _float(environ, "EVENTS_HEARTBEAT_SECONDS", 15.0)
        if self.EVENTS_MAX_SECONDS <= 0 or self.EVENTS_HEARTBEAT_SECONDS <= 0:
            raise ConfigError("EVENTS_MAX_SECONDS and EVENTS_HEARTBEAT_SECONDS must be positive numbers of seconds")
        # Where the dashboard links to Flower (flower.sh listens on FLOWER_PORT; set
        # FLOWER_URL when a proxy sits in front).
        self.FLOWER_URL = environ.get("FLOWER_URL") or f"http://127.0.0.1:{environ.get('FLOWER_PORT') or 5555}"
        # Seconds /readyz waits for a worker to answer a ping.
        self.READYZ_PING_TIMEOUT = _float(environ, "READYZ_PING_TIMEOUT", 1.0)
        # Seconds an API process reuses the workers' answer to that ping (backend/ops/health.py:
        # each ping holds a thread for the whole timeout); 0 pings on every call.
        self.READYZ_CACHE_SECONDS = _float(environ, "READYZ_CACHE_SECONDS", 5.0)
        if not 0 <= self.READYZ_CACHE_SECONDS < math.inf:
            raise ConfigError("READYZ_CACHE_SECONDS must be 0 or a positive number of seconds")
        # Seconds between heartbeats sent by celery beat (backend/taskqueue/periodic.py); 0 or "off": none.
        self.HEARTBEAT_INTERVAL = _seconds_or_off(environ, "HEARTBEAT_INTERVAL", 30.0)
        self._check_consistency()
        self.CELERY = self.celery_settings()

    def _check_consistency(self) -> None:
        """Refuse settings that contradict each other, in every environment."""
        # Celery waits out the grace period in a signal handler, blocking the event
        # loop that renews leases (backend/taskqueue/leases.py): the grace must end before
        # a lease could expire, or other workers re-run the tasks still running.
        grace_limit = self.BROKER_VISIBILITY_TIMEOUT * 2 / 3
        if self.WORKER_SOFT_SHUTDOWN_TIMEOUT >= grace_limit:
            raise ConfigError(
                f"WORKER_SOFT_SHUTDOWN_TIMEOUT={self.WORKER_SOFT_SHUTDOWN_TIMEOUT:g} must stay below "
                f"{grace_limit:g} s (two thirds of BROKER_VISIBILITY_TIMEOUT={self.BROKER_VISIBILITY_TIMEOUT})"
            )
        if self.SUBMIT_RATE_LIMIT.strip().lower() not in {"", "off"}:
            try:
                parse_many(self.SUBMIT_RATE_LIMIT)
            except ValueError:
                # Flask-Limiter would only log it on every request and limit nothing.
                raise ConfigError(
                    f"SUBMIT_RATE_LIMIT={self.SUBMIT_RATE_LIMIT!r} is not a rate limit: "
                    'use e.g. "20/second;600/minute", or "off"'
                ) from None

    def celery_settings(self) -> dict[str, Any]:
        """Celery's settings, new-style lowercase names, each with why it has its value."""
        socket_options = {
            "socket_timeout": self.REDIS_SOCKET_TIMEOUT,
            "socket_connect_timeout": self.REDIS_CONNECT_TIMEOUT,
        }
        return {
            "broker_url": self.BROKER_URL,
            # See RESULTS_BACKEND_CLASS and backend/taskqueue/results.py.
            "result_backend": f"{RESULTS_BACKEND_CLASS}+{self.RESULT_BACKEND}",
            # JSON only: a pickle payload in the queue would be code execution.
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "result_accept_content": ["json"],
            # Results expire so Redis memory does not grow without bound.
            "result_expires": self.RESULT_EXPIRES,
            # Not the task's name, args, kwargs and worker again with every state stored: the
            # task record has the name, Flower gets the rest from events, and a client's
            # input need not be copied into every result and progress write.
            "result_extended": False,
            # One result backend (one redis-py pool) per process instead of one per thread,
            # or per request under gevent, whose greenlets count as threads. Safe: nothing
            # in the API waits on a result with AsyncResult.get(), the one unshared part.
            "result_backend_thread_safe": True,
            # Off: the start script that marks the task record started (backend/jobs/records.py)
            # stores and publishes Celery's STARTED state in the same round trip. Celery's own
            # write cost the worker 0.5 ms CPU per no-op task (2.64-2.74 vs 2.0-2.25, make bench).
            "task_track_started": False,
            # Task events feed Flower's live view. Off until a Flower connects: it switches
            # them on in every worker it sees (its enable_events option, every 5 s), and they
            # stay on until that worker restarts, so make run and compose, which run Flower,
            # send them. On, the worker ran 0.83-0.86x of Celery's defaults instead of 1.03-1.10x.
            "worker_send_task_events": False,
            # The sent-event costs the API a PUBLISH and 0.45 ms CPU per submit (HTTP submits
            # 675-775/s with it, 990-1,030/s without); without it Flower lists a task once a
            # worker has received it, not while it is queued (GET /status knows either way).
            "task_send_sent_event": False,
            # Ack after the task ends and requeue it if its worker process dies:
            # a crash or deploy mid-task does not lose the task.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            # Long tasks: a worker reserves one message at a time, so queued work
            # is not stuck behind a busy worker while another one is idle. A worker that
            # runs only short tasks (its own queue) may reserve more with
            # CELERY_PREFETCH_MULTIPLIER=4 (celery_worker.sh): on no-op tasks, 4 instead of 1
            # took it from 0.6-0.8x to 1.0x of Celery's defaults (make bench). Still late acks:
            # reserved messages are leased like running ones and come back if the worker dies.
            "worker_prefetch_multiplier": 1,
            # A runaway task is killed after an hour (see LONG_TASK_TIME_LIMIT).
            "task_time_limit": LONG_TASK_TIME_LIMIT,
            "task_soft_time_limit": LONG_TASK_SOFT_TIME_LIMIT,
            # On a broker reconnect with late acks, unacked messages come back; cancel
            # the running copies instead of letting them run twice.
            "worker_cancel_long_running_tasks_on_connection_loss": True,
            # SIGTERM (with REMAP_SIGTERM=SIGQUIT, set by celery_worker.sh) waits this
            # long when tasks are running, then requeues them: a deploy loses nothing
            # and does not wait for an hour-long task. An idle worker stops at once.
            "worker_soft_shutdown_timeout": self.WORKER_SOFT_SHUTDOWN_TIMEOUT,
            "worker_enable_soft_shutdown_on_idle": False,
            # Reconnect within a second of Redis coming back; a deploy's requeue is
            # not a death (backend/taskqueue/consumer.py).
            "worker_consumer": "backend.taskqueue.consumer:JobsConsumer",
            # Never give up on the broker: kombu counts attempts, not time, so at 1 s apart
            # the default 100 would make every worker exit after ~100 s of Redis outage.
            "broker_connection_max_retries": None,
            # Keep retrying the broker when a worker starts before Redis is up.
            "broker_connection_retry_on_startup": True,
            # Bounded connect and publish retries: a submit during an outage fails fast.
            "broker_connection_timeout": self.REDIS_CONNECT_TIMEOUT,
            "broker_pool_acquire_timeout": self.REDIS_SOCKET_TIMEOUT,
            # A broker connection for every gunicorn thread (Celery's default is 10): with 16
            # threads, concurrent submits beyond 10 would wait for one and time out as a 503.
            "broker_pool_limit": max(10, self.GUNICORN_THREADS),
            # Publish once: every kombu retry reconnects, and on a hung Redis each reconnect
            # waits out the socket timeout (2 retries: 8 s, kombu#1024). The client gets a
            # 503 with Retry-After; redis-py already replaces stale pooled connections.
            "task_publish_retry_policy": {"max_retries": 0},
            "broker_transport_options": {
                # Redelivery of a message whose worker stopped renewing its lease.
                "visibility_timeout": self.BROKER_VISIBILITY_TIMEOUT,
                "unacked_restore_interval": UNACKED_RESTORE_INTERVAL,
                "unacked_restore_throttle": 1,
                **socket_options,
            },
            "redis_socket_timeout": self.REDIS_SOCKET_TIMEOUT,
            "redis_socket_connect_timeout": self.REDIS_CONNECT_TIMEOUT,
            "redis_retry_on_timeout": False,
            # Tasks stay in their queue when routed to one that does not exist yet.
            "task_create_missing_queues": True,
            # Every worker knows every task by name: the public ones and those beat sends.
            "imports": self.TASK_MODULES,
            "beat_schedule": self.beat_schedule(),
        }

    def beat_schedule(self) -> dict[str, Any]:
        """What celery beat sends (one beat per deployment); empty when HEARTBEAT_INTERVAL is off."""
        if not self.HEARTBEAT_INTERVAL:
            return {}
        return {
            "heartbeat": {
                "task": "periodic.heartbeat",
                "schedule": self.HEARTBEAT_INTERVAL,
                # A heartbeat still queued when the next is due is worthless: those sent
                # while no worker ran are dropped on delivery, not run in a burst.
                "options": {"expires": self.HEARTBEAT_INTERVAL},
            },
        }

    def validate(self) -> None:
        """Refuse settings that are unsafe for this environment."""

    def to_flask(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in dir(self) if name.isupper()}


class DevelopmentConfig(BaseConfig):
    ENV_NAME = "development"


class TestingConfig(BaseConfig):
    ENV_NAME = "testing"
    TESTING = True
    # Tests submit in bursts from one address; the rate-limit tests turn it on.
    SUBMIT_RATE_LIMIT = "off"


class ProductionConfig(BaseConfig):
    ENV_NAME = "production"

    def validate(self) -> None:
        problems = []
        if self.SECRET_KEY == DEFAULT_SECRET_KEY or len(self.SECRET_KEY) < 32:
            problems.append(
                "SECRET_KEY is unset or the development default: set SECRET_KEY to a random "
                'value of at least 32 characters (python -c "import secrets; print(secrets.token_hex(32))")'
            )
        if self.DEBUG:
            problems.append("FLASK_DEBUG is on: unset FLASK_DEBUG (the debugger runs code for anyone)")
        if not self.API_TOKENS:
            problems.append(
                "API_TOKENS is unset: set API_TOKENS to one or more random tokens, comma-separated "
                "(clients send Authorization: Bearer <token>)"
            )
        elif any(len(token) < 32 for token in self.API_TOKENS):
            problems.append("API_TOKENS has a token shorter than 32 characters: use random tokens (secrets.token_hex(32))")
        user, _, password = self.FLOWER_BASIC_AUTH.partition(":")
        if not user or not password:
            problems.append(
                "FLOWER_BASIC_AUTH is unset: set FLOWER_BASIC_AUTH=user:password "
                "(Flower can revoke tasks and shut down workers)"
            )
        if problems:
            raise ConfigError("refusing to start in production:\n  - " + "\n  - ".join(problems))


CONFIG_CLASSES: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def read_environment(environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None) -> dict[str, str]:
    """The process environment over the project's `.env` file (if any)."""
    path = dotenv_path or PROJECT_ROOT / ".env"
    values = {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}
    values.update(os.environ if environ is None else environ)
    return values


def load_config(environ: Mapping[str, str] | None = None) -> BaseConfig:
    """Build and validate the config named by APP_ENV (default: development)."""
    values = read_environment() if environ is None else dict(environ)
    name = values.get("APP_ENV") or "development"
    try:
        config_class = CONFIG_CLASSES[name]
    except KeyError:
        raise ConfigError(f"APP_ENV={name!r} is not one of {', '.join(CONFIG_CLASSES)}") from None
    config = config_class(values)
    config.validate()
    return config
