"""`make bench`: measure the service against the limits beneath it, in one run.

    .venv/bin/python -m bench            # the full run (about 10 minutes on 2 cores)
    .venv/bin/python -m bench --quick    # a few hundred tasks, for the smoke test
    .venv/bin/python -m bench --set GUNICORN_THREADS=8   # try a setting of the environment
  .venv/bin/python -m bench --celery task_send_sent_event=false   # try a Celery setting

Phases, on one private stack (bench/stack.py), in this order:
  1. Redis: an LPUSH loop on one connection (ops/s, round trip).
  2. Submits, no worker running, each repeated and the median kept: raw apply_async from
     1 process and from as many processes as gunicorn has workers, then POST /tasks/noop
     through gunicorn from the load generator (separate processes, devtools/loadgen.py): to
     the API, and to a second gunicorn serving only apply_async (bench/floor_app.py); and
     the same submits to and from the tree before the job index (bench/baseline.py).
  3. Worker throughput draining queued noops, in rounds: our worker (./celery_worker.sh),
     the baseline tree's, and a worker with Celery's defaults (bench/defaults_app.py),
     same concurrency.
  4. End-to-end latency of a noop over HTTP (submit, then GET /status until it ended)
     beside apply_async().get(), interleaved.
  5. GET /status/<id> rate on finished tasks.
  6. Redis memory per retained finished job: real add jobs over HTTP, run by our worker
     (bench/retention.py).
  7. Resident memory of the API and worker processes.
  8. GET /jobs with 100,000 then 1,000,000 retained jobs seeded into a Redis of its own,
     after the stack has stopped (bench/history.py, bench/seed.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench import baseline, history, measure, report, retention, schedule
from bench.app import SETTINGS_VARIABLE
from bench.measure import Settings
from bench.stack import API_DB, DEFAULTS_DB, SHORT_TASK_PREFETCH, BenchError, BenchStack
from config import load_config
from devtools.processes import PROJECT_ROOT

FULL = dict(seconds=5.0, warmup=1.0, repeat=3, latency_samples=300, latency_warmup=30, worker_tasks=4000,
            memory_jobs=10_000, schedule_jobs=schedule.JOBS, history_jobs=(100_000, 1_000_000),
            history_repetitions=300, history_warmup=20)
# Other processes using less than this many cores leave the machine "quiet".
QUIET_CORES = 0.15
QUICK = dict(seconds=0.5, warmup=0.2, repeat=1, latency_samples=20, latency_warmup=3, worker_tasks=200,
             memory_jobs=200, schedule_jobs=2_000, history_jobs=(2_000,), history_repetitions=5, history_warmup=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (the smoke test's): a few hundred tasks")
    parser.add_argument("--seconds", type=float, help=f"measured window of each rate (default {FULL['seconds']:g})")
    parser.add_argument("--warmup", type=float, help=f"warm-up before each rate window (default {FULL['warmup']:g})")
    parser.add_argument("--repeat", type=int, help=f"runs of each rate; the median is kept (default {FULL['repeat']})")
    parser.add_argument("--latency-samples", type=int,
                        help=f"end-to-end samples of each kind (default {FULL['latency_samples']})")
    parser.add_argument("--worker-tasks", type=int, help=f"tasks each worker drains (default {FULL['worker_tasks']})")
    parser.add_argument("--memory-jobs", type=int,
                        help=f"real add jobs whose Redis memory is measured (default {FULL['memory_jobs']:,})")
    parser.add_argument("--schedule-jobs", type=int,
                        help=f"jobs scheduled due at once, moved by our worker (default {FULL['schedule_jobs']:,})")
    parser.add_argument("--history-jobs", type=lambda text: tuple(int(part) for part in text.split(",")),
                        metavar="N[,N...]", help="retained jobs seeded for GET /jobs, in increasing order "
                        f"(default {','.join(str(n) for n in FULL['history_jobs'])}; 0 skips the phase)")
    parser.add_argument("--history-repetitions", type=int,
                        help=f"timed requests per GET /jobs listing (default {FULL['history_repetitions']})")
    parser.add_argument("--baseline-ref", default=baseline.BENCH_BASELINE_REF,
                        help="the commit submits and workers are compared with, side by side "
                             f"(default {baseline.BENCH_BASELINE_REF}, the last before the job index)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the side-by-side run of --baseline-ref")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="pool processes of both workers (default 2)")
    parser.add_argument("--http-processes", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--http-connections", type=int, default=16,
                        help="keep-alive connections of the load generator, in all (default 16)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the API and our worker (e.g. GUNICORN_THREADS=8); repeatable")
    parser.add_argument("--celery", dest="celery_settings", action="append", default=[], metavar="NAME=JSON",
                        help="a candidate Celery setting for the API, publishers and our worker, e.g. "
                             "task_send_sent_event=false (value parsed as JSON); repeatable")
    parser.add_argument("--wait-quiet", type=float, metavar="SECONDS",
                        help="first wait up to this long for other processes to leave the CPU idle "
                             "(default 120, 0 with --quick); the run goes on, with a warning, if they do not")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results",
                        help="where latest.json and latest.png go (default bench/results)")
    parser.add_argument("--workdir", type=Path, default=PROJECT_ROOT / "var" / "bench",
                        help="Redis data and process logs, emptied first (default var/bench)")
    args = parser.parse_args(argv)
    for setting in args.overrides + args.celery_settings:
        if "=" not in setting:
            parser.error(f"--set and --celery want NAME=VALUE, got {setting!r}")
    if args.history_jobs is not None and list(args.history_jobs) != sorted(args.history_jobs):
        parser.error("--history-jobs wants increasing numbers, e.g. 100000,1000000")
    return args


def picked(args: argparse.Namespace, name: str) -> Any:
    """The option's value, else the mode's default (QUICK or FULL)."""
    value = getattr(args, name, None)
    return value if value is not None else (QUICK if args.quick else FULL)[name]


def celery_settings_from(args: argparse.Namespace) -> dict:
    settings = {}
    for setting in args.celery_settings:
        name, _, raw = setting.partition("=")
        try:
            settings[name] = json.loads(raw)
        except ValueError:
            settings[name] = raw  # a plain string
    return settings


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        seconds=picked(args, "seconds"), warmup=picked(args, "warmup"), repeat=picked(args, "repeat"),
        latency_samples=picked(args, "latency_samples"), latency_warmup=picked(args, "latency_warmup"),
        worker_tasks=picked(args, "worker_tasks"), http_processes=args.http_processes,
        http_connections=args.http_connections,
    )


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def median_of(runs: list[dict]) -> dict:
    """The run with the median rate (all runs are kept in the JSON too)."""
    ordered = sorted(runs, key=lambda run: run["per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs_per_s"] = [run["per_s"] for run in runs]
    return chosen


def wait_for_quiet_machine(limit: float) -> float:
    """Wait up to `limit` s until other processes use under QUIET_CORES; the last load seen."""
    deadline = time.monotonic() + limit
    load = measure.other_load()
    while load >= QUIET_CORES and time.monotonic() < deadline:
        log(f"other processes use {load:.2f} cores: waiting for a quieter machine")
        load = measure.other_load(5.0)
    if load >= QUIET_CORES:
        log(f"WARNING: other processes use {load:.2f} cores; the figures will be lower than this machine can do")
    return load


def run(args: argparse.Namespace) -> dict:
    settings = settings_from(args)
    wait_quiet = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 120.0)
    load_before = wait_for_quiet_machine(wait_quiet)
    speed_before = measure.cpu_speed_ms()
    overrides = dict(setting.split("=", 1) for setting in args.overrides)
    candidates = celery_settings_from(args)
    if candidates:
        overrides[SETTINGS_VARIABLE] = json.dumps(candidates)
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    current = baseline.current_tree()
    older = None
    if not args.no_baseline:
        log(f"exporting {args.baseline_ref} (before the job index) into {args.workdir / 'baseline'}")
        older = baseline.export_tree(args.baseline_ref, args.workdir / "baseline")
    stack = BenchStack(args.workdir, worker_concurrency=args.worker_concurrency, overrides=overrides)
    results: dict = {}
    began = time.monotonic()
    try:
        log(f"starting Redis and the API (logs in {args.workdir})")
        stack.start()
        api_workers = len(stack.api_workers())
        long_poll = measure.supports_long_poll(stack.api_url)
        results["setup"] = {
            "gunicorn_workers": api_workers,
            "gunicorn_threads": stack.gunicorn_threads(),
            "worker_concurrency": args.worker_concurrency,
            "submit_rate_limit": "off",
            "api_tokens": "none (API open)",
            "redis": "private redis-server, appendonly yes, appendfsync everysec (as make run)",
            "redis_version": stack.redis_version(),
            "load_generator": (
                f"devtools/loadgen.py: {settings.http_processes} processes, {settings.http_connections} "
                "keep-alive connections in all, one request in flight each, raw sockets + selectors"
            ),
            "e2e_status_method": "long-poll GET /status/<id>?wait=" if long_poll else "polling GET /status/<id>",
            "ours_worker": ("celery --app bench.worker worker (candidate settings)" if candidates
                            else "./celery_worker.sh --include bench.tasks")
                           + f", prefetch multiplier {SHORT_TASK_PREFETCH} (a short-task worker), late acks",
            "overrides": overrides,
            "other_load_cores_before": load_before,
            "settings": vars(settings),
            "tree": {"commit": current.commit, "changed_files": list(current.changed)},
            "baseline_tree": None if older is None else {"ref": args.baseline_ref, "commit": older.commit},
        }
        log(f"API at {stack.api_url}: {api_workers} gunicorn workers × {stack.gunicorn_threads()} threads, "
            "SUBMIT_RATE_LIMIT=off")
        if current.changed:
            log(f"measuring the working tree of {current.commit[:7]} with changes in {', '.join(current.changed)}")

        log(f"Redis LPUSH loop ({settings.seconds:g} s)")
        results["redis_lpush"] = measure.redis_lpush(stack.url(1), settings)

        clear_api_db = measure.clear_db(stack, API_DB)
        clear_api_db()
        log("starting the floor: gunicorn serving only apply_async (bench/floor_app.py)")
        floor = stack.start_api("api-floor", "bench.floor_app:create_app()")
        kinds = {
            "apply_async_1": lambda: measure.apply_async_rate(stack, 1, settings, current.root),
            "apply_async_n": lambda: measure.apply_async_rate(stack, api_workers, settings, current.root),
            "http_submit": lambda: measure.http_submit_rate(stack, settings),
            "http_floor": lambda: measure.http_submit_rate(stack, settings, floor),
        }
        if older is not None:
            log(f"starting the API of {args.baseline_ref}, the tree before the job index")
            older_api = stack.start_api("api-baseline", "bench.app:create_app()", older.root)
            kinds["apply_async_n_baseline"] = lambda: measure.apply_async_rate(stack, api_workers, settings,
                                                                               older.root)
            kinds["http_submit_baseline"] = lambda: measure.http_submit_rate(stack, settings, older_api)
        runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for round_number in range(settings.repeat):
            # Rotate the order, so no kind always runs first or last.
            order = list(kinds)[round_number % len(kinds):] + list(kinds)[: round_number % len(kinds)]
            for kind in order:
                log(f"submits, round {round_number + 1}/{settings.repeat}: {kind}")
                runs[kind].append(kinds[kind]())
                clear_api_db()
        for kind in kinds:
            results[kind] = median_of(runs[kind])
        stack.stop_service(floor)
        if older is not None:
            stack.stop_service(older_api)

        from bench.defaults_app import make_app as make_defaults_app
        from bench.publishers import fill_queue, load_noop

        ours_noop = load_noop("ours", stack.env(API_DB))
        ours_app = ours_noop.app
        defaults_app = make_defaults_app(stack.url(DEFAULTS_DB))
        workers = {
            "ours": lambda: measure.worker_throughput(
                stack, "ours", ours_app, lambda count: fill_queue("ours", stack.env(API_DB), count), settings),
            "defaults": lambda: measure.worker_throughput(
                stack, "defaults", defaults_app, lambda count: fill_queue("defaults", stack.url(DEFAULTS_DB), count),
                settings),
        }
        if older is not None:
            workers["baseline"] = lambda: measure.worker_throughput(
                stack, "baseline", ours_app,
                lambda count: fill_queue("ours", stack.env(API_DB, root=older.root), count, root=older.root),
                settings, older.root)
        worker_runs: dict[str, list[measure.WorkerRun]] = {kind: [] for kind in workers}
        for round_number in range(settings.repeat):
            order = list(workers)[round_number % len(workers):] + list(workers)[: round_number % len(workers)]
            for kind in order:
                log(f"worker throughput, round {round_number + 1}/{settings.repeat}: {kind}, "
                    f"{settings.worker_tasks} noops, concurrency {args.worker_concurrency}")
                worker_runs[kind].append(workers[kind]())
                stack.stop_service(worker_runs[kind][-1].service)
        # Our worker for the end-to-end and memory phases, started once every throughput run is done.
        ours_service, ours_hostname = measure.idle_worker(stack, "ours", ours_app)
        measure.consume(ours_app, ours_hostname)
        results["worker_ours"] = median_of([run.result for run in worker_runs["ours"]])
        results["worker_defaults"] = median_of([run.result for run in worker_runs["defaults"]])
        if older is not None:
            results["worker_baseline"] = median_of([run.result for run in worker_runs["baseline"]])
            results["baseline"] = baseline_comparison(runs, worker_runs)

        log(f"end-to-end latency: {settings.latency_samples} noops over HTTP and as many raw round trips")
        e2e_http, e2e_raw, finished_ids = measure.end_to_end(stack.api_url, ours_noop, settings, long_poll)
        results["e2e_http"], results["e2e_raw"] = e2e_http, e2e_raw

        status_runs = []
        for round_number in range(settings.repeat):
            log(f"GET /status/<id>, round {round_number + 1}/{settings.repeat}")
            status_runs.append(measure.status_rate(stack, finished_ids, settings))
        results["status"] = median_of(status_runs)

        memory_client = redis.Redis.from_url(stack.url(API_DB))
        results["retained_memory"] = retention.measure(
            memory_client, stack.api_url, picked(args, "memory_jobs"), clear_api_db, log)
        results["schedule"] = schedule.measure(
            memory_client, load_config(stack.env(API_DB)).RESULT_EXPIRES, ours_service.processes(), clear_api_db, log,
            picked(args, "schedule_jobs"))
        memory_client.close()
        results["rss"] = {
            "api": measure.rss_of(stack.api.processes()),
            "worker_ours": measure.rss_of(ours_service.processes()),
            "worker_celery_defaults": {"total": sum(results["worker_defaults"]["rss_mb"]),
                                       "processes": results["worker_defaults"]["rss_mb"]},
            "redis": measure.rss_of(measure.processes_of([stack.redis.pid])),
        }
        speed_after = measure.cpu_speed_ms()  # before the stack stops: its shutdown is busy
    finally:
        log("stopping the stack")
        stack.stop()
    scales = tuple(jobs for jobs in picked(args, "history_jobs") if jobs > 0)
    if scales:
        env = stack.env(API_DB)
        results["history"] = history.run(
            lambda url: history_app(env, url), history_celery, args.workdir,
            history.Settings(scales, picked(args, "history_repetitions"), picked(args, "history_warmup"),
                             load_config(env).RESULT_EXPIRES),
            measure.summary_ms, log,
        )
    results["elapsed_s"] = time.monotonic() - began
    results["cpu_speed_ms"] = {"before": speed_before, "after": speed_after}
    return results


def baseline_comparison(submits: dict[str, list[dict]], workers: dict[str, list[measure.WorkerRun]]) -> dict:
    """New ÷ baseline of each rate, and of the worker's ratio to Celery's defaults, round by round."""
    rates = {kind: [run["per_s"] for run in submits[kind]] for kind in submits}
    worker = {kind: [run.result["per_s"] for run in workers[kind]] for kind in workers}
    # CPU per operation moves less than a rate when other processes share the machine.
    cpu = {kind: [run["cpu_ms_per_op"] for run in submits[kind]] for kind in submits}
    cpu |= {kind: [run.result["cpu_ms_per_task"] for run in workers[kind]] for kind in workers}
    return {
        "apply_async_n": baseline.compare(rates["apply_async_n"], rates["apply_async_n_baseline"])
        | baseline.compare_cpu(cpu["apply_async_n"], cpu["apply_async_n_baseline"]),
        "http_submit": baseline.compare(rates["http_submit"], rates["http_submit_baseline"])
        | baseline.compare_cpu(cpu["http_submit"], cpu["http_submit_baseline"]),
        "worker": baseline.compare(worker["ours"], worker["baseline"])
        | baseline.compare_cpu(cpu["ours"], cpu["baseline"]),
        # Ours ÷ Celery's defaults of the same round, for each tree: the ratio issue 12 keeps within 10 %.
        "worker_over_defaults": baseline.compare(
            baseline.per_round_ratios(worker["ours"], worker["defaults"]),
            baseline.per_round_ratios(worker["baseline"], worker["defaults"]),
        ),
    }


def history_app(env: dict[str, str], url: str):
    """The API in this process, on the history phase's Redis."""
    from backend import create_app

    return create_app(load_config({**env, "REDIS_URL": url, "BROKER_URL": url, "RESULT_BACKEND": url}))


def history_celery(app):
    from backend.jobs import extensions

    return extensions.celery_app(app)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the stack (in sessions of its own) is stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        results = run(args)
    except (BenchError, TimeoutError) as error:  # TimeoutError: a part never became ready
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    document = report.document(results, quick=args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = report.write_json(document, args.out / "latest.json")
    png_path = report.draw(document, results, args.out / "latest.png")
    print()
    for line in report.table(document):
        print(line)
    print()
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
