"""Capture progress latency in the operator console: pair stored → its thumbnails on the page (#16).

    .venv/bin/python benchmarks/bench_console_latency.py               # 3 sessions × 8 pairs
    .venv/bin/python benchmarks/bench_console_latency.py --sessions 5 --pairs 10

Starts a real ``reloblur serve`` (a temporary data directory, SQLite, one Dask worker, the
simulated twin rig of ``configs/rigs``) and Debian's Chromium (the set-up of
``bench_console.py``), signs in as an operator and starts scene sessions from the capture page
(``/capture``; blur allowed in S 2.5 px, as ``make demo``). For every pair the latency is the
page's ``data-shown-at`` of the pair's item (``performance.timeOrigin + performance.now()``
when the page appended it, after reading the capture and its frames; its two thumbnails are
then requested) minus the capture's ``finished_at`` (set by the worker when the pair's two DNGs
are written, in the transaction that stores it). In between: the job's progress update, the
event stream (checks every 50 ms), and the page's reads of ``/captures``. The thumbnails'
own load time is reported separately (``img.complete`` seen by polling, so an upper bound).
Target: p99 ≤ 500 ms. Writes ``<out>/latency.md`` and ``latency.json`` (default
``var/bench_console``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from bench_console import sign_in, start_browser

ROOT = Path(__file__).resolve().parents[1]


def serve(root: Path) -> tuple[subprocess.Popen, str, str, Path]:
    """``reloblur serve`` on a free loopback port; returns (process, base URL, operator token, log)."""
    env = {**os.environ, "RELOBLUR_DATA_DIR": str(root / "data"), "RELOBLUR_RIGS_DIR": str(ROOT / "configs" / "rigs"),
           "RELOBLUR_DASK_WORKERS": "1", "RELOBLUR_DEVICE": "cpu"}
    for key in ("RELOBLUR_DATABASE_URL", "RELOBLUR_DASK_SCHEDULER", "RELOBLUR_API_WORKERS", "RELOBLUR_CHECKPOINT"):
        env.pop(key, None)
    exe = str(Path(sys.executable).parent / "reloblur")
    subprocess.run([exe, "db", "upgrade"], env=env, check=True, capture_output=True)
    token = subprocess.run([exe, "token", "create", "--name", "bench", "--role", "operator"], env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = root / "serve.log"
    process = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                               env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://localhost:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{base}/api/v1/health", timeout=5)
            if answer.status_code == 200 and answer.json().get("runner"):
                return process, base, token, log
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.kill()
    raise SystemExit(f"reloblur serve did not come up:\n{log.read_text()[-2000:]}")


def session(driver, base: str, token: str, scene: str, pairs: int) -> list[dict]:
    """One scene session from the capture page; per pair: latency and thumbnail load times (ms)."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/capture")
    deadline = time.monotonic() + 30
    while not driver.find_elements(By.CSS_SELECTOR, '#cap-rig option[value="twin"]'):
        if time.monotonic() > deadline:
            raise SystemExit("the capture page did not list the rig")
        time.sleep(0.05)
    driver.find_element(By.ID, "cap-scene").send_keys(scene)
    field = driver.find_element(By.ID, "cap-pairs")
    field.clear()
    field.send_keys(str(pairs))
    driver.find_element(By.ID, "cap-sharp").send_keys("2.5")
    driver.find_element(By.CSS_SELECTOR, "#capture-form button[type=submit]").click()
    loaded: dict[str, float] = {}
    deadline = time.monotonic() + 60 + 20 * pairs
    progress = driver.find_element(By.ID, "progress")
    while progress.get_attribute("data-done") != "true":
        if time.monotonic() > deadline:
            raise SystemExit("the session did not finish in time")
        # when each pair's thumbnails were first seen loaded (epoch ms, polled)
        for key, t in driver.execute_script(
                "const now = performance.timeOrigin + performance.now(); const out = {};"
                "for (const li of document.querySelectorAll('#steps li[data-kind=pair]')) {"
                "  const imgs = [...li.querySelectorAll('img')];"
                "  if (imgs.length && imgs.every(i => i.complete && i.naturalWidth)) out[li.id] = now; }"
                "return out;").items():
            loaded.setdefault(key, t)
        time.sleep(0.01)
    if progress.get_attribute("data-status") != "succeeded":
        raise SystemExit(f"the session ended {progress.get_attribute('data-status')}")
    time.sleep(1.0)
    rows = []
    with httpx.Client(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        for item in driver.find_elements(By.CSS_SELECTOR, "#steps li[data-kind=pair]"):
            capture = api.get(f"/captures/{item.get_attribute('id').split('-')[1]}").json()
            stored = datetime.fromisoformat(capture["finished_at"].replace("Z", "+00:00")).timestamp() * 1000
            shown = float(item.get_attribute("data-shown-at"))
            rows.append({"capture": capture["id"], "latency_ms": shown - stored,
                         "thumbnails_loaded_ms": loaded.get(item.get_attribute("id"), float("nan")) - stored})
    if len(rows) != pairs:
        raise SystemExit(f"{len(rows)} of {pairs} pairs shown")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--pairs", type=int, default=8, help="pairs per session")
    p.add_argument("--out", type=Path, default=ROOT / "var" / "bench_console")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        process, base, token, _ = serve(Path(tmp))
        driver = start_browser()
        try:
            sign_in(driver, base, token)
            rows = []
            for k in range(args.sessions):
                rows += session(driver, base, token, f"latency{k}", args.pairs)
        finally:
            driver.quit()
            process.terminate()
            process.wait(timeout=30)
    lat = np.array([r["latency_ms"] for r in rows])
    thumbs = np.array([r["thumbnails_loaded_ms"] for r in rows])
    load = os.getloadavg()

    def cells(v: np.ndarray) -> str:
        v = v[np.isfinite(v)]
        return f"{np.percentile(v, 50):.0f} | {np.percentile(v, 99):.0f} | {v.max():.0f}"

    lines = [
        f"#### Capture progress latency: pair stored → on the page ({len(rows)} pairs, {args.sessions} sessions "
        "on the twin rig, `reloblur serve`, headless Chromium)",
        "",
        "| measure | p50 (ms) | p99 (ms) | max (ms) | target p99 ≤ 500 ms |",
        "| --- | --- | --- | --- | --- |",
        f"| pair stored → its item on the page | {cells(lat)} | {'met' if np.percentile(lat, 99) <= 500 else 'NOT met'} |",
        f"| pair stored → both thumbnails loaded (polled) | {cells(thumbs)} | – |",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs; load average before the runs "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.md").write_text(text + "\n")
    (args.out / "latency.json").write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
