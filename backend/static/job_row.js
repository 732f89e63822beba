// One job's row of the list: a copy of the page's <template id="job-row-template">, filled
// with textContent only, since names, results, errors and owners come from clients.
import { errorText, formatTime } from "./format.js";
import { mayCancel, mayRetry } from "./caller.js";
import { canCancel, canRetry } from "./job_states.js";
import { renderBar } from "./progress.js";

export function createRow(id) {
  const row = document.getElementById("job-row-template").content.firstElementChild.cloneNode(true);
  row.dataset.taskId = id;
  return row;
}

// The line under the bar: the job's progress message, or what it returned.
function summary(status) {
  if (status.progress) return status.progress.message;
  if (status.state !== "SUCCESS" || status.result == null) return "";
  if (typeof status.result.message === "string") return status.result.message;
  const text = JSON.stringify(status.result);
  return `result: ${text.length > 80 ? `${text.slice(0, 79)}…` : text}`;
}

export function renderRow(row, status) {
  row.className = `job state-${status.state.toLowerCase()}`;
  row.querySelector(".job-name").textContent = status.name;
  row.querySelector(".job-id").textContent = status.task_id;
  row.querySelector(".badge").textContent = status.state;
  const percent = renderBar(row.querySelector(".bar"), status);
  row.querySelector(".percent").textContent = percent === null ? "" : `${percent.toFixed(0)} %`;
  row.querySelector(".message").textContent = summary(status);
  const submitted = row.querySelector(".submitted");
  submitted.textContent = status.submitted_at ? formatTime(status.submitted_at) : "";
  submitted.dateTime = status.submitted_at || "";
  row.querySelector(".owner").textContent = status.owner || "";
  const error = row.querySelector(".job-error");
  error.textContent = errorText(status);
  error.title = error.textContent;
  error.hidden = !status.error;
  row.querySelector(".retry").hidden = !canRetry(status) || !mayRetry(status);
  row.querySelector(".cancel").hidden = !canCancel(status) || !mayCancel(status);
  row.querySelector(".retried").hidden = !status.retried_by;
}
