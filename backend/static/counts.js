// How many jobs the filters match, per state and in all. A count's button is a shortcut
// to its state's filter: pressed, it shows only that state; pressed again, every state.
import { showsOnly, toggleOnlyState } from "./filters.js";

export function renderCounts(counts) {
  let total = 0;
  for (const button of document.querySelectorAll("#counts .count")) {
    const count = Number(counts?.[button.dataset.state]) || 0;
    total += count;
    button.querySelector(".count-value").textContent = String(count);
    button.setAttribute("aria-pressed", String(showsOnly(button.dataset.state)));
  }
  document.getElementById("count-total").textContent = `${total} ${total === 1 ? "job" : "jobs"}`;
}

export function startCounts() {
  document.getElementById("counts").addEventListener("click", (event) => {
    const button = event.target.closest(".count");
    if (button) toggleOnlyState(button.dataset.state);
  });
}
