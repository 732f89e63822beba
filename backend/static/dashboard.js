// The dashboard: submit long tasks, follow them live, cancel them. Plain browser
// JavaScript, no build step, no dependency. Everything inserted into the page goes
// through textContent or attributes, never innerHTML: task results are user data.
"use strict";

(() => {
  const TASKS_KEY = "jobs-dashboard.tasks"; // localStorage: survives reloads, shared by tabs
  // sessionStorage: the token dies with the tab and is never written to disk by us.
  // Not in a URL (URLs end up in access logs and history), not in a cookie (the API
  // would then need CSRF protection).
  const TOKEN_KEY = "jobs-dashboard.token";
  const MAX_TASKS = 20;
  // Browsers allow about 6 HTTP/1.1 connections per origin, shared by every tab of
  // the origin, and a stream (or a long-poll) holds one for as long as it runs. So
  // only the LIVE_SLOTS newest unfinished tasks are followed live; older unfinished
  // tasks are refreshed by one polling loop, one short request at a time. Two tabs
  // then hold 4 streams and still leave 2 connections for submits and cancels.
  const LIVE_SLOTS = 2;
  const POLL_INTERVAL_MS = 3000;
  const LONG_POLL_SECONDS = 25;
  // Streams failing this many times in a row without one event (a proxy that blocks
  // or buffers text/event-stream, an old browser) switch the page to long-polling.
  const STREAM_FAILURES_BEFORE_LONG_POLL = 3;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const FINAL_STATES = new Set(["SUCCESS", "FAILURE", "REVOKED"]);

  const $ = (id) => document.getElementById(id);
  const rows = new Map(); // task id -> its <li>
  const following = new Map(); // task id -> AbortController of its live follower
  let tasks = loadTasks(); // newest first: {id, name, input, submittedAt, status, percent, gone}
  let transport = "stream"; // or "long-poll" once streams keep failing
  let streamFailures = 0;

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // --- storage ---------------------------------------------------------------------

  function loadTasks() {
    try {
      const saved = JSON.parse(localStorage.getItem(TASKS_KEY) || "[]");
      return Array.isArray(saved) ? saved.filter((task) => task && typeof task.id === "string") : [];
    } catch {
      return [];
    }
  }

  function saveTasks() {
    tasks = tasks.slice(0, MAX_TASKS);
    try {
      localStorage.setItem(TASKS_KEY, JSON.stringify(tasks));
    } catch {
      // Private mode or a full quota: the list still works until the page closes.
    }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

  // --- the API -----------------------------------------------------------------------

  function headers(accept, extra = {}) {
    const result = { Accept: accept, ...extra };
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

  // --- following tasks -------------------------------------------------------------

  const find = (id) => tasks.find((task) => task.id === id);
  const isDone = (task) => task.gone || (task.status && FINAL_STATES.has(task.status.state));

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
      console.warn(`live streams keep failing (${reason}): following tasks by long-polling`);
      renderMode();
    }
  }

  // Follows one task until it ends, is no longer among the live ones, or is gone.
  async function follow(id, signal) {
    let failures = 0;
    while (!signal.aborted) {
      const task = find(id);
      if (!task || isDone(task)) return;
      let delivered = false;
      try {
        if (transport === "stream") {
          await stream(id, signal, (status) => { delivered = true; update(id, status); });
          // A stream that ended with a status is fine (final state, or its lifetime
          // is over: reconnect at once); one that ended without any is a failure.
          if (delivered) streamFailures = 0;
          else streamFailed("a stream ended without an event");
        } else {
          update(id, await api(`${statusPath(id)}?wait=${LONG_POLL_SECONDS}`, { signal }));
          delivered = true;
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError) {
          if (error.status === 404) return markGone(id, error.message);
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

  // The LIVE_SLOTS newest unfinished tasks get a follower; the others are polled.
  function reconcile() {
    const wanted = tasks.filter((task) => !isDone(task)).slice(0, LIVE_SLOTS).map((task) => task.id);
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
        setTimeout(reconcile, 0); // a slot may be free for an older task now
      });
    }
    renderMode();
  }

  async function pollTheRest() {
    for (;;) {
      await sleep(POLL_INTERVAL_MS);
      for (const task of tasks.filter((t) => !isDone(t) && !following.has(t.id))) {
        try {
          update(task.id, await api(statusPath(task.id)));
        } catch (error) {
          if (error instanceof ApiError && error.status === 404) markGone(task.id, error.message);
          else { showError(error); break; }
        }
      }
    }
  }

  function restartFollowers() {
    for (const controller of following.values()) controller.abort();
    following.clear();
    reconcile();
  }

  // --- state changes ---------------------------------------------------------------

  function update(id, status) {
    const task = find(id);
    if (!task) return;
    const wasDone = isDone(task);
    task.status = status;
    if (status.progress) task.percent = status.progress.percent;
    if (status.state === "SUCCESS") task.percent = 100;
    saveTasks();
    render(task);
    if (!wasDone && isDone(task)) reconcile();
  }

  function markGone(id, message) {
    const task = find(id);
    if (!task) return;
    task.gone = message || "no such task (expired)";
    saveTasks();
    render(task);
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
      tasks.unshift({
        id: submitted.task_id,
        name: "long_task",
        input,
        submittedAt: new Date().toISOString(),
        status: null,
        percent: 0,
        gone: null,
      });
      saveTasks();
      hideError();
      renderAll();
      reconcile();
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  }

  async function cancel(id, button) {
    button.disabled = true;
    try {
      update(id, await api(`${statusPath(id)}/cancel`, { method: "POST" }));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) markGone(id, error.message);
      else showError(error);
      button.disabled = false;
    }
  }

  // --- rendering (textContent only) --------------------------------------------------

  function showError(error) {
    const code = error instanceof ApiError ? ` (${error.code})` : "";
    let text = `${error.message}${code}`;
    if (error instanceof ApiError && error.status === 401) text += ": enter a token under “API token”.";
    $("error-text").textContent = text;
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
  }

  function renderMode() {
    const live = following.size;
    const polled = tasks.filter((task) => !isDone(task)).length - live;
    const how = transport === "stream" ? "live" : "by long-poll (streaming unavailable)";
    $("mode").textContent = live || polled ? `${live} followed ${how}${polled > 0 ? `, ${polled} polled` : ""}` : "";
    $("mode").dataset.transport = transport;
  }

  function renderToken() {
    $("token-state").textContent = token() ? "(saved for this tab)" : "(none)";
  }

  function rowFor(task) {
    let row = rows.get(task.id);
    if (!row) {
      row = $("task-template").content.firstElementChild.cloneNode(true);
      row.dataset.taskId = task.id;
      row.querySelector(".cancel").addEventListener("click", (event) => cancel(task.id, event.currentTarget));
      rows.set(task.id, row);
    }
    return row;
  }

  function describeInput(input) {
    if (!input) return "";
    const steps = input.steps ?? 10;
    const seconds = input.step_seconds ?? 1;
    return `${steps} × ${seconds} s`;
  }

  function render(task) {
    const row = rowFor(task);
    const status = task.status;
    const state = task.gone ? "GONE" : status ? status.state : "SUBMITTED";
    const percent = Math.max(0, Math.min(100, Number(task.percent) || 0));
    row.className = `task state-${state.toLowerCase()}`;
    row.querySelector(".task-name").textContent = task.name;
    row.querySelector(".task-id").textContent = task.id;
    row.querySelector(".badge").textContent = state;
    row.querySelector(".bar").setAttribute("aria-valuenow", String(percent));
    row.querySelector(".fill").style.width = `${percent}%`;
    row.querySelector(".percent").textContent = `${percent.toFixed(0)} %`;
    let message = "";
    if (status && status.progress) message = status.progress.message;
    else if (status && status.result && typeof status.result.message === "string") message = status.result.message;
    row.querySelector(".message").textContent = message;
    row.querySelector(".input").textContent = describeInput(task.input);
    const submitted = new Date(task.submittedAt);
    row.querySelector(".submitted").textContent = Number.isNaN(submitted.getTime())
      ? "" : `submitted ${submitted.toLocaleTimeString()}`;
    const error = row.querySelector(".task-error");
    const problem = task.gone || (status && status.error ? `${status.error.type}: ${status.error.message}` : "");
    error.textContent = problem;
    error.hidden = !problem;
    row.querySelector(".cancel").hidden = isDone(task);
  }

  function renderAll() {
    const list = $("tasks");
    const shown = new Set(tasks.map((task) => task.id));
    for (const [id, row] of rows) {
      if (!shown.has(id)) { row.remove(); rows.delete(id); }
    }
    for (const task of tasks) {
      render(task);
      list.append(rowFor(task)); // append moves an existing row: keeps the order newest first
    }
    $("empty").hidden = tasks.length > 0;
    renderMode();
  }

  // --- start -----------------------------------------------------------------------

  function start() {
    $("submit-form").addEventListener("submit", submit);
    $("error-dismiss").addEventListener("click", hideError);
    $("clear-finished").addEventListener("click", () => {
      tasks = tasks.filter((task) => !isDone(task));
      saveTasks();
      renderAll();
    });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      renderToken();
      hideError();
      restartFollowers();
    });
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      renderToken();
      restartFollowers();
    });
    // Another tab of the dashboard changed the list: take its version, which is as fresh.
    window.addEventListener("storage", (event) => {
      if (event.key !== TASKS_KEY) return;
      tasks = loadTasks();
      renderAll();
      reconcile();
    });
    renderToken();
    renderAll();
    reconcile();
    pollTheRest();
  }

  start();
})();
