// The dashboard's entry, loaded by backend/templates/dashboard.html as a module: starts
// each part of the page and wires what crosses parts. The page shows the server's job
// history (GET /jobs), however each job was submitted, with filters, counts per state and
// paging; submits, cancels and retries jobs; shows a job's details; follows running jobs
// live. Plain browser JavaScript modules: no build step, no dependency. Names, inputs,
// results, errors and owners come from clients: everything inserted into the page goes
// through textContent or attributes, never innerHTML.
import { cancel, retry, startRetryAllFailed } from "./actions.js";
import { loadCaller } from "./caller.js";
import { openDetail, startDetail } from "./detail.js";
import { hideError, startFeedback } from "./feedback.js";
import { loadTaskNames } from "./filters.js";
import { loadList, startJobList } from "./job_list.js";
import { loadQueues, startQueues } from "./queues.js";
import { startRefreshing } from "./refresh.js";
import { restartFollowers, startStreams } from "./streams.js";
import { startSubmitForm } from "./submit.js";
import { startTokenField } from "./token.js";

// Another token: who it names decides what the page offers, and what failed without it (or
// with the old one) is asked again.
async function tokenChanged() {
  hideError();
  await loadCaller();
  loadQueues();
  restartFollowers();
  loadTaskNames();
  loadList();
}

// One listener for every row: a button acts on its row's job, a click elsewhere opens it.
function onRowClick(event) {
  const row = event.target.closest("tr.job");
  if (!row) return;
  const button = event.target.closest("button");
  if (button && button.classList.contains("retry")) retry(row.dataset.taskId, button);
  else if (button && button.classList.contains("cancel")) cancel(row.dataset.taskId, button);
  else openDetail(row.dataset.taskId);
}

startFeedback();
startTokenField(tokenChanged);
startSubmitForm();
startJobList();
startStreams();
startDetail();
startRetryAllFailed();
document.getElementById("job-rows").addEventListener("click", onRowClick);
await loadCaller(); // before the first rows: their buttons depend on it
loadTaskNames();
loadList();
startRefreshing();
startQueues();
