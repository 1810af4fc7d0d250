// Admin: API tokens (create with a role, the secret shown once; list; revoke).
import { api, el, fmt, showError, showStatus } from "/static/console.js";

const body = document.querySelector("#tokens tbody");
const form = document.getElementById("token-form");
const error = document.getElementById("token-error");
const secretBox = document.getElementById("secret");

async function revoke(token, button) {
  button.disabled = true;
  try {
    await api(`/tokens/${token.id}`, { method: "DELETE" });
    showStatus(`token ${token.name} revoked`);
    await load();
  } catch (e) {
    showStatus(e.message);
    button.disabled = false;
  }
}

async function load() {
  const tokens = await api("/tokens");
  body.replaceChildren(...tokens.map((t) => {
    const actions = el("td", {});
    if (!t.revoked_at) {
      const button = el("button", { type: "button", "aria-label": `Revoke token ${t.name}` }, "Revoke");
      button.addEventListener("click", () => revoke(t, button));
      actions.append(button);
    }
    return el("tr", { dataset: { token: t.name } }, el("th", { scope: "row" }, String(t.id)), el("td", {}, t.name),
      el("td", {}, t.role), el("td", {}, el("code", {}, t.prefix)), el("td", {}, fmt.time(t.last_used_at)),
      el("td", {}, t.revoked_at ? `revoked ${fmt.time(t.revoked_at)}` : "active"), actions);
  }));
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const created = await api("/tokens", { method: "POST", body: { name: form.elements.name.value, role: form.elements.role.value } });
    showError(error, "");
    document.getElementById("secret-value").value = created.secret;
    secretBox.hidden = false;
    form.reset();
    await load();
  } catch (e) {
    showError(error, e.message);
  }
});

await load().catch((e) => showStatus(e.message));
