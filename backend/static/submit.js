// The form that submits a long task (POST /tasks/long_task). The new job is not added to
// the list here: the list reloads and shows it, as it shows a job submitted with curl.
import { api } from "./api.js";
import { hideError, runAction } from "./feedback.js";
import { loadList } from "./job_list.js";

async function submit(event) {
  event.preventDefault();
  const input = {};
  const steps = document.getElementById("steps").valueAsNumber;
  const stepSeconds = document.getElementById("step-seconds").valueAsNumber;
  if (!Number.isNaN(steps)) input.steps = steps;
  if (!Number.isNaN(stepSeconds)) input.step_seconds = stepSeconds;
  await runAction(document.getElementById("submit"), async () => {
    const submitted = await api("/tasks/long_task", { method: "POST", body: input });
    document.getElementById("submit-status").textContent = `Submitted ${submitted.task_id}.`;
    hideError();
    loadList();
  });
}

export function startSubmitForm() {
  document.getElementById("submit-form").addEventListener("submit", submit);
}
