// Rigs: their status, an instrument check, and a live exposure-plan preview (Eq. 2) that
// follows the form as the operator types.
import { api, debounce, el, facts, fmt, showError, showStatus } from "/static/console.js";

const table = document.querySelector("#rigs tbody");
const form = document.getElementById("plan-form");
const rigSelect = document.getElementById("plan-rig");
const planList = document.getElementById("plan");
const planError = document.getElementById("plan-error");

function cameras(rig) {
  return rig.cameras.map((c) => `${c.role}: ${c.driver} ${c.serial}`).join(", ");
}

function optics(rig) {
  const o = rig.optics;
  return `f ${o.focal_length_mm} mm, pitch ${o.pixel_pitch_um} µm, ${o.sensor_width_px}×${o.sensor_height_px} px`;
}

async function checkInstruments(rig, cell, button) {
  button.disabled = true;
  cell.textContent = "opening the rig…";
  try {
    const ident = await api(`/rigs/${encodeURIComponent(rig.name)}/identity`);
    const s = ident.synchronizer;
    const cams = ident.cameras.map((c) => `${c.role}: ${c.vendor} ${c.model} ${c.serial} (${Object.keys(c.features).length} features)`);
    cell.replaceChildren(el("span", {}, `${s.make} ${s.model} ${s.serial}, firmware ${s.firmware}`),
                         el("br"), el("span", {}, cams.join("; ")));
  } catch (e) {
    cell.textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

async function loadRigs() {
  const rigs = await api("/rigs");
  table.replaceChildren(...rigs.map((rig) => {
    const ident = el("td", { class: "ident" }, "–");
    const button = el("button", { type: "button", "aria-label": `Check the instruments of rig ${rig.name}` }, "Check instruments");
    button.addEventListener("click", () => checkInstruments(rig, ident, button));
    return el("tr", { dataset: { rig: rig.name } },
      el("th", { scope: "row" }, rig.name, el("br"), el("small", {}, rig.description)),
      el("td", { class: rig.busy ? "busy" : "idle" }, rig.busy ? "busy" : "idle", rig.simulated ? " (simulated)" : ""),
      el("td", {}, cameras(rig)), el("td", {}, optics(rig)), el("td", {}, button, ident));
  }));
  rigSelect.replaceChildren(...rigs.map((rig) => el("option", { value: rig.name }, rig.name)));
  return rigs;
}

function planBody() {
  const body = {};
  for (const input of form.elements) {
    if (!input.name || input.value === "") continue;
    body[input.name] = input.type === "number" ? Number(input.value) : input.value;
  }
  return body;
}

async function preview() {
  try {
    const plan = await api("/plans/preview", { method: "POST", body: planBody() });
    showError(planError, "");
    facts(planList, [
      ["tS (sharp exposure)", fmt.ms(plan.short_exposure_s)],
      ["tL (blurred exposure)", fmt.ms(plan.long_exposure_s)],
      ["τ (ND transmittance)", String(plan.nd_transmittance)],
      ["Blur in B", fmt.px(plan.blur_b_px)],
      ["Blur in S", fmt.px(plan.blur_s_px)],
      ["Sharp timing", `${plan.sharp_timing}, S triggered ${fmt.ms(plan.sharp_delay_s)} after B`],
    ]);
    planList.dataset.state = "ok";
  } catch (e) {
    showError(planError, `plan refused: ${e.message}`);
    planList.replaceChildren();
    planList.dataset.state = "refused";
  }
}

form.addEventListener("input", debounce(preview, 150));
form.addEventListener("submit", (event) => { event.preventDefault(); preview(); });
try {
  await loadRigs();
  await preview();
} catch (e) {
  showStatus(e.message);
}
