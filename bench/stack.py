"""The benchmark's private stack: a Redis, the API under gunicorn, and Celery workers.

Everything listens on free ports and logs into the run's work directory; nothing
touches a developer's Redis or `make run`'s stack. Redis runs as `make run` runs it
(append-only file, fsync every second). Three databases keep the phases apart:
db 0 is the API's and our worker's, db 1 the raw Redis loop's, db 2 the worker with
Celery's defaults.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil
import requests

from bench.app import SETTINGS_VARIABLE
from config import load_config
from devtools.processes import PROJECT_ROOT, Process, wait_until
from devtools.redis_server import RedisServer, free_port

VENV_BIN = Path(sys.executable).parent
API_DB, RAW_DB, DEFAULTS_DB = 0, 1, 2
# Where a worker waits, started but consuming nothing, until the phase begins.
HOLD_QUEUE = "bench.hold"
# CELERY_PREFETCH_MULTIPLIER of our worker: the setting for a worker of short tasks (docs/performance.md).
SHORT_TASK_PREFETCH = 4
# Settings of the children that would point them elsewhere or change what is measured.
STRIPPED = {"REDIS_URL", "BROKER_URL", "RESULT_BACKEND", "APP_ENV", "SECRET_KEY", "API_TOKENS",
            "SUBMIT_RATE_LIMIT", "CELERY_QUEUES", "CELERY_HOSTNAME", "CELERY_CONCURRENCY",
            "CELERY_PREFETCH_MULTIPLIER"}
START_TIMEOUT_S = 60.0
# The `celery` command reads RESULT_BACKEND and BROKER_URL from the environment as its
# --result-backend and --broker options (celery/bin/celery.py, `envvar=`), and an option
# set so wins over the app's configuration in every process of the worker: the bare URL
# would replace config.py's `JobsResultBackend+` one, and the worker would store states
# with Celery's plain Redis backend (no record, no index). Empty, config.py takes
# REDIS_URL for both, this stack's Redis, and the command sees no option.
CELERY_CLI_URLS = {"RESULT_BACKEND": "", "BROKER_URL": ""}


def server_name(info: Mapping[str, object]) -> str:
    """"Redis 6.2.14" or "Valkey 8.1.8" from INFO server (Valkey also answers a redis_version,
    the Redis release it is compatible with)."""
    if info.get("valkey_version"):
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info['redis_version']}"


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says which part failed."""


class Service(Process):
    """A child process of the stack (devtools/processes.py), with what the bench asks of it."""

    url = ""  # where an HTTP service (gunicorn) listens

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with code {self.popen.returncode}:\n{self.log_tail()}")

    def processes(self) -> list[psutil.Process]:
        """The main process and all its descendants (gunicorn workers, Celery's pool)."""
        try:
            main = psutil.Process(self.popen.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def children(self) -> list[psutil.Process]:
        """Its descendants only: gunicorn's workers, Celery's pool."""
        return self.processes()[1:]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU time the processes have used so far."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def rss_mb(processes: list[psutil.Process]) -> list[float]:
    """Resident memory of each process, in MiB."""
    sizes = []
    for process in processes:
        try:
            sizes.append(process.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            pass
    return sizes


class BenchStack:
    """Redis and gunicorn for the whole run; workers started and stopped per phase."""

    def __init__(self, workdir: Path, *, worker_concurrency: int = 2, overrides: Mapping[str, str] | None = None):
        self.workdir = workdir
        self.worker_concurrency = worker_concurrency
        self.overrides = dict(overrides or {})
        self.redis: RedisServer | None = None
        self.api: Service | None = None
        self.api_url = ""
        self.services: list[Service] = []

    def url(self, db: int) -> str:
        assert self.redis is not None
        return f"redis://127.0.0.1:{self.redis.port}/{db}"

    def env(self, db: int = API_DB, *, root: Path | None = None, **extra: str) -> dict[str, str]:
        """A child's environment: this stack's Redis everywhere, the API open, submits unlimited.
        With `root`, another source tree's (bench/baseline.py): its packages first on sys.path.

        The URLs are set explicitly: an unset one would fall back to the project's .env.
        """
        env = {name: value for name, value in os.environ.items() if name not in STRIPPED}
        url = self.url(db)
        env.update(
            APP_ENV="development",
            REDIS_URL=url,
            BROKER_URL=url,
            RESULT_BACKEND=url,
            API_TOKENS="",
            SUBMIT_RATE_LIMIT="off",
            PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
        )
        if root is not None:
            env["PYTHONPATH"] = str(root)
        env.update(self.overrides)
        env.update(extra)
        return env

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(free_port(), self.workdir / "redis", appendonly=True)
        self.redis.start()
        self.api = self.start_api("api", "bench.app:create_app()")
        self.api_url = self.api.url

    def start_api(self, name: str, app: str, root: Path | None = None) -> Service:
        """gunicorn with the project's gunicorn.conf.py serving `app` on a free port, once
        every worker has booted and it answers GET /healthz. With `root`, the gunicorn.conf.py
        and the app of the source tree there."""
        port = free_port()
        api = self._service(
            name,
            [str(VENV_BIN / "gunicorn"), "--config", "gunicorn.conf.py", app],
            self.env(root=root, GUNICORN_BIND=f"127.0.0.1:{port}"),
            root,
        )
        api.url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            api.check_alive()
            try:
                return requests.get(f"{api.url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answers, START_TIMEOUT_S, what=f"{name} to answer /healthz")
        # gunicorn answers as soon as its first worker boots; wait for all of them.
        wait_until(lambda: len(api.children()) >= self.gunicorn_workers_configured(),
                   START_TIMEOUT_S, what=f"every gunicorn worker of {name} to boot")
        return api

    def stop_service(self, service: Service) -> None:
        service.stop()
        self.services.remove(service)

    def redis_version(self) -> str:
        import redis

        client = redis.Redis.from_url(self.url(API_DB))
        try:
            return server_name(client.info("server"))
        finally:
            client.close()

    def _service(self, name: str, argv: list[str], env: Mapping[str, str], root: Path | None = None) -> Service:
        service = Service(name, argv, env, self.workdir, cwd=root or PROJECT_ROOT)
        self.services.append(service)
        return service

    def gunicorn_workers_configured(self) -> int:
        """The number of workers gunicorn.conf.py gives the API in this environment."""
        return load_config(self.env()).GUNICORN_WORKERS

    def gunicorn_threads(self) -> int:
        return load_config(self.env()).GUNICORN_THREADS

    def api_workers(self) -> list[psutil.Process]:
        assert self.api is not None
        return self.api.children()

    def start_worker(self, kind: str, ping: Callable[[str], object], root: Path | None = None) -> tuple[Service, str]:
        """Our worker (./celery_worker.sh) or Celery's defaults, consuming only HOLD_QUEUE,
        returned once it answers a ping; the caller then points it at the real queue.
        With `root`, our worker of the source tree there (bench/baseline.py); `kind` names it."""
        hostname = f"bench-{kind}@localhost"
        # Both the same concurrency and log level (celery_worker.sh's default). Ours runs
        # without mingle and gossip (celery_worker.sh); Celery's defaults keep both.
        if kind != "defaults":
            argv = ["./celery_worker.sh", "--include", "bench.tasks"]
            # The no-op is a short task: measured on the short-task worker docs/performance.md describes
            # (prefetch 4, late acks and leases as always), Celery's default prefetch too.
            env = self.env(API_DB, root=root, CELERY_HOSTNAME=hostname, CELERY_QUEUES=HOLD_QUEUE,
                           CELERY_CONCURRENCY=str(self.worker_concurrency), CELERY_LOGLEVEL="info",
                           CELERY_PREFETCH_MULTIPLIER=str(SHORT_TASK_PREFETCH), **CELERY_CLI_URLS)
            if env.get(SETTINGS_VARIABLE):
                # celery_worker.sh's command, on the app that applies the candidate settings.
                argv = [str(VENV_BIN / "celery"), "--app", "bench.worker", "worker", "--loglevel", "info",
                        "--queues", HOLD_QUEUE, "--hostname", hostname,
                        "--concurrency", str(self.worker_concurrency),
                        "--prefetch-multiplier", str(SHORT_TASK_PREFETCH), "--without-mingle", "--without-gossip"]
                env["REMAP_SIGTERM"] = "SIGQUIT"
        else:
            argv = [str(VENV_BIN / "celery"), "--app", "bench.defaults_app", "worker", "--loglevel", "info",
                    "--queues", HOLD_QUEUE, "--hostname", hostname,
                    "--concurrency", str(self.worker_concurrency)]
            env = self.env(DEFAULTS_DB)
        service = self._service(f"worker-{kind}", argv, env, root)

        def answers() -> object:
            service.check_alive()
            try:
                return ping(hostname)
            except Exception:  # the broker connection of a fresh app may still be warming up
                return False

        wait_until(answers, START_TIMEOUT_S, what=f"worker {hostname} to answer a ping", interval=0.2)
        return service, hostname

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        if self.redis is not None:
            self.redis.stop()
