// One job's status events from GET /status/<id>/events. Read with fetch() and parsed here,
// because EventSource cannot send an Authorization header.
import { apiFetch, statusPath } from "./api.js";

// Calls onStatus with each status event. Resolves when the server ends the stream; rejects
// on a network error, an API error (ApiError) or an answer that is no event stream.
export async function streamStatuses(id, signal, onStatus) {
  const response = await apiFetch(`${statusPath(id)}/events`, { signal, accept: "text/event-stream" });
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
