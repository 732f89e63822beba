"""Every time a client reads is ISO 8601 in UTC with milliseconds and a Z, whatever form it was stored in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from backend.jobs.timestamps import epoch_iso, iso_epoch, normalized_iso, utc_iso


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("2026-01-02T03:04:05.678901+00:00", "2026-01-02T03:04:05.678Z"),  # Celery's date_done, UTC
        ("2026-01-02T03:04:05.999999+00:00", "2026-01-02T03:04:05.999Z"),  # cut, as isoformat cuts
        ("2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05.000Z"),  # no microseconds: no fraction
        ("2026-01-02T04:04:05.678901+01:00", "2026-01-02T03:04:05.678Z"),  # another zone (CELERY timezone)
        ("2026-01-02T03:04:05.678901", "2026-01-02T03:04:05.678Z"),  # naive: taken as UTC
        ("2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05.678Z"),
        ("not a time", "not a time"),
        (None, None),
    ],
)
def test_a_stored_time_is_shown_in_the_one_format(stored, shown):
    assert normalized_iso(stored) == shown


def test_a_datetime_of_any_zone_and_an_epoch_read_the_same():
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert utc_iso(moment) == utc_iso(moment.astimezone(timezone(timedelta(hours=-5)))) == "2026-01-02T03:04:05.678Z"
    assert epoch_iso(moment.timestamp()) == "2026-01-02T03:04:05.678Z"
    assert iso_epoch("2026-01-02T03:04:05.678Z") == pytest.approx(moment.timestamp(), abs=0.001)
