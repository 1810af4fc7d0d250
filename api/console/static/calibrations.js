// Colour calibrations: per calibration its facts and the residual cast of its corrected
// lightbox as a heat map (GET /calibrations/{id}/residual.png), R | G | B panels.
import { api, el, fmt, showStatus } from "/static/console.js";

const list = document.getElementById("calibrations");
const range = document.getElementById("range");

function heatmapSrc(id) { return `/api/v1/calibrations/${id}/residual.png?range_pct=${range.value}`; }

try {
  const calibrations = await api("/calibrations?limit=100");
  list.replaceChildren(...calibrations.map((c) => el("li", { id: `calibration-${c.id}` },
    el("p", {}, `calibration #${c.id} · camera ${c.camera_id} · lightbox frame ${c.lightbox_frame_id} · ${fmt.time(c.created_at)}`),
    el("p", {}, `cast spread after correction ${(c.cast_spread * 100).toFixed(3)} % · fit residual (RMS, worst channel) ${(c.residual_rms_max * 100).toFixed(3)} %`),
    el("img", { class: "heatmap", src: heatmapSrc(c.id), dataset: { calibration: String(c.id) },
                alt: `Residual colour cast of calibration ${c.id}, red, green and blue panels` }),
    el("p", {}, el("code", {}, c.calibration_id.slice(0, 16)), ` · ${c.pipeline_version}`))));
  if (!calibrations.length) showStatus("no calibration yet: capture a lightbox, then process a scene");
} catch (e) {
  showStatus(e.message);
}
range.addEventListener("change", () => {
  document.getElementById("range-label").textContent = range.value;
  for (const img of list.querySelectorAll("img.heatmap")) img.src = heatmapSrc(img.dataset.calibration);
});
