// The API client. Every call carries the tab's token as a Bearer header and bypasses the
// browser's cache (a status must be fresh); an answer that is not 2xx becomes an ApiError
// with the API's own code and message, or with the HTTP status when the body has none.
import { currentToken } from "./token.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorFrom(response) {
  const body = await response.json().catch(() => null);
  const error = body && body.error;
  if (error && typeof error.message === "string") return new ApiError(response.status, error.code, error.message);
  return new ApiError(response.status, `http_${response.status}`, `HTTP ${response.status} ${response.statusText}`);
}

// The response of a call that succeeded, body unread: event_stream.js reads it as it comes.
export async function apiFetch(path, { method = "GET", body, signal, accept = "application/json" } = {}) {
  const headers = { Accept: accept };
  const token = currentToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, signal, cache: "no-store", headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function api(path, options) {
  return (await apiFetch(path, options)).json();
}

export const statusPath = (id) => `/status/${encodeURIComponent(id)}`;
