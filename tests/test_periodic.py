"""Periodic tasks: celery beat (./celery_beat.sh) sends the heartbeat, a worker runs it,
/readyz reports its last run. The end-to-end tests run a real beat and a real worker."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from backend.jobs import extensions
from backend.jobs.records import KEY_PREFIX
from backend.jobs.registry import public_tasks
from backend.ops.health import BEAT_NODE_PREFIX
from backend.taskqueue.periodic import HEARTBEAT_KEY, HEARTBEAT_TASK, last_heartbeat, record_heartbeat
from config import ConfigError, load_config
from devtools.redis_server import free_port
from tests.helpers import BEAT_DB, Process, db_url, launch_worker, service_env, wait_until

# A database of its own: beat's heartbeats must not reach the session worker's (db 0)
# nor the idle one (db 1), whose tests count what is queued there.
TOKEN = "t" * 40
# No worker answers on the idle database: do not wait the default second for one.
NO_WORKER = {"READYZ_PING_TIMEOUT": "0.2"}


# --- configuration ---------------------------------------------------------------------------


def test_the_heartbeat_is_scheduled_every_30_seconds_by_default():
    entry = load_config({}).CELERY["beat_schedule"]["heartbeat"]
    assert entry["task"] == HEARTBEAT_TASK
    assert entry["schedule"] == 30.0


def test_a_heartbeat_expires_when_the_next_one_is_due_so_no_backlog_piles_up():
    entry = load_config({"HEARTBEAT_INTERVAL": "5"}).CELERY["beat_schedule"]["heartbeat"]
    assert entry["schedule"] == 5.0
    assert entry["options"]["expires"] == 5.0


@pytest.mark.parametrize("value", ["off", "OFF", "0"])
def test_heartbeat_interval_off_or_zero_schedules_nothing(value):
    assert load_config({"HEARTBEAT_INTERVAL": value}).CELERY["beat_schedule"] == {}


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_malformed_heartbeat_interval_is_refused_with_its_name(value):
    with pytest.raises(ConfigError, match="HEARTBEAT_INTERVAL"):
        load_config({"HEARTBEAT_INTERVAL": value})


def test_workers_import_the_periodic_tasks():
    assert "backend.taskqueue.periodic" in load_config({}).CELERY["imports"]


# --- the heartbeat is internal ---------------------------------------------------------------


def test_the_heartbeat_is_not_a_public_task(idle_client):
    assert HEARTBEAT_TASK not in public_tasks()
    assert idle_client.post(f"/tasks/{HEARTBEAT_TASK}", json={}).status_code == 404


def test_the_heartbeat_ignores_its_result_and_keeps_no_job_record(idle_app):
    task = extensions.celery_app(idle_app).tasks[HEARTBEAT_TASK]
    assert task.ignore_result is True
    assert task.job_record is False


# --- /readyz without beat --------------------------------------------------------------------


def test_readyz_reports_a_missing_heartbeat_and_names_beat(make_app, idle_redis_url):
    redis.Redis.from_url(idle_redis_url).delete(HEARTBEAT_KEY)
    body = make_app(idle_redis_url, HEARTBEAT_INTERVAL="1", **NO_WORKER).test_client().get("/readyz").get_json()
    assert body["heartbeat"]["ok"] is False
    assert body["heartbeat"]["last_run_at"] is None
    assert "celery beat" in body["heartbeat"]["error"]


def test_a_stale_heartbeat_is_reported_but_does_not_make_readyz_503(make_app, worker_redis_url, worker):
    # db 0 has a worker and never a beat: nothing refreshes this heartbeat behind our back.
    client = redis.Redis.from_url(worker_redis_url)
    record_heartbeat(client, "old-worker@host", ttl_seconds=60, at=time.time() - 100)
    try:
        response = make_app(worker_redis_url, HEARTBEAT_INTERVAL="10").test_client().get("/readyz")
        assert response.status_code == 200
        body = response.get_json()
        assert body["status"] == "ready"
        heartbeat = body["heartbeat"]
        assert heartbeat["ok"] is False
        assert heartbeat["worker"] == "old-worker@host"
        assert 100 <= heartbeat["age_seconds"] < 130
        assert heartbeat["fresh_within_seconds"] == 30
        assert "late" in heartbeat["error"]
    finally:
        client.delete(HEARTBEAT_KEY)


def test_anonymous_callers_see_only_the_heartbeats_ok_flag(make_app, idle_redis_url):
    secured = make_app(idle_redis_url, API_TOKENS=TOKEN, HEARTBEAT_INTERVAL="1", **NO_WORKER).test_client()
    assert secured.get("/readyz").get_json()["heartbeat"] == {"ok": False}
    detailed = secured.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    assert "error" in detailed["heartbeat"]


def test_readyz_says_when_the_heartbeat_is_turned_off(make_app, idle_redis_url):
    body = make_app(idle_redis_url, HEARTBEAT_INTERVAL="off", **NO_WORKER).test_client().get("/readyz").get_json()
    assert body["heartbeat"] == {"ok": True, "schedule": "off"}


def test_readyz_does_not_read_the_heartbeat_while_redis_is_down(make_app):
    client = make_app(f"redis://127.0.0.1:{free_port()}/0").test_client()
    heartbeat = client.get("/readyz").get_json()["heartbeat"]
    assert heartbeat["ok"] is False
    assert "Redis" in heartbeat["error"]


# --- a real beat and a real worker -----------------------------------------------------------


def start_beat(redis_url: str, log_dir, **env: str) -> Process:
    return Process(
        "beat",
        ["./celery_beat.sh"],
        service_env(redis_url, CELERY_BEAT_SCHEDULE_FILE=str(log_dir / "beat" / "schedule"), **env),
        log_dir,
    )


@pytest.fixture(scope="module")
def beat_stack(redis_server, tmp_path_factory):
    """A worker and a beat sending a heartbeat every second, on a database of their own."""
    redis_url = db_url(redis_server, BEAT_DB)
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    client.flushdb()
    log_dir = tmp_path_factory.mktemp("beat")
    worker_process, worker_name = launch_worker(redis_url, log_dir, concurrency=1)
    try:
        beat = start_beat(redis_url, log_dir, HEARTBEAT_INTERVAL="1")
        try:
            def heartbeat_landed():
                assert beat.alive(), f"beat exited:\n{beat.log_tail()}"
                return last_heartbeat(client)

            wait_until(heartbeat_landed, timeout=30, what="the first heartbeat")
            yield {"redis_url": redis_url, "client": client, "worker": worker_name, "beat": beat, "log_dir": log_dir}
        finally:
            beat.stop()
    finally:
        worker_process.stop()
        client.flushdb()


def test_beat_sends_heartbeats_that_record_when_and_on_which_worker_they_ran(beat_stack):
    first = last_heartbeat(beat_stack["client"])
    assert first["hostname"] == beat_stack["worker"]
    assert time.time() - first["at"] < 5
    assert 0 < beat_stack["client"].ttl(HEARTBEAT_KEY) <= 86400
    later = wait_until(
        lambda: (beat := last_heartbeat(beat_stack["client"])) and beat["at"] > first["at"] and beat,
        timeout=10,
        what="the next heartbeat",
    )
    assert later["hostname"] == beat_stack["worker"]


def test_readyz_reports_a_fresh_heartbeat(make_app, beat_stack):
    response = make_app(beat_stack["redis_url"], HEARTBEAT_INTERVAL="1").test_client().get("/readyz")
    assert response.status_code == 200
    heartbeat = response.get_json()["heartbeat"]
    assert heartbeat["ok"] is True
    assert heartbeat["worker"] == beat_stack["worker"]
    assert heartbeat["age_seconds"] <= heartbeat["fresh_within_seconds"] == 3
    assert heartbeat["last_run_at"].endswith("Z")
    assert "error" not in heartbeat


def test_beat_answers_its_health_check_ping_but_is_not_counted_as_a_worker(make_app, beat_stack):
    app = make_app(beat_stack["redis_url"])
    beat_node = f"{BEAT_NODE_PREFIX}{socket.gethostname()}"
    replies = extensions.celery_app(app).control.ping(destination=[beat_node], timeout=2)
    assert replies == [{beat_node: {"ok": "pong"}}]
    assert app.test_client().get("/readyz").get_json()["workers"]["names"] == [beat_stack["worker"]]


def test_heartbeats_leave_no_job_records_and_no_results(beat_stack):
    client = beat_stack["client"]
    assert list(client.scan_iter(f"{KEY_PREFIX}*")) == []
    assert list(client.scan_iter("celery-task-meta-*")) == []


def test_beat_keeps_its_schedule_state_in_the_given_file(beat_stack):
    assert list((beat_stack["log_dir"] / "beat").glob("schedule*"))


def test_beat_stops_cleanly_on_sigterm(idle_redis_url, tmp_path):
    # No schedule: this beat sends nothing into the idle database.
    beat = start_beat(idle_redis_url, tmp_path, HEARTBEAT_INTERVAL="off")
    try:
        wait_until(lambda: "beat: Starting..." in beat.log_path.read_text(), timeout=30, what="beat to start")
    finally:
        beat.stop()
    assert beat.popen.returncode == 0, beat.log_tail()
