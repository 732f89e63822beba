"""The clients file (API_CLIENTS_FILE): each API client's name, role and the SHA-256 of
its tokens, never a token itself. `flask clients add|list|revoke` write it; every API
process reads it (backend/api/auth.py).

    {"clients": {"billing": {"role": "submit", "max_running": 4,
                             "tokens": [{"sha256": "<64 hex>", "added_at": "2026-11-29T11:14:20Z"}]}}}

`max_running` (optional) is how many of the client's jobs run at once across the workers,
0 for no limit; without it, CLIENT_MAX_RUNNING applies (backend/taskqueue/running_limits.py).

A plain SHA-256, no slow hash (bcrypt, scrypt, argon2): a slow hash protects passwords,
which people choose and an attacker can guess from a stolen hash by trying candidates.
These tokens are 256 random bits from secrets.token_urlsafe(32): no guess is better than
any other, so the hash cannot be reversed at any speed, and checking a request costs one
SHA-256 and one dict lookup.

Changes take effect without a restart: each process re-reads the file when its
modification time, size or inode changes, looked at no more than once every
RELOAD_SECONDS, so a revoked token stops working within about 2 s everywhere. The
CLI writes a new file and renames it over the old one: a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.jobs.callers import Role
from backend.jobs.timestamps import now_iso

# How often, at most, a process looks at the file for a change (one stat()).
RELOAD_SECONDS = 2.0
# A name is a job's owner, a filter value and part of log lines: short, plain text.
VALID_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# Owners that are not clients (backend/jobs/records.py, backend/ops/cli.py, backend/api/auth.py),
# and the prefix of API_TOKENS' ids: a client of one of these names would see their jobs.
RESERVED_NAMES = frozenset({"anonymous", "cli", "code"})
RESERVED_PREFIX = "token-"
# The part of a token's hash that `flask clients list` shows and `revoke --token` takes.
TOKEN_ID_LENGTH = 8


class ClientsFileError(ValueError):
    """The file cannot be read, or a change to it is refused; the message says why."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    sha256: str
    added_at: str

    @property
    def id(self) -> str:
        """A short, non-secret name for the token (the start of its hash)."""
        return self.sha256[:TOKEN_ID_LENGTH]


@dataclass(frozen=True)
class Client:
    name: str
    role: Role
    tokens: tuple[Token, ...]
    # Its jobs running at once at most (0: no limit); None: CLIENT_MAX_RUNNING.
    max_running: int | None = None


def _max_running(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_running must be a whole number, 0 or more (0: no limit), not {value!r}")
    return value


def _parse(text: str, path: Path) -> dict[str, Client]:
    try:
        document = json.loads(text)
        clients = {}
        for name, entry in document["clients"].items():
            tokens = tuple(Token(str(token["sha256"]), str(token["added_at"])) for token in entry["tokens"])
            clients[name] = Client(name, Role.named(entry["role"]), tokens, _max_running(entry.get("max_running")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ClientsFileError(f"{path} is not a clients file ({exc!r}); see docs/clients.md") from None
    return clients


def _serialised(clients: dict[str, Client]) -> str:
    entries: dict[str, Any] = {}
    for client in sorted(clients.values(), key=lambda client: client.name):
        entry: dict[str, Any] = {"role": client.role.label}
        if client.max_running is not None:
            entry["max_running"] = client.max_running
        entry["tokens"] = [{"sha256": token.sha256, "added_at": token.added_at} for token in client.tokens]
        entries[client.name] = entry
    return json.dumps({"clients": entries}, indent=2) + "\n"


class ClientsFile:
    """The clients file at `path`: lookups by token for the API, changes for the CLI.
    A missing file has no clients."""

    def __init__(
        self, path: Path, reload_seconds: float = RELOAD_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.reload_seconds = reload_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._checked_at = -float("inf")
        self._signature: tuple[int, int, int] | None = None
        self._by_digest: dict[str, Client] = {}

    # --- the API's side -------------------------------------------------------------------

    def find(self, token: str) -> Client | None:
        """The client that holds `token`, as the file said at most RELOAD_SECONDS ago."""
        self._refresh()
        return self._by_digest.get(token_digest(token))

    def _refresh(self) -> None:
        now = self.clock()
        if now - self._checked_at < self.reload_seconds:
            return
        with self._lock:
            if now - self._checked_at < self.reload_seconds:
                return  # another thread looked meanwhile
            signature = self._stat()
            if signature != self._signature:
                # An unreadable file fails the request (500, logged) rather than keep tokens
                # that may have been revoked in it.
                clients = self.read()
                self._by_digest = {token.sha256: client for client in clients.values() for token in client.tokens}
                self._signature = signature
            self._checked_at = now

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    # --- the CLI's side -------------------------------------------------------------------

    def read(self) -> dict[str, Client]:
        """Every client, by name; none when the file does not exist."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        return _parse(text, self.path)

    def add(self, name: str, role: Role | None, max_running: int | None = None) -> tuple[Client, str]:
        """A new token for client `name` (created with `role` and `max_running` if new): the
        client, and the token, which exists nowhere else. An existing client keeps its other
        tokens (rotation)."""
        clients = self.read()
        existing = clients.get(name)
        if existing is None:
            _check_name(name)
            if role is None:
                raise ClientsFileError(f"{name!r} is a new client: give its role with --role")
        elif max_running is not None:
            raise ClientsFileError(f"{name!r} exists: change its limit with `flask clients limit {name} N`")
        elif role is not None and role is not existing.role:
            raise ClientsFileError(
                f"{name!r} has the {existing.role.label} role, not {role.label}: revoke it and add it again "
                "to change its role"
            )
        token = secrets.token_urlsafe(32)
        added = Token(token_digest(token), now_iso())
        if existing is None:
            client = Client(name, role or Role.READ, (added,), _checked_limit(max_running))
        else:
            client = Client(name, existing.role, (*existing.tokens, added), existing.max_running)
        clients[name] = client
        self._write(clients)
        return client, token

    def set_limit(self, name: str, max_running: int | None) -> Client:
        """Set how many of `name`'s jobs run at once (0: no limit; None: CLIENT_MAX_RUNNING).
        Jobs submitted from then on carry the new limit; those queued keep theirs."""
        clients = self.read()
        client = clients.get(name)
        if client is None:
            raise ClientsFileError(f"no client named {name!r} in {self.path}")
        clients[name] = dataclasses.replace(client, max_running=_checked_limit(max_running))
        self._write(clients)
        return clients[name]

    def revoke(self, name: str, token_id: str | None = None) -> int:
        """Revoke every token of `name` (the client is gone), or the one whose id is `token_id`:
        how many were revoked."""
        clients = self.read()
        client = clients.get(name)
        if client is None:
            raise ClientsFileError(f"no client named {name!r} in {self.path}")
        if token_id is None:
            del clients[name]
            self._write(clients)
            return len(client.tokens)
        matching = [token for token in client.tokens if token.sha256.startswith(token_id)]
        if len(matching) != 1 or len(token_id) < 4:
            ids = ", ".join(token.id for token in client.tokens)
            raise ClientsFileError(f"{token_id!r} names no single token of {name!r} (its tokens: {ids})")
        remaining = tuple(token for token in client.tokens if token is not matching[0])
        if remaining:
            clients[name] = dataclasses.replace(client, tokens=remaining)
        else:
            del clients[name]
        self._write(clients)
        return 1

    def _write(self, clients: dict[str, Client]) -> None:
        """The new file, renamed over the old one; readable by its owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(descriptor, "w") as file:  # mkstemp's mode is 0600
                file.write(_serialised(clients))
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _checked_limit(max_running: int | None) -> int | None:
    try:
        return _max_running(max_running)
    except ValueError as exc:
        raise ClientsFileError(str(exc)) from None


def _check_name(name: str) -> None:
    if not VALID_NAME.fullmatch(name):
        raise ClientsFileError(
            f"{name!r} is not a client name: 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX):
        raise ClientsFileError(
            f"{name!r} is reserved: jobs of {', '.join(sorted(RESERVED_NAMES))} and {RESERVED_PREFIX}… "
            "belong to no client"
        )
