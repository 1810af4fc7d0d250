// A scene's gallery: for each pair, its newest blurred, sharp and mask products as cached
// previews (GET /products/{id}/file?max_side=…), each linking to the pair viewer.
import { api, el, newestByCapture, showStatus } from "/static/console.js";

const THUMB = 256;
const list = document.getElementById("gallery");
const scene = list.dataset.scene;

function thumb(product, label, capture) {
  if (!product) return el("span", { class: "thumb missing" }, `no ${label}`);
  return el("img", { src: `/api/v1/products/${product.id}/file?max_side=${THUMB}`, class: "thumb",
                     loading: "lazy", decoding: "async", alt: `${label} of pair ${capture.trigger_index}`, width: String(THUMB) });
}

try {
  const detail = await api(`/scenes/${encodeURIComponent(scene)}`);
  const products = newestByCapture(detail.products);
  const pairs = detail.captures.filter((c) => c.kind === "pair");
  list.replaceChildren(...pairs.map((c) => {
    const kinds = products.get(c.id) ?? {};
    return el("li", { id: `pair-${c.id}` },
      el("a", { href: `/scenes/${encodeURIComponent(scene)}/pairs/${c.id}`, "aria-label": `Open pair ${c.trigger_index}` },
        thumb(kinds.blurred, "blurred", c), thumb(kinds.sharp, "sharp", c), thumb(kinds.mask, "mask", c)),
      el("p", {}, `pair ${c.trigger_index} · ${c.status}`));
  }));
  if (!pairs.length) showStatus("this scene has no pairs yet");
  const flow = document.getElementById("flow");
  flow.addEventListener("error", () => { flow.hidden = true; document.getElementById("flow-missing").hidden = false; });
  flow.addEventListener("load", () => { flow.hidden = false; });
  flow.src = `/api/v1/scenes/${encodeURIComponent(scene)}/flow.png`;
} catch (e) {
  showStatus(e.message);
}
