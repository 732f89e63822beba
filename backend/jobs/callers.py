"""Who asks: a caller is a client's name and its role. The service layer takes one and
scopes what it reads by the job's owner; the routes' role checks compare roles.

`read` < `submit` < `admin`: a `read` client follows and lists its own jobs, a `submit`
client also submits, cancels and retries them, an `admin` sees and acts on every job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.IntEnum):
    """Ordered: a role may do everything the roles below it may."""

    READ = 1
    SUBMIT = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """Its name in the clients file, the CLI and error messages: `read`, `submit`, `admin`."""
        return self.name.lower()

    @classmethod
    def named(cls, label: str) -> Role:
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"no role {label!r}: {', '.join(role.label for role in cls)}") from None


ROLE_LABELS = tuple(role.label for role in Role)


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role
    # How many of its jobs may run at once (0: no limit); None: the service's CLIENT_MAX_RUNNING.
    max_running: int | None = None

    def sees(self, owner: str | None) -> bool:
        """Whether the job of `owner` exists for this caller: its own, or any for an admin.
        Jobs sent by code or the CLI belong to no client, so admins alone see them."""
        return self.role is Role.ADMIN or owner == self.name
