// What the user does to jobs already submitted: cancel one, retry one, retry every failed
// one of the task chosen. Each calls the API, shows what it answered, and says what it did.
import { api, statusPath } from "./api.js";
import { runAction, say } from "./feedback.js";
import { taskFilter } from "./filters.js";
import { loadList } from "./job_list.js";
import { isFinal } from "./job_states.js";
import { jobOnPage, updateJob } from "./shown_jobs.js";

export function cancel(id, button) {
  return runAction(button, async () => {
    const status = await api(`${statusPath(id)}/cancel`, { method: "POST" });
    updateJob(status);
    say(isFinal(status) ? `Cancelled ${id}.` : `Cancelling ${id}: a running job stops at its next step.`);
  });
}

// shownElsewhere: the job's status in the detail view, for a job on no page of the list.
// Either way it then shows its retry, and no Retry button (a job is retried once).
export function retry(id, button, shownElsewhere = null) {
  return runAction(button, async () => {
    const retried = await api(`${statusPath(id)}/retry`, { method: "POST" });
    const status = jobOnPage(id) || shownElsewhere;
    if (status) updateJob({ ...status, retried_by: retried.task_id });
    say(`Retried ${id} as ${retried.task_id}.`);
    loadList();
  });
}

async function retryAllFailed(button) {
  const name = taskFilter();
  if (!window.confirm(`Retry every ${name ? `failed ${name} job` : "failed job"} not retried yet?`)) return;
  const filters = { state: ["FAILURE"] };
  if (name) filters.name = name;
  await runAction(button, async () => {
    say(describeBulkRetry(await api("/jobs/retry", { method: "POST", body: filters })));
    loadList();
  });
}

function describeBulkRetry(outcome) {
  let text = `Retried ${outcome.done} failed ${outcome.done === 1 ? "job" : "jobs"}.`;
  const skipped = Object.entries(outcome.skipped || {});
  if (skipped.length) text += ` Skipped: ${skipped.map(([code, count]) => `${count} ${code}`).join(", ")}.`;
  if (outcome.more) text += ` More remain (at most ${outcome.limit} per call): click again to retry them.`;
  return text;
}

export function startRetryAllFailed() {
  document.getElementById("retry-failed").addEventListener("click", (event) => retryAllFailed(event.currentTarget));
}
