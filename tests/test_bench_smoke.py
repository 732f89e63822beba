"""`make bench` cannot rot: its tiny mode runs end to end and writes every figure (issues 4
and 12): the tree before the job index run beside this one, real jobs' Redis memory, and
GET /jobs against 2,000 seeded jobs.

Nothing here is timed: a rate or a latency only has to be a positive number. The run
writes to a temporary directory, never over the committed bench/results/latest.*.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.baseline import BENCH_BASELINE_REF
from tests.helpers import PROJECT_ROOT

pytestmark = [pytest.mark.bench, pytest.mark.e2e]

# The quick run takes about 45 s on 2 cores (a minute when the machine is shared); this only stops a hung one.
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Run `python -m bench --quick` once; its output directory and printed table."""
    base = tmp_path_factory.mktemp("bench")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--out", str(base / "results"), "--workdir", str(base / "work")],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()  # the harness stops its stack on SIGTERM
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"the quick benchmark did not finish within {RUN_TIMEOUT_S} s:\n{output[-4000:]}")
    assert process.returncode == 0, output[-4000:]
    return base / "results", output


@pytest.fixture(scope="module")
def figures(quick_run):
    results, _ = quick_run
    return json.loads((results / "latest.json").read_text())


def test_quick_bench_reports_every_rate(figures):
    for key in ("redis_lpush_per_s", "apply_async_per_s", "http_submit_per_s", "http_floor_submit_per_s",
                "status_req_per_s"):
        assert figures[key] > 0, key
    assert figures["worker_tasks_per_s"]["ours"] > 0
    assert figures["worker_tasks_per_s"]["celery_defaults"] > 0


def test_quick_bench_splits_the_http_submit_ratio_at_the_floor(figures):
    # HTTP submit ÷ raw = (floor ÷ raw) × (HTTP submit ÷ floor): gunicorn's share, then Flask's.
    ratios = figures["ratios"]
    assert ratios["http_floor_over_apply_async_same_processes"] * ratios["http_submit_over_http_floor"] == (
        pytest.approx(ratios["http_submit_over_apply_async_same_processes"])
    )


def test_quick_bench_reports_latency_percentiles_in_order(figures):
    for key in ("e2e_http_ms", "e2e_raw_ms", "redis_rtt_ms"):
        latency = figures[key]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"], key


def test_quick_bench_reports_memory_and_machine(figures):
    assert figures["rss_mb"]["api"] > 0
    assert figures["rss_mb"]["worker"] > 0
    machine = figures["machine"]
    assert machine["cores"] >= 1
    assert machine["python"].startswith("3.")
    assert machine["libraries"]["celery"]
    assert machine["redis_server"]


def test_quick_bench_states_its_conditions_and_targets(figures, quick_run):
    _, output = quick_run
    assert figures["mode"] == "quick"
    assert figures["setup"]["submit_rate_limit"] == "off"
    assert {target["name"] for target in figures["targets"]} and all(
        isinstance(target["met"], bool) for target in figures["targets"]
    )
    assert "| target" in output and "SUBMIT_RATE_LIMIT=off" in output


def test_quick_bench_draws_a_png(quick_run):
    results, _ = quick_run
    assert (results / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_quick_bench_compares_submits_and_workers_with_the_tree_before_the_index(figures, quick_run):
    _, output = quick_run
    baseline = figures["baseline"]
    assert baseline["ref"] == BENCH_BASELINE_REF and baseline["commit"].startswith(BENCH_BASELINE_REF)
    for key in ("http_submit", "apply_async_n", "worker", "worker_over_defaults"):
        compared = baseline[key]
        assert compared["current"] > 0 and compared["baseline"] > 0, key
        assert compared["ratio"] == pytest.approx(compared["current"] / compared["baseline"]), key
    for key in ("http_submit", "apply_async_n", "worker"):
        redis_cpu = baseline[key]["cpu_ms_per_op"]["redis"]
        assert redis_cpu["current"] > 0 and redis_cpu["baseline"] > 0, key
    assert sum("before the job index" in target["name"] for target in figures["targets"]) == 3
    assert "Beside the tree before the job index" in output


def test_quick_bench_measures_the_redis_memory_of_real_finished_jobs(figures):
    memory = figures["retained_memory"]
    assert memory["bytes_per_job"] > 0
    # A finished job is two keys (record and result); its index entry is in a set every job shares.
    assert memory["keys_per_job"] == pytest.approx(2.0, abs=0.05)
    parts = memory["record_bytes"] + memory["result_bytes"] + memory["index_entry_bytes"] + memory["tables_bytes"]
    assert parts == pytest.approx(memory["bytes_per_job"])
    assert memory["redis_server"]["version"] and memory["redis_server"]["allocator"]


def test_quick_bench_seeds_jobs_exactly_as_a_worker_leaves_them(figures):
    seeded, real = figures["history"]["example"], figures["retained_memory"]
    assert seeded["record_fields"] == real["record_fields"]
    assert seeded["meta_keys"] == real["meta_keys"]


def test_quick_bench_lists_the_seeded_jobs_with_every_filter(figures, quick_run):
    _, output = quick_run
    (scale,) = figures["history"]["scales"]
    assert scale["jobs"] == sum(scale["by_state"].values()) == 2000
    cases = scale["cases"]
    assert cases["no filter"]["matched"] == 2000
    assert {case["combination"] for case in cases.values()} == {False, True}
    for label, case in cases.items():
        assert 0 < case["matched"] <= 2000, label
        assert case["index_sets"] >= 1 and case["deep_page"] >= 1, label
        for page in (case["first_ms"], case["deep_ms"]):
            assert 0 < page["p50"] <= page["p99"], label
            assert page["redis_ms"] > 0, label
    listed = [target for target in figures["targets"] if target["name"].startswith("GET /jobs")]
    assert len(listed) == len(cases)
    assert "GET /jobs, 50 jobs a page" in output


def test_quick_bench_moves_scheduled_jobs_with_a_real_worker(figures, quick_run):
    _, output = quick_run
    moved = figures["schedule"]
    assert moved["moved"] == moved["jobs"] == 2000 and moved["left_in_schedule"] == 0
    assert moved["moved_per_s"] > 0 and 0 <= moved["lateness_ms"]["p50"] <= moved["lateness_ms"]["p99"]
    assert moved["worker_rss_ratio"] > 0
    assert sum("scheduled" in target["name"] for target in figures["targets"]) == 2
    assert "scheduled jobs moved per second" in output
