// How far a job is, and the bar that shows it. A final status carries no progress, so the
// last percent seen of each job is kept here: a cancelled job's bar stays where it stopped.
import { isFinal } from "./job_states.js";

const lastPercent = new Map(); // task id -> last percent seen

export function noteProgress(status) {
  if (status.progress) lastPercent.set(status.task_id, status.progress.percent);
}

// Bounded by what the page shows: shown_jobs.js says which jobs to keep.
export function forgetProgressExcept(keep) {
  for (const id of lastPercent.keys()) {
    if (!keep(id)) lastPercent.delete(id);
  }
}

// null for a job that ended before this page saw any of its progress: no figure to show.
function percentOf(status) {
  if (status.state === "SUCCESS") return 100;
  let percent = status.progress ? status.progress.percent : lastPercent.get(status.task_id);
  if (percent === undefined) percent = isFinal(status) ? null : 0;
  return percent === null ? null : Math.max(0, Math.min(100, Number(percent) || 0));
}

// Fills `bar` (a .bar holding a .fill) to the job's percent; returns the percent, or null.
export function renderBar(bar, status) {
  const percent = percentOf(status);
  bar.setAttribute("aria-valuenow", String(percent ?? 0));
  bar.querySelector(".fill").style.width = `${percent ?? 0}%`;
  return percent;
}
