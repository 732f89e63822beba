"""Idempotency keys: a client that retries a submit gets the job it already has.

A submit with `Idempotency-Key: <key>` records the key with a fingerprint of the
request (task name and validated input) and the job id. The same key again
returns that job id and enqueues nothing; the same key with another request is
a 422. Keys are scoped per client (API token) and expire with the results.
A submit that failed (503) leaves the key free for the client's retry.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from backend.jobs.errors import ServiceError
from backend.jobs.records import KEY_PREFIX as RECORD_PREFIX
from backend.jobs.records import JobRecords

HEADER = "Idempotency-Key"
# Printable ASCII without spaces; long enough for a UUID or a client's own scheme.
VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
KEY_PREFIX = "idempotency:"


@dataclass(frozen=True)
class Claim:
    job_id: str
    replayed: bool


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


# Bind the key to a new job and create that job's record in one step, unless
# the key is bound to a job whose record exists: then that job is the answer.
# A key bound to a job without a record is free again: the submit that bound it
# failed to publish (its record was deleted) or never got as far as the record.
# (Reads the record of the bound job by name: fine on a single Redis, not Cluster.)
_CLAIM = """
local bound = redis.call('GET', KEYS[1])
if bound then
  local sep = string.find(bound, ':', 1, true)
  local job_id = string.sub(bound, sep + 1)
  if redis.call('EXISTS', ARGV[4] .. job_id) == 1 then
    return {string.sub(bound, 1, sep - 1), job_id, 1}
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'EX', ARGV[3])
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {ARGV[1], ARGV[2], 0}
"""


class IdempotencyKeys:
    def __init__(self, records: JobRecords) -> None:
        self.records = records
        self._claim = records.client.register_script(_CLAIM)

    @staticmethod
    def _redis_key(client_id: str, key: str) -> str:
        # Hashed: a client's key is arbitrary text, and must not collide across clients.
        return KEY_PREFIX + hashlib.sha256(f"{client_id}\0{key}".encode()).hexdigest()

    def claim(self, client_id: str, key: str, request_fingerprint: str, task_name: str, new_job_id: str) -> Claim:
        """Bind the key to new_job_id (creating its record), or return the job it is bound to.

        The caller then publishes new_job_id with record_written=True.
        """
        record_fields = [part for field in self.records.new_record(task_name).items() for part in field]
        bound_fingerprint, job_id, replayed = self._claim(
            keys=[self._redis_key(client_id, key), self.records.key(new_job_id)],
            args=[request_fingerprint, new_job_id, self.records.ttl, RECORD_PREFIX, *record_fields],
        )
        if bound_fingerprint.decode() != request_fingerprint:
            raise ServiceError(
                422, "idempotency_key_reused",
                f"this {HEADER} was already used for a different request; send a new key",
            )
        return Claim(job_id.decode(), replayed=bool(replayed))
