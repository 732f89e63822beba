// How a time and a job's error read, the same in a row and in the detail view.

// A time of today reads as a time of day alone, unless withDate.
export function formatTime(iso, { withDate = false } = {}) {
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return iso;
  const today = moment.toDateString() === new Date().toDateString();
  return today && !withDate ? moment.toLocaleTimeString() : moment.toLocaleString();
}

export const errorText = (status) => (status.error ? `${status.error.type}: ${status.error.message}` : "");
