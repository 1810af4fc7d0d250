// Shared helpers of the console pages: API calls with the session's CSRF token, small DOM
// builders (text only: data from the API never becomes HTML), number formatting.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

// fetch /api/v1<path> with the session cookie; JSON in and out; throws ApiError with the
// API's named error (detail) on any non-2xx answer.
export async function api(path, { method = "GET", body, form } = {}) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const res = await fetch(`/api/v1${path}`, { method, headers, body: payload, credentials: "same-origin" });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) throw new ApiError(res.status, errorText(data) || `${res.status} ${res.statusText}`);
  return data;
}

// The API's error detail as one line: a message, or "field: problem" for validation errors.
export function errorText(data) {
  const detail = data && typeof data === "object" && "detail" in data ? data.detail : data;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return typeof detail === "string" ? detail : "";
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A scene's products grouped by capture: Map(capture_id → {blurred, sharp, mask}), the newest
// (highest id) of each kind.
export function newestByCapture(products) {
  const pairs = new Map();
  for (const p of products) {
    if (p.capture_id === null || !["blurred", "sharp", "mask"].includes(p.kind)) continue;
    const kinds = pairs.get(p.capture_id) ?? {};
    if (!kinds[p.kind] || kinds[p.kind].id < p.id) kinds[p.kind] = p;
    pairs.set(p.capture_id, kinds);
  }
  return pairs;
}

export function facts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

export function showStatus(message) {
  const status = document.getElementById("status");
  if (status) status.textContent = message;
}

export function showError(node, message) {
  node.textContent = message;
  node.hidden = !message;
}

export const fmt = {
  ms: (s) => `${(s * 1e3).toFixed(3)} ms`,
  px: (v) => `${v.toFixed(1)} px`,
  pct: (v) => `${Math.round(v * 100)} %`,
  time: (iso) => (iso ? new Date(iso).toLocaleString() : "–"),
};

export function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// A form's fields as a JSON body: empty fields are left out (the API's defaults apply); number
// inputs become numbers, checkboxes booleans, and fields with data-list="comma" lists of the
// comma-separated values (data-list="comma-int": whole numbers where they are).
export function formJson(form) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled || field.type === "submit" || field.type === "button") continue;
    if (field.type === "checkbox") { body[field.name] = field.checked; continue; }
    const value = field.value.trim();
    if (value === "") continue;
    const items = value.split(",").map((v) => v.trim()).filter(Boolean);
    if (field.dataset.list === "comma") body[field.name] = items;
    else if (field.dataset.list === "comma-int") body[field.name] = items.map((v) => (/^\d+$/.test(v) ? Number(v) : v));
    else body[field.name] = field.type === "number" ? Number(value) : value;
  }
  return body;
}

export function clearFormErrors(form) {
  for (const p of form.querySelectorAll(".field-error, .form-error")) { p.textContent = ""; p.hidden = true; }
  for (const f of form.querySelectorAll("[aria-invalid]")) f.removeAttribute("aria-invalid");
}

function fieldError(form, name, message) {
  const field = name ? form.elements.namedItem(name) : null;
  if (!field || !field.id) return false;
  let line = document.getElementById(`${field.id}-error`);
  if (!line) {
    line = el("p", { id: `${field.id}-error`, class: "field-error error" });
    field.insertAdjacentElement("afterend", line);
    field.setAttribute("aria-describedby", line.id);
  }
  line.textContent = message;
  line.hidden = false;
  field.setAttribute("aria-invalid", "true");
  return true;
}

// The API's named error next to the field it names: each item of a validation error goes to
// the field its loc names; a one-line error "field: problem" to that field; the rest to the
// form's .form-error line.
export function showFormError(form, error) {
  clearFormErrors(form);
  const rest = [];
  const items = Array.isArray(error.detail) ? error.detail : [{ msg: error.message }];
  for (const item of items) {
    const loc = (item.loc || []).filter((p) => p !== "body");
    let name = loc.find((p) => typeof p === "string");
    let message = item.msg;
    const prefixed = !loc.length && /^([a-z_]+): (.+)$/s.exec(message);
    if (prefixed && form.elements.namedItem(prefixed[1])) [name, message] = [prefixed[1], prefixed[2]];
    if (!fieldError(form, name, message)) rest.push(loc.length ? `${loc.join(".")}: ${message}` : message);
  }
  const line = form.querySelector(".form-error");
  if (line) { line.textContent = rest.join("; "); line.hidden = !rest.length; }
}

// Job changes, live: an EventSource on /api/v1/jobs/events calling onJob(job) per event. The
// browser reconnects by itself with Last-Event-ID (the server resends what changed meanwhile);
// `live` (an element) shows connecting / live / reconnecting and counts the reconnections in
// data-reconnects. `since` (an ISO time or event id): start with the changes made from then on,
// so that nothing between a list read and the stream's start is missed.
export function jobStream(onJob, live, since) {
  const events = new EventSource(`/api/v1/jobs/events${since ? `?since=${encodeURIComponent(since)}` : ""}`);
  let opened = false;
  live.dataset.reconnects = "0";
  events.addEventListener("open", () => {
    if (opened) live.dataset.reconnects = String(Number(live.dataset.reconnects) + 1);
    opened = true;
    live.textContent = "live";
    live.dataset.state = "live";
  });
  events.addEventListener("job", (event) => onJob(JSON.parse(event.data)));
  events.addEventListener("error", () => { live.textContent = "reconnecting…"; live.dataset.state = "reconnecting"; });
  return events;
}
