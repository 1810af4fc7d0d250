// Jobs, live: the list is read once, then kept current by the server-sent event stream
// /api/v1/jobs/events (one event per job change; on a dropped connection the browser
// reconnects with Last-Event-ID and the server sends what changed meanwhile).
import { api, el, fmt, showStatus } from "/static/console.js";

const table = document.getElementById("jobs");
const body = table.querySelector("tbody");
const live = document.getElementById("live");
const canOperate = table.dataset.canOperate === "true";
const rows = new Map();

async function cancel(job, button) {
  button.disabled = true;
  try {
    await api(`/jobs/${job.id}/cancel`, { method: "POST" });
    showStatus(`cancel of job ${job.id} requested`);
  } catch (e) {
    showStatus(`job ${job.id}: ${e.message}`);
    button.disabled = false;
  }
}

function render(job) {
  const finished = ["succeeded", "failed", "cancelled"].includes(job.status);
  const actions = el("td", {});
  if (canOperate && !finished) {
    const button = el("button", { type: "button", "aria-label": `Cancel job ${job.id}` }, "Cancel");
    button.addEventListener("click", () => cancel(job, button));
    actions.append(button);
  }
  const bar = el("progress", { max: "1", value: String(job.progress), "aria-label": `Progress of job ${job.id}` });
  const text = job.error || job.message || "";
  const row = el("tr", { id: `job-${job.id}`, dataset: { status: job.status, updated: job.updated_at } },
    el("th", { scope: "row" }, `#${job.id}`), el("td", {}, job.kind),
    el("td", { class: `st-${job.status}` }, job.status),
    el("td", {}, bar, ` ${fmt.pct(job.progress)}`),
    el("td", { class: job.error ? "error" : "" }, text), actions);
  const old = rows.get(job.id);
  if (old && old.dataset.updated > job.updated_at) return;  // an older event than what is shown
  if (old) old.replaceWith(row);
  else {
    const after = [...body.children].find((r) => Number(r.id.slice(4)) < job.id);
    body.insertBefore(row, after ?? null);
  }
  rows.set(job.id, row);
}

for (const job of await api("/jobs?limit=100").catch((e) => { showStatus(e.message); return []; })) render(job);

const events = new EventSource("/api/v1/jobs/events");
events.addEventListener("open", () => { live.textContent = "live"; live.dataset.state = "live"; });
events.addEventListener("job", (event) => render(JSON.parse(event.data)));
events.addEventListener("error", () => { live.textContent = "reconnecting…"; live.dataset.state = "reconnecting"; });
