"""Idempotency keys: a client that retries a submit gets the task it already has.

A submit with `Idempotency-Key: <key>` records the key with a fingerprint of the
request (task name and validated input) and the task id. The same key again
returns that task id and enqueues nothing; the same key with another request is
a 422. Keys are scoped per client (API token) and expire with the results.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import redis

from backend.errors import APIError

HEADER = "Idempotency-Key"
# Printable ASCII without spaces; long enough for a UUID or a client's own scheme.
VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
KEY_PREFIX = "idempotency:"


@dataclass(frozen=True)
class Claim:
    task_id: str
    replayed: bool


def validate_key(key: str) -> str:
    if not VALID_KEY.fullmatch(key):
        raise APIError(
            400, "invalid_idempotency_key",
            f"{HEADER} must be 1-255 printable ASCII characters without spaces",
        )
    return key


def fingerprint(task_name: str, params: dict[str, Any]) -> str:
    canonical = json.dumps({"task": task_name, "input": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeys:
    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.client = client
        self.ttl = ttl_seconds

    def _redis_key(self, client_id: str, key: str) -> str:
        # Hashed: a client's key is arbitrary text, and must not collide across clients.
        return KEY_PREFIX + hashlib.sha256(f"{client_id}\0{key}".encode()).hexdigest()

    def claim(self, client_id: str, key: str, request_fingerprint: str, new_task_id: str) -> Claim:
        """Bind the key to new_task_id, or return the task it is already bound to."""
        redis_key = self._redis_key(client_id, key)
        value = f"{request_fingerprint}:{new_task_id}"
        if self.client.set(redis_key, value, nx=True, ex=self.ttl):
            return Claim(new_task_id, replayed=False)
        existing = self.client.get(redis_key)
        if existing is None:  # expired between the two calls: claim it afresh
            return self.claim(client_id, key, request_fingerprint, new_task_id)
        bound_fingerprint, _, task_id = existing.decode().partition(":")
        if bound_fingerprint != request_fingerprint:
            raise APIError(
                422, "idempotency_key_reused",
                f"this {HEADER} was already used for a different request; send a new key",
            )
        return Claim(task_id, replayed=True)

    def release(self, client_id: str, key: str) -> None:
        """Forget the key: the submit it guarded failed, so a retry must submit again."""
        self.client.delete(self._redis_key(client_id, key))
