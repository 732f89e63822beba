// The detail view: every field of one job in a modal <dialog>, opened from its row or
// from the link between a job and its retry. A job of the page shown is kept fresh with
// the page; another is asked for with GET /status/<id> (refreshDetail). Text from
// clients goes in with textContent only.
import { cancel, retry } from "./actions.js";
import { api, statusPath } from "./api.js";
import { mayCancel, mayRetry } from "./caller.js";
import { errorText, formatTime } from "./format.js";
import { canCancel, canRetry, isFinal } from "./job_states.js";
import { renderBar } from "./progress.js";
import { jobOnPage, onJobUpdated, onPageShown, openJobId, setOpenJob, updateJob } from "./shown_jobs.js";

let detailStatus = null; // the status the view shows

const dialog = () => document.getElementById("detail");
const field = (name) => dialog().querySelector(`[data-field="${name}"]`);
const problem = () => document.getElementById("detail-problem");

export async function openDetail(id) {
  setOpenJob(id);
  problem().hidden = true;
  // A job on no page shows its id alone until GET /status answers.
  renderDetail(jobOnPage(id) || { task_id: id, name: "", state: "" });
  if (!dialog().open) dialog().showModal();
  await refreshDetail({ always: true });
}

export async function refreshDetail({ always = false } = {}) {
  const id = openJobId();
  if (!id || !dialog().open) return;
  // A job of the page shown is refreshed with the page (or followed live).
  if (!always && (jobOnPage(id) || (detailStatus && isFinal(detailStatus)))) return;
  try {
    const status = await api(statusPath(id));
    if (openJobId() === id) updateJob(status);
  } catch (error) {
    if (openJobId() !== id) return;
    problem().textContent = error.message;
    problem().hidden = false;
  }
}

// Shows a field's text, or hides its line of the list when there is none.
function setField(name, text) {
  const element = field(name);
  element.textContent = text;
  element.closest(".fields > div").hidden = text === "";
}

function setTimeField(name, iso) {
  setField(name, iso ? formatTime(iso, { withDate: true }) : "");
  field(name).dateTime = iso || "";
  field(name).title = iso || "";
}

// "2 of 4" once a retry policy has a limit, else the attempt alone; empty before the first.
function attemptText(status) {
  if (status.attempt == null) return "";
  return status.max_attempts == null ? String(status.attempt) : `${status.attempt} of ${status.max_attempts}`;
}

function renderDetail(status) {
  detailStatus = status;
  const view = dialog();
  const state = status.state || "";
  view.className = `detail state-${state.toLowerCase()}`;
  view.querySelector(".detail-name").textContent = status.name;
  view.querySelector(".detail-id").textContent = status.task_id;
  const bar = view.querySelector(".bar");
  renderBar(bar, status);
  bar.hidden = !canCancel(status);
  setField("state", state);
  setField("progress", status.progress ? `${status.progress.percent} %: ${status.progress.message}` : "");
  setField("owner", status.owner || "");
  setTimeField("submitted_at", status.submitted_at);
  setTimeField("run_at", status.run_at);
  setTimeField("deadline_at", status.deadline_at);
  setTimeField("started_at", status.started_at);
  setTimeField("finished_at", status.finished_at);
  setField("attempt", attemptText(status));
  setTimeField("next_attempt_at", status.next_attempt_at);
  setField("input", status.input != null ? JSON.stringify(status.input, null, 2) : status.input_note || "");
  setField("result", status.state === "SUCCESS" ? JSON.stringify(status.result, null, 2) : "");
  setField("error", errorText(status));
  setField("retry_of", status.retry_of || "");
  setField("retried_by", status.retried_by || "");
  document.getElementById("detail-retry").hidden = !canRetry(status) || !mayRetry(status);
  document.getElementById("detail-cancel").hidden = !canCancel(status) || !mayCancel(status);
}

export function startDetail() {
  document.getElementById("detail-close").addEventListener("click", () => dialog().close());
  dialog().addEventListener("close", () => { setOpenJob(null); detailStatus = null; });
  for (const name of ["retry_of", "retried_by"]) {
    field(name).addEventListener("click", (event) => openDetail(event.currentTarget.textContent));
  }
  document.getElementById("detail-retry").addEventListener("click", (event) => retry(openJobId(), event.currentTarget, detailStatus));
  document.getElementById("detail-cancel").addEventListener("click", (event) => cancel(openJobId(), event.currentTarget));
  onJobUpdated((status) => {
    if (status.task_id === openJobId()) renderDetail(status);
  });
  onPageShown(() => {
    const open = jobOnPage(openJobId());
    if (open) renderDetail(open);
  });
}
