// The queues panel, for the callers who may read GET /queues (admins): per queue, the jobs
// ready, scheduled and running, and how long the oldest ready one has waited. Refreshed
// every REFRESH_MS while the tab is visible; hidden for other roles, and while the API
// refuses (a 403 after a token change hides it until the next allowed read).
import { api } from "./api.js";
import { mayReadQueues } from "./caller.js";
import { sleep } from "./sleep.js";

const REFRESH_MS = 2000;

function waited(seconds) {
  if (seconds == null) return "—";
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function render(queues) {
  const rows = document.getElementById("queue-rows");
  rows.replaceChildren(
    ...queues.map((queue) => {
      const row = document.createElement("tr");
      row.dataset.queue = queue.name;
      for (const value of [queue.name, queue.ready, queue.scheduled, queue.running,
        waited(queue.oldest_ready_age_seconds)]) {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        row.append(cell);
      }
      return row;
    }),
  );
}

export async function loadQueues() {
  const panel = document.getElementById("queues-panel");
  if (!mayReadQueues()) {
    panel.hidden = true;
    return;
  }
  try {
    render((await api("/queues")).queues);
    panel.hidden = false;
  } catch {
    panel.hidden = true; // not allowed, or Redis down: the job list says why
  }
}

export async function startQueues() {
  for (;;) {
    await loadQueues();
    do await sleep(REFRESH_MS);
    while (document.visibilityState !== "visible");
  }
}
