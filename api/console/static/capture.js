// Capture: start a scene session or a lightbox on a rig, then follow it live. Progress comes
// from the job event stream; at each change the scene's stored captures are read again and each
// new one is shown with its frames' thumbnails (GET /frames/{id}/file?max_side=…, plainly
// developed from the DNG). A failure shows the job's named error and the captures kept.
import { api, clearFormErrors, el, formJson, jobStream, showFormError } from "/static/console.js";

const THUMB = 192;
const section = document.getElementById("progress");
const steps = document.getElementById("steps");
const live = document.getElementById("live");
const shown = new Set();
let current = null;   // {id, kind, scene}
let stream = null;
let refreshing = Promise.resolve();

function finished(status) { return ["succeeded", "failed", "cancelled"].includes(status); }

async function loadRigs() {
  const selects = document.querySelectorAll(".rig-select");
  if (!selects.length) return;
  const rigs = await api("/rigs");
  for (const select of selects) {
    select.replaceChildren(...rigs.map((r) => el("option", { value: r.name }, `${r.name}${r.busy ? " (busy)" : ""}`)));
  }
}

function frameThumb(frame, capture) {
  return el("img", { src: `/api/v1/frames/${frame.id}/file?max_side=${THUMB}`, class: "thumb", width: String(THUMB),
                     alt: `camera ${frame.role} of ${capture.kind} ${capture.trigger_index}` });
}

async function showCapture(capture) {
  const detail = await api(`/captures/${capture.id}`);
  const frames = [...detail.frames].sort((a, b) => a.role.localeCompare(b.role));
  const item = el("li", { id: `capture-${capture.id}`, dataset: { kind: capture.kind, status: capture.status } },
    el("p", {}, `${capture.kind} ${capture.trigger_index} · ${capture.status}`),
    el("div", { class: "frames" }, ...frames.map((f) => frameThumb(f, capture))));
  // when the page had the pair (ms since the epoch), for the latency benchmark
  item.dataset.shownAt = String(performance.timeOrigin + performance.now());
  steps.append(item);
}

async function refreshCaptures() {
  if (!current) return;
  const query = current.scene ? `scene=${encodeURIComponent(current.scene)}` : "kind=lightbox";
  const captures = await api(`/captures?${query}&limit=1000`);
  for (const c of captures) {
    if (shown.has(c.id) || c.id < current.firstCapture || c.status !== "complete") continue;
    shown.add(c.id);
    await showCapture(c);
  }
}

function onJob(job) {
  if (!current || job.id !== current.id) return;
  document.getElementById("progress-bar").value = job.progress;
  const status = document.getElementById("progress-status");
  status.textContent = job.status;
  status.className = `st-${job.status}`;
  section.dataset.status = job.status;
  document.getElementById("progress-message").textContent = job.message || "";
  const error = document.getElementById("progress-error");
  if (job.error) {
    error.textContent = `${job.error} — kept: ${shown.size} capture(s) stored before the failure`;
    error.hidden = false;
  }
  refreshing = refreshing.then(refreshCaptures).catch((e) => { error.textContent = e.message; error.hidden = false; });
  if (finished(job.status)) refreshing.then(() => { section.dataset.done = "true"; });
}

async function start(form, path) {
  clearFormErrors(form);
  if (!form.reportValidity()) return;
  const body = formJson(form);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  delete section.dataset.done;
  section.dataset.status = "submitting";
  try {
    // captures stored before this job are not its own (unless it resumes them)
    const all = await api(`/captures?limit=1000&${body.scene ? `scene=${encodeURIComponent(body.scene)}` : "kind=lightbox"}`);
    const accepted = await api(path, { method: "POST", body });
    current = { id: accepted.id, kind: accepted.kind, scene: body.scene,
                firstCapture: body.resume ? 0 : Math.max(0, ...all.map((c) => c.id)) + 1 };
    shown.clear();
    steps.replaceChildren();
    section.hidden = false;
    document.getElementById("progress-job").textContent = `job #${accepted.id} (${accepted.kind})`;
    document.getElementById("progress-error").hidden = true;
    if (!stream) stream = jobStream(onJob, live, new Date(Date.now() - 1000).toISOString());
    onJob(await api(`/jobs/${accepted.id}`));
  } catch (e) {
    showFormError(form, e);
  } finally {
    button.disabled = false;
  }
}

for (const [id, path] of [["capture-form", "/captures"], ["lightbox-form", "/captures/lightbox"]]) {
  const form = document.getElementById(id);
  form?.addEventListener("submit", (event) => { event.preventDefault(); start(form, path); });
}
loadRigs().catch((e) => { for (const f of document.querySelectorAll(".form-error")) { f.textContent = e.message; f.hidden = false; } });
