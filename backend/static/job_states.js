// What a job's state allows. The server writes which states end, retry and cancel into the
// page (backend/api/dashboard.py): they are defined once, there, and only read here.

const statesFrom = (name) => new Set(document.body.dataset[name].split(" ").filter(Boolean));
const FINAL_STATES = statesFrom("finalStates");
const RETRYABLE_STATES = statesFrom("retryableStates");
const CANCELLABLE_STATES = statesFrom("cancellableStates");

export const isFinal = (status) => FINAL_STATES.has(status.state);
// A job is retried once: after that, its retry is the one to retry.
export const canRetry = (status) => RETRYABLE_STATES.has(status.state) && !status.retried_by;
export const canCancel = (status) => CANCELLABLE_STATES.has(status.state);
