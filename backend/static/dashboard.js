// The dashboard: the server's job history (GET /jobs), however each job was submitted,
// with filters, counts per state and paging; submit, cancel and retry jobs; a job's
// details; live progress for running jobs. Plain browser JavaScript, no build step, no
// dependency. Names, inputs, results, errors and owners come from clients: everything
// inserted into the page goes through textContent or attributes, never innerHTML.
"use strict";

(() => {
  // sessionStorage: the token dies with the tab and is never written to disk by us.
  // Not in a URL (URLs end up in access logs and history), not in a cookie (the API
  // would then need CSRF protection).
  const TOKEN_KEY = "jobs-dashboard.token";
  // Browsers allow about 6 HTTP/1.1 connections per origin, shared by every tab of
  // the origin, and a stream (or a long-poll) holds one for as long as it runs. So at
  // most LIVE_SLOTS jobs of the page shown are followed live; the others are refreshed
  // with the whole page, one short GET /jobs every REFRESH_MS. Two tabs then hold 4
  // streams and still leave 2 connections for listing, submits and cancels.
  const LIVE_SLOTS = 2;
  const REFRESH_MS = 2000;
  const LONG_POLL_SECONDS = 25;
  // Streams failing this many times in a row without one event (a proxy that blocks
  // or buffers text/event-stream, an old browser) switch the page to long-polling.
  const STREAM_FAILURES_BEFORE_LONG_POLL = 3;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  // Written into the page by the server (backend/api/dashboard.py): defined once, there.
  const statesFrom = (name) => new Set(document.body.dataset[name].split(" ").filter(Boolean));
  const FINAL_STATES = statesFrom("finalStates");
  const RETRYABLE_STATES = statesFrom("retryableStates");
  const CANCELLABLE_STATES = statesFrom("cancellableStates");

  const $ = (id) => document.getElementById(id);

  // What the list shows. cursors holds the cursor of every page visited, page 1's
  // (null) first: Next pushes next_cursor, Previous pops, any filter change resets it.
  const view = {
    states: [],
    name: "",
    limit: Number($("page-size").value),
    cursors: [null],
    nextCursor: null,
    counts: null,
    newest: null, // page 1's first job when page 1 was last loaded: {id, submittedAt}
    newerJobs: false, // jobs newer than `newest` exist (shown only past page 1)
  };
  const shown = { order: [], jobs: new Map() }; // the jobs of the page shown, newest first
  const rows = new Map(); // task id -> its <tr>
  const lastPercent = new Map(); // task id -> last percent seen: a final status has no progress
  const gone = new Set(); // ids the API answered 404 for (expired): never followed again
  const following = new Map(); // task id -> AbortController of its live follower
  const detail = { id: null, status: null };
  let transport = "stream"; // or "long-poll" once streams keep failing
  let streamFailures = 0;
  let loadSeq = 0;
  let listController = null; // the GET /jobs under way, if any

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // --- the API -----------------------------------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

  function headers(accept) {
    const result = { Accept: accept };
    if (token()) result.Authorization = `Bearer ${token()}`;
    return result;
  }

  async function errorFrom(response) {
    const body = await response.json().catch(() => null);
    const error = body && body.error;
    if (error && typeof error.message === "string") return new ApiError(response.status, error.code, error.message);
    return new ApiError(response.status, `http_${response.status}`, `HTTP ${response.status} ${response.statusText}`);
  }

  async function api(path, { method = "GET", body, signal } = {}) {
    const init = { method, signal, cache: "no-store", headers: headers("application/json") };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (!response.ok) throw await errorFrom(response);
    return response.json();
  }

  const statusPath = (id) => `/status/${encodeURIComponent(id)}`;

  // GET /jobs for the filters shown; a cursor is only valid with the filters it came from.
  function jobsPath({ cursor = null, limit = view.limit } = {}) {
    const query = new URLSearchParams();
    if (view.states.length) query.set("state", view.states.join(","));
    if (view.name) query.set("name", view.name);
    query.set("limit", String(limit));
    if (cursor) query.set("cursor", cursor);
    return `/jobs?${query}`;
  }

  // fetch() rather than EventSource: EventSource cannot send an Authorization header.
  // Resolves when the server ends the stream; rejects on a network or API error.
  async function stream(id, signal, onStatus) {
    const response = await fetch(`${statusPath(id)}/events`, {
      signal,
      cache: "no-store",
      headers: headers("text/event-stream"),
    });
    if (!response.ok) throw await errorFrom(response);
    const type = response.headers.get("Content-Type") || "";
    if (!type.startsWith("text/event-stream") || !response.body) {
      throw new Error("the server did not answer with an event stream");
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event && event.type === "status") onStatus(JSON.parse(event.data));
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // One block of text/event-stream; comments (heartbeats) and retry: are skipped.
  function parseEvent(block) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    return data.length ? { type, data: data.join("\n") } : null;
  }

  // --- the list ----------------------------------------------------------------------

  const isFinal = (status) => FINAL_STATES.has(status.state);
  const pageNumber = () => view.cursors.length;
  const currentCursor = () => view.cursors[view.cursors.length - 1];

  // Loads the page shown and, past page 1, whether newer jobs exist. A call supersedes
  // one still under way: that one's answer is for other filters or another page.
  async function loadList() {
    const seq = ++loadSeq;
    if (listController) listController.abort();
    const controller = new AbortController();
    listController = controller;
    const cursor = currentCursor();
    try {
      const [list, newest] = await Promise.all([
        api(jobsPath({ cursor }), { signal: controller.signal }),
        cursor ? api(jobsPath({ limit: 1 }), { signal: controller.signal }) : null,
      ]);
      if (seq !== loadSeq) return;
      showPage(list, newest);
      showListProblem(null);
    } catch (error) {
      if (seq === loadSeq) showListProblem(error);
    } finally {
      if (seq === loadSeq) listController = null;
    }
  }

  function showPage(list, newest) {
    view.nextCursor = list.next_cursor;
    view.counts = list.counts;
    if (pageNumber() === 1) {
      const first = list.jobs[0];
      view.newest = first ? { id: first.task_id, submittedAt: first.submitted_at || "" } : null;
      view.newerJobs = false;
    } else {
      view.newerJobs = isNewer(newest && newest.jobs[0]);
    }
    const jobs = new Map();
    for (const status of list.jobs) {
      const known = shown.jobs.get(status.task_id);
      // A followed job's stream is as fresh as this list or fresher: the list only
      // takes over once it says the job ended.
      const keep = known && following.has(status.task_id) && !isFinal(status);
      jobs.set(status.task_id, keep ? known : status);
      noteProgress(status);
      addNameOption(status.name);
    }
    shown.order = list.jobs.map((status) => status.task_id);
    shown.jobs = jobs;
    for (const id of lastPercent.keys()) {
      if (!jobs.has(id) && id !== detail.id) lastPercent.delete(id); // bounded by the page shown
    }
    renderList();
    reconcile();
    const open = detail.id && shown.jobs.get(detail.id);
    if (open) renderDetail(open);
  }

  // Whether `first`, the newest job of the filters now, is newer than page 1's first was.
  // Only a newer one counts: page 1's first job expiring makes an older one the newest.
  function isNewer(first) {
    if (!first) return false;
    if (!view.newest) return true;
    return first.task_id !== view.newest.id && (first.submitted_at || "") >= view.newest.submittedAt;
  }

  // Another page, or other filters: the next page's cursor is known once this one is
  // loaded, and Next does nothing till then. (It is not disabled meanwhile: that would
  // take the focus from a keyboard user paging through.)
  function navigate() {
    view.nextCursor = null;
    $("page-number").textContent = `Page ${pageNumber()}`;
    loadList();
  }

  function changeFilters() {
    view.states = [...document.querySelectorAll('#state-filter input[name="state"]:checked')].map((box) => box.value);
    view.name = $("name-filter").value;
    view.limit = Number($("page-size").value);
    view.cursors = [null];
    navigate();
  }

  const showsOnly = (state) => view.states.length === 1 && view.states[0] === state;

  // A count's button toggles "only this state": pressed again, it shows every state.
  function toggleOnlyState(state) {
    const only = showsOnly(state);
    for (const box of document.querySelectorAll('#state-filter input[name="state"]')) {
      box.checked = !only && box.value === state;
    }
    changeFilters();
  }

  function nextPage() {
    if (!view.nextCursor) return;
    view.cursors.push(view.nextCursor);
    navigate();
  }

  function previousPage() {
    if (view.cursors.length === 1) return;
    view.cursors.pop();
    navigate();
  }

  function newestPage() {
    view.cursors = [null];
    navigate();
  }

  async function loadTaskNames() {
    try {
      const { tasks } = await api("/tasks");
      for (const task of tasks) addNameOption(task.name);
    } catch {
      // Without a valid token the list says why; the names are asked again once one is saved.
    }
  }

  // The public tasks, and any other name seen in the history (jobs sent by code or beat).
  function addNameOption(name) {
    const select = $("name-filter");
    if (!name || [...select.options].some((option) => option.value === name)) return;
    select.append(new Option(name, name));
  }

  // --- following running jobs ------------------------------------------------------

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

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
      const status = shown.jobs.get(id);
      if (!status || isFinal(status) || gone.has(id)) return;
      let delivered = false;
      try {
        if (transport === "stream") {
          await stream(id, signal, (update) => { delivered = true; applyStatus(update); });
          // A stream that ended with a status is fine (final state, or its lifetime
          // is over: reconnect at once); one that ended without any is a failure.
          if (delivered) streamFailures = 0;
          else streamFailed("a stream ended without an event");
        } else {
          applyStatus(await api(`${statusPath(id)}?wait=${LONG_POLL_SECONDS}`, { signal }));
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

  // The jobs of the page shown that get a live follower: running ones before queued
  // ones (a queued job's bar does not move), and among those the oldest first, since
  // it started (or starts) first, ends first, and then frees its slot for the next.
  function liveCandidates() {
    return shown.order
      .map((id, index) => ({ status: shown.jobs.get(id), index }))
      .filter(({ status }) => !isFinal(status) && !gone.has(status.task_id))
      .sort((a, b) => Number(a.status.state === "QUEUED") - Number(b.status.state === "QUEUED") || b.index - a.index)
      .slice(0, LIVE_SLOTS)
      .map(({ status }) => status.task_id);
  }

  function reconcile() {
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
        setTimeout(reconcile, 0); // a slot may be free for another job now
      });
    }
    renderMode();
  }

  function restartFollowers() {
    for (const controller of following.values()) controller.abort();
    following.clear();
    reconcile();
  }

  function noteProgress(status) {
    if (status.progress) lastPercent.set(status.task_id, status.progress.percent);
  }

  // A fresher status of one job, from a stream, a long-poll, a cancel or the detail view.
  function applyStatus(status) {
    noteProgress(status);
    const known = shown.jobs.get(status.task_id);
    if (known) {
      shown.jobs.set(status.task_id, status);
      renderRow(status);
      renderMode();
      if (!isFinal(known) && isFinal(status)) reconcile();
    }
    if (detail.id === status.task_id) renderDetail(status);
  }

  // Every REFRESH_MS while the page is visible: page 1 is reloaded, so new jobs appear;
  // a later page is reloaded in place (its cursor holds it), and says when newer jobs exist.
  async function refreshForever() {
    for (;;) {
      await sleep(REFRESH_MS);
      if (document.visibilityState !== "visible") continue;
      if (!listController) await loadList(); // a load under way is as fresh
      await refreshDetail();
    }
  }

  // --- actions -----------------------------------------------------------------------

  function say(text) {
    $("action-status").textContent = text;
  }

  async function submit(event) {
    event.preventDefault();
    const button = $("submit");
    const input = {};
    const steps = $("steps").valueAsNumber;
    const stepSeconds = $("step-seconds").valueAsNumber;
    if (!Number.isNaN(steps)) input.steps = steps;
    if (!Number.isNaN(stepSeconds)) input.step_seconds = stepSeconds;
    button.disabled = true;
    try {
      const submitted = await api("/tasks/long_task", { method: "POST", body: input });
      $("submit-status").textContent = `Submitted ${submitted.task_id}.`;
      hideError();
      loadList();
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  }

  async function cancel(id, button) {
    button.disabled = true;
    try {
      const status = await api(`${statusPath(id)}/cancel`, { method: "POST" });
      applyStatus(status);
      say(isFinal(status) ? `Cancelled ${id}.` : `Cancelling ${id}: a running job stops at its next step.`);
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  }

  async function retry(id, button) {
    button.disabled = true;
    try {
      const retried = await api(`${statusPath(id)}/retry`, { method: "POST" });
      const status = shown.jobs.get(id) || (detail.id === id ? detail.status : null);
      if (status) applyStatus({ ...status, retried_by: retried.task_id });
      say(`Retried ${id} as ${retried.task_id}.`);
      loadList();
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  }

  async function retryAllFailed(button) {
    const which = view.name ? `failed ${view.name} job` : "failed job";
    if (!window.confirm(`Retry every ${which} not retried yet?`)) return;
    const filters = { state: ["FAILURE"] };
    if (view.name) filters.name = view.name;
    button.disabled = true;
    try {
      say(describeBulkRetry(await api("/jobs/retry", { method: "POST", body: filters })));
      loadList();
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  }

  function describeBulkRetry(outcome) {
    let text = `Retried ${outcome.done} failed ${outcome.done === 1 ? "job" : "jobs"}.`;
    const skipped = Object.entries(outcome.skipped || {});
    if (skipped.length) text += ` Skipped: ${skipped.map(([code, count]) => `${count} ${code}`).join(", ")}.`;
    if (outcome.more) text += ` More remain (at most ${outcome.limit} per call): click again to retry them.`;
    return text;
  }

  // --- the detail view ---------------------------------------------------------------

  async function openDetail(id) {
    detail.id = id;
    detail.status = null;
    const dialog = $("detail");
    $("detail-problem").hidden = true;
    const known = shown.jobs.get(id);
    if (known) renderDetail(known);
    else clearDetail(id);
    if (!dialog.open) dialog.showModal();
    await refreshDetail({ always: true });
  }

  async function refreshDetail({ always = false } = {}) {
    const id = detail.id;
    if (!id || !$("detail").open) return;
    // A job of the page shown is refreshed with the page (or followed live).
    if (!always && (shown.jobs.has(id) || (detail.status && isFinal(detail.status)))) return;
    try {
      const status = await api(statusPath(id));
      if (detail.id === id) applyStatus(status);
    } catch (error) {
      if (detail.id !== id) return;
      $("detail-problem").textContent = error.message;
      $("detail-problem").hidden = false;
    }
  }

  function clearDetail(id) {
    renderDetail({
      task_id: id, name: "", state: "", progress: null, result: null, error: null, submitted_at: null,
      started_at: null, finished_at: null, owner: null, input: null, input_note: null, retry_of: null, retried_by: null,
    });
  }

  const field = (name) => $("detail").querySelector(`[data-field="${name}"]`);

  // Shows a field's text, or hides its line of the list when there is none.
  function setField(name, text) {
    const element = field(name);
    element.textContent = text;
    element.closest(".fields > div").hidden = text === "";
  }

  function setTimeField(name, iso) {
    setField(name, iso ? formatTime(iso, { always: "date" }) : "");
    field(name).dateTime = iso || "";
    field(name).title = iso || "";
  }

  function renderDetail(status) {
    detail.status = status;
    const dialog = $("detail");
    const state = status.state || "";
    dialog.className = `detail state-${state.toLowerCase()}`;
    dialog.querySelector(".detail-name").textContent = status.name;
    dialog.querySelector(".detail-id").textContent = status.task_id;
    renderBar(dialog.querySelector(".bar"), status);
    dialog.querySelector(".bar").hidden = !CANCELLABLE_STATES.has(state);
    setField("state", state);
    setField("progress", status.progress ? `${status.progress.percent} %: ${status.progress.message}` : "");
    setField("owner", status.owner || "");
    setTimeField("submitted_at", status.submitted_at);
    setTimeField("started_at", status.started_at);
    setTimeField("finished_at", status.finished_at);
    setField("input", status.input != null ? JSON.stringify(status.input, null, 2) : status.input_note || "");
    setField("result", status.state === "SUCCESS" ? JSON.stringify(status.result, null, 2) : "");
    setField("error", status.error ? `${status.error.type}: ${status.error.message}` : "");
    setField("retry_of", status.retry_of || "");
    setField("retried_by", status.retried_by || "");
    $("detail-retry").hidden = !canRetry(status);
    $("detail-cancel").hidden = !CANCELLABLE_STATES.has(state);
  }

  // --- rendering (textContent only) --------------------------------------------------

  const canRetry = (status) => RETRYABLE_STATES.has(status.state) && !status.retried_by;

  function showError(error) {
    $("error-text").textContent = describeError(error);
    $("error").hidden = false;
  }

  function describeError(error) {
    const code = error instanceof ApiError ? ` (${error.code})` : "";
    let text = `${error.message}${code}`;
    if (error instanceof ApiError && error.status === 401) text += ": enter a token under “API token”.";
    return text;
  }

  function hideError() {
    $("error").hidden = true;
  }

  // Why the list could not be loaded; shown by the list, retried with the next refresh.
  function showListProblem(error) {
    const problem = $("list-problem");
    const text = error ? `The list could not be loaded: ${describeError(error)}` : "";
    if (problem.textContent !== text) problem.textContent = text;
    problem.hidden = !error;
  }

  function renderMode() {
    const live = following.size;
    const polled = shown.order.filter((id) => !isFinal(shown.jobs.get(id))).length - live;
    const how = transport === "stream" ? "live" : "by long-poll (streaming unavailable)";
    $("mode").textContent = live || polled > 0 ? `${live} followed ${how}${polled > 0 ? `, ${polled} polled` : ""}` : "";
    $("mode").dataset.transport = transport;
  }

  function renderToken() {
    $("token-state").textContent = token() ? "(saved for this tab)" : "(none)";
  }

  function formatTime(iso, { always } = {}) {
    const moment = new Date(iso);
    if (Number.isNaN(moment.getTime())) return iso;
    const today = moment.toDateString() === new Date().toDateString();
    return today && always !== "date" ? moment.toLocaleTimeString() : moment.toLocaleString();
  }

  // null for a job that ended before this page saw any of its progress: no figure to show.
  function percentOf(status) {
    if (status.state === "SUCCESS") return 100;
    let percent = status.progress ? status.progress.percent : lastPercent.get(status.task_id);
    if (percent === undefined) percent = FINAL_STATES.has(status.state) ? null : 0;
    return percent === null ? null : Math.max(0, Math.min(100, Number(percent) || 0));
  }

  function renderBar(bar, status) {
    const percent = percentOf(status);
    bar.setAttribute("aria-valuenow", String(percent ?? 0));
    bar.querySelector(".fill").style.width = `${percent ?? 0}%`;
    return percent;
  }

  function summary(status) {
    if (status.progress) return status.progress.message;
    if (status.state !== "SUCCESS" || status.result == null) return "";
    if (typeof status.result.message === "string") return status.result.message;
    const text = JSON.stringify(status.result);
    return `result: ${text.length > 80 ? `${text.slice(0, 79)}…` : text}`;
  }

  function rowFor(id) {
    let row = rows.get(id);
    if (!row) {
      row = $("job-row-template").content.firstElementChild.cloneNode(true);
      row.dataset.taskId = id;
      rows.set(id, row);
    }
    return row;
  }

  function renderRow(status) {
    const row = rowFor(status.task_id);
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
    error.textContent = status.error ? `${status.error.type}: ${status.error.message}` : "";
    error.title = error.textContent;
    error.hidden = !status.error;
    row.querySelector(".retry").hidden = !canRetry(status);
    row.querySelector(".cancel").hidden = !CANCELLABLE_STATES.has(status.state);
    row.querySelector(".retried").hidden = !status.retried_by;
  }

  function renderList() {
    const body = $("job-rows");
    const ids = new Set(shown.order);
    for (const [id, row] of rows) {
      if (!ids.has(id)) { row.remove(); rows.delete(id); }
    }
    // Rows already in place stay where they are: moving a row would take the focus
    // from a button in it, every refresh.
    shown.order.forEach((id, index) => {
      renderRow(shown.jobs.get(id));
      const row = rows.get(id);
      if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
    });
    const filtered = view.states.length > 0 || view.name !== "";
    $("empty").textContent = filtered ? "No jobs match these filters." : "No jobs yet: submit one above.";
    $("empty").hidden = shown.order.length > 0;
    renderCounts();
    renderPager();
    renderMode();
  }

  function renderPager() {
    $("page-number").textContent = `Page ${pageNumber()}`;
    $("previous-page").disabled = pageNumber() === 1;
    $("next-page").disabled = !view.nextCursor;
    $("newer-jobs").hidden = !(pageNumber() > 1 && view.newerJobs);
  }

  function renderCounts() {
    const counts = view.counts || {};
    let total = 0;
    for (const button of document.querySelectorAll("#counts .count")) {
      const count = Number(counts[button.dataset.state]) || 0;
      total += count;
      button.querySelector(".count-value").textContent = String(count);
      button.setAttribute("aria-pressed", String(showsOnly(button.dataset.state)));
    }
    $("count-total").textContent = `${total} ${total === 1 ? "job" : "jobs"}`;
  }

  // --- start -----------------------------------------------------------------------

  function start() {
    $("submit-form").addEventListener("submit", submit);
    $("error-dismiss").addEventListener("click", hideError);
    $("filters").addEventListener("change", changeFilters);
    $("filters").addEventListener("submit", (event) => event.preventDefault());
    $("retry-failed").addEventListener("click", (event) => retryAllFailed(event.currentTarget));
    $("counts").addEventListener("click", (event) => {
      const button = event.target.closest(".count");
      if (button) toggleOnlyState(button.dataset.state);
    });
    $("next-page").addEventListener("click", nextPage);
    $("previous-page").addEventListener("click", previousPage);
    $("newer-jobs").addEventListener("click", newestPage);
    // One listener for every row: a button acts on its row's job, a click elsewhere opens it.
    $("job-rows").addEventListener("click", (event) => {
      const row = event.target.closest("tr.job");
      if (!row) return;
      const button = event.target.closest("button");
      if (button && button.classList.contains("retry")) retry(row.dataset.taskId, button);
      else if (button && button.classList.contains("cancel")) cancel(row.dataset.taskId, button);
      else openDetail(row.dataset.taskId);
    });
    $("detail-close").addEventListener("click", () => $("detail").close());
    $("detail").addEventListener("close", () => { detail.id = null; detail.status = null; });
    for (const name of ["retry_of", "retried_by"]) {
      field(name).addEventListener("click", (event) => openDetail(event.currentTarget.textContent));
    }
    $("detail-retry").addEventListener("click", (event) => retry(detail.id, event.currentTarget));
    $("detail-cancel").addEventListener("click", (event) => cancel(detail.id, event.currentTarget));
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      tokenChanged();
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      tokenChanged();
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") loadList();
    });
    renderToken();
    loadTaskNames();
    loadList();
    refreshForever();
  }

  function tokenChanged() {
    renderToken();
    hideError();
    gone.clear();
    restartFollowers();
    loadTaskNames();
    loadList();
  }

  start();
})();
