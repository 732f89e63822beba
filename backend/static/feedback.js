// What the page tells its user about what they did: the error banner (until dismissed or
// the next success), the line under the counts that says what an action did, and how an
// error reads, in the banner and in the list alike.
import { ApiError } from "./api.js";

export function describeError(error) {
  const code = error instanceof ApiError ? ` (${error.code})` : "";
  let text = `${error.message}${code}`;
  if (error instanceof ApiError && error.status === 401) text += ": enter a token under “API token”.";
  return text;
}

export function showError(error) {
  document.getElementById("error-text").textContent = describeError(error);
  document.getElementById("error").hidden = false;
}

export function hideError() {
  document.getElementById("error").hidden = true;
}

export function say(text) {
  document.getElementById("action-status").textContent = text;
}

// Runs what `button` asks for: the button is disabled meanwhile (one click, one call),
// and an error goes to the banner.
export async function runAction(button, action) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

export function startFeedback() {
  document.getElementById("error-dismiss").addEventListener("click", hideError);
}
