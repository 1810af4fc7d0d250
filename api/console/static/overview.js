import { api, facts, showStatus } from "/static/console.js";

const health = await api("/health").catch((e) => { showStatus(e.message); return null; });
if (health) {
  facts(document.getElementById("health"), [
    ["Status", health.status], ["Version", health.version], ["Database", health.database],
    ["Deblurring model", health.model_loaded ? `loaded (${health.device})` : "none loaded"],
    ["Job runner", health.runner ? "running" : "not in this process"],
  ]);
}
