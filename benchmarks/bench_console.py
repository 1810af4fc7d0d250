"""The operator console in a real headless Chromium: gallery time and page weight (#16).

    .venv/bin/python benchmarks/bench_console.py             # about 45 s on 2 cores
    .venv/bin/python benchmarks/bench_console.py --runs 10 --pairs 50 --out var/bench_console

Set-up (a fresh temporary folder): a SQLite database (``sqlite:///<tmp>/reloblur.db``,
migrated with ``core.migrate.upgrade``), a viewer and an admin token, and a scene ``bench50``
with ``--pairs`` (50) complete pair captures, each with a blurred and a sharp product (RGB PNG,
1076×718: the twin rig's half-size frames; a smooth gradient shifted per pair, a few shapes and
noise, B a horizontal motion blur of S, so every file is distinct) and a mask (single-channel
0/255 PNG), with the sha256 of each file, under the server's data directory. The service is
``api.http.app.create_app`` on uvicorn in a thread of this process on loopback (as the tests
and ``reloblur demo`` serve it: one HTTP process, no job runner), driven by Debian's Chromium
through chromedriver (Selenium; ``--headless=new --no-sandbox --disable-dev-shm-usage
--disable-gpu --window-size=1280,900``), signed in on ``/signin`` as the console's users are.

1. **Gallery time** (target ≤ 1 s on loopback): from the navigation to ``/scenes/bench50``
   to every ``img.thumb`` in ``#gallery`` loaded (``complete && naturalWidth > 0``; 3 per
   pair, ``GET /api/v1/products/{id}/file?max_side=256``). Measured in the page: a script
   installed before any document runs (``Page.addScriptToEvaluateOnNewDocument``) checks the
   thumbnails on every image ``load`` event (captured on the document) and on every animation
   frame, and records ``performance.now()`` at the first moment they are all loaded, i.e. the
   time since the navigation started (the document's time origin). The wall-clock time of
   ``driver.get`` until that was seen (WebDriver round trips included) is in the JSON. The
   navigation timing's ``responseEnd`` of the HTML and of ``GET /api/v1/scenes/bench50`` and
   the thumbnails' resource timings (how many came over the network, bytes) are recorded too.
   Per run, three conditions in this order:

   * **cold**: ``<data_dir>/.cache/previews`` deleted and the browser cache cleared
     (``Network.clearBrowserCache``): every preview is decoded, downscaled and encoded by the
     server (the first open after seeding). The server's read cache of the scene's JSON is
     warm after the first run, as it is for any second visitor.
   * **warm (server)**: previews cached on disk, browser cache cleared: every thumbnail is
     fetched, none is rendered. This is a scene's first visit after post-processing, which
     makes the gallery's previews as it stores its products (``core.previews.warm``).
   * **warm**: the previews on disk and in the browser cache (``Cache-Control: private,
     max-age=3600``): a second navigation to the page, nothing cleared.

   ``--runs`` (5) runs; the table gives the median, min and max of each condition.
2. **Page weight**: for each console page (the sign-in page, signed out; then, signed in as
   the admin, every page of the navigation bar ``api.console.pages.NAV``, the gallery and a
   pair viewer) loaded with the browser cache disabled, the bytes of the HTML
   document and of every ``/static/*.js`` and ``/static/*.css`` it loads (module imports
   included), from Chromium's performance log: the body bytes (``Network.dataReceived``
   ``dataLength``, decoded; the service does not compress) and the bytes transferred (the
   ``encodedDataLength`` of ``Network.loadingFinished``: body plus response headers). Also the
   total of all JS and CSS under ``api/console/static/`` (target ≤ 150 KB). KB = 1,024 bytes.

The table and the JSON go to ``--out`` (default ``var/bench_console/``: ``table.md`` and
``results.json``). The browser, the server and this script share the machine's cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENE = "bench50"
WIDTH, HEIGHT = 1076, 718
THUMB = 256
TARGET_GALLERY_MS = 1000.0
TARGET_STATIC_KB = 150.0
STATIC = ROOT / "api" / "console" / "static"
CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
               "--window-size=1280,900", "--disable-extensions", "--no-first-run")

# Runs at the start of every document; on a gallery page it records in window.__bench the time
# (performance.now(), ms since the navigation started) when every thumbnail has loaded.
WATCH_JS = """
(() => {
  if (!/^\\/scenes\\/[^/]+$/.test(location.pathname)) return;
  const expected = %d;
  const bench = window.__bench = { built: null, done: null, checks: 0 };
  const check = () => {
    if (bench.done !== null) return;
    bench.checks++;
    const imgs = document.querySelectorAll("#gallery img.thumb");
    if (imgs.length < expected) return;
    const now = performance.now();
    if (bench.built === null) bench.built = now;
    for (const img of imgs) if (!(img.complete && img.naturalWidth > 0)) return;
    bench.done = now;
    bench.count = imgs.length;
  };
  document.addEventListener("load", (e) => { if (e.target.tagName === "IMG") check(); }, true);
  const frame = () => { check(); if (bench.done === null) requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
})();
"""

# Waits (async WebDriver script) for window.__bench.done, then returns it with timings.
RESULT_JS = """
const done = arguments[arguments.length - 1];
const timeout = arguments[0], scene = arguments[1];
const t0 = Date.now();
const poll = () => {
  const bench = window.__bench;
  if ((bench && bench.done !== null) || Date.now() - t0 > timeout) {
    const res = performance.getEntriesByType("resource");
    const thumbs = res.filter((e) => e.name.includes("max_side="));
    const api = res.find((e) => e.name.endsWith(`/api/v1/scenes/${scene}`));
    const nav = performance.getEntriesByType("navigation")[0];
    const imgs = [...document.querySelectorAll("#gallery img.thumb")];
    done({ bench: bench || null, html_ms: nav ? nav.responseEnd : null,
           dcl_ms: nav ? nav.domContentLoadedEventEnd : null,
           api_ms: api ? api.responseEnd : null,
           thumbs: thumbs.length, thumbs_last_ms: Math.max(0, ...thumbs.map((e) => e.responseEnd)),
           thumbs_network: thumbs.filter((e) => e.transferSize > 0).length,
           thumbs_bytes: thumbs.reduce((s, e) => s + e.transferSize, 0),
           imgs: imgs.length, loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length });
  } else setTimeout(poll, 20);
};
poll();
"""


# ---- data ---------------------------------------------------------------------------------

def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise SystemExit("PNG encoding failed")
    return data.tobytes()


def pair_images(i: int, rng: np.random.Generator) -> dict[str, bytes]:
    """Blurred, sharp (BGR uint8, WIDTH×HEIGHT) and mask (0/255) PNGs of pair ``i``, distinct
    per pair: a gradient shifted by ``i``, a few discs and boxes, noise; B a motion blur of S."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    phase = 2 * np.pi * i / 50
    sharp = np.stack([
        128 + 100 * np.sin(x / WIDTH * 3 + phase) * np.cos(y / HEIGHT * 2),
        128 + 90 * np.cos((x + y) / (WIDTH + HEIGHT) * 4 - phase),
        (x / WIDTH * 160 + y / HEIGHT * 60 + 20 * i) % 256,
    ], axis=-1)
    sharp = np.clip(sharp, 0, 255).astype(np.uint8)
    cx, cy = 120 + (i * 17) % (WIDTH - 240), 120 + (i * 29) % (HEIGHT - 240)
    for k in range(4):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.circle(sharp, (int(rng.integers(40, WIDTH - 40)), int(rng.integers(40, HEIGHT - 40))),
                   int(rng.integers(15, 70)), colour, -1)
        cv2.rectangle(sharp, (40 * k + 10, 30 * k + 10), (40 * k + 90, 30 * k + 70), colour, 2)
    cv2.ellipse(sharp, (cx, cy), (90, 60), 0, 0, 360, (30, 200, 240), -1)
    noise = rng.normal(0, 3, sharp.shape)
    sharp = np.clip(sharp + noise, 0, 255).astype(np.uint8)
    length = 9 + i % 30
    kernel = np.zeros((1, length), np.float32)
    kernel[0, :] = 1.0 / length
    moving = sharp.copy()
    region = (slice(cy - 100, cy + 100), slice(cx - 120, cx + 120))
    moving[region] = cv2.filter2D(sharp[region], -1, kernel)
    blurred = np.clip(cv2.GaussianBlur(moving, (3, 3), 0) + rng.normal(0, 2, sharp.shape),
                      0, 255).astype(np.uint8)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cv2.ellipse(mask, (cx, cy), (90 + length // 2, 60), 0, 0, 360, 255, -1)
    return {"blurred": png(blurred), "sharp": png(sharp), "mask": png(mask)}


def seed_scene(engine, data_dir: Path, pairs: int) -> list[int]:
    """The rig ``twin``, the scene SCENE and its pairs with products (module docstring); → the
    captures' ids."""
    from core.db import session_factory
    from core.models import (
        Capture,
        CaptureKind,
        CaptureStatus,
        Product,
        ProductKind,
        RigRecord,
        Scene,
    )

    rng = np.random.default_rng(16)
    kinds = {"blurred": ProductKind.BLURRED, "sharp": ProductKind.SHARP, "mask": ProductKind.MASK}
    with session_factory(engine)() as s:
        rig = RigRecord(name="twin", pixel_pitch_um=9.0, focal_length_mm=50, nd_filters=[0.125],
                        cfa_pattern="RGGB", bit_depth=12, sensor_width_px=2 * WIDTH,
                        sensor_height_px=2 * HEIGHT)
        scene = Scene(name=SCENE, rig=rig)
        s.add_all([rig, scene])
        captures = []
        for i in range(pairs):
            cap = Capture(rig=rig, scene=scene, kind=CaptureKind.PAIR, trigger_index=i,
                          status=CaptureStatus.COMPLETE)
            captures.append(cap)
            for name, data in pair_images(i, rng).items():
                params_hash = hashlib.sha256(f"{SCENE}/{name}/{i}".encode()).hexdigest()
                rel = f"processed/{SCENE}/{name}/pair_{i:04d}_{params_hash[:12]}.png"
                path = data_dir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                s.add(Product(scene=scene, capture=cap, kind=kinds[name], params_hash=params_hash,
                              pipeline_version="bench", path=rel,
                              sha256=hashlib.sha256(data).hexdigest()))
        s.add_all(captures)
        s.commit()
        return [c.id for c in captures]


def make_tokens(engine) -> dict[str, str]:
    from api.http import auth
    from core.db import session_factory

    secrets = {}
    with session_factory(engine)() as s:
        for role in ("viewer", "admin"):
            _, secrets[role] = auth.create_token(s, f"bench-{role}", role)
        s.commit()
    return secrets


# ---- browser ------------------------------------------------------------------------------

def start_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        raise SystemExit("needs Chromium and ChromeDriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(90)
    driver.execute_cdp_cmd("Network.enable", {})
    return driver


def sign_in(driver, base: str, secret: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/signin")
    driver.find_element(By.ID, "token").send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    deadline = time.monotonic() + 30
    while driver.current_url.rstrip("/") != base:
        if time.monotonic() > deadline:
            raise SystemExit(f"sign-in failed: still at {driver.current_url}")
        time.sleep(0.02)


def gallery_run(driver, base: str, expected: int, timeout_s: float = 60.0) -> dict:
    """One navigation to the gallery; the page's timings (RESULT_JS) plus the wall clock."""
    driver.get("about:blank")
    t0 = time.perf_counter()
    driver.get(f"{base}/scenes/{SCENE}")
    result = driver.execute_async_script(RESULT_JS, timeout_s * 1000, SCENE)
    result["wall_ms"] = (time.perf_counter() - t0) * 1000
    bench = result.get("bench") or {}
    if bench.get("done") is None:
        raise SystemExit(f"the gallery's {expected} thumbnails did not all load within "
                         f"{timeout_s:.0f} s: {result}")
    result["ms"] = bench["done"]
    return result


def network_log(driver) -> dict[str, dict]:
    """Requests in the performance log since the last call: id → url, type, bytes."""
    requests: dict[str, dict] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        rid = params.get("requestId")
        if rid is None:
            continue
        row = requests.setdefault(rid, {"url": "", "type": "", "status": 0, "body": 0,
                                        "transferred": 0, "finished": False})
        if method == "Network.responseReceived":
            row.update(url=params["response"]["url"], type=params.get("type", ""),
                       status=params["response"]["status"])
        elif method == "Network.dataReceived":
            row["body"] += params.get("dataLength", 0)
        elif method == "Network.loadingFinished":
            row.update(transferred=params.get("encodedDataLength", 0), finished=True)
    return requests


def page_weight(driver, base: str, path: str) -> dict:
    """HTML, JS and CSS bytes of one page loaded with the browser cache disabled."""
    driver.get("about:blank")
    network_log(driver)
    driver.get(f"{base}{path}")
    time.sleep(0.3)  # module imports and the last loadingFinished events
    rows = [r for r in network_log(driver).values() if r["finished"] and r["url"].startswith(base)]
    out = {"path": path, "url": driver.current_url, "status": 0, "files": []}
    for kind in ("html", "js", "css"):
        out[kind] = {"body": 0, "transferred": 0}
    for r in rows:
        rel = r["url"][len(base):].split("?")[0]
        if r["type"] == "Document":
            kind = "html"
            out["status"] = r["status"]
        elif rel.startswith("/static/") and rel.endswith(".js"):
            kind = "js"
        elif rel.startswith("/static/") and rel.endswith(".css"):
            kind = "css"
        else:
            continue
        out[kind]["body"] += r["body"]
        out[kind]["transferred"] += r["transferred"]
        out["files"].append({"path": rel, "kind": kind, "status": r["status"], "body": r["body"],
                             "transferred": r["transferred"]})
    return out


def console_pages(capture_id: int) -> list[str]:
    """Every page of the navigation bar (``api.console.pages.NAV``, so a new page is measured
    too), the gallery after the scene list and the pair viewer after the gallery."""
    from api.console.pages import NAV

    pages = []
    for path, *_ in NAV:
        pages.append(path)
        if path == "/scenes":
            pages += [f"/scenes/{SCENE}", f"/scenes/{SCENE}/pairs/{capture_id}"]
    return pages


# ---- main ---------------------------------------------------------------------------------

def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def kb(n: float) -> str:
    return f"{n / 1024:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="runs of each gallery condition")
    p.add_argument("--pairs", type=int, default=50, help="pairs in the gallery's scene")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "bench_console")
    args = p.parse_args(argv)

    from api.http.app import create_app
    from api.http.server import ServerThread
    from core import migrate
    from core.db import make_engine
    from core.settings import Settings

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    conditions = ("cold", "warm (server)", "warm")
    times: dict[str, list[dict]] = {c: [] for c in conditions}
    weights: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_console_") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        url = f"sqlite:///{Path(tmp) / 'reloblur.db'}"
        t0 = time.perf_counter()
        migrate.upgrade(url)
        engine = make_engine(url)
        tokens = make_tokens(engine)
        captures = seed_scene(engine, data_dir, args.pairs)
        print(f"seeded {SCENE}: {args.pairs} pairs × 3 products in {time.perf_counter() - t0:.1f} s")
        settings = Settings(data_dir=data_dir, database_url=url, rigs_dir=ROOT / "configs" / "rigs",
                            device="cpu", checkpoint=None, dask_scheduler=None)
        app = create_app(settings, start_runner=False)
        previews = data_dir / ".cache" / "previews"
        driver = start_browser()
        try:
            with ServerThread(app) as served:
                base = served.replace("127.0.0.1", "localhost")  # as the browser tests do
                sign_in(driver, base, tokens["viewer"])
                expected = 3 * args.pairs
                driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                       {"source": WATCH_JS % expected})
                for k in range(args.runs):
                    for condition in conditions:
                        if condition == "cold":
                            shutil.rmtree(previews, ignore_errors=True)
                        if condition != "warm":
                            driver.execute_cdp_cmd("Network.clearBrowserCache", {})
                        r = gallery_run(driver, base, expected)
                        times[condition].append(r)
                        print(f"gallery run {k + 1}/{args.runs} {condition}: {r['ms']:.0f} ms "
                              f"(thumbnails over the network: {r['thumbs_network']}/{r['thumbs']})")
                cached = len(list(previews.glob("*")))

                driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
                driver.delete_all_cookies()
                weights.append(page_weight(driver, base, "/signin"))
                sign_in(driver, base, tokens["admin"])
                for path in console_pages(captures[0]):
                    weights.append(page_weight(driver, base, path))
                browser = driver.capabilities.get("browserVersion", "?")
                chromedriver = driver.capabilities.get("chrome", {}).get("chromedriverVersion", "?")
        finally:
            driver.quit()
            engine.dispose()

    static = {f.name: f.stat().st_size for f in sorted(STATIC.iterdir())
              if f.is_file() and f.suffix in (".js", ".css")}
    static_total = sum(static.values())
    summary = {c: stats([r["ms"] for r in times[c]]) for c in conditions}

    lines = [
        f"### Console gallery: `/scenes/{SCENE}` ({args.pairs} pairs, {3 * args.pairs} thumbnails "
        f"of {THUMB} px from {WIDTH}×{HEIGHT} PNGs), loopback, SQLite, headless Chromium",
        "",
        "Navigation start → every `img.thumb` loaded (`performance.now()` in the page), "
        f"{args.runs} runs per condition:",
        "",
        "| condition | median (ms) | min (ms) | max (ms) | scene JSON at (ms, median) | "
        "thumbnails over the network | thumbnail bytes (KB, median) | ≤ 1 s (max) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    descriptions = {"cold": "no previews on disk (products stored without post-processing), browser cache empty",
                    "warm (server)": "first visit after post-processing (its gallery previews on disk), "
                                     "browser cache empty",
                    "warm": "a second visit (previews also in the browser cache)"}
    for c in conditions:
        s, rows = summary[c], times[c]
        api_ms = statistics.median(r["api_ms"] or 0 for r in rows)
        net = sorted({r["thumbs_network"] for r in rows})
        net_text = f"{net[0]}" if len(net) == 1 else f"{net[0]}–{net[-1]}"
        lines.append(
            f"| {descriptions[c]} | **{s['median']:.0f}** | {s['min']:.0f} | {s['max']:.0f} | "
            f"{api_ms:.0f} | {net_text}/{rows[0]['thumbs']} | "
            f"{kb(statistics.median(r['thumbs_bytes'] for r in rows))} | "
            f"{'met' if s['max'] <= TARGET_GALLERY_MS else 'NOT met'} |")
    lines += [
        "",
        f"Target ≤ {TARGET_GALLERY_MS / 1000:.0f} s (median): "
        + ", ".join(f"{c} {'met' if summary[c]['median'] <= TARGET_GALLERY_MS else 'NOT met'}"
                    for c in conditions)
        + f". Previews on disk after the runs: {cached}; load average before the runs: {load}.",
        "",
        "### Console page weight (browser cache disabled; signed in as the admin; KB = 1,024 bytes)",
        "",
        "| page | HTML (KB) | JS (KB) | CSS (KB) | total (KB) | transferred incl. headers (KB) | "
        "static files |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for w in weights:
        body = sum(w[k]["body"] for k in ("html", "js", "css"))
        sent = sum(w[k]["transferred"] for k in ("html", "js", "css"))
        files = ", ".join(f["path"].removeprefix("/static/") for f in w["files"] if f["kind"] != "html")
        page = f"`{w['path']}`" + ("" if w["status"] == 200 else f" (HTTP {w['status']})")
        lines.append(f"| {page} | {kb(w['html']['body'])} | {kb(w['js']['body'])} | "
                     f"{kb(w['css']['body'])} | **{kb(body)}** | {kb(sent)} | {files} |")
    lines += [
        "",
        f"All JS and CSS under `api/console/static/` ({len(static)} files): "
        f"**{kb(static_total)} KB** (JS {kb(sum(v for n, v in static.items() if n.endswith('.js')))}, "
        f"CSS {kb(sum(v for n, v in static.items() if n.endswith('.css')))}); target ≤ "
        f"{TARGET_STATIC_KB:.0f} KB: {'met' if static_total / 1024 <= TARGET_STATIC_KB else 'NOT met'}.",
        "",
        f"Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; Chromium {browser} (chromedriver "
        f"{chromedriver.split()[0]}), headless; server (one uvicorn process in this script's "
        "process), browser and this script on the same cores.",
    ]
    text = "\n".join(lines)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps({
        "pairs": args.pairs, "runs": args.runs, "gallery": {"summary": summary, "runs": times},
        "page_weight": weights, "static_bytes": static, "static_total_bytes": static_total,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "chromium": browser,
                    "chromedriver": chromedriver},
    }, indent=2, default=str))
    print(f"\nwrote {args.out / 'table.md'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
