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
