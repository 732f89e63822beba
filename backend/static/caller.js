// Who the page acts for: the client the tab's token names and its role (GET /me), asked
// again with each token. The page offers only what that role may do: a `read` client gets
// no submit form and no Cancel, Retry or "Retry all failed" button. Which role each action
// needs, and the roles in order, are written into the page by the server (backend/api/dashboard.py)
// from the routes' own declarations. The API still checks every call; this only spares the
// user buttons that could only answer 403.
import { api } from "./api.js";

const ROLES = document.body.dataset.roles.split(" "); // lowest first
const rank = (role) => ROLES.indexOf(role);

let caller = null; // {client, role}, or null while no token the API takes is saved

export async function loadCaller() {
  try {
    caller = await api("/me");
  } catch {
    caller = null; // no token, or a refused one: the list says why
  }
  render();
}

// Until the page knows the caller, everything is offered: the API's answer says what is missing.
function may(action) {
  return caller === null || rank(caller.role) >= rank(document.body.dataset[`${action}Role`]);
}

export const maySubmit = () => may("submit");
export const mayRetryAllFailed = () => may("retryAll");
export const mayReadQueues = () => may("queues");
// The highest role (admin) acts on every job; a client below it on its own only (it lists no other).
const owns = (status) => caller === null || caller.role === ROLES.at(-1) || status.owner === caller.client;
export const mayCancel = (status) => may("cancel") && owns(status);
export const mayRetry = (status) => may("retry") && owns(status);

function render() {
  document.getElementById("submit-part").hidden = !maySubmit();
  document.getElementById("retry-failed").hidden = !mayRetryAllFailed();
  document.getElementById("caller").textContent = caller ? `${caller.client} (${caller.role})` : "";
}
