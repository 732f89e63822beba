// Following the page's running jobs live: which jobs get a slot, one stream per slot
// (reconnected with backoff), the switch to long-polling when streams keep failing, and
// the line above the list that says how jobs are followed.
//
// Browsers allow about 6 HTTP/1.1 connections per origin, shared by every tab of the
// origin, and a stream (or a long-poll) holds one for as long as it runs. So at most
// LIVE_SLOTS jobs of the page shown are followed live; the others are refreshed with the
// whole page (refresh.js). Two tabs then hold 4 streams and still leave 2 connections
// for listing, submits and cancels.
import { api, ApiError, statusPath } from "./api.js";
import { streamStatuses } from "./event_stream.js";
import { showError } from "./feedback.js";
import { isFinal } from "./job_states.js";
import { jobOnPage, onJobUpdated, onPageShown, pageJobs, updateJob } from "./shown_jobs.js";
import { sleep } from "./sleep.js";

const LIVE_SLOTS = 2;
const LONG_POLL_SECONDS = 25;
// Streams failing this many times in a row without one event (a proxy that blocks
// or buffers text/event-stream, an old browser) switch the page to long-polling.
const STREAM_FAILURES_BEFORE_LONG_POLL = 3;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30000;

const following = new Map(); // task id -> AbortController of its live follower
const gone = new Set(); // ids the API answered 404 for (expired): never followed again
let transport = "stream"; // or "long-poll" once streams keep failing
let streamFailures = 0;

export const isFollowed = (id) => following.has(id);

function backoff(failures) {
  const ms = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (failures - 1));
  return ms / 2 + Math.random() * (ms / 2); // jitter: tabs reconnecting after an outage spread out
}

function streamFailed(reason) {
  streamFailures += 1;
  if (transport === "stream" && streamFailures >= STREAM_FAILURES_BEFORE_LONG_POLL) {
    transport = "long-poll";
    console.warn(`live streams keep failing (${reason}): following jobs by long-polling`);
    renderMode();
  }
}

// Follows one job until it ends, leaves the page shown, or is gone.
async function follow(id, signal) {
  let failures = 0;
  while (!signal.aborted) {
    const status = jobOnPage(id);
    if (!status || isFinal(status) || gone.has(id)) return;
    let delivered = false;
    try {
      if (transport === "stream") {
        await streamStatuses(id, signal, (update) => { delivered = true; updateJob(update); });
        // A stream that ended with a status is fine (final state, or its lifetime
        // is over: reconnect at once); one that ended without any is a failure.
        if (delivered) streamFailures = 0;
        else streamFailed("a stream ended without an event");
      } else {
        updateJob(await api(`${statusPath(id)}?wait=${LONG_POLL_SECONDS}`, { signal }));
        delivered = true;
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError) {
        if (error.status === 404) { gone.add(id); return; }
        showError(error);
      } else if (transport === "stream") {
        // A stream dropped after it delivered (server restart, network change) is
        // reconnected at once below; only streams that never work count against it.
        if (!delivered) streamFailed(error.message);
      } else {
        showError(error);
      }
    }
    failures = delivered ? 0 : failures + 1;
    if (failures > 0) await sleep(backoff(failures), signal);
  }
}

// The jobs of the page shown that get a live follower: running ones, then queued ones,
// then scheduled ones (a waiting job's bar does not move), and among those the oldest
// first, since it started (or starts) first, ends first, and then frees its slot.
const WAITING_RANK = { QUEUED: 1, SCHEDULED: 2 };
const waitingRank = (status) => WAITING_RANK[status.state] || 0;

function liveCandidates() {
  return pageJobs()
    .map((status, index) => ({ status, index }))
    .filter(({ status }) => !isFinal(status) && !gone.has(status.task_id))
    .sort((a, b) => waitingRank(a.status) - waitingRank(b.status) || b.index - a.index)
    .slice(0, LIVE_SLOTS)
    .map(({ status }) => status.task_id);
}

// Gives the slots to the jobs that should have them now, stopping the followers of the others.
function followLiveJobs() {
  const wanted = liveCandidates();
  for (const [id, controller] of following) {
    if (!wanted.includes(id)) {
      following.delete(id);
      controller.abort();
    }
  }
  for (const id of wanted) {
    if (following.has(id)) continue;
    const controller = new AbortController();
    following.set(id, controller);
    follow(id, controller.signal).finally(() => {
      if (following.get(id) === controller) following.delete(id);
      setTimeout(followLiveJobs, 0); // a slot may be free for another job now
    });
  }
  renderMode();
}

// A new token: every follower starts again with it, and no job counts as gone any more.
export function restartFollowers() {
  gone.clear();
  for (const controller of following.values()) controller.abort();
  following.clear();
  followLiveJobs();
}

function renderMode() {
  const mode = document.getElementById("mode");
  const live = following.size;
  const polled = pageJobs().filter((status) => !isFinal(status)).length - live;
  const how = transport === "stream" ? "live" : "by long-poll (streaming unavailable)";
  mode.textContent = live || polled > 0 ? `${live} followed ${how}${polled > 0 ? `, ${polled} polled` : ""}` : "";
  mode.dataset.transport = transport;
}

export function startStreams() {
  onPageShown(followLiveJobs);
  onJobUpdated((status, previous) => {
    if (!previous) return; // on no page: nothing to follow
    if (!isFinal(previous) && isFinal(status)) followLiveJobs(); // its slot is free now
    else renderMode();
  });
}
