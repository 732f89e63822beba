"""`make bench` cannot rot: its tiny mode runs end to end and writes every figure (issue 4).

Nothing here is timed: a rate or a latency only has to be a positive number. The run
writes to a temporary directory, never over the committed bench/results/latest.*.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import PROJECT_ROOT

pytestmark = [pytest.mark.bench, pytest.mark.e2e]

# The quick run takes about 20 s on 2 cores; this only stops a hung one.
RUN_TIMEOUT_S = 100


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
