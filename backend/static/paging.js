// Which page of the history the list shows. cursors holds the cursor of every page
// visited, page 1's (null) first: Next pushes next_cursor, Previous pops, other filters
// go back to page 1. A later page stays put (its cursor holds it) and only says that
// newer jobs exist.

let cursors = [null];
let nextCursor = null;
let newest = null; // page 1's first job when page 1 was last loaded: {id, submittedAt}
let newerJobs = false; // jobs newer than `newest` exist (shown only past page 1)
let loadPage = () => {}; // set by startPager

const pageNumber = () => cursors.length;
export const currentCursor = () => cursors[cursors.length - 1];

// What a loaded page says about paging; newestNow is, past page 1, the first page of one
// job of the same filters.
export function notePage(list, newestNow) {
  nextCursor = list.next_cursor;
  if (pageNumber() === 1) {
    const first = list.jobs[0];
    newest = first ? { id: first.task_id, submittedAt: first.submitted_at || "" } : null;
    newerJobs = false;
  } else {
    newerJobs = isNewer(newestNow && newestNow.jobs[0]);
  }
}

// Whether `first`, the newest job of the filters now, is newer than page 1's first was.
// Only a newer one counts: page 1's first job expiring makes an older one the newest.
function isNewer(first) {
  if (!first) return false;
  if (!newest) return true;
  return first.task_id !== newest.id && (first.submitted_at || "") >= newest.submittedAt;
}

// Another page, or other filters: the next page's cursor is known once this one is
// loaded, and Next does nothing till then. (It is not disabled meanwhile: that would
// take the focus from a keyboard user paging through.)
function moved() {
  nextCursor = null;
  document.getElementById("page-number").textContent = `Page ${pageNumber()}`;
  loadPage();
}

export function firstPage() {
  cursors = [null];
  moved();
}

function nextPage() {
  if (!nextCursor) return;
  cursors.push(nextCursor);
  moved();
}

function previousPage() {
  if (cursors.length === 1) return;
  cursors.pop();
  moved();
}

export function renderPager() {
  document.getElementById("page-number").textContent = `Page ${pageNumber()}`;
  document.getElementById("previous-page").disabled = pageNumber() === 1;
  document.getElementById("next-page").disabled = !nextCursor;
  document.getElementById("newer-jobs").hidden = !(pageNumber() > 1 && newerJobs);
}

// load() loads the page moved to.
export function startPager(load) {
  loadPage = load;
  document.getElementById("next-page").addEventListener("click", nextPage);
  document.getElementById("previous-page").addEventListener("click", previousPage);
  document.getElementById("newer-jobs").addEventListener("click", firstPage);
}
