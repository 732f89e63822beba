"""The benchmark's outputs: the JSON document, the printed table and the PNG."""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psutil

from bench.baseline import MIN_RATIO
from bench.history import DEEP_PAGE
from bench.history import targets as history_targets
from bench.schedule import targets as schedule_targets
from bench.stack import SHORT_TASK_PREFETCH
from devtools.tables import aligned_table

LIBRARIES = ("celery", "kombu", "redis", "hiredis", "billiard", "flask", "werkzeug", "gunicorn",
             "pydantic", "spectree", "flask-limiter")


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
    }


def _percentiles(summary: dict) -> dict:
    keep = ("p50", "p90", "p99", "mean", "n", "method", "status_requests_per_task")
    return {key: summary[key] for key in keep if key in summary}


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def document(results: dict, *, quick: bool) -> dict:
    """The JSON of bench/results/latest.json: headline figures first, then the detail."""
    n = results["apply_async_n"]["processes"]
    http, floor = results["http_submit"]["per_s"], results["http_floor"]["per_s"]
    e2e_http, e2e_raw = results["e2e_http"], results["e2e_raw"]
    ours, defaults = results["worker_ours"]["per_s"], results["worker_defaults"]["per_s"]
    status = results["status"]["per_s"]
    rss = results["rss"]
    ratios = {
        "http_submit_over_apply_async_same_processes": _ratio(http, results["apply_async_n"]["per_s"]),
        "http_submit_over_apply_async_1_process": _ratio(http, results["apply_async_1"]["per_s"]),
        # The ceiling of the ratio above: gunicorn and HTTP with nothing but apply_async behind them.
        "http_floor_over_apply_async_same_processes": _ratio(floor, results["apply_async_n"]["per_s"]),
        # What the Flask layer (routing, validation, hooks, metrics) keeps of that ceiling.
        "http_submit_over_http_floor": _ratio(http, floor),
        "e2e_p50_http_over_raw": _ratio(e2e_http["p50"], e2e_raw["p50"]),
        "e2e_p99_http_over_raw": _ratio(e2e_http["p99"], e2e_raw["p99"]),
        "worker_ours_over_celery_defaults": _ratio(ours, defaults),
        "apply_async_over_redis_lpush": _ratio(results["apply_async_1"]["per_s"], results["redis_lpush"]["per_s"]),
    }
    targets = [
        {"name": f"HTTP submit ≥ 0.7 × raw apply_async ({n} processes)",
         "measured": ratios["http_submit_over_apply_async_same_processes"], "target": 0.7, "op": ">="},
        {"name": "e2e p50 over HTTP ≤ 1.5 × raw Celery round trip",
         "measured": ratios["e2e_p50_http_over_raw"], "target": 1.5, "op": "<="},
        {"name": "worker throughput ours ≥ 1.0 × Celery's defaults",
         "measured": ratios["worker_ours_over_celery_defaults"], "target": 1.0, "op": ">="},
        {"name": "GET /status/<id> ≥ 1,500 req/s", "measured": status, "target": 1500.0, "op": ">="},
    ]
    extra = _issue_12(results, n)
    targets += extra.pop("targets")
    if "schedule" in results:
        extra["schedule"] = results["schedule"]
        targets += schedule_targets(results["schedule"])
    for target in targets:
        value, goal = target["measured"], target["target"]
        target["met"] = bool(value >= goal) if target["op"] == ">=" else bool(value <= goal)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "redis_lpush_per_s": results["redis_lpush"]["per_s"],
        "redis_rtt_ms": results["redis_lpush"]["rtt_ms"],
        "apply_async_per_s": results["apply_async_1"]["per_s"],
        "apply_async_parallel_per_s": results["apply_async_n"]["per_s"],
        "apply_async_parallel_processes": n,
        "http_submit_per_s": http,
        "http_submit_latency_ms": results["http_submit"]["latency_ms"],
        "http_floor_submit_per_s": floor,
        "http_floor_note": "POST through gunicorn (same gunicorn.conf.py) to a bare WSGI callable that only calls "
                           "the product's noop.apply_async() (bench/floor_app.py): no WSGI app can do more here",
        "e2e_http_ms": _percentiles(e2e_http),
        "e2e_raw_ms": _percentiles(e2e_raw),
        "worker_tasks_per_s": {"ours": ours, "celery_defaults": defaults},
        "status_req_per_s": status,
        "status_latency_ms": results["status"]["latency_ms"],
        "rss_mb": {
            "api": rss["api"]["total"],
            "worker": rss["worker_ours"]["total"],
            "worker_celery_defaults": rss["worker_celery_defaults"]["total"],
            "redis": rss["redis"]["total"],
            "per_process": {role: [round(size, 1) for size in value["processes"]] for role, value in rss.items()},
            "note": "sum of each process's RSS (shared pages counted in every process); "
                    "API after the status load, workers after their phases",
        },
        "ratios": ratios,
        "targets": targets,
        "cpu_ms_per_op": {
            "apply_async_1_process": results["apply_async_1"]["cpu_ms_per_op"],
            f"apply_async_{n}_processes": results["apply_async_n"]["cpu_ms_per_op"],
            "http_submit": results["http_submit"]["cpu_ms_per_op"],
            "http_floor": results["http_floor"]["cpu_ms_per_op"],
            "status": results["status"]["cpu_ms_per_op"],
            "worker_ours": results["worker_ours"]["cpu_ms_per_task"],
            "worker_celery_defaults": results["worker_defaults"]["cpu_ms_per_task"],
        },
        "other_load_cores": {
            "redis_lpush": results["redis_lpush"]["machine_load"]["other_cores"],
            "apply_async_1_process": results["apply_async_1"]["machine_load"]["other_cores"],
            f"apply_async_{n}_processes": results["apply_async_n"]["machine_load"]["other_cores"],
            "http_submit": results["http_submit"]["machine_load"]["other_cores"],
            "http_floor": results["http_floor"]["machine_load"]["other_cores"],
            "worker_ours": results["worker_ours"]["machine_load"]["other_cores"],
            "worker_celery_defaults": results["worker_defaults"]["machine_load"]["other_cores"],
            "e2e": e2e_http["machine_load"]["other_cores"],
            "status": results["status"]["machine_load"]["other_cores"],
            "note": "average cores used by processes that are not the benchmark's during each measurement "
                    "(a shared machine); steal per measurement is in the detail",
        },
        "cpu_probe_ms": {
            key: results[source]["machine_load"]["probe_ms"]
            for key, source in (("redis_lpush", "redis_lpush"), ("apply_async_1_process", "apply_async_1"),
                                (f"apply_async_{n}_processes", "apply_async_n"), ("http_submit", "http_submit"),
                                ("http_floor", "http_floor"),
                                ("worker_ours", "worker_ours"), ("worker_celery_defaults", "worker_defaults"),
                                ("status", "status"))
        } | {"e2e": e2e_http["machine_load"]["probe_ms"],
             "note": "the CPU speed probe (ms, lower is faster) just before and just after each measurement: "
                     "a jump means the machine slowed down under the measurement (a neighbour on the host)"},
        "runs_per_s": {
            kind: [round(rate, 1) for rate in results[kind]["runs_per_s"]]
            for kind in ("apply_async_1", "apply_async_n", "http_submit", "http_floor", "status")
        },
        "worker_detail": {"ours": results["worker_ours"], "celery_defaults": results["worker_defaults"]},
        "steal_cores": {
            key: results[source]["machine_load"]["steal_cores"]
            for key, source in (("http_submit", "http_submit"), ("http_floor", "http_floor"),
                                ("apply_async_parallel", "apply_async_n"),
                                ("worker_ours", "worker_ours"), ("worker_celery_defaults", "worker_defaults"),
                                ("status", "status"))
        },
        "machine": machine() | {
            "redis_server": results["setup"].get("redis_version"),
            "python_loop_ms": results["cpu_speed_ms"],
            "python_loop_note": "best of 5 runs of a fixed 200,000-step Python loop, before and after the "
                                "benchmark: compare it when comparing runs (this machine's speed drifts)",
        },
        "setup": results["setup"],
        "elapsed_s": results["elapsed_s"],
    } | extra


def _issue_12(results: dict, n: int) -> dict:
    """The sections of issue 12 the run measured (none with --no-baseline, --history-jobs 0),
    and their targets: submits and workers beside the tree before the job index, Redis
    memory per retained job, GET /jobs with a retained history."""
    sections: dict = {"targets": []}
    if "baseline" in results:
        compared = results["baseline"]
        ref = results["setup"]["baseline_tree"]["ref"]
        sections["baseline"] = {"ref": ref, "commit": results["setup"]["baseline_tree"]["commit"],
                                "apply_async_processes": n} | compared
        for key, label in (("http_submit", "HTTP submit"), ("apply_async_n", f"raw apply_async ({n} processes)"),
                           ("worker_over_defaults", "worker ours ÷ Celery's defaults")):
            sections["targets"].append({"name": f"{label} ≥ {MIN_RATIO:g} × before the job index ({ref})",
                                        "measured": compared[key]["ratio"], "target": MIN_RATIO, "op": ">="})
    if "retained_memory" in results:
        retained = results["retained_memory"]
        sections["retained_memory"] = {key: value for key, value in retained.items() if key != "example"} | {
            "record_fields": retained["example"]["record_fields"], "meta_keys": retained["example"]["meta_keys"],
        }
        sections["targets"].append({"name": "Redis memory per retained finished add job ≤ 1 KiB (bytes)",
                                    "measured": retained["bytes_per_job"], "target": retained["target_bytes"],
                                    "op": "<="})
    if "history" in results:
        sections["history"] = results["history"]
        sections["targets"] += history_targets(results["history"])
    return sections


def _clean(value):
    """JSON has no NaN: write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def write_json(doc: dict, path: Path) -> Path:
    path.write_text(json.dumps(_clean(doc), indent=2, ensure_ascii=False) + "\n")
    return path


def _number(value: float, digits: int = 0) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def _ms(summary: dict) -> str:
    return f"p50 {_number(summary['p50'], 2)} / p90 {_number(summary['p90'], 2)} / p99 {_number(summary['p99'], 2)} ms"


def _cpu(per_op: dict) -> str:
    return ", ".join(f"{role} {_number(ms, 3)}" for role, ms in per_op.items()) + " ms CPU/op"


def table(doc: dict) -> list[str]:
    setup, cpu, n = doc["setup"], doc["cpu_ms_per_op"], doc["apply_async_parallel_processes"]
    load, probe = doc["other_load_cores"], doc["cpu_probe_ms"]

    def busy(key: str) -> str:
        before, after = probe[key]
        return f"{_number(load[key], 2)} · {_number(before, 1)}→{_number(after, 1)}"

    rows = [
        ("Redis LPUSH loop, 1 connection (1 KiB)", f"{_number(doc['redis_lpush_per_s'])} ops/s",
         f"round trip {_ms(doc['redis_rtt_ms'])}", busy("redis_lpush")),
        ("raw apply_async, 1 process", f"{_number(doc['apply_async_per_s'])} tasks/s",
         _cpu(cpu["apply_async_1_process"]), busy("apply_async_1_process")),
        (f"raw apply_async, {n} processes", f"{_number(doc['apply_async_parallel_per_s'])} tasks/s",
         _cpu(cpu[f"apply_async_{n}_processes"]), busy(f"apply_async_{n}_processes")),
        (f"HTTP submit, gunicorn {setup['gunicorn_workers']}×{setup['gunicorn_threads']} threads",
         f"{_number(doc['http_submit_per_s'])} req/s", _ms(doc["http_submit_latency_ms"]), busy("http_submit")),
        ("", "", _cpu(cpu["http_submit"]), ""),
        ("HTTP submit floor: gunicorn + apply_async only", f"{_number(doc['http_floor_submit_per_s'])} req/s",
         "same gunicorn.conf.py, a bare WSGI callable, no Flask (bench/floor_app.py)", busy("http_floor")),
        ("", "", _cpu(cpu["http_floor"]), ""),
        ("e2e noop over HTTP (submit → finished)", f"p50 {_number(doc['e2e_http_ms']['p50'], 2)} ms",
         f"{_ms(doc['e2e_http_ms'])}, {_number(doc['e2e_http_ms'].get('status_requests_per_task'), 1)} status req/task",
         busy("e2e")),
        ("e2e raw apply_async().get()", f"p50 {_number(doc['e2e_raw_ms']['p50'], 2)} ms", _ms(doc["e2e_raw_ms"]),
         busy("e2e")),
        ("worker, ours" + (f" (celery_worker.sh, prefetch {SHORT_TASK_PREFETCH})"
                           if setup["ours_worker"].startswith("./") else " (candidates)"),
         f"{_number(doc['worker_tasks_per_s']['ours'])} tasks/s",
         _cpu(cpu["worker_ours"]), busy("worker_ours")),
        ("worker, Celery's defaults", f"{_number(doc['worker_tasks_per_s']['celery_defaults'])} tasks/s",
         _cpu(cpu["worker_celery_defaults"]), busy("worker_celery_defaults")),
        ("GET /status/<id>", f"{_number(doc['status_req_per_s'])} req/s", _ms(doc["status_latency_ms"]),
         busy("status")),
        ("", "", _cpu(cpu["status"]), ""),
        ("RSS API (gunicorn, all processes)", f"{_number(doc['rss_mb']['api'], 1)} MiB",
         " + ".join(_number(size, 1) for size in doc["rss_mb"]["per_process"]["api"]), ""),
        ("RSS worker, ours (main + pool)", f"{_number(doc['rss_mb']['worker'], 1)} MiB",
         " + ".join(_number(size, 1) for size in doc["rss_mb"]["per_process"]["worker_ours"]), ""),
        ("RSS worker, Celery's defaults", f"{_number(doc['rss_mb']['worker_celery_defaults'], 1)} MiB",
         " + ".join(_number(size, 1) for size in doc["rss_mb"]["per_process"]["worker_celery_defaults"]), ""),
        ("RSS Redis", f"{_number(doc['rss_mb']['redis'], 1)} MiB", "", ""),
    ]
    lines = _grid(("measurement", "value", "detail", "other load · probe ms"), rows)
    lines += _issue_12_tables(doc)
    if "schedule" in doc:
        moved = doc["schedule"]
        lateness = moved["lateness_ms"] or {}
        lines += ["", f"schedule: {moved['jobs']:,} jobs due at once, moved by our worker's mover at "
                  f"{_number(moved['moved_per_s'])}/s; lateness to the queue p50 {_number(lateness.get('p50'))} ms, "
                  f"p99 {_number(lateness.get('p99'))} ms; worker RSS {_number(moved['worker_rss_mb']['idle'], 1)} MiB "
                  f"idle, {_number(moved['worker_rss_mb']['scheduled'], 1)} MiB with them scheduled"]
    lines.append("")
    lines += _grid(
        ("target", "measured", "goal", ""),
        [(t["name"], _number(t["measured"], 2), f"{t['op']} {t['target']:g}", "ok" if t["met"] else "MISSED")
         for t in doc["targets"]],
    )
    ratios = doc["ratios"]
    lines += [
        "",
        f"HTTP submit ratio, split: gunicorn + HTTP alone reach "
        f"{_number(ratios['http_floor_over_apply_async_same_processes'], 2)} × raw apply_async ({n} processes), "
        f"the ceiling of any WSGI app on this machine; the API reaches "
        f"{_number(ratios['http_submit_over_http_floor'], 2)} × that floor",
    ]
    m = doc["machine"]
    lines += [
        "",
        f"machine: {m['cores']} cores ({m['cpu_model'] or 'unknown CPU'}), Python {m['python']}, "
        f"{_server(m.get('redis_server'))}, celery {m['libraries']['celery']}, kombu {m['libraries']['kombu']}, "
        f"redis-py {m['libraries']['redis']}, gunicorn {m['libraries']['gunicorn']}; everything on this machine",
        f"mode: {doc['mode']}; load generator: {setup['load_generator']}",
        f"SUBMIT_RATE_LIMIT=off, API open (no tokens); e2e status via {setup['e2e_status_method']}; "
        f"both workers concurrency {setup['worker_concurrency']}"
        + (f"; overrides {setup['overrides']}" if setup["overrides"] else ""),
        f"CPU speed probe (fixed Python loop): {_number(m['python_loop_ms']['before'], 1)} ms before, "
        f"{_number(m['python_loop_ms']['after'], 1)} ms after; compare it across runs",
        "other load: cores used by processes that are not the benchmark's during the measurement "
        f"(before the run: {_number(setup['other_load_cores_before'], 2)}); probe: the speed probe just "
        "before → just after it (a jump = the host slowed down)",
        f"rates: median of {setup['settings']['repeat']} windows of {setup['settings']['seconds']:g} s "
        f"after {setup['settings']['warmup']:g} s warm-up; took {doc['elapsed_s']:.0f} s",
    ]
    return lines


def _server(version: str | None) -> str:
    """The server as setup records it: "Valkey 8.1.8", "Redis 6.2.14", or a bare version (older runs: Redis)."""
    return f"Redis {version}" if version and version[0].isdigit() else str(version)


def _p50_p99(summary: dict) -> str:
    return f"{_number(summary['p50'], 2)} / {_number(summary['p99'], 2)} ms"


def _issue_12_tables(doc: dict) -> list[str]:
    """Submits and workers beside the tree before the index; memory per job; GET /jobs."""
    lines: list[str] = []
    if "baseline" in doc:
        base = doc["baseline"]
        n = base["apply_async_processes"]
        rows: list[tuple[str, ...]] = []
        for key, label, unit, digits in (
            ("http_submit", "HTTP submit (POST /tasks/noop)", "req/s", 0),
            ("apply_async_n", f"raw apply_async, {n} processes", "jobs/s", 0),
            ("worker", "worker, ours", "jobs/s", 0),
            ("worker_over_defaults", "worker, ours ÷ Celery's defaults (same round)", "", 2),
        ):
            compared = base[key]
            runs = " ".join(_number(value, digits) for value in compared["current_runs"])
            base_runs = " ".join(_number(value, digits) for value in compared["baseline_runs"])
            cpu = ", ".join(f"{role} {_number(ms['current'], 3)} · {_number(ms['baseline'], 3)}"
                            for role, ms in compared.get("cpu_ms_per_op", {}).items())
            rows.append((label, f"{_number(compared['current'], digits)} {unit}".strip(),
                         f"{_number(compared['baseline'], digits)} {unit}".strip(), _number(compared["ratio"], 2),
                         f"{runs} · {base_runs}", cpu))
        lines += ["", f"Beside the tree before the job index, {base['ref']} ({base['commit'][:10]}), same rounds, "
                      "medians:"]
        lines += _grid(("measurement", "now", "before the index", "now ÷ before", "rounds: now · before",
                        "CPU ms/op, now · before"), rows)
    if "retained_memory" in doc:
        mem = doc["retained_memory"]
        server = mem["redis_server"]
        lines += ["", f"Redis memory per retained finished add job ({mem['jobs']:,} real jobs over HTTP, run by our "
                      f"worker): {_number(mem['bytes_per_job'])} bytes = record {_number(mem['record_bytes'])} + "
                      f"result {_number(mem['result_bytes'])} + index entry {_number(mem['index_entry_bytes'])} + "
                      f"key and expiry tables {_number(mem['tables_bytes'])}; {_number(mem['keys_per_job'], 2)} "
                      f"keys per job; {server['version']} ({server['allocator']})"]
    if "history" in doc:
        hist = doc["history"]
        rows = []
        for scale in hist["scales"]:
            for label, case in scale["cases"].items():
                rows.append((label, f"{scale['jobs']:,}", f"{case['matched']:,}", str(case["index_sets"]),
                             _p50_p99(case["first_ms"]), _number(case["first_ms"]["redis_ms"], 2),
                             str(case["deep_page"]), _p50_p99(case["deep_ms"]),
                             _number(case["deep_ms"]["redis_ms"], 2)))
        lines += ["", f"GET /jobs, 50 jobs a page, server time p50 / p99 of {hist['repetitions']} requests each "
                      f"({hist['method']}); {hist['redis']}:"]
        lines += _grid(("listing", "jobs", "matched", "sets", "first page", "in Redis ms", "deep page",
                        f"page {DEEP_PAGE}", "in Redis ms"), rows)
        lines.append("seeded: " + "; ".join(
            f"{scale['jobs']:,} jobs in {scale['seed_seconds']:.1f} s, {_number(scale['seeded_bytes_per_job'])} "
            f"bytes per job, {scale['index_sets']} index sets, other load {_number(scale['other_load_cores'], 2)} "
            "cores while timed" for scale in hist["scales"]))
    return lines


def _grid(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return aligned_table(header, rows)


def draw(doc: dict, results: dict, path: Path) -> Path:
    """Left: the end-to-end latency distribution (CDF); right: throughputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, rates) = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [1, 1.15]})
    for key, label, colour in (("e2e_raw", "raw apply_async().get()", "tab:blue"),
                               ("e2e_http", "HTTP submit → status", "tab:orange")):
        samples = sorted(value * 1000 for value in results[key]["samples_s"])
        if not samples:
            continue
        fractions = [(i + 1) / len(samples) for i in range(len(samples))]
        p50 = doc[f"{key}_ms"]["p50"]
        latency.step(samples, fractions, where="post", color=colour, label=f"{label} (p50 {p50:.2f} ms)")
        latency.axvline(p50, color=colour, linestyle=":", linewidth=1)
    # A rare outlier would squeeze the body of the curves: cut the axis past the larger p99.
    slowest = max(doc["e2e_raw_ms"]["p99"], doc["e2e_http_ms"]["p99"])
    longest = max(max(results[key]["samples_s"], default=0) for key in ("e2e_raw", "e2e_http")) * 1000
    if longest > 1.5 * slowest:
        latency.set_xlim(left=0, right=1.5 * slowest)
        latency.text(0.98, 0.5, f"axis cut at 1.5 × p99;\nslowest sample {longest:.1f} ms", ha="right",
                     transform=latency.transAxes, fontsize=8, color="dimgray")
    latency.set_xlabel("end-to-end latency of a noop task (ms)")
    latency.set_ylabel("fraction of tasks finished")
    latency.set_title("End-to-end latency, one task at a time")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9, frameon=False)

    n = doc["apply_async_parallel_processes"]
    bars = [
        ("Redis LPUSH, 1 connection", doc["redis_lpush_per_s"], "tab:gray"),
        ("apply_async, 1 process", doc["apply_async_per_s"], "tab:blue"),
        (f"apply_async, {n} processes", doc["apply_async_parallel_per_s"], "tab:blue"),
        ("HTTP submit floor (no Flask)", doc["http_floor_submit_per_s"], "tab:purple"),
        ("HTTP submit", doc["http_submit_per_s"], "tab:orange"),
        ("GET /status/<id>", doc["status_req_per_s"], "tab:orange"),
        ("worker, ours", doc["worker_tasks_per_s"]["ours"], "tab:green"),
        ("worker, Celery defaults", doc["worker_tasks_per_s"]["celery_defaults"], "tab:olive"),
    ]
    labels = [label for label, _, _ in bars][::-1]
    values = [value for _, value, _ in bars][::-1]
    rates.barh(labels, values, color=[colour for _, _, colour in bars][::-1])
    rates.set_xlabel("operations per second")
    rates.set_title("Throughput")
    for y, value in enumerate(values):
        rates.text(value, y, f" {value:,.0f}", va="center", fontsize=9)
    rates.set_xlim(left=0, right=max(values) * 1.15)
    rates.grid(True, axis="x", alpha=0.3)
    m = doc["machine"]
    figure.suptitle(
        f"make bench ({doc['mode']}) — {m['cores']} cores, Python {m['python']}, celery {m['libraries']['celery']}, "
        f"everything co-located, {doc['generated_at']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
