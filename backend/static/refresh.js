// Keeps the page fresh without a reload: every REFRESH_MS while the tab is visible, the
// list (page 1 is reloaded, so new jobs appear; a later page is reloaded in place, held by
// its cursor) and the detail view's job when the list does not hold it; and at once when
// the tab is shown again.
import { refreshDetail } from "./detail.js";
import { isListLoading, loadList } from "./job_list.js";
import { sleep } from "./sleep.js";

const REFRESH_MS = 2000;

async function refreshForever() {
  for (;;) {
    await sleep(REFRESH_MS);
    if (document.visibilityState !== "visible") continue;
    if (!isListLoading()) await loadList(); // a load under way is as fresh
    await refreshDetail();
  }
}

export function startRefreshing() {
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") loadList();
  });
  refreshForever();
}
