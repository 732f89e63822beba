"""The figures tables of docs/performance.md and docs/reliability.md, rendered from
the JSON the measurements write, so a page never shows figures no run produced.

    .venv/bin/python -m devtools.docs_figures           # rewrite the tables
    .venv/bin/python -m devtools.docs_figures --check   # exit 1 if a page is stale

docs/performance.md comes from bench/results/latest.json (`make bench`, committed).
docs/reliability.md comes from docs/figures/reliability.json, a committed snapshot of
var/reliability/figures.json, which the reliability suite writes at the end of a run
(tests/reliability/figures.py) and which git ignores. Rewriting first copies a newer,
complete run from var/ to the snapshot; a partial run (`-k` on one test file) or an
older one never replaces it.

Each table sits between `<!-- figures:<page>:start -->` and `<!-- figures:<page>:end -->`;
only the text between the markers is rewritten. The number formats are those of
`make bench` (bench/report.py) and of the suite's printed table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools.redis_server import find_redis_server
from devtools.tables import aligned_table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMMAND = ".venv/bin/python -m devtools.docs_figures"
# The fields of one figure, as tests/reliability/figures.py writes them.
FIGURE_FIELDS = ("area", "name", "value", "unit", "target", "met")


class DocsFiguresError(RuntimeError):
    """A page or a JSON file cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Paths:
    """Where the pages and their JSON live under one project root (tests use a copy)."""

    root: Path

    @property
    def performance_page(self) -> Path:
        return self.root / "docs" / "performance.md"

    @property
    def bench_json(self) -> Path:
        return self.root / "bench" / "results" / "latest.json"

    @property
    def capacity_page(self) -> Path:
        return self.root / "docs" / "capacity.md"

    @property
    def reliability_page(self) -> Path:
        return self.root / "docs" / "reliability.md"

    @property
    def reliability_run(self) -> Path:
        return self.root / "var" / "reliability" / "figures.json"

    @property
    def reliability_snapshot(self) -> Path:
        return self.root / "docs" / "figures" / "reliability.json"

    def relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


# --- formatting ------------------------------------------------------------------------


def bench_number(value: float | None, digits: int = 0) -> str:
    """bench/report.py's format: thousands separators, a dash for a missing value."""
    return "—" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def figure_value(value: float) -> str:
    """tests/reliability/figures.py's format: no decimals for whole numbers, else two."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _cell(text: str) -> str:
    # `GET /status/<id>` would be read as an HTML tag and vanish; a pipe would end the cell.
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", text).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table padded to aligned columns, as the printed tables are."""
    return aligned_table([_cell(cell) for cell in header], [[_cell(cell) for cell in row] for row in rows])


def _when(iso: str) -> str:
    """'2026-11-21 09:15 UTC' from an ISO timestamp."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# --- docs/performance.md -----------------------------------------------------------------


def _latency(summary: dict[str, float]) -> str:
    return " / ".join(f"{p} {bench_number(summary[p], 2)}" for p in ("p50", "p90", "p99")) + " ms"


def _cpu(per_op: dict[str, float]) -> str:
    return ", ".join(f"{role} {bench_number(ms, 3)}" for role, ms in per_op.items()) + " ms CPU per op"


def _ratio_rows(ratios: dict[str, float], n: int) -> list[tuple[str, float]]:
    return [
        (f"HTTP submit ÷ raw apply_async, {n} processes", ratios["http_submit_over_apply_async_same_processes"]),
        ("HTTP submit ÷ raw apply_async, 1 process", ratios["http_submit_over_apply_async_1_process"]),
        (f"the floor (gunicorn + apply_async, no Flask) ÷ raw apply_async, {n} processes",
         ratios["http_floor_over_apply_async_same_processes"]),
        ("HTTP submit ÷ the floor", ratios["http_submit_over_http_floor"]),
        ("end-to-end p50 over HTTP ÷ raw apply_async().get()", ratios["e2e_p50_http_over_raw"]),
        ("end-to-end p99 over HTTP ÷ raw apply_async().get()", ratios["e2e_p99_http_over_raw"]),
        ("worker, ours ÷ Celery's defaults", ratios["worker_ours_over_celery_defaults"]),
        ("raw apply_async, 1 process ÷ Redis LPUSH loop", ratios["apply_async_over_redis_lpush"]),
    ]


def render_performance(doc: dict[str, Any]) -> list[str]:
    """The figures of one `make bench` run: its targets, its ratios, its measurements."""
    setup, machine, cpu = doc["setup"], doc["machine"], doc["cpu_ms_per_op"]
    n = doc["apply_async_parallel_processes"]
    libraries = machine["libraries"]
    lines = [
        f"`make bench` run of {_when(doc['generated_at'])} ({doc['mode']} mode): {machine['cores']} cores "
        f"({machine['cpu_model'] or 'unknown CPU'}), Python {machine['python']}, "
        f"{_server(machine.get('redis_server'))}, "
        f"Celery {libraries['celery']}, gunicorn {libraries['gunicorn']} with {setup['gunicorn_workers']} workers × "
        f"{setup['gunicorn_threads']} threads, worker concurrency {setup['worker_concurrency']}; "
        "every process on the one machine.",
        "",
    ]
    lines += markdown_table(
        ("target", "measured", "goal", ""),
        [(t["name"], bench_number(t["measured"], 2), f"{t['op']} {t['target']:g}", "ok" if t["met"] else "MISSED")
         for t in doc["targets"]],
    )
    lines.append("")
    lines += markdown_table(
        ("ratio", "measured"),
        [(label, bench_number(value, 2)) for label, value in _ratio_rows(doc["ratios"], n)],
    )
    rss = doc["rss_mb"]
    per_process = rss["per_process"]
    lines.append("")
    lines += markdown_table(
        ("measurement", "value", "detail"),
        [
            ("Redis LPUSH loop, 1 connection (1 KiB)", f"{bench_number(doc['redis_lpush_per_s'])} ops/s",
             f"round trip {_latency(doc['redis_rtt_ms'])}"),
            ("raw apply_async, 1 process", f"{bench_number(doc['apply_async_per_s'])} jobs/s",
             _cpu(cpu["apply_async_1_process"])),
            (f"raw apply_async, {n} processes", f"{bench_number(doc['apply_async_parallel_per_s'])} jobs/s",
             _cpu(cpu[f"apply_async_{n}_processes"])),
            ("HTTP submit (POST /tasks/noop)", f"{bench_number(doc['http_submit_per_s'])} req/s",
             f"{_latency(doc['http_submit_latency_ms'])}; {_cpu(cpu['http_submit'])}"),
            ("HTTP submit floor: gunicorn + apply_async only", f"{bench_number(doc['http_floor_submit_per_s'])} req/s",
             _cpu(cpu["http_floor"])),
            ("end-to-end no-op over HTTP (?wait= long-poll)", f"p50 {bench_number(doc['e2e_http_ms']['p50'], 2)} ms",
             f"{_latency(doc['e2e_http_ms'])}; mean {bench_number(doc['e2e_http_ms']['mean'], 2)} ms"),
            ("end-to-end raw apply_async().get()", f"p50 {bench_number(doc['e2e_raw_ms']['p50'], 2)} ms",
             f"{_latency(doc['e2e_raw_ms'])}; mean {bench_number(doc['e2e_raw_ms']['mean'], 2)} ms"),
            ("worker, ours", f"{bench_number(doc['worker_tasks_per_s']['ours'])} jobs/s",
             _cpu(cpu["worker_ours"])),
            ("worker, Celery's defaults", f"{bench_number(doc['worker_tasks_per_s']['celery_defaults'])} jobs/s",
             _cpu(cpu["worker_celery_defaults"])),
            ("GET /status/<id> of finished jobs", f"{bench_number(doc['status_req_per_s'])} req/s",
             f"{_latency(doc['status_latency_ms'])}; {_cpu(cpu['status'])}"),
            ("memory (RSS) of the API, all gunicorn processes", f"{bench_number(rss['api'], 1)} MiB",
             " + ".join(bench_number(size, 1) for size in per_process["api"])),
            ("memory (RSS) of our worker, main + pool", f"{bench_number(rss['worker'], 1)} MiB",
             " + ".join(bench_number(size, 1) for size in per_process["worker_ours"])),
            ("memory (RSS) of a worker with Celery's defaults", f"{bench_number(rss['worker_celery_defaults'], 1)} MiB",
             " + ".join(bench_number(size, 1) for size in per_process["worker_celery_defaults"])),
            ("memory (RSS) of Redis", f"{bench_number(rss['redis'], 1)} MiB", ""),
        ],
    )
    settings = setup["settings"]
    lines += [
        "",
        f"Rates are the median of {settings['repeat']} windows of {settings['seconds']:g} s after "
        f"{settings['warmup']:g} s of warm-up; latencies are {settings['latency_samples']} samples of each kind. "
        f"Load generator: {setup['load_generator']}. Our worker: {setup['ours_worker']}.",
    ]
    return lines + _issue_12(doc) + _schedule(doc)


def _schedule(doc: dict[str, Any]) -> list[str]:
    """The server-side schedule's figures, when the run measured them (bench/schedule.py)."""
    if "schedule" not in doc:
        return []
    run = doc["schedule"]
    lateness, rss = run["lateness_ms"], run["worker_rss_mb"]
    return ["", f"Scheduled jobs: {run['jobs']:,} jobs due at one moment, moved to their queue by one worker's "
                f"mover at **{bench_number(run['moved_per_s'])} jobs/s** ({run['left_in_schedule']:,} left behind); "
                f"lateness to the queue p50 {bench_number(lateness['p50'] / 1000, 1)} s, p99 "
                f"{bench_number(lateness['p99'] / 1000, 1)} s (the last of so many at once waits its turn); that "
                f"worker's RSS {bench_number(rss['idle'], 1)} MiB idle and {bench_number(rss['scheduled'], 1)} MiB "
                "with them all scheduled: none of them is in it."]


def _server(version: str | None) -> str:
    """The server as the bench records it: "Valkey 8.1.8", "Redis 6.2.14", or a bare version (older runs: Redis)."""
    return f"Redis {version}" if version and version[0].isdigit() else str(version)


def _p50_p99(summary: dict[str, float]) -> str:
    return f"{bench_number(summary['p50'], 2)} / {bench_number(summary['p99'], 2)} ms"


def _issue_12(doc: dict[str, Any]) -> list[str]:
    """The job index's figures, when the run measured them: submits and workers beside the
    tree before the index, Redis memory per retained job, GET /jobs with a retained history."""
    lines: list[str] = []
    if "baseline" in doc:
        base = doc["baseline"]
        rows: list[tuple[str, ...]] = []
        for key, label, unit, digits in (
            ("http_submit", "HTTP submit (POST /tasks/noop)", "req/s", 0),
            ("apply_async_n", f"raw apply_async, {base['apply_async_processes']} processes", "jobs/s", 0),
            ("worker", "worker, ours", "jobs/s", 0),
            ("worker_over_defaults", "worker, ours ÷ Celery's defaults (same round)", "", 2),
        ):
            compared = base[key]
            cpu = ", ".join(f"{role} {bench_number(ms['current'], 3)} · {bench_number(ms['baseline'], 3)}"
                            for role, ms in compared.get("cpu_ms_per_op", {}).items())
            rows.append((label, f"{bench_number(compared['current'], digits)} {unit}".strip(),
                         f"{bench_number(compared['baseline'], digits)} {unit}".strip(),
                         bench_number(compared["ratio"], 2),
                         " ".join(bench_number(value, digits) for value in compared["current_runs"]) + " · "
                         + " ".join(bench_number(value, digits) for value in compared["baseline_runs"]), cpu))
        lines += ["", f"Beside the tree before the job index, {base['ref']} ({base['commit'][:10]}), run from "
                      "`git archive` in the same rounds (medians):", ""]
        lines += markdown_table(("measurement", "now", "before the index", "now ÷ before", "rounds: now · before",
                                 "CPU ms per op, now · before"), rows)
    if "retained_memory" in doc:
        mem = doc["retained_memory"]
        server = mem["redis_server"]
        lines += ["", f"Redis memory per retained finished `add` job, {mem['jobs']:,} real jobs submitted over HTTP "
                      f"and run by our worker: **{bench_number(mem['bytes_per_job'])} bytes** = record "
                      f"{bench_number(mem['record_bytes'])} + result {bench_number(mem['result_bytes'])} + index "
                      f"entry {bench_number(mem['index_entry_bytes'])} + its share of the key and expiry tables "
                      f"{bench_number(mem['tables_bytes'])} ({bench_number(mem['keys_per_job'], 2)} keys per job), "
                      f"on {server['version']} with the {server['allocator']} allocator."]
    if "history" in doc:
        hist = doc["history"]
        rows = [
            (label, f"{scale['jobs']:,}", f"{case['matched']:,}", str(case["index_sets"]), _p50_p99(case["first_ms"]),
             bench_number(case["first_ms"]["redis_ms"], 2), str(case["deep_page"]), _p50_p99(case["deep_ms"]),
             bench_number(case["deep_ms"]["redis_ms"], 2))
            for scale in hist["scales"] for label, case in scale["cases"].items()
        ]
        seeded = "; ".join(f"{scale['jobs']:,} in {scale['seed_seconds']:.0f} s "
                           f"({bench_number(scale['seeded_bytes_per_job'])} bytes per job, "
                           f"{scale['index_sets']} index sets; other processes used "
                           f"{bench_number(scale['other_load_cores'], 2)} cores while it was timed)"
                           for scale in hist["scales"])
        lines += ["", f"`GET /jobs`, 50 jobs a page: server time p50 / p99 of {hist['repetitions']} requests per "
                      f"page, and the page script's mean time inside Redis; on {hist['redis']}. Seeded: {seeded}.",
                  ""]
        lines += markdown_table(("listing", "jobs", "matched", "index sets", "first page", "in Redis ms",
                                 "deep page", "that page", "in Redis ms"), rows)
    return lines


# --- docs/reliability.md -----------------------------------------------------------------


# What a Redis of each size is planned for: half its memory holds retained jobs, the rest is
# headroom for queued messages, fragmentation and the copy-on-write of an append-only rewrite.
CAPACITY_GIB = (1, 8, 64)
RETAINED_SHARE = 0.5
DEFAULT_RETENTION_S = 86_400


def render_capacity(doc: dict[str, Any]) -> list[str]:
    """Capacity from the bench: memory per retained job, jobs a day per Redis size, and
    the CPU a job costs a worker and Redis (trivial tasks: the service's own overhead)."""
    memory = doc["retained_memory"]
    per_job = memory["bytes_per_job"]
    server = memory["redis_server"]
    cpu = doc["cpu_ms_per_op"]
    worker_ms = cpu["worker_ours"]["worker"]
    redis_ms = cpu["http_submit"]["redis"] + cpu["worker_ours"]["redis"] + cpu["status"]["redis"]
    api_ms = cpu["http_submit"]["api"]
    lines = [
        f"Measured by `make bench` on {_when(doc['generated_at'])}, {server['version']} "
        f"({server['allocator']} malloc), with `RESULT_EXPIRES` at its default of one day.",
        "",
    ]
    lines += markdown_table(
        ["Redis memory", "jobs retained, so jobs a day at a day's retention", "sustained rate"],
        [
            [f"{gib} GiB", bench_number(gib * 2**30 * RETAINED_SHARE / per_job),
             f"{bench_number(gib * 2**30 * RETAINED_SHARE / per_job / DEFAULT_RETENTION_S)} jobs/s"]
            for gib in CAPACITY_GIB
        ],
    )
    lines += [""]
    lines += markdown_table(
        ["cost of one job (a trivial task)", "measured", "so one core does"],
        [
            ["Redis memory while retained (record, result, two index entries)", f"{bench_number(per_job)} bytes",
             "—"],
            ["API CPU per submit over HTTP", f"{bench_number(api_ms, 3)} ms",
             f"{bench_number(1000 / api_ms)} submits/s"],
            ["worker CPU per job, besides the task's own work", f"{bench_number(worker_ms, 3)} ms",
             f"{bench_number(1000 / worker_ms)} jobs/s"],
            ["Redis CPU per job (submit, run, one status read)", f"{bench_number(redis_ms, 3)} ms",
             f"{bench_number(1000 / redis_ms)} jobs/s"],
        ],
    )
    return lines


def render_reliability(snapshot: dict[str, Any]) -> list[str]:
    """The figures of one reliability run, as the suite prints them at its end."""
    figures = snapshot["figures"]
    met = sum(1 for figure in figures if figure["met"])
    machine = snapshot.get("machine") or {}
    where = f" on {machine['cores']} cores, Python {machine['python']}" if machine else ""
    if machine.get("redis_server"):
        where += f", {machine['redis_server']}"
    lines = [
        f"Run of `tests/reliability` finished {_when(snapshot['run_finished_at'])}{where}, every process on "
        f"the one machine: {len(figures)} figures, {met} within their target.",
        "",
    ]
    lines += markdown_table(
        ("area", "figure", "measured", "target", ""),
        [
            (f["area"], f["name"], f"{figure_value(f['value'])} {f['unit']}".strip(), f["target"],
             "ok" if f["met"] else "MISSED")
            for f in figures
        ],
    )
    return lines


def read_figures(path: Path) -> list[dict[str, Any]]:
    """The figures of a run, checked to be what tests/reliability/figures.py writes."""
    try:
        figures = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DocsFiguresError(f"{path}: not a figures file of the reliability suite ({exc})") from None
    if not isinstance(figures, list) or not all(
        isinstance(figure, dict) and set(figure) == set(FIGURE_FIELDS) for figure in figures
    ):
        raise DocsFiguresError(f"{path}: expected a list of figures with the fields {', '.join(FIGURE_FIELDS)}")
    return figures


def read_snapshot(path: Path) -> dict[str, Any]:
    try:
        snapshot: dict[str, Any] = json.loads(path.read_text())
    except OSError:
        raise DocsFiguresError(
            f"{path} is missing: run the reliability suite (make test PYTEST_ARGS=\"-m reliability\"), then {COMMAND}"
        ) from None
    except ValueError as exc:
        raise DocsFiguresError(f"{path}: not JSON ({exc})") from None
    return snapshot


def _server_binary() -> str | None:
    """The server the suite starts (devtools/redis_server.py chooses it), from its --version:
    "Valkey 8.1.8", "Redis 7.2.4"; None when there is none to ask."""
    try:
        output = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True,
                                timeout=10, check=False).stdout
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return None
    found = re.match(r"(\w+) server v=(\S+)", output)
    return f"{found.group(1)} {found.group(2)}" if found else None


def take_snapshot(paths: Paths, run: Path) -> str:
    """Copy the run's figures to the committed snapshot when it is a newer, complete run.

    Returns what was done, for the user. Complete: it covers every area the snapshot
    covers, so a run of one test file (`-k`) never replaces a whole run's figures.
    """
    if not run.is_file():
        shown = paths.relative(paths.reliability_snapshot)
        return f"no reliability run at {paths.relative(run)}: the page shows {shown}"
    figures = read_figures(run)
    finished = datetime.fromtimestamp(run.stat().st_mtime, UTC).isoformat(timespec="seconds")
    current = read_snapshot(paths.reliability_snapshot) if paths.reliability_snapshot.is_file() else None
    if current is not None:
        if finished <= current["run_finished_at"]:
            return (f"{paths.relative(run)} is not newer than {paths.relative(paths.reliability_snapshot)}: "
                    "kept the snapshot")
        missing = {f["area"] for f in current["figures"]} - {f["area"] for f in figures}
        if missing:
            return (f"{paths.relative(run)} lacks the areas {', '.join(sorted(missing))} (a partial run?): kept "
                    f"{paths.relative(paths.reliability_snapshot)}; delete it to take this run anyway")
    snapshot = {
        "about": "A copy of var/reliability/figures.json, which tests/reliability writes at the end of a run "
                 f"(git ignores var/); docs/reliability.md is rendered from it by {COMMAND}.",
        "run_finished_at": finished,
        # Of the machine that took the snapshot: normally the one that ran the suite.
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "redis_server": _server_binary()},
        "figures": figures,
    }
    paths.reliability_snapshot.parent.mkdir(parents=True, exist_ok=True)
    paths.reliability_snapshot.write_text(json.dumps(snapshot, indent=2, ensure_ascii=False) + "\n")
    return f"copied {paths.relative(run)} to {paths.relative(paths.reliability_snapshot)}"


def newer_run(paths: Paths, run: Path) -> str | None:
    """A note when `run` is newer than the snapshot (a check does not take it)."""
    if not run.is_file() or not paths.reliability_snapshot.is_file():
        return None
    finished = datetime.fromtimestamp(run.stat().st_mtime, UTC).isoformat(timespec="seconds")
    if finished <= read_snapshot(paths.reliability_snapshot)["run_finished_at"]:
        return None
    return (f"note: {paths.relative(run)} is newer than {paths.relative(paths.reliability_snapshot)}; "
            f"{COMMAND} takes it if it is a complete run")


# --- the pages ---------------------------------------------------------------------------


def markers(name: str) -> tuple[str, str]:
    return f"<!-- figures:{name}:start -->", f"<!-- figures:{name}:end -->"


def replace_block(text: str, name: str, lines: list[str], source: str) -> str:
    """`text` with everything between the markers of `name` replaced by `lines`."""
    start, end = markers(name)
    found = re.search(re.escape(start) + r"\n.*?" + re.escape(end), text, flags=re.DOTALL)
    if found is None:
        raise DocsFiguresError(f"no {start} … {end} block (each on a line of its own)")
    note = f"<!-- Generated from {source} by `{COMMAND}`: edit neither by hand. -->"
    block = "\n".join([start, note, "", *lines, "", end])
    return text[: found.start()] + block + text[found.end():]


def block(text: str, name: str) -> str | None:
    """The text between the markers of `name`, or None when the page has none."""
    start, end = markers(name)
    found = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, flags=re.DOTALL)
    return None if found is None else found.group(1)


@dataclass(frozen=True)
class Page:
    name: str
    path: Path
    source: Path
    render: Callable[[dict[str, Any]], list[str]]


def pages(paths: Paths) -> list[Page]:
    return [
        Page("performance", paths.performance_page, paths.bench_json, render_performance),
        Page("capacity", paths.capacity_page, paths.bench_json, render_capacity),
        Page("reliability", paths.reliability_page, paths.reliability_snapshot, render_reliability),
    ]


def rendered(paths: Paths, page: Page) -> str:
    """The page's text with its figures rendered from its JSON as it stands."""
    if page.source == paths.reliability_snapshot:
        data = read_snapshot(page.source)
    else:
        try:
            data = json.loads(page.source.read_text())
        except (OSError, ValueError) as exc:
            raise DocsFiguresError(f"{paths.relative(page.source)}: {exc}") from None
    try:
        text = page.path.read_text()
    except OSError as exc:
        raise DocsFiguresError(f"{paths.relative(page.path)}: {exc}") from None
    try:
        return replace_block(text, page.name, page.render(data), paths.relative(page.source))
    except DocsFiguresError as exc:
        raise DocsFiguresError(f"{paths.relative(page.path)}: {exc}") from None


def stale_pages(paths: Paths) -> list[Page]:
    """The pages whose figures differ from their JSON."""
    return [page for page in pages(paths) if rendered(paths, page) != page.path.read_text()]


def main(argv: Sequence[str] | None = None, paths: Paths | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.docs_figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 and name each page whose figures differ from its JSON")
    parser.add_argument("--reliability-from", type=Path, metavar="FIGURES_JSON",
                        help="the reliability run to take (default: var/reliability/figures.json)")
    args = parser.parse_args(argv)
    paths = paths or Paths(PROJECT_ROOT)
    run = args.reliability_from or paths.reliability_run
    try:
        if args.check:
            stale = stale_pages(paths)
            newer = newer_run(paths, run)
            if newer:
                print(newer, file=sys.stderr)
            for page in stale:
                print(f"{paths.relative(page.path)} is stale: its figures differ from "
                      f"{paths.relative(page.source)}; run {COMMAND}", file=sys.stderr)
            return 1 if stale else 0
        print(take_snapshot(paths, run))
        for page in pages(paths):
            text = rendered(paths, page)
            if text != page.path.read_text():
                page.path.write_text(text)
                print(f"rewrote the figures of {paths.relative(page.path)}")
            else:
                print(f"{paths.relative(page.path)} is up to date")
    except DocsFiguresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
