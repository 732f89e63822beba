// The list: loads the page shown (GET /jobs for the filters and the page's cursor), puts
// its rows in order with its counts and pager, and says why when it could not load.
// The filters, counts and pager are parts of it, started with it.
import { api } from "./api.js";
import { maySubmit } from "./caller.js";
import { renderCounts, startCounts } from "./counts.js";
import { describeError } from "./feedback.js";
import { addTaskName, isFiltered, jobsPath, startFilters } from "./filters.js";
import { createRow, renderRow } from "./job_row.js";
import { isFinal } from "./job_states.js";
import { currentCursor, firstPage, notePage, renderPager, startPager } from "./paging.js";
import { onJobUpdated, pageJobs, replacePage } from "./shown_jobs.js";
import { isFollowed } from "./streams.js";

const rows = new Map(); // task id -> its <tr>
let listController = null; // the GET /jobs under way, if any

export const isListLoading = () => listController !== null;

// Loads the page shown and, past page 1, whether newer jobs exist. A call supersedes
// one still under way: that one's answer is for other filters or another page.
export async function loadList() {
  if (listController) listController.abort();
  const controller = new AbortController();
  listController = controller;
  const cursor = currentCursor();
  try {
    const [list, newest] = await Promise.all([
      api(jobsPath({ cursor }), { signal: controller.signal }),
      cursor ? api(jobsPath({ limit: 1 }), { signal: controller.signal }) : null,
    ]);
    if (listController !== controller) return;
    showPage(list, newest);
    showListProblem(null);
  } catch (error) {
    if (listController === controller) showListProblem(error);
  } finally {
    if (listController === controller) listController = null;
  }
}

function showPage(list, newest) {
  notePage(list, newest);
  for (const status of list.jobs) addTaskName(status.name);
  // A followed job's stream is as fresh as this list or fresher: the list only
  // takes over once it says the job ended.
  replacePage(list.jobs, (status) => isFollowed(status.task_id) && !isFinal(status));
  renderList(list.counts);
}

function renderList(counts) {
  const body = document.getElementById("job-rows");
  const jobs = pageJobs();
  const ids = new Set(jobs.map((status) => status.task_id));
  for (const [id, row] of rows) {
    if (!ids.has(id)) { row.remove(); rows.delete(id); }
  }
  // Rows already in place stay where they are: moving a row would take the focus
  // from a button in it, every refresh.
  jobs.forEach((status, index) => {
    if (!rows.has(status.task_id)) rows.set(status.task_id, createRow(status.task_id));
    const row = rows.get(status.task_id);
    renderRow(row, status);
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
  });
  const empty = document.getElementById("empty");
  empty.textContent = isFiltered() ? "No jobs match these filters." : `No jobs yet${maySubmit() ? ": submit one above" : ""}.`;
  empty.hidden = jobs.length > 0;
  renderCounts(counts);
  renderPager();
}

// Why the list could not be loaded; shown by the list, retried with the next refresh.
function showListProblem(error) {
  const problem = document.getElementById("list-problem");
  const text = error ? `The list could not be loaded: ${describeError(error)}` : "";
  if (problem.textContent !== text) problem.textContent = text;
  problem.hidden = !error;
}

export function startJobList() {
  startFilters(firstPage);
  startCounts();
  startPager(loadList);
  onJobUpdated((status) => {
    const row = rows.get(status.task_id);
    if (row) renderRow(row, status);
  });
}
