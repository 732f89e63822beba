"""The job history: list and count every job the index knows, retry failures, and act
on many jobs at once. The API's /jobs routes, the CLI and the dashboard use these."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from flask import current_app
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from backend.jobs import extensions, service, states
from backend.jobs.callers import Caller, Role
from backend.jobs.errors import ServiceError
from backend.jobs.index import MAX_PAGE_SIZE, Cursor, JobFilter
from backend.jobs.inputs import JOB_ID, iso_with_zone, validate_input
from backend.jobs.registry import public_tasks
from backend.jobs.status import JobStatus

# The states a retry, and a cancel, act on: a job that failed or was cancelled; a job not ended.
RetryableState = Literal["FAILURE", "REVOKED"]
CancellableState = Literal["SCHEDULED", "QUEUED", "STARTED", "PROGRESS", "RETRY"]
RETRYABLE_STATES = frozenset(get_args(RetryableState))
CANCELLABLE_STATES = frozenset(get_args(CancellableState))


class _Filters(BaseModel):
    """What every filter has; each kind below says which states its `state` may name."""

    # Not strict, even in a JSON body: JSON has no datetime type, ISO text is how one is sent
    # (validate_input honours it).
    model_config = ConfigDict(extra="forbid", strict=False)

    state: Any = None
    name: str | None = Field(None, min_length=1, max_length=200, description="The task's name.")
    owner: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Who submitted: a client's name, a `token-…` id, `anonymous`, `cli` or `code`. "
        "A client that is not admin sees its own jobs only: another owner matches none.",
    )
    since: AwareDatetime | None = Field(None, description="Submitted at or after (ISO 8601 with a zone).")
    until: AwareDatetime | None = Field(None, description="Submitted at or before (ISO 8601 with a zone).")

    @field_validator("state", mode="before")
    @classmethod
    def split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",")]  # an empty part fails as no state
        return value

    _iso_moments = field_validator("since", "until", mode="before")(iso_with_zone)

    def job_filter(self, default_states: frozenset[str] | None = None) -> JobFilter:
        return JobFilter(
            states=frozenset(self.state) if self.state else default_states,
            name=self.name,
            owner=self.owner,
            since=_epoch(self.since),
            until=_epoch(self.until),
        )


class JobFilters(_Filters):
    """The filters of a listing or a count (query string)."""

    state: list[states.JobState] | None = Field(
        None, description="One or several states, comma-separated or repeated: `FAILURE,REVOKED`."
    )


class RetryFilters(_Filters):
    """The jobs a bulk retry acts on: those of the filters not retried yet."""

    state: list[RetryableState] | None = Field(None, description="FAILURE, REVOKED, or both (the default).")


class CancelFilters(_Filters):
    """The jobs a bulk cancel acts on: those of the filters not ended."""

    state: list[CancellableState] | None = Field(
        None, description="Some of QUEUED, STARTED, PROGRESS, RETRY; all of them by default."
    )


class JobListQuery(JobFilters):
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE, description=f"Jobs per page, at most {MAX_PAGE_SIZE}.")
    cursor: str | None = Field(
        None, max_length=400, description="`next_cursor` of the previous page, with the same filters."
    )


class JobList(BaseModel):
    jobs: list[JobStatus] = Field(description="Newest first; each the same object as GET /status/<id>.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    counts: dict[str, int] = Field(description="Jobs per state for these filters (all pages).")


class JobCounts(BaseModel):
    counts: dict[str, int] = Field(description="Jobs per state for these filters.")
    total: int


class RetriedJob(BaseModel):
    task_id: str
    retry_id: str
    name: str


class BulkOutcome(BaseModel):
    """What a bulk action did. Call again while `more` is true."""

    done: int = Field(description="Jobs retried (or cancelled) by this call.")
    jobs: list[Any] = Field(description="For each, the job's id and the new job's (retry) or its state (cancel).")
    skipped: dict[str, int] = Field(description="Jobs that matched but were left alone, by reason.")
    more: bool = Field(description="True when the limit stopped this call before the last matching job.")
    limit: int = Field(description="The most jobs one call acts on (BULK_ACTION_MAX_JOBS).")


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _result_prefix() -> bytes:
    # Celery's key for a task's result is this prefix and the id (backend.get_key_for_task).
    prefix: bytes = extensions.celery_app().backend.task_keyprefix
    return prefix


def visible(job_filter: JobFilter, caller: Caller) -> JobFilter | None:
    """The filter narrowed to the jobs the caller may see: an admin's as it is, another
    client's to its own jobs; None when it names another owner (then nothing matches,
    as for an owner that never submitted: the caller learns nothing about it)."""
    if caller.role is Role.ADMIN:
        return job_filter
    if job_filter.owner not in (None, caller.name):
        return None
    return dataclasses.replace(job_filter, owner=caller.name)


def list_jobs(query: JobListQuery, *, caller: Caller) -> JobList:
    """A page of the jobs the caller may see, newest first, with the counts per state
    for the same filters."""
    job_filter = visible(query.job_filter(), caller)
    if job_filter is None:
        return JobList(jobs=[], next_cursor=None, counts=dict.fromkeys(states.ALL_STATES, 0))
    cursor = Cursor.decode(query.cursor, job_filter) if query.cursor else None
    page = extensions.job_index().page(job_filter, query.limit, cursor, result_prefix=_result_prefix())
    backend = extensions.celery_app().backend
    return JobList(
        jobs=[service.status_from(job.job_id, job.record, job.raw_result, backend) for job in page.jobs],
        next_cursor=page.next_cursor.encode(job_filter) if page.next_cursor else None,
        counts=page.counts,
    )


def count_jobs(filters: JobFilters, *, caller: Caller) -> JobCounts:
    job_filter = visible(filters.job_filter(), caller)
    counts = dict.fromkeys(states.ALL_STATES, 0) if job_filter is None else extensions.job_index().counts(job_filter)
    return JobCounts(counts=counts, total=sum(counts.values()))


def retry(job_id: str, *, caller: Caller, idempotency_key: str | None = None) -> service.Submission:
    """Submit the job's task again with its input, as a new job linked both ways, owned by
    the caller; 404 for another client's job, as for an unknown id.

    409 unless it ended FAILURE or REVOKED and was not retried yet (atomically: two
    retries at once make one job); 422 if its input no longer fits the task's model.
    """
    record = extensions.job_records().get(job_id) if JOB_ID.fullmatch(job_id) else None
    if record is None or not caller.sees(record.get("owner")):
        raise service.not_found(job_id)
    return _retry_record(job_id, record, caller=caller, idempotency_key=idempotency_key)


def _retry_record(
    job_id: str, record: dict[str, str], *, caller: Caller, idempotency_key: str | None = None
) -> service.Submission:
    state = record.get("state")
    if state not in RETRYABLE_STATES:
        raise service.not_retryable_state(job_id, state or states.QUEUED)
    if "retried_by" in record and idempotency_key is None:
        # (With a key, the create script answers first: a repeat of this very retry is replayed.)
        raise service.already_retried(job_id, record["retried_by"])
    task = public_tasks().get(record.get("name", ""))
    if task is None:
        message = f"task {job_id} ran {record.get('name')!r}, which is not a public task"
        raise ServiceError(409, "not_retryable", message)
    if "input" not in record:
        raise ServiceError(409, "input_not_kept", f"task {job_id} cannot be retried: {_why_no_input(record)}")
    params = validate_input(task.input_model, json.loads(record["input"])).model_dump(mode="json")
    return service.enqueue(task, params, owner=caller, idempotency_key=idempotency_key, retry_of=job_id)


def _why_no_input(record: dict[str, str]) -> str:
    if "input_bytes" in record:
        return f"its input ({int(record['input_bytes']):,} bytes) was over JOB_INPUT_MAX_BYTES and was not kept"
    return "it was submitted before inputs were kept"


@dataclass
class _Bulk:
    limit: int
    jobs: list[Any] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    more: bool = False

    def outcome(self) -> BulkOutcome:
        return BulkOutcome(
            done=len(self.jobs), jobs=self.jobs, skipped=dict(self.skipped), more=self.more, limit=self.limit
        )


def _matching(job_filter: JobFilter, caller: Caller) -> Any:
    """Every indexed job matching the filter that the caller may see, newest first, a page at a time."""
    scoped = visible(job_filter, caller)
    if scoped is None:
        return
    job_filter = scoped
    index, prefix = extensions.job_index(), _result_prefix()
    cursor = None
    while True:
        page = index.page(job_filter, MAX_PAGE_SIZE, cursor, result_prefix=prefix)
        yield from page.jobs
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def retry_matching(filters: RetryFilters, *, caller: Caller) -> BulkOutcome:
    """Retry the failed and revoked jobs matching the filters (those not retried yet),
    newest first, at most BULK_ACTION_MAX_JOBS per call."""
    bulk = _Bulk(current_app.config["BULK_ACTION_MAX_JOBS"])
    for job in _matching(filters.job_filter(default_states=RETRYABLE_STATES), caller):
        if "retried_by" in job.record:
            continue  # retried before: not a candidate, and costs this call nothing
        if len(bulk.jobs) >= bulk.limit:
            bulk.more = True
            break
        try:
            submission = _retry_record(job.job_id, job.record, caller=caller)
        except ServiceError as exc:
            if exc.status >= 500:
                raise
            bulk.skipped[exc.code] += 1
            continue
        retried = RetriedJob(task_id=job.job_id, retry_id=submission.job_id, name=submission.task_name)
        bulk.jobs.append(retried.model_dump())
    return bulk.outcome()


def cancel_matching(filters: CancelFilters, *, caller: Caller) -> BulkOutcome:
    """Cancel the jobs matching the filters that have not ended, newest first, at most
    BULK_ACTION_MAX_JOBS per call."""
    bulk = _Bulk(current_app.config["BULK_ACTION_MAX_JOBS"])
    for job in _matching(filters.job_filter(default_states=CANCELLABLE_STATES), caller):
        if "cancel_requested_at" in job.record:
            continue  # asked before; a running job stops at its next step
        if len(bulk.jobs) >= bulk.limit:
            bulk.more = True
            break
        try:
            status = service.cancel(job.job_id, caller=caller)
        except ServiceError as exc:
            if exc.status >= 500:
                raise
            bulk.skipped[exc.code] += 1
            continue
        bulk.jobs.append({"task_id": job.job_id, "state": status.state})
    return bulk.outcome()
