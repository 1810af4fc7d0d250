import { api, el, fmt, showStatus } from "/static/console.js";

const body = document.querySelector("#scenes tbody");
try {
  const scenes = await api("/scenes?limit=1000");
  body.replaceChildren(...scenes.map((s) => el("tr", { dataset: { scene: s.name } },
    el("th", { scope: "row" }, el("a", { href: `/scenes/${encodeURIComponent(s.name)}` }, s.name)),
    el("td", {}, String(s.n_pairs)), el("td", {}, String(s.n_captures)),
    el("td", {}, s.object_distance_m ? `${s.object_distance_m} m` : "–"), el("td", {}, fmt.time(s.created_at)))));
  if (!scenes.length) showStatus("no scenes yet: capture one");
} catch (e) {
  showStatus(e.message);
}
