"""The one timestamp format of the service: ISO 8601 in UTC, milliseconds, with a Z.

Every time a client reads (submitted_at, started_at, finished_at, the heartbeat's
last run) is written by these functions, so every one parses the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

# datetime.isoformat() of an aware UTC time with microseconds (without them it has no fraction).
_UTC_MICROSECONDS = "2026-01-01T00:00:00.000000+00:00"


def utc_iso(moment: datetime) -> str:
    """`moment` in the service's format; a naive datetime is taken as UTC (Celery's date_done is)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return utc_iso(datetime.now(UTC))


def epoch_iso(seconds: float) -> str:
    return utc_iso(datetime.fromtimestamp(seconds, UTC))


def normalized_iso(value: datetime | str | None) -> str | None:
    """A stored time (a datetime, or ISO text of any offset) in the service's format;
    text that is not ISO 8601 is returned as it is, None as None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return utc_iso(value)
    if len(value) == len(_UTC_MICROSECONDS) and value.endswith("+00:00") and value[19] == ".":
        # Celery's date_done with the default UTC zone: cut, not parsed (fifty a page of GET /jobs).
        return value[:23] + "Z"
    try:
        return utc_iso(datetime.fromisoformat(value))
    except ValueError:
        return value


def iso_epoch(value: str) -> float:
    """Seconds since the epoch of a time in the service's format (or any ISO 8601 with a zone)."""
    return datetime.fromisoformat(value).timestamp()
