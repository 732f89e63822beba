"""Tasks that exist only for the tests: they fail or retry on purpose.

Workers started by the tests load this module with `--include tests.support_tasks`.
"""

from celery import shared_task


@shared_task(name="tests.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@shared_task(name="tests.retry_once", bind=True, max_retries=1)
def retry_once(self, countdown: float) -> str:
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("transient failure"), countdown=countdown)
    return "succeeded on retry"
