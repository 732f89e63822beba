// The statuses the page shows: the jobs of the list's page, newest first, and which job
// the detail view has open (it may be on no page). Every fresher status (a stream, a
// long-poll, an action, the detail's own GET) comes through updateJob, and each view that
// shows a job hears of it: one place decides which status of a job is current.
import { forgetProgressExcept, noteProgress } from "./progress.js";

let order = []; // task ids of the page, newest first
let byId = new Map(); // task id -> status
let openId = null; // the job open in the detail view
const pageListeners = [];
const jobListeners = [];

export const jobOnPage = (id) => byId.get(id);
export const pageJobs = () => order.map((id) => byId.get(id));
export const openJobId = () => openId;

export function setOpenJob(id) {
  openId = id;
}

// listener() runs once a new page of the list is in place.
export function onPageShown(listener) {
  pageListeners.push(listener);
}

// listener(status, previous) runs for each fresher status; previous is the status the
// page had, or undefined when the job is on no page.
export function onJobUpdated(listener) {
  jobListeners.push(listener);
}

// A page of GET /jobs. keepKnown(status) says the page's own status of that job is
// fresher than the list's, and stays.
export function replacePage(statuses, keepKnown) {
  const next = new Map();
  for (const status of statuses) {
    const known = byId.get(status.task_id);
    next.set(status.task_id, known && keepKnown(status) ? known : status);
    noteProgress(status);
  }
  order = statuses.map((status) => status.task_id);
  byId = next;
  forgetProgressExcept((id) => byId.has(id) || id === openId);
  for (const listener of pageListeners) listener();
}

export function updateJob(status) {
  noteProgress(status);
  const previous = byId.get(status.task_id);
  if (previous) byId.set(status.task_id, status);
  for (const listener of jobListeners) listener(status, previous);
}
