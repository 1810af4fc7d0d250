// The pair viewer: blurred | aligned sharp split, the mask as an overlay, zoom to 1:1 and
// pan (scroll, or drag with the mouse), and every product's parameters and hashes.
import { api, el, newestByCapture, showStatus } from "/static/console.js";

const viewer = document.getElementById("viewer");
const scene = viewer.dataset.scene;
const captureId = Number(viewer.dataset.capture);
const compare = document.getElementById("compare");
const [before, after, mask] = ["before", "after", "mask"].map((id) => document.getElementById(id));
const PREVIEW = 1600;

function setSplit(percent) { after.style.clipPath = `inset(0 0 0 ${percent}%)`; }
function setOpacity(percent) { mask.style.opacity = String(percent / 100); }

function setZoom(value) {
  compare.dataset.zoom = value;
  const full = value !== "fit";
  for (const img of [before, after, mask]) {
    const id = img.dataset.product;
    if (!id) continue;
    img.src = full ? `/api/v1/products/${id}/file` : `/api/v1/products/${id}/file?max_side=${PREVIEW}`;
    img.style.width = full ? `${Number(img.dataset.width) * Number(value)}px` : "";
  }
}

let drag = null;
compare.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY, left: compare.scrollLeft, top: compare.scrollTop }; });
compare.addEventListener("pointermove", (e) => {
  if (!drag) return;
  compare.scrollLeft = drag.left - (e.clientX - drag.x);
  compare.scrollTop = drag.top - (e.clientY - drag.y);
});
window.addEventListener("pointerup", () => { drag = null; });

try {
  const detail = await api(`/scenes/${encodeURIComponent(scene)}`);
  const kinds = newestByCapture(detail.products).get(captureId) ?? {};
  for (const [img, kind] of [[before, "blurred"], [after, "sharp"], [mask, "mask"]]) {
    const p = kinds[kind];
    if (!p) { img.hidden = true; continue; }
    img.dataset.product = String(p.id);
    img.dataset.width = String(p.info?.width ?? "");
  }
  for (const img of [before, after, mask]) {
    img.addEventListener("load", () => { if (!img.dataset.width) img.dataset.width = String(img.naturalWidth); }, { once: true });
  }
  setZoom("fit");
  setSplit(document.getElementById("split").value);
  setOpacity(document.getElementById("mask-opacity").value);
  const rows = detail.products.filter((p) => p.capture_id === captureId || p.capture_id === null);
  document.querySelector("#products tbody").replaceChildren(...rows.map((p) => el("tr", {},
    el("th", { scope: "row" }, String(p.id)), el("td", {}, p.kind), el("td", {}, el("code", {}, p.params_hash.slice(0, 16))),
    el("td", {}, el("code", {}, p.sha256.slice(0, 16))), el("td", {}, p.pipeline_version),
    el("td", {}, el("code", {}, JSON.stringify(p.info))),
    el("td", {}, el("a", { href: `/api/v1/products/${p.id}/file`, download: "" }, "download")))));
  viewer.dataset.state = "ready";
} catch (e) {
  showStatus(e.message);
}
document.getElementById("split").addEventListener("input", (e) => setSplit(e.target.value));
document.getElementById("mask-opacity").addEventListener("input", (e) => setOpacity(e.target.value));
document.getElementById("zoom").addEventListener("change", (e) => setZoom(e.target.value));
