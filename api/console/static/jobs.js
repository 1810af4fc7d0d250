// Jobs, live: the list is read once, then kept current by the server-sent event stream
// /api/v1/jobs/events (one event per job change; on a dropped connection the browser
// reconnects with Last-Event-ID and the server sends what changed meanwhile). Operators cancel
// running jobs, retry failed or cancelled ones (the same kind and parameters, submitted again)
// and submit post-processing, export and deblur jobs; the API's named error shows next to the
// field it names.
import { api, clearFormErrors, el, fmt, formJson, jobStream, showFormError, showStatus } from "/static/console.js";

const table = document.getElementById("jobs");
const body = table.querySelector("tbody");
const live = document.getElementById("live");
const canOperate = table.dataset.canOperate === "true";
const rows = new Map();
// where each kind is submitted (a retry posts the job's parameters there again)
const SUBMIT = { capture: "/captures", lightbox: "/captures/lightbox", postprocess: "/jobs/postprocess",
                 reprocess: "/jobs/reprocess", export: "/jobs/export", deblur: "/jobs/deblur" };

async function act(button, what, call) {
  button.disabled = true;
  try {
    showStatus(await call());
  } catch (e) {
    showStatus(`${what}: ${e.message}`);
    button.disabled = false;
  }
}

function actions(job) {
  const cell = el("td", {});
  if (!canOperate) return cell;
  if (!["succeeded", "failed", "cancelled"].includes(job.status)) {
    const cancel = el("button", { type: "button", "aria-label": `Cancel job ${job.id}` }, "Cancel");
    cancel.addEventListener("click", () => act(cancel, `job ${job.id}`, async () => {
      await api(`/jobs/${job.id}/cancel`, { method: "POST" });
      return `cancel of job ${job.id} requested`;
    }));
    cell.append(cancel);
  } else if (job.status !== "succeeded" && SUBMIT[job.kind] && job.parent_id === null) {
    const retry = el("button", { type: "button", class: "retry", "aria-label": `Retry job ${job.id}` }, "Retry");
    retry.addEventListener("click", () => act(retry, `retry of job ${job.id}`, async () => {
      const accepted = await api(SUBMIT[job.kind], { method: "POST", body: job.params });
      return `job ${job.id} submitted again as job #${accepted.id}`;
    }));
    cell.append(retry);
  }
  return cell;
}

function render(job) {
  const bar = el("progress", { max: "1", value: String(job.progress), "aria-label": `Progress of job ${job.id}` });
  const text = job.error || job.message || "";
  const row = el("tr", { id: `job-${job.id}`, dataset: { status: job.status, updated: job.updated_at } },
    el("th", { scope: "row" }, `#${job.id}`), el("td", {}, job.kind),
    el("td", { class: `st-${job.status}` }, job.status),
    el("td", {}, bar, ` ${fmt.pct(job.progress)}`),
    el("td", { class: job.error ? "error" : "" }, text), actions(job));
  const old = rows.get(job.id);
  if (old && old.dataset.updated > job.updated_at) return;  // an older event than what is shown
  if (old) old.replaceWith(row);
  else {
    const after = [...body.children].find((r) => Number(r.id.slice(4)) < job.id);
    body.insertBefore(row, after ?? null);
  }
  rows.set(job.id, row);
}

async function submit(form) {
  clearFormErrors(form);
  if (!form.reportValidity()) return;
  const payload = formJson(form);
  for (const field of form.querySelectorAll("[data-always]")) payload[field.name] ??= [];
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const accepted = await api(form.dataset.path, { method: "POST", body: payload });
    showStatus(`${accepted.kind} job #${accepted.id} submitted`);
  } catch (e) {
    showFormError(form, e);
  } finally {
    button.disabled = false;
  }
}

for (const form of document.querySelectorAll(".job-form")) {
  form.addEventListener("submit", (event) => { event.preventDefault(); submit(form); });
}
const names = document.getElementById("scene-names");
if (names) {
  api("/scenes?limit=1000").then((scenes) => names.replaceChildren(...scenes.map((s) => el("option", { value: s.name }))))
    .catch(() => {});
}

const listed = await api("/jobs?limit=100").catch((e) => { showStatus(e.message); return []; });
for (const job of listed) render(job);
jobStream(render, live, listed.reduce((newest, j) => (j.updated_at > newest ? j.updated_at : newest), "") || undefined);
