"""Retained jobs written straight into Redis, in the format the service writes them, fast.

A seeded job has exactly the keys of a job submitted over the API and run by a worker:

- its record `job:<id>`: the fields JobRecords.new_record gives it, then those the worker's
  start script adds (started_at, attempt, deliveries) or the API's cancel (cancel_requested_at),
  in that order, with the record's expiry;
- Celery's result `celery-task-meta-<id>` for a job a worker took (or the API cancelled): the
  meta the result backend itself builds and encodes (`_get_result_meta`, `encode_result`),
  with the result's expiry; a FAILURE carries the traceback of a real failed run of long_task;
- its index entry, as the record scripts write it: ZADD to `jobs:index:STATE|name|owner`,
  scored by the submit time, and that key in `jobs:index`.

Several task names and owners (each skewed, as real traffic is), mostly SUCCESS with some
FAILURE, REVOKED, QUEUED and STARTED, submit times spread over the retention window (the
unfinished ones in its last minutes). The commands are encoded as RESP here and streamed
over one socket while a thread counts the replies: a million jobs in well under a minute.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import redis
from celery.backends.base import KeyValueStoreBackend

from backend.api.auth import ANONYMOUS, client_id_for
from backend.jobs import states
from backend.jobs.index import INDEX_SETS, TASK_INDEX_SETS, index_key, task_index_key
from backend.jobs.records import CODE_OWNER, KEY_PREFIX, JobRecords
from backend.jobs.timestamps import epoch_iso

# Task names and their share of the jobs: add and long_task are the service's own; the others
# stand for the tasks a deployment adds (the index and the listing never look them up).
NAMES = {"add": 40, "send_email": 20, "long_task": 15, "resize_image": 12, "generate_report": 8, "sync_account": 5}
# Owners and their share: the API without tokens, the operator CLI, code (.delay(), beat),
# and five API clients with tokens (client ids as backend/api/auth.py makes them).
OWNERS = {ANONYMOUS: 25, CODE_OWNER: 25, "cli": 10} | {
    client_id_for(f"bench-client-{number}"): share for number, share in enumerate((15, 10, 8, 5, 2), start=1)
}
# Final states over the whole window; unfinished jobs are the newest (see UNFINISHED_WINDOW_S).
FINISHED = {states.SUCCESS: 91, states.FAILURE: 5, states.REVOKED: 2}
UNFINISHED = {states.QUEUED: 1.5, states.STARTED: 0.5}
# Queued and running jobs were submitted in the window's last ten minutes: a backlog, not old jobs.
UNFINISHED_WINDOW_S = 600.0
# A finished job ran for about this long after its submit (seconds; the record says when it started).
RUN_SECONDS = (0.005, 2.0)
# Jobs per RESP batch: about 400 KB on the socket.
BATCH = 1000
# Celery's key of a job's result is this prefix and the id (the result backend's get_key_for_task).
RESULT_PREFIX: str = KeyValueStoreBackend.task_keyprefix
SENTINEL_ID, SENTINEL_DATE, SENTINEL_RESULT = "@@task_id@@", "@@date_done@@", "@@result@@"


def _inputs(name: str, rng: random.Random) -> tuple[dict[str, Any], Any]:
    """A job's input (as the API stores it after validation) and its return value."""
    if name == "add":
        x, y = float(rng.randint(-1000, 1000)), round(rng.uniform(-1000, 1000), 2)
        return {"x": x, "y": y}, x + y
    if name == "long_task":
        steps = rng.choice((5, 10, 20, 60))
        return ({"steps": steps, "step_seconds": 1.0, "fail_at_step": None},
                {"steps": steps, "message": f"completed {steps} steps"})
    if name == "send_email":
        return ({"to": f"user{rng.randint(1, 99999)}@example.com", "template": rng.choice(("welcome", "receipt"))},
                {"message_id": uuid.UUID(int=rng.getrandbits(128)).hex})
    if name == "resize_image":
        width = rng.choice((128, 512, 1024))
        return ({"url": f"https://images.example.com/{rng.getrandbits(48):012x}.jpg", "width": width},
                {"url": f"https://cdn.example.com/{rng.getrandbits(48):012x}-{width}.webp",
                 "bytes": rng.randint(1, 99999)})
    if name == "generate_report":
        return ({"account_id": rng.randint(1, 5000), "month": f"2026-{rng.randint(1, 12):02d}"},
                {"rows": rng.randint(0, 9999)})
    return {"account_id": rng.randint(1, 5000), "full": rng.random() < 0.1}, {"changed": rng.randint(0, 50)}


class MetaTemplates:
    """Celery's meta for each state, as the result backend builds and encodes it, with the
    task id, the finish time and the return value left as placeholders (filled per job)."""

    def __init__(self, celery: Any, worker_hostname: str = "worker@bench") -> None:
        backend = celery.backend
        # What a worker stores has its task's request: children [] (None without a request).
        in_worker = SimpleNamespace(children=[], group=None, parent_id=None, chord=None)
        self._templates: dict[str, list[str]] = {}
        failure = celery.tasks["long_task"].apply(kwargs={"steps": 1, "step_seconds": 0, "fail_at_step": 1})
        self.failure_exc_type = type(failure.result).__name__
        for state, result, traceback, request in (
            (states.SUCCESS, SENTINEL_RESULT, None, in_worker),
            (states.FAILURE, backend.encode_result(failure.result, states.FAILURE), failure.traceback, in_worker),
            # The API's cancel of a queued job: mark_as_revoked without a request (service.cancel).
            (states.REVOKED, backend.encode_result(_revoked(), states.REVOKED), None, None),
        ):
            meta = backend._get_result_meta(result=result, state=state, traceback=traceback, request=request)
            meta["date_done"] = SENTINEL_DATE
            meta["task_id"] = SENTINEL_ID
            self._templates[state] = _split(backend.encode(meta))
        # The STARTED meta the worker's start script stores (RecordedTask._started_state).
        started = {"status": states.STARTED, "result": {"pid": 4242, "hostname": worker_hostname},
                   "traceback": None, "children": [], "date_done": None, "task_id": SENTINEL_ID}
        self._templates[states.STARTED] = _split(json.dumps(started))

    def meta(self, state: str, job_id: str, done_at: float, result: Any) -> bytes | None:
        """The encoded meta of a job in `state` (None for QUEUED: no worker wrote one)."""
        parts = self._templates.get(state)
        if parts is None:
            return None
        values = {SENTINEL_ID: job_id, SENTINEL_DATE: datetime.fromtimestamp(done_at, UTC).isoformat(),
                  SENTINEL_RESULT: json.dumps(result)}
        return "".join(values.get(part, part) for part in parts).encode()


def _revoked() -> Exception:
    from celery.exceptions import TaskRevokedError

    return TaskRevokedError("cancelled before it started")


def _split(encoded: str) -> list[str]:
    """The encoded template cut around its placeholders (the result's, quotes and all)."""
    encoded = encoded.replace(f'"{SENTINEL_RESULT}"', SENTINEL_RESULT)
    parts: list[str] = []
    rest = encoded
    while rest:
        found = [(rest.find(s), s) for s in (SENTINEL_ID, SENTINEL_DATE, SENTINEL_RESULT) if s in rest]
        if not found:
            parts.append(rest)
            break
        at, sentinel = min(found)
        parts += [rest[:at], sentinel]
        rest = rest[at + len(sentinel):]
    return [part for part in parts if part]


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


class _Replies(threading.Thread):
    """Reads the replies of a stream of commands whose every reply is one line (+OK, :n, -ERR)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True, name="seed-replies")
        self.sock = sock
        self.lines = 0
        self.first_error: bytes | None = None
        self.failed: BaseException | None = None
        self._changed = threading.Condition()

    def run(self) -> None:
        tail = b"\n"
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return
                joined = tail + chunk
                if self.first_error is None and (b"\n-" in joined):
                    at = joined.index(b"\n-")
                    self.first_error = joined[at + 1: joined.find(b"\r\n", at + 1)]
                tail = chunk[-1:]
                with self._changed:
                    self.lines += chunk.count(b"\n")
                    self._changed.notify_all()
        except OSError as exc:
            self.failed = exc
            with self._changed:
                self._changed.notify_all()

    def wait_for(self, lines: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.lines < lines and self.failed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"Redis answered {self.lines} of {lines} seeding commands")
                self._changed.wait(left)
        if self.failed is not None:
            raise RuntimeError(f"reading Redis' replies failed: {self.failed}")


@dataclass
class Seeded:
    """What the seeding wrote, in all (a second seed() adds to it)."""

    jobs: int = 0
    seconds: float = 0.0
    by_state: dict[str, int] = field(default_factory=dict)
    index_keys: set[str] = field(default_factory=set)  # the sets by owner
    task_index_keys: set[str] = field(default_factory=set)  # the sets by task


class JobSeeder:
    """Seeds jobs submitted over the retention window ending at `now` into the Redis at `url`."""

    def __init__(self, url: str, celery: Any, ttl_seconds: int, *, now: float | None = None, seed: int = 12) -> None:
        self.url = url
        self.ttl = ttl_seconds
        self.now = time.time() if now is None else now
        self.rng = random.Random(seed)
        self.templates = MetaTemplates(celery)
        # new_record only builds fields: its client is never used here.
        self.records = JobRecords(redis.Redis.from_url(url), ttl_seconds)
        self.seeded = Seeded()

    def _jobs(self, count: int) -> Iterator[tuple[str, str, str, str, int, list[bytes], bytes | None]]:
        """(id, state, name, owner, score, record fields, meta) of `count` new jobs."""
        rng = self.rng
        names = rng.choices(list(NAMES), weights=list(NAMES.values()), k=count)
        owners = rng.choices(list(OWNERS), weights=list(OWNERS.values()), k=count)
        every = FINISHED | UNFINISHED
        chosen = rng.choices(list(every), weights=list(every.values()), k=count)
        start = self.now - self.ttl
        for name, owner, state in zip(names, owners, chosen, strict=True):
            if state in UNFINISHED:
                submitted = self.now - rng.random() * UNFINISHED_WINDOW_S
            else:
                submitted = start + rng.random() * (self.ttl - UNFINISHED_WINDOW_S)
            job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            job_input, result = _inputs(name, rng)
            record = self.records.new_record(job_id, name, owner, job_input, now=submitted)
            score, fields = record.score, record.fields
            fields[fields.index("state") + 1] = state
            started = submitted + rng.uniform(0.001, 0.05)
            done = started + rng.uniform(*RUN_SECONDS)
            if state == states.REVOKED:
                # Cancelled while queued (the API's cancel): no worker ever started it.
                fields += ["cancel_requested_at", epoch_iso(started)]
                done = started
            elif state != states.QUEUED:
                # The start script: started_at, then attempt and deliveries (the first delivery).
                fields += ["started_at", epoch_iso(started), "attempt", "0", "deliveries", "1"]
            meta = self.templates.meta(state, job_id, done, result)
            yield job_id, state, name, owner, score, [part.encode() for part in fields], meta

    def seed(self, count: int) -> Seeded:
        """Write `count` more jobs; returns the totals so far."""
        parts = urlsplit(self.url)
        db = (parts.path or "/0").lstrip("/") or "0"
        ttl = str(self.ttl).encode()
        began = time.perf_counter()
        sock = socket.create_connection((parts.hostname, parts.port or 6379))
        replies = _Replies(sock)
        replies.start()
        expected = 0
        try:
            sock.sendall(_command(b"SELECT", db.encode()))
            expected += 1
            batch: list[bytes] = []
            for number, (job_id, state, name, owner, score, fields, meta) in enumerate(self._jobs(count), start=1):
                record_key = (KEY_PREFIX + job_id).encode()
                key, task_key = index_key(state, name, owner), task_index_key(state, name)
                batch.append(_command(b"HSET", record_key, *fields))
                batch.append(_command(b"EXPIRE", record_key, ttl))
                if meta is not None:
                    batch.append(_command(b"SET", (RESULT_PREFIX + job_id).encode(), meta, b"EX", ttl))
                    expected += 1
                batch.append(_command(b"ZADD", key.encode(), str(score).encode(), job_id.encode()))
                batch.append(_command(b"ZADD", task_key.encode(), str(score).encode(), job_id.encode()))
                expected += 4
                self.seeded.index_keys.add(key)
                self.seeded.task_index_keys.add(task_key)
                self.seeded.by_state[state] = self.seeded.by_state.get(state, 0) + 1
                if number % BATCH == 0:
                    sock.sendall(b"".join(batch))
                    batch.clear()
            registries = ((INDEX_SETS, self.seeded.index_keys), (TASK_INDEX_SETS, self.seeded.task_index_keys))
            for registry, keys in registries:
                batch.append(_command(b"SADD", registry.encode(), *(key.encode() for key in sorted(keys))))
                expected += 1
            sock.sendall(b"".join(batch))
            replies.wait_for(expected, timeout=120 + count / 5000)
        finally:
            # close() alone would not wake the reader blocked in recv(): it would stay, a
            # thread per seed, through the timed requests that follow.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            replies.join(timeout=5)
        if replies.first_error is not None:
            raise RuntimeError(f"Redis refused a seeding command: {replies.first_error.decode(errors='replace')}")
        self.seeded.jobs += count
        self.seeded.seconds += time.perf_counter() - began
        return self.seeded

    def check(self) -> None:
        """Redis holds every seeded job, record, result and index entry (the database holds
        nothing else): or RuntimeError."""
        client = redis.Redis.from_url(self.url)
        try:
            keys = {key.decode() for key in client.smembers(INDEX_SETS)}
            task_keys = {key.decode() for key in client.smembers(TASK_INDEX_SETS)}
            pipe = client.pipeline(transaction=False)
            for key in sorted(keys | task_keys):
                pipe.zcard(key)
            indexed = sum(pipe.execute())
            stored = client.dbsize()
        finally:
            client.close()
        seeded = self.seeded
        results = seeded.jobs - seeded.by_state.get(states.QUEUED, 0)
        sets = len(seeded.index_keys) + len(seeded.task_index_keys)
        expected = seeded.jobs + results + sets + 2
        if (keys, task_keys) != (seeded.index_keys, seeded.task_index_keys) or indexed != 2 * seeded.jobs \
                or stored != expected:
            raise RuntimeError(f"seeded {seeded.jobs} jobs into {sets} index sets ({expected} keys); "
                               f"Redis has {indexed} entries in {len(keys | task_keys)} sets and {stored} keys")
