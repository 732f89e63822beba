"""Idempotency keys: a client that repeats a submit (or a retry) gets the job it already has.

A submit with `Idempotency-Key: <key>` records the key with a fingerprint of the
request (task name and validated input) and the job id. The same key again
returns that job id and enqueues nothing; the same key with another request is
a 422. Keys are scoped per client (API token) and expire with the results.
A submit that failed (503) leaves the key free for the client's retry.

The key is bound in the same atomic step that creates the job's record
(JobRecords.create), so two requests with one key never both enqueue.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from backend.jobs.errors import ServiceError
from backend.jobs.records import Created

HEADER = "Idempotency-Key"
# Printable ASCII without spaces; long enough for a UUID or a client's own scheme.
VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
KEY_PREFIX = "idempotency:"


def validate_key(key: str) -> str:
    if not VALID_KEY.fullmatch(key):
        raise ServiceError(
            400, "invalid_idempotency_key",
            f"{HEADER} must be 1-255 printable ASCII characters without spaces",
        )
    return key


def fingerprint(task_name: str, params: dict[str, Any]) -> str:
    canonical = json.dumps({"task": task_name, "input": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def redis_key(client_id: str, key: str) -> str:
    # Hashed: a client's key is arbitrary text, and must not collide across clients.
    return KEY_PREFIX + hashlib.sha256(f"{client_id}\0{key}".encode()).hexdigest()


def replayed_job(created: Created, request_fingerprint: str) -> str | None:
    """The job an idempotency key answers with, if JobRecords.create found the key bound
    to a live job; 422 if that binding was for another request."""
    if created.outcome != "replayed":
        return None
    if created.fingerprint != request_fingerprint:
        raise ServiceError(
            422, "idempotency_key_reused",
            f"this {HEADER} was already used for a different request; send a new key",
        )
    return created.job_id
