"""Configuration: one class per environment, every value from the environment.

`APP_ENV` picks the class (development, testing, production). Values are read
when a config object is built, never at import time, so tests can build one
from a plain dict. A `.env` file in the project root is read too; the real
environment wins over it.

Every process gets its settings here, parsed and validated once: the app and the
worker (create_app), gunicorn (gunicorn.conf.py), the shell scripts (which run
`python config.py worker|beat|flower` for their command lines) and devtools/.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from dotenv import dotenv_values
from limits import parse_many

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GUNICORN_BIND = "127.0.0.1:5000"
# gunicorn's threads per worker process (GUNICORN_THREADS; gunicorn.conf.py says why 16).
DEFAULT_GUNICORN_THREADS = 16
DEFAULT_FLOWER_PORT = 5555
# Celery's default queue: what celery_worker.sh consumes unless CELERY_QUEUES says otherwise.
DEFAULT_QUEUE = "celery"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# celery_beat.sh's node name: beat answers pings (its health check) but runs no task,
# so /readyz counts no node of this prefix as a worker (backend/ops/health.py).
BEAT_NODE_PREFIX = "celerybeat@"
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
# How far ahead a submit may schedule a job, by default: 30 days.
SCHEDULE_MAX_SECONDS = 30 * 24 * 3600
# Seconds between each worker's sweeps for such messages (kombu's default
# sweep runs every 10 s but scans on every 10th call only, i.e. ~100 s).
UNACKED_RESTORE_INTERVAL = 5
# Celery's "<class>+<url>" form: the Redis result backend, minus a subscription per
# submit, plus the task record's expiry with every state stored (backend/taskqueue/results.py).
RESULTS_BACKEND_CLASS = "backend.taskqueue.results:JobsResultBackend"
# The same through Redis Sentinel, for a sentinel:// RESULT_BACKEND.
SENTINEL_RESULTS_BACKEND_CLASS = "backend.taskqueue.results:JobsSentinelResultBackend"
# The scheme of a Sentinel URL, as kombu and Celery read it: sentinel://host:port;sentinel://host:port/0.
SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_MASTER = "mymaster"
DEFAULT_SENTINEL_PORT = 26379


class ConfigError(RuntimeError):
    """The configuration is unusable; the message says what to set."""


# The spellings a boolean setting accepts (any case); an empty value means the default.
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class RedisLocation:
    """Where one Redis setting points, parsed once: the URL that kombu, Celery and redis-py
    take (with REDIS_PASSWORD filled in), and for a Sentinel URL the sentinels it lists."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()  # empty: a plain redis:// URL
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def through_sentinel(self) -> bool:
        return bool(self.sentinels)


def redis_location(name: str, value: str, password: str | None) -> RedisLocation:
    """`value` of setting `name`: a plain Redis URL, or Sentinel URLs joined by ";", each
    sentinel://[[user]:password@]host[:port][/db] (the password is the Redis server's, as in
    Celery's and kombu's own form). `password` (REDIS_PASSWORD) fills a URL that has none."""
    chunks = [chunk.strip() for chunk in value.split(";")]
    if not any(chunk.lower().startswith(f"{SENTINEL_SCHEME}://") for chunk in chunks):
        if len(chunks) > 1:
            raise ConfigError(f"{name}={value!r}: only sentinel:// URLs may be joined by ';'")
        return RedisLocation(_with_password(value, password))
    sentinels: list[tuple[str, int]] = []
    dbs: set[int] = set()
    username = None
    for chunk in chunks:
        parts = urlsplit(chunk)
        try:
            port = parts.port or DEFAULT_SENTINEL_PORT
        except ValueError:
            port = 0
        path = parts.path.strip("/")
        if parts.scheme.lower() != SENTINEL_SCHEME or not parts.hostname or not port or parts.query or (
            path and not path.isdigit()
        ):
            raise ConfigError(
                f"{name}={value!r} is not a Sentinel URL: use sentinel://host:port;sentinel://host:port/0 "
                "(each sentinel as sentinel://host:port, the database number at the end, once or on each)"
            )
        sentinels.append((parts.hostname, port))
        if path:
            dbs.add(int(path))
        password = unquote(parts.password) if parts.password else password
        username = unquote(parts.username) if parts.username else username
    if len(dbs) > 1:
        raise ConfigError(f"{name}={value!r} names different databases: {sorted(dbs)}")
    db = dbs.pop() if dbs else 0
    credentials = ""
    if password:
        credentials = f"{quote(username or '', safe='')}:{quote(password, safe='')}@"
    # Each URL complete: Celery reads the credentials and the database of the first,
    # kombu the credentials of the first and the database of its own.
    url = ";".join(f"{SENTINEL_SCHEME}://{credentials}{host}:{port}/{db}" for host, port in sentinels)
    return RedisLocation(url, tuple(sentinels), db, username, password)


def _with_password(url: str, password: str | None) -> str:
    """`url` with `password` as its password, unless it has one already."""
    parts = urlsplit(url)
    if not password or parts.password or not parts.hostname:
        return url
    user = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}").geturl()


class Environment:
    """Reads settings from one mapping of variables, each parsed one way and refused
    loudly, naming the variable, when it cannot be parsed. An unset or empty variable
    takes the default (but for `as_set`, where an empty value means something)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values

    def raw(self, name: str) -> str | None:
        """The value, stripped; None when unset or empty."""
        value = (self.values.get(name) or "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        """The value exactly as set (secrets may end in a space); the default when unset or empty."""
        return self.values.get(name) or default

    def as_set(self, name: str, default: str) -> str:
        """The value as set, even empty (GUNICORN_ACCESSLOG= turns the access log off); the default when unset."""
        value = self.values.get(name)
        return default if value is None else value.strip()

    def flag(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() in TRUE_WORDS:
            return True
        if raw.lower() in FALSE_WORDS:
            return False
        raise ConfigError(
            f"{name} must be one of {', '.join(sorted(TRUE_WORDS))} or {', '.join(sorted(FALSE_WORDS))}, "
            f"got {self.values[name]!r}"
        )

    def integer(self, name: str, default: int, minimum: int | None = None) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {self.values[name]!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {self.values[name]!r}") from None

    def seconds_or_off(self, name: str, default: float) -> float:
        """Seconds (>= 0), or 0.0 for "off"."""
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() == "off":
            return 0.0
        try:
            value = float(raw)
            valid = math.isfinite(value) and value >= 0
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(f'{name} must be a number of seconds, or "off", got {self.values[name]!r}')
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.raw(name) or default).lower()
        if value not in choices:
            quoted = " or ".join(f'"{choice}"' for choice in choices)
            raise ConfigError(f"{name} must be {quoted}, got {self.values[name]!r}")
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

    def __init__(self, environ: Mapping[str, str]) -> None:
        env = Environment(environ)
        self.SECRET_KEY = env.text("SECRET_KEY", DEFAULT_SECRET_KEY)
        self.DEBUG = env.flag("FLASK_DEBUG", type(self).DEBUG)
        self._read_redis_locations(env)
        # How long results, progress and task records are kept (seconds).
        self.RESULT_EXPIRES = env.integer("RESULT_EXPIRES", 86400, minimum=1)
        # A job's input is kept with its record for a retry, up to this many bytes of JSON;
        # a larger one is listed but cannot be retried (its status says so).
        self.JOB_INPUT_MAX_BYTES = env.integer("JOB_INPUT_MAX_BYTES", 16 * 1024, minimum=0)
        # Seconds between two trims of the job index by each worker (expired jobs' entries).
        self.JOB_INDEX_TRIM_SECONDS = env.number("JOB_INDEX_TRIM_SECONDS", 10.0)
        if not 0 < self.JOB_INDEX_TRIM_SECONDS < math.inf:
            raise ConfigError("JOB_INDEX_TRIM_SECONDS must be a positive number of seconds")
        # How far ahead a submit may schedule a job (delay_seconds, run_at); beyond: 422.
        self.SCHEDULE_MAX_SECONDS = env.integer("SCHEDULE_MAX_SECONDS", SCHEDULE_MAX_SECONDS, minimum=0)
        # Most jobs one bulk retry or cancel (POST /jobs/retry, /jobs/cancel) acts on.
        self.BULK_ACTION_MAX_JOBS = env.integer("BULK_ACTION_MAX_JOBS", 1000, minimum=1)
        # Seconds before a Redis call gives up: a Redis outage is a fast 503, not a hang.
        self.REDIS_SOCKET_TIMEOUT = env.number("REDIS_SOCKET_TIMEOUT", 2.0)
        self.REDIS_CONNECT_TIMEOUT = env.number("REDIS_CONNECT_TIMEOUT", 1.0)
        # Request bodies above this size are refused with 413.
        self.MAX_CONTENT_LENGTH = env.integer("MAX_CONTENT_LENGTH", 64 * 1024)
        # "json": one JSON object per log line (API and workers) for log shippers; "text" for people.
        self.LOG_FORMAT = env.choice("LOG_FORMAT", "text", ("text", "json"))
        # Bearer tokens the API accepts, comma-separated (two during a rotation).
        # Unset: the API is open (development); production refuses to start without.
        self.API_TOKENS = tuple(t.strip() for t in env.text("API_TOKENS", "").split(",") if t.strip())
        # The clients file: named clients with roles and hashed tokens (docs/clients.md); a
        # relative path is from the project root. Set, the API asks for a token even while
        # the file names no client yet. Unset: no named clients.
        clients_file = env.raw("API_CLIENTS_FILE")
        self.API_CLIENTS_FILE = str(PROJECT_ROOT / clients_file) if clients_file else None
        # How many jobs of one client run at once across all workers (0: no limit); a client's
        # own `max_running` in the clients file overrides it (backend/taskqueue/running_limits.py).
        self.CLIENT_MAX_RUNNING = env.integer("CLIENT_MAX_RUNNING", 0, minimum=0)
        # Submits per client (API token, else address), Flask-Limiter syntax; "off" disables.
        self.SUBMIT_RATE_LIMIT = env.text("SUBMIT_RATE_LIMIT", type(self).SUBMIT_RATE_LIMIT)
        # Behind a reverse proxy, how many X-Forwarded-For hops to trust for the client address.
        self.TRUSTED_PROXY_HOPS = env.integer("TRUSTED_PROXY_HOPS", 0)
        # See BROKER_VISIBILITY_TIMEOUT: a dead worker's task runs again after this.
        self.BROKER_VISIBILITY_TIMEOUT = env.integer("BROKER_VISIBILITY_TIMEOUT", BROKER_VISIBILITY_TIMEOUT)
        # A task whose worker dies this many times in a row (a task that kills it:
        # out of memory, a segfault) ends FAILURE instead of being redelivered forever.
        self.TASK_MAX_DELIVERIES = env.integer("TASK_MAX_DELIVERIES", 3)
        # Seconds a stopping worker (SIGTERM) lets running tasks finish before it
        # puts them back on the queue. Keep it below your supervisor's grace period.
        self.WORKER_SOFT_SHUTDOWN_TIMEOUT = env.number("WORKER_SOFT_SHUTDOWN_TIMEOUT", 8.0)
        # Longest long-poll (GET /status/<id>?wait=): each waiting request holds a
        # gunicorn thread, so this bounds how long a client can keep one.
        self.STATUS_MAX_WAIT = env.number("STATUS_MAX_WAIT", 30.0)
        self._read_gunicorn_settings(env)
        # run.py's development server (flask run reads the same two variables).
        self.FLASK_RUN_HOST = env.text("FLASK_RUN_HOST", "127.0.0.1")
        self.FLASK_RUN_PORT = env.integer("FLASK_RUN_PORT", 5000, minimum=1)
        # Long-polls and event streams one API process lets wait at once (backend/jobs/waiting.py);
        # the next gets a 503. By default gunicorn's threads minus 4 kept for short requests.
        self.MAX_WAITING_REQUESTS = env.integer("MAX_WAITING_REQUESTS", max(1, self.GUNICORN_THREADS - 4), minimum=1)
        # Longest life of one event stream (GET /status/<id>/events): each open stream
        # holds a gunicorn thread (or greenlet) and a Redis connection; clients reconnect.
        self.EVENTS_MAX_SECONDS = env.number("EVENTS_MAX_SECONDS", 300.0)
        # Seconds between heartbeats of an idle stream: proxies keep it, dead clients are noticed.
        self.EVENTS_HEARTBEAT_SECONDS = env.number("EVENTS_HEARTBEAT_SECONDS", 15.0)
        if self.EVENTS_MAX_SECONDS <= 0 or self.EVENTS_HEARTBEAT_SECONDS <= 0:
            raise ConfigError("EVENTS_MAX_SECONDS and EVENTS_HEARTBEAT_SECONDS must be positive numbers of seconds")
        self._read_worker_settings(env)
        self._read_flower_settings(env)
        # Seconds /readyz waits for a worker to answer a ping.
        self.READYZ_PING_TIMEOUT = env.number("READYZ_PING_TIMEOUT", 1.0)
        # Seconds an API process reuses the workers' answer to that ping (backend/ops/health.py:
        # each ping holds a thread for the whole timeout); 0 pings on every call.
        self.READYZ_CACHE_SECONDS = env.number("READYZ_CACHE_SECONDS", 5.0)
        if not 0 <= self.READYZ_CACHE_SECONDS < math.inf:
            raise ConfigError("READYZ_CACHE_SECONDS must be 0 or a positive number of seconds")
        # Seconds between heartbeats sent by celery beat (backend/taskqueue/periodic.py); 0 or "off": none.
        self.HEARTBEAT_INTERVAL = env.seconds_or_off("HEARTBEAT_INTERVAL", 30.0)
        self._check_consistency()
        self.CELERY = self.celery_settings()

    def _read_redis_locations(self, env: Environment) -> None:
        """Where Redis is: one URL, or sentinels and a master name (docs/configuration.md)."""
        # The Redis server's password, for URLs that carry none (plain or Sentinel).
        redis_password = env.values.get("REDIS_PASSWORD") or None
        redis_url = env.text("REDIS_URL", DEFAULT_REDIS_URL)
        locations = {
            name: redis_location(name, env.text(name, redis_url), redis_password)
            for name in ("REDIS_URL", "BROKER_URL", "RESULT_BACKEND")
        }
        self.REDIS_URL = locations["REDIS_URL"].url
        self.BROKER_URL = locations["BROKER_URL"].url
        self.RESULT_BACKEND = locations["RESULT_BACKEND"].url
        # RESULT_BACKEND parsed: what the job records, index, subscriptions, idempotency keys
        # and rate-limit counts connect to (backend/jobs/redis_client.py).
        self.RESULT_BACKEND_LOCATION = locations["RESULT_BACKEND"]
        self.BROKER_LOCATION = locations["BROKER_URL"]
        # The name the sentinels know the master by (their `sentinel monitor <name> ...`).
        self.REDIS_SENTINEL_MASTER = env.text("REDIS_SENTINEL_MASTER", DEFAULT_SENTINEL_MASTER)
        # The sentinels' own password (their requirepass), if they have one.
        self.REDIS_SENTINEL_PASSWORD = env.values.get("REDIS_SENTINEL_PASSWORD") or None
        # Through Sentinel, a submit answers 202 only once a replica has its job (WAIT):
        # a failover then loses no accepted job. Milliseconds a submit waits for that; 0: off.
        self.REDIS_SENTINEL_WAIT_MS = env.integer("REDIS_SENTINEL_WAIT_MS", 500, minimum=0)

    def sentinel_kwargs(self) -> dict[str, Any]:
        """redis-py's Sentinel(sentinel_kwargs=...): how to talk to the sentinels themselves.
        Given explicitly, with the timeouts: Celery's backend passes {} otherwise, which gives
        its sentinel connections no timeout at all."""
        kwargs: dict[str, Any] = {
            "socket_timeout": self.REDIS_SOCKET_TIMEOUT,
            "socket_connect_timeout": self.REDIS_CONNECT_TIMEOUT,
        }
        if self.REDIS_SENTINEL_PASSWORD:
            kwargs["password"] = self.REDIS_SENTINEL_PASSWORD
        return kwargs

    def _sentinel_transport_options(self) -> dict[str, Any]:
        return {"master_name": self.REDIS_SENTINEL_MASTER, "sentinel_kwargs": self.sentinel_kwargs()}

    def _read_gunicorn_settings(self, env: Environment) -> None:
        """gunicorn's settings (gunicorn.conf.py reads them from here)."""
        self.GUNICORN_BIND = env.text("GUNICORN_BIND", DEFAULT_GUNICORN_BIND)
        self.GUNICORN_WORKERS = env.integer("GUNICORN_WORKERS", min(4, multiprocessing.cpu_count()), minimum=1)
        # Threads per gunicorn worker process; also sizes MAX_WAITING_REQUESTS and the
        # broker pool, so all three come from this one value (gunicorn.conf.py explains 16).
        self.GUNICORN_THREADS = env.integer("GUNICORN_THREADS", DEFAULT_GUNICORN_THREADS, minimum=1)
        # No request should take long: Redis calls time out in seconds. A stuck worker is killed.
        self.GUNICORN_TIMEOUT = env.integer("GUNICORN_TIMEOUT", 30, minimum=0)  # 0: gunicorn's "never"
        self.GUNICORN_GRACEFUL_TIMEOUT = env.integer("GUNICORN_GRACEFUL_TIMEOUT", 10, minimum=0)
        # "-" is stdout; set but empty turns the access log off (a proxy in front may keep one).
        self.GUNICORN_ACCESSLOG: str | None = env.as_set("GUNICORN_ACCESSLOG", "-") or None
        self.GUNICORN_LOGLEVEL = env.choice("GUNICORN_LOGLEVEL", "info", LOG_LEVELS)

    def _read_worker_settings(self, env: Environment) -> None:
        """The Celery worker's and beat's own settings (celery_worker.sh, celery_beat.sh)."""
        # Pool processes; unset: one per CPU (Celery's default).
        self.CELERY_CONCURRENCY: int | None = (
            env.integer("CELERY_CONCURRENCY", 0, minimum=1) if env.raw("CELERY_CONCURRENCY") else None
        )
        # Messages a pool process reserves ahead: 1 for long tasks (see worker_prefetch_multiplier).
        # 0 is Celery's "no limit".
        self.CELERY_PREFETCH_MULTIPLIER = env.integer("CELERY_PREFETCH_MULTIPLIER", 1, minimum=0)
        self.CELERY_QUEUES = env.text("CELERY_QUEUES", DEFAULT_QUEUE)
        self.CELERY_LOGLEVEL = env.choice("CELERY_LOGLEVEL", "info", (*LOG_LEVELS, "fatal"))
        # Unique per worker: %h is the host name.
        self.CELERY_HOSTNAME = env.text("CELERY_HOSTNAME", "worker@%h")
        # Beat's state, the last run of each entry; runtime state lives under var/.
        self.CELERY_BEAT_SCHEDULE_FILE = env.text("CELERY_BEAT_SCHEDULE_FILE", "var/beat/celerybeat-schedule")

    def _read_flower_settings(self, env: Environment) -> None:
        self.FLOWER_PORT = env.integer("FLOWER_PORT", DEFAULT_FLOWER_PORT, minimum=1)
        # Keep Flower internal; put a proxy in front of it.
        self.FLOWER_ADDRESS = env.text("FLOWER_ADDRESS", "127.0.0.1")
        # user:password[,user2:password2]; production refuses to start Flower without.
        self.FLOWER_BASIC_AUTH = env.text("FLOWER_BASIC_AUTH", "")
        # Where the dashboard links to Flower; set FLOWER_URL when a proxy sits in front.
        self.FLOWER_URL = env.text("FLOWER_URL", f"http://127.0.0.1:{self.FLOWER_PORT}")

    def command_line(self, program: str) -> list[str]:
        """The arguments of `celery` for celery_worker.sh, celery_beat.sh and flower.sh."""
        app = ["--app", "backend.worker"]
        if program == "worker":
            return [
                *app, "worker",
                "--loglevel", self.CELERY_LOGLEVEL,
                "--queues", self.CELERY_QUEUES,
                "--hostname", self.CELERY_HOSTNAME,
                # Mingle asks the other workers for their revoked ids at startup and waits 1 s for
                # replies. The API's cancel is the job record's flag, not a revoke; only a revoke
                # sent from Flower or `celery control` goes unlearned by a worker that starts after
                # it. Gossip follows every other worker's events: nothing uses it, and once a
                # Flower turns events on, N workers would each process everyone's heartbeats.
                "--without-mingle",
                "--without-gossip",
            ]
        if program == "beat":
            return [
                *app, "beat",
                "--loglevel", self.CELERY_LOGLEVEL,
                "--schedule", self.CELERY_BEAT_SCHEDULE_FILE,
                # Answer `celery inspect ping -d celerybeat@<host>` while the schedule loop
                # ticks: a health check. /readyz knows this name and counts no beat as a worker.
                "--enable-remote-control",
                "--hostname", f"{BEAT_NODE_PREFIX}%h",
            ]
        if program == "flower":
            auth = [f"--basic-auth={self.FLOWER_BASIC_AUTH}"] if self.FLOWER_BASIC_AUTH else []
            return [*app, "flower", f"--port={self.FLOWER_PORT}", f"--address={self.FLOWER_ADDRESS}", *auth]
        raise ConfigError(f"no command line for {program!r}: worker, beat or flower")

    def shell_arguments(self, program: str) -> list[str]:
        """command_line(), for a shell script that reads one argument per line: a value
        with a line break would smuggle in an argument of its own, so it is refused."""
        arguments = self.command_line(program)
        for argument in arguments:
            if "\n" in argument or "\r" in argument:
                raise ConfigError(f"a setting of {program} contains a line break: {argument!r}")
        return arguments

    def _check_consistency(self) -> None:
        """Refuse settings that contradict each other, in every environment."""
        through_sentinel = self.BROKER_LOCATION.through_sentinel
        if through_sentinel and self.REDIS_SENTINEL_WAIT_MS >= self.REDIS_SOCKET_TIMEOUT * 1000:
            # The submit's WAIT would be cut off by the socket timeout: a 503 for every submit.
            raise ConfigError(
                f"REDIS_SENTINEL_WAIT_MS={self.REDIS_SENTINEL_WAIT_MS} must stay below "
                f"REDIS_SOCKET_TIMEOUT={self.REDIS_SOCKET_TIMEOUT:g} s"
            )
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
        backend_class = (
            SENTINEL_RESULTS_BACKEND_CLASS if self.RESULT_BACKEND_LOCATION.through_sentinel else RESULTS_BACKEND_CLASS
        )
        broker_sentinel = self._sentinel_transport_options() if self.BROKER_LOCATION.through_sentinel else {}
        return {
            "broker_url": self.BROKER_URL,
            # See RESULTS_BACKEND_CLASS and backend/taskqueue/results.py.
            "result_backend": f"{backend_class}+{self.RESULT_BACKEND}",
            # Through Sentinel: the master's name and how to reach the sentinels (else unused).
            "result_backend_transport_options": (
                self._sentinel_transport_options() if self.RESULT_BACKEND_LOCATION.through_sentinel else {}
            ),
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
            # Long tasks: by default a worker reserves one message at a time, so queued work
            # is not stuck behind a busy worker while another one is idle. A worker that
            # runs only short tasks (its own queue) may reserve more with
            # CELERY_PREFETCH_MULTIPLIER=4 (docs/performance.md has the figures). Still late acks:
            # reserved messages are leased like running ones and come back if the worker dies.
            "worker_prefetch_multiplier": self.CELERY_PREFETCH_MULTIPLIER,
            # Pool processes (CELERY_CONCURRENCY); None: one per CPU, Celery's default.
            "worker_concurrency": self.CELERY_CONCURRENCY,
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
                # Through Sentinel: which master, and the submit's WAIT (backend/taskqueue/transport.py).
                **broker_sentinel,
                **({"replica_wait_ms": self.REDIS_SENTINEL_WAIT_MS} if broker_sentinel else {}),
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
        if not self.API_TOKENS and not self.API_CLIENTS_FILE:
            problems.append(
                "API_TOKENS and API_CLIENTS_FILE are unset: the API would be open to anyone. Set "
                "API_CLIENTS_FILE and add clients with `flask clients add NAME --role ROLE` "
                "(docs/clients.md), or set API_TOKENS to one or more random tokens, comma-separated"
            )
        elif any(len(token) < 32 for token in self.API_TOKENS):
            problems.append(
                "API_TOKENS has a token shorter than 32 characters: use random tokens (secrets.token_hex(32))"
            )
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


def main(argv: list[str]) -> None:
    """`python config.py worker|beat|flower`: the validated command line of that program,
    one argument per line, for the shell scripts; a configuration error is one line on
    stderr and exit status 1."""
    if len(argv) != 2:
        sys.exit("usage: python config.py worker|beat|flower")
    try:
        config = load_config()
        arguments = config.shell_arguments(argv[1])
    except ConfigError as error:
        sys.exit(f"configuration error: {error}")
    if argv[1] == "beat":
        # Beat creates its schedule file, not the directory; runtime state lives under var/.
        Path(config.CELERY_BEAT_SCHEDULE_FILE).parent.mkdir(parents=True, exist_ok=True)
    print("\n".join(arguments))


if __name__ == "__main__":
    main(sys.argv)
