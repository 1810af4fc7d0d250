// Deblur an uploaded image: the synchronous preview for small images (image and mask), a
// deblur job for larger ones. The result is shown with a before/after split, the predicted
// mask as an overlay, zoom to 1:1 and downloads.
import { ApiError, api, showError, showStatus } from "/static/console.js";

const form = document.getElementById("deblur-form");
const error = document.getElementById("deblur-error");
const result = document.getElementById("result");
const compare = document.getElementById("compare");
const [before, after, mask] = ["before", "after", "mask"].map((id) => document.getElementById(id));
const urls = [];

function setSplit(percent) { after.style.clipPath = `inset(0 0 0 ${percent}%)`; }
function setOpacity(percent) { mask.style.opacity = String(percent / 100); }
function setZoom(value) {
  compare.dataset.zoom = value;
  const scale = value === "fit" ? null : Number(value);
  for (const img of [before, after, mask]) img.style.width = scale ? `${img.naturalWidth * scale}px` : "";
}

async function previewBlob(file, output) {
  const body = new FormData();
  body.append("file", file);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const res = await fetch(`/api/v1/deblur/preview?output=${output}`, {
    method: "POST", body, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
  if (!res.ok) {
    let detail = `${res.status} ${res.statusText}`;
    try { detail = (await res.json()).detail ?? detail; } catch { /* not JSON */ }
    throw new ApiError(res.status, detail);
  }
  return res.blob();
}

function objectUrl(blob) { const url = URL.createObjectURL(blob); urls.push(url); return url; }

async function deblur(file) {
  showError(error, "");
  while (urls.length) URL.revokeObjectURL(urls.pop());
  showStatus(`deblurring ${file.name}…`);
  try {
    const image = await previewBlob(file, "image");
    const gate = await previewBlob(file, "mask").catch(() => null);
    // Browsers show PNG but not TIFF or DNG: then only the result and its mask are shown.
    const shown = /\.png$/i.test(file.name) || file.type === "image/png";
    before.hidden = !shown;
    if (shown) before.src = objectUrl(file);
    document.getElementById("split").disabled = !shown;
    after.src = objectUrl(image);
    document.getElementById("download-after").href = after.src;
    if (gate) { mask.src = objectUrl(gate); document.getElementById("download-mask").href = mask.src; }
    mask.hidden = !gate;
    result.hidden = false;
    await after.decode().catch(() => {});
    setSplit(document.getElementById("split").value);
    setOpacity(document.getElementById("mask-opacity").value);
    showStatus(`${file.name}: deblurred`);
    result.dataset.state = "done";
  } catch (e) {
    if (e instanceof ApiError && e.status === 413 && /uploads/.test(e.message)) {
      const body = new FormData();
      body.append("file", file);
      try {
        const job = await api("/deblur/uploads", { method: "POST", form: body });
        showStatus(`${file.name} is large: deblur job #${job.id} started (see Jobs)`);
      } catch (e2) { showError(error, e2.message); }
    } else {
      showError(error, e.message);
      showStatus("");
    }
  }
}

if (form) {
  const input = document.getElementById("deblur-file");
  input.addEventListener("change", () => input.files[0] && deblur(input.files[0]));
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) deblur(file);
  });
  document.getElementById("split").addEventListener("input", (e) => setSplit(e.target.value));
  document.getElementById("mask-opacity").addEventListener("input", (e) => setOpacity(e.target.value));
  document.getElementById("zoom").addEventListener("change", (e) => setZoom(e.target.value));
}
