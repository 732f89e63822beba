// Which jobs the list asks GET /jobs for: the state boxes, the task select and the page
// size, read when one changes. The task select offers the public tasks and every other
// name seen in the history (jobs sent by code or beat).
import { api } from "./api.js";

// Until a filter changes: every state, every task, and the page size the page shows (startFilters).
const chosen = { states: [], name: "", limit: 0 };

const stateBoxes = () => document.querySelectorAll('#state-filter input[name="state"]');

// GET /jobs for the filters chosen; a cursor is only valid with the filters it came from.
export function jobsPath({ cursor = null, limit = chosen.limit } = {}) {
  const query = new URLSearchParams();
  if (chosen.states.length) query.set("state", chosen.states.join(","));
  if (chosen.name) query.set("name", chosen.name);
  query.set("limit", String(limit));
  if (cursor) query.set("cursor", cursor);
  return `/jobs?${query}`;
}

export const taskFilter = () => chosen.name; // "" for every task
export const isFiltered = () => chosen.states.length > 0 || chosen.name !== "";
export const showsOnly = (state) => chosen.states.length === 1 && chosen.states[0] === state;

// "Only this state", or every state when that one is shown alone already.
export function toggleOnlyState(state) {
  const only = showsOnly(state);
  for (const box of stateBoxes()) box.checked = !only && box.value === state;
  document.getElementById("filters").dispatchEvent(new Event("change")); // setting .checked fires none
}

export function addTaskName(name) {
  const select = document.getElementById("name-filter");
  if (!name || [...select.options].some((option) => option.value === name)) return;
  select.append(new Option(name, name));
}

export async function loadTaskNames() {
  try {
    const { tasks } = await api("/tasks");
    for (const task of tasks) addTaskName(task.name);
  } catch {
    // Without a valid token the list says why; the names are asked again once one is saved.
  }
}

// onChange runs once the filters chosen have changed.
export function startFilters(onChange) {
  const form = document.getElementById("filters");
  const pageSize = document.getElementById("page-size");
  chosen.limit = Number(pageSize.value);
  form.addEventListener("change", () => {
    chosen.states = [...stateBoxes()].filter((box) => box.checked).map((box) => box.value);
    chosen.name = document.getElementById("name-filter").value;
    chosen.limit = Number(pageSize.value);
    onChange();
  });
  form.addEventListener("submit", (event) => event.preventDefault());
}
