"""The console in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against a real ``reloblur`` service on loopback: sign-in, the role shown, the live
exposure-plan preview and its refusal, live job progress by server-sent events, token
management and a revoked session refused, an automated accessibility check (axe-core, shipped
in the ``axe-selenium-python`` package), and no token in any URL or log line. Screenshots of
every page go to ``$RELOBLUR_TEST_OUTPUT/console`` (default ``var/test-output/console``).

Skipped, with the reason, only where no Chromium or ChromeDriver is installed (``make test``
installs them with apt-get when it can).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from core import jobs
from core.db import session_factory

REPO = Path(__file__).resolve().parents[2]
OUTPUT = Path(os.environ.get("RELOBLUR_TEST_OUTPUT", REPO / "var" / "test-output")) / "console"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no Chromium/ChromeDriver here (apt-get install chromium chromium-driver; `make test` tries)",
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=15.0, what="condition"):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(condition, message=f"waiting for {what}")


def _shot(driver, name: str) -> Path:
    path = OUTPUT / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 5000
    return path


def _sign_in(driver, base: str, secret: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/signin")
    field = driver.find_element(By.ID, "token")
    field.send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(driver, lambda d: d.current_url.rstrip("/") == base, what="the overview after sign-in")


def _axe(driver) -> list[dict]:
    """Serious or critical accessibility violations of the page (axe-core, WCAG 2 A/AA rules)."""
    import axe_selenium_python

    source = Path(axe_selenium_python.__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
    driver.execute_script(source.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}})"
        ".then(r => done(r.violations)).catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e)}]));")
    return [v for v in result if v.get("impact") in ("serious", "critical")]


def _page_ready(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return _wait(driver, lambda d: d.find_element(By.ID, element_id), what=element_id)


def test_console_in_a_real_browser(live, browser, caplog):
    """One operator's and one admin's walk through the console (module docstring)."""
    from selenium.webdriver.common.by import By

    caplog.set_level(logging.INFO)
    driver, base = browser, live.url.replace("127.0.0.1", "localhost")

    # No page works without a session.
    driver.delete_all_cookies()
    driver.get(f"{base}/jobs")
    assert driver.current_url.endswith("/signin")
    _shot(driver, "01_signin")
    assert not _axe(driver), _axe(driver)

    # Sign in as the operator: the role is shown, the admin's page is not offered.
    _sign_in(driver, base, live.tokens["operator"])
    who = driver.find_element(By.ID, "who")
    assert who.get_attribute("data-role") == "operator" and "operator" in who.text
    assert not driver.find_elements(By.CSS_SELECTOR, 'nav a[href="/tokens"]')
    _wait(driver, lambda d: d.find_element(By.ID, "health").text, what="the service facts")
    cookie = driver.get_cookie("reloblur_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert driver.execute_script("return document.cookie") == ""  # page scripts cannot read it
    _shot(driver, "02_overview")
    assert not _axe(driver), _axe(driver)

    # Rigs: the plan preview follows the form; a plan the rig cannot honour shows its reason.
    driver.get(f"{base}/rigs")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#rigs tr[data-rig="twin"]'), what="the rig list")
    plan = _page_ready(driver, "plan")
    _wait(driver, lambda d: plan.get_attribute("data-state") == "ok", what="the first plan")
    first = plan.text
    assert "tS (sharp exposure)" in first and "Blur in B" in first
    distance = driver.find_element(By.ID, "plan-distance")
    speed = driver.find_element(By.ID, "plan-speed")
    distance.send_keys("12")
    speed.send_keys("3")
    _wait(driver, lambda d: plan.get_attribute("data-state") == "ok" and plan.text != first, what="a new plan")
    _shot(driver, "03_rigs_plan")
    assert not _axe(driver), _axe(driver)
    speed.clear()
    speed.send_keys("5000")
    error = driver.find_element(By.ID, "plan-error")
    _wait(driver, lambda d: plan.get_attribute("data-state") == "refused" and error.is_displayed(),
          what="the refusal")
    assert error.text.startswith("plan refused:") and len(error.text) > 20
    _shot(driver, "04_rigs_plan_refused")

    # Jobs: progress reported by a worker reaches the page through the event stream.
    with session_factory(live.engine)() as s:
        job = jobs.create_job(s, "deblur", {"inputs": ["demo"]}, max_attempts=1)
        s.commit()
        job_id = job.id
    driver.get(f"{base}/jobs")
    _wait(driver, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live", what="the stream")
    _wait(driver, lambda d: d.find_elements(By.ID, f"job-{job_id}"), what="the job row")
    jobs.claim(live.engine, job_id, "browser-test")
    latencies = []
    for step in (0.25, 0.5, 0.75):
        began = time.perf_counter()
        jobs.report_progress(live.engine, job_id, step, f"image {int(step * 4)} of 4")
        _wait(driver, lambda d, step=step: float(
            d.find_element(By.CSS_SELECTOR, f"#job-{job_id} progress").get_attribute("value")) == step,
            timeout=5, what=f"progress {step}")
        latencies.append(time.perf_counter() - began)
    assert max(latencies) < 2.0, latencies  # live, not polled every few seconds
    assert driver.find_elements(By.CSS_SELECTOR, f"#job-{job_id} button")  # the operator may cancel
    _shot(driver, "05_jobs_live")
    assert not _axe(driver), _axe(driver)
    driver.find_element(By.CSS_SELECTOR, f"#job-{job_id} button").click()
    _wait(driver, lambda d: "cancel" in d.find_element(By.ID, "status").text, what="the cancel")
    with pytest.raises(jobs.JobCancelled):  # the worker's next report meets the cancel...
        jobs.report_progress(live.engine, job_id, 0.8)
    jobs.cancel_finished(live.engine, job_id)  # ...and it stops, as the job runner does
    _wait(driver, lambda d: d.find_element(By.ID, f"job-{job_id}").get_attribute("data-status") == "cancelled",
          what="the cancelled job")

    # The admin: create a token (the secret shown once), then revoke the operator's.
    _sign_in(driver, base, live.tokens["admin"])
    driver.get(f"{base}/tokens")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#tokens tr[data-token="test-operator"]'), what="tokens")
    driver.find_element(By.ID, "token-name").send_keys("browser-made")
    driver.find_element(By.CSS_SELECTOR, "#token-form button").click()
    secret_box = driver.find_element(By.ID, "secret")
    _wait(driver, lambda d: secret_box.is_displayed(), what="the new secret")
    new_secret = driver.find_element(By.ID, "secret-value").get_attribute("value")
    assert len(new_secret) >= 40
    _shot(driver, "06_tokens")
    assert not _axe(driver), _axe(driver)
    row = driver.find_element(By.CSS_SELECTOR, '#tokens tr[data-token="test-operator"]')
    row.find_element(By.TAG_NAME, "button").click()
    _wait(driver, lambda d: "revoked" in d.find_element(By.CSS_SELECTOR, '#tokens tr[data-token="test-operator"]').text,
          what="the revocation")

    # The operator's session is refused at once; the new token signs in.
    _sign_in(driver, base, new_secret)
    driver.delete_all_cookies()
    driver.get(f"{base}/signin")
    driver.find_element(By.ID, "token").send_keys(live.tokens["operator"])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    alert = _wait(driver, lambda d: d.find_element(By.ID, "signin-error"), what="the refusal")
    assert "revoked" in alert.text
    _shot(driver, "07_revoked_refused")

    # No token in any URL the browser asked for, nor in any log line of the service.
    urls = [json.loads(entry["message"])["message"].get("params", {}).get("request", {}).get("url", "")
            for entry in driver.get_log("performance")]
    secrets = [v for k, v in live.tokens.items()] + [new_secret]
    assert urls and not [u for u in urls if any(s in u for s in secrets)]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "console sign-in" in logged
    assert not [s for s in secrets if s in logged]


def test_deblur_page_in_a_real_browser(start_server, db_url, browser, tmp_path):
    """An operator drops a PNG: the deblurred image and the mask appear, the split and the mask
    overlay follow their sliders, a file that is not an image is refused with its reason and
    nothing is stored, and an image too large for a preview becomes a deblur job."""
    import cv2
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shipped = REPO / "deblur" / "weights" / "lbag_twin_cpu.pt"
    live = start_server(db_url, checkpoint=shipped)
    driver, base = browser, live.url.replace("127.0.0.1", "localhost")
    rng = np.random.default_rng(1)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    large = tmp_path / "large.png"
    cv2.imwrite(str(large), np.zeros((128, 128, 3), np.uint8))
    junk = tmp_path / "notes.png"
    junk.write_text("not an image")

    _sign_in(driver, base, live.tokens["operator"])
    driver.get(f"{base}/deblur")
    file_input = _page_ready(driver, "deblur-file")
    file_input.send_keys(str(small))
    result = driver.find_element(By.ID, "result")
    _wait(driver, lambda d: result.get_attribute("data-state") == "done", timeout=60, what="the result")
    after = driver.find_element(By.ID, "after")
    assert driver.execute_script("return arguments[0].naturalWidth", after) == 64
    split = driver.find_element(By.ID, "split")
    clip = after.value_of_css_property("clip-path")
    split.send_keys(Keys.END)
    _wait(driver, lambda d: after.value_of_css_property("clip-path") != clip, what="the split to move")
    opacity = driver.find_element(By.ID, "mask-opacity")
    opacity.send_keys(Keys.END)
    mask = driver.find_element(By.ID, "mask")
    _wait(driver, lambda d: float(mask.value_of_css_property("opacity")) == 1.0, what="the mask overlay")
    _shot(driver, "08_deblur")
    assert not _axe(driver), _axe(driver)

    error = driver.find_element(By.ID, "deblur-error")
    file_input.send_keys(str(junk))
    _wait(driver, lambda d: error.is_displayed() and error.text, what="the refusal")
    assert "PNG" in error.text or "image" in error.text
    assert live.uploads() == []
    _shot(driver, "09_deblur_refused")

    file_input.send_keys(str(large))
    status = driver.find_element(By.ID, "status")
    _wait(driver, lambda d: "deblur job #" in status.text, timeout=30, what="the job")
    assert len(live.uploads()) == 1  # the upload is kept for its job

    # A viewer is not offered the upload.
    _sign_in(driver, base, live.tokens["viewer"])
    driver.get(f"{base}/deblur")
    assert not driver.find_elements(By.ID, "deblur-file")


def test_gallery_and_pair_viewer_in_a_real_browser(live, browser):
    """A viewer opens the scene list, the scene's gallery (thumbnails from cached previews)
    and the pair viewer: the overlay slider changes the mask's opacity, the split moves, 1:1
    zoom loads the full image, and the products' hashes are listed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, base = browser, live.url.replace("127.0.0.1", "localhost")
    _sign_in(driver, base, live.tokens["viewer"])
    driver.get(f"{base}/scenes")
    link = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '#scenes tr[data-scene="scene1"] a'), what="scenes")
    _shot(driver, "10_scenes")
    link.click()
    capture = live.ids["capture"]
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#pair-{capture} img.thumb"), what="the gallery")
    _wait(driver, lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
                                for img in d.find_elements(By.CSS_SELECTOR, f"#pair-{capture} img.thumb")),
          what="every thumbnail")
    assert driver.find_element(By.CSS_SELECTOR, f"#pair-{capture} .thumb.missing").text == "no sharp"
    _wait(driver, lambda d: d.find_element(By.ID, "flow").is_displayed(), what="the flow picture")
    _shot(driver, "11_gallery")
    assert not _axe(driver), _axe(driver)

    driver.find_element(By.CSS_SELECTOR, f"#pair-{capture} a").click()
    viewer = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '#viewer[data-state="ready"]'), what="the viewer")
    mask = driver.find_element(By.ID, "mask")
    assert float(mask.value_of_css_property("opacity")) == 0.4
    driver.find_element(By.ID, "mask-opacity").send_keys(Keys.HOME)
    _wait(driver, lambda d: float(mask.value_of_css_property("opacity")) == 0.0, what="the overlay slider")
    driver.find_element(By.ID, "mask-opacity").send_keys(Keys.END)
    _wait(driver, lambda d: float(mask.value_of_css_property("opacity")) == 1.0, what="the overlay slider")
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "zoom")).select_by_value("1")
    before = driver.find_element(By.ID, "before")
    _wait(driver, lambda d: "max_side" not in before.get_attribute("src") and d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", before) == 48, what="the full image")
    rows = driver.find_elements(By.CSS_SELECTOR, "#products tbody tr")
    assert len(rows) == 3 and "a" * 16 in viewer.find_element(By.XPATH, "//table[@id='products']").text
    _shot(driver, "12_pair_viewer")
    assert not _axe(driver), _axe(driver)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real ``reloblur serve`` on loopback (SQLite, one Dask worker, the simulated twin rig of
    ``configs/rigs``, the shipped model), with event streams that
    end every 0.5 s (RELOBLUR_EVENT_STREAM_MAX_S) so that the pages must reconnect and resume."""
    import socket
    import subprocess
    import sys
    from types import SimpleNamespace

    import httpx

    root = tmp_path_factory.mktemp("served")
    rigs = REPO / "configs" / "rigs"
    env = {**os.environ, "RELOBLUR_DATA_DIR": str(root / "data"), "RELOBLUR_RIGS_DIR": str(rigs),
           "RELOBLUR_DASK_WORKERS": "1", "RELOBLUR_DEVICE": "cpu", "RELOBLUR_EVENT_STREAM_MAX_S": "0.5",
           "RELOBLUR_CHECKPOINT": str(REPO / "deblur" / "weights" / "lbag_twin_cpu.pt")}
    for key in ("RELOBLUR_DATABASE_URL", "RELOBLUR_DASK_SCHEDULER", "RELOBLUR_API_WORKERS"):
        env.pop(key, None)
    exe = str(Path(sys.executable).parent / "reloblur")
    subprocess.run([exe, "db", "upgrade"], env=env, check=True, capture_output=True)
    tokens = {role: subprocess.run([exe, "token", "create", "--name", f"browser-{role}", "--role", role], env=env,
                                   check=True, capture_output=True, text=True).stdout.strip()
              for role in ("viewer", "operator")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = root / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"{url}/api/v1/health", timeout=5)
                if health.status_code == 200 and health.json().get("runner"):
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"reloblur serve did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield SimpleNamespace(url=url, tokens=tokens, log=log_path)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_capture_to_processed_pairs_through_a_real_service(served, browser):
    """On a real service: a viewer is not offered a capture and is refused when forcing one; an
    operator captures a lightbox and a two-pair scene session and sees each pair's thumbnails
    appear live (through dropped and resumed event streams), sees the API's named error next
    to a form field, retries a failed job, runs a post-processing job to completion, opens the
    processed pair and moves the overlay slider, and sees the calibrations' residual casts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, base = browser, served.url
    loaded = "return arguments[0].complete && arguments[0].naturalWidth"

    # A viewer: no capture form; a capture forced from the page is refused by the API.
    _sign_in(driver, base, served.tokens["viewer"])
    driver.get(f"{base}/capture")
    _page_ready(driver, "progress")
    assert not driver.find_elements(By.ID, "capture-form")
    assert not driver.find_elements(By.CSS_SELECTOR, 'nav a[href="/capture"]')
    forced = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/v1/captures', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token':"
        " document.querySelector('meta[name=csrf-token]').content}, body: JSON.stringify({rig: 'twin', scene:"
        " 'forced', pairs: 1})}).then(r => done(r.status));")
    assert forced == 403

    # The operator: a lightbox, then a two-pair session, followed live.
    _sign_in(driver, base, served.tokens["operator"])
    driver.get(f"{base}/capture")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#lb-rig option[value="twin"]'), what="the rigs")
    assert not _axe(driver), _axe(driver)
    for field, value in (("lb-exposure", "1.8"), ("lb-nd", "0.125")):  # as `make demo` exposes it
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#lightbox-form button[type=submit]").click()
    progress = driver.find_element(By.ID, "progress")
    _wait(driver, lambda d: progress.get_attribute("data-done") == "true", timeout=120, what="the lightbox")
    assert progress.get_attribute("data-status") == "succeeded"
    driver.find_element(By.ID, "cap-scene").send_keys("browser1")
    driver.find_element(By.ID, "cap-sharp").send_keys("2.5")  # as `make demo` captures
    pairs = driver.find_element(By.ID, "cap-pairs")
    pairs.clear()
    pairs.send_keys("2")
    driver.find_element(By.CSS_SELECTOR, "#capture-form button[type=submit]").click()
    _wait(driver, lambda d: progress.get_attribute("data-done") == "true", timeout=180, what="the session")
    assert progress.get_attribute("data-status") == "succeeded"
    kinds = [li.get_attribute("data-kind") for li in driver.find_elements(By.CSS_SELECTOR, "#steps li")]
    assert kinds == ["whiteboard", "reference", "pair", "pair"], kinds
    thumbs = driver.find_elements(By.CSS_SELECTOR, "#steps li[data-kind=pair] img.thumb")
    assert len(thumbs) == 4
    _wait(driver, lambda d: all(d.execute_script(loaded, img) for img in thumbs), what="the pair thumbnails")
    live = driver.find_element(By.ID, "live")  # the streams were dropped (every 0.5 s) and resumed
    _wait(driver, lambda d: int(live.get_attribute("data-reconnects")) >= 1, what="a resumed stream")
    _shot(driver, "13_capture_live")

    # Jobs: a named API error next to its field; a failed job retried; a post-processing job.
    driver.get(f"{base}/jobs")
    _wait(driver, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live", what="the stream")
    out = driver.find_element(By.ID, "ex-out")
    out.send_keys("../outside")
    driver.find_element(By.CSS_SELECTOR, "#export-form button[type=submit]").click()
    field_error = _wait(driver, lambda d: d.find_element(By.ID, "ex-out-error"), what="the field error")
    _wait(driver, lambda d: "relative" in field_error.text, what="the out error text")
    assert out.get_attribute("aria-invalid") == "true"
    _shot(driver, "14_jobs_form_error")
    assert not _axe(driver), _axe(driver)
    scene = driver.find_element(By.ID, "pp-scene")
    scene.send_keys("no-such-scene")
    driver.find_element(By.CSS_SELECTOR, "#postprocess-form button[type=submit]").click()
    failed = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-status="failed"] button.retry'),
                   timeout=60, what="the failed job's retry")
    failed.click()
    _wait(driver, lambda d: "submitted again" in d.find_element(By.ID, "status").text, what="the retry")
    scene.clear()
    scene.send_keys("browser1", Keys.ENTER)
    status = driver.find_element(By.ID, "status")
    _wait(driver, lambda d: "postprocess job #" in status.text, what="the submission")
    job_id = int(status.text.split("#")[1].split()[0])
    row = f"#job-{job_id}"
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-status") in ("succeeded", "failed"),
          timeout=300, what="the post-processing job")
    assert driver.find_element(By.CSS_SELECTOR, row).get_attribute("data-status") == "succeeded", \
        driver.find_element(By.CSS_SELECTOR, row).text
    assert float(driver.find_element(By.CSS_SELECTOR, f"{row} progress").get_attribute("value")) == 1.0

    # The processed pair: gallery, viewer, overlay slider.
    driver.get(f"{base}/scenes/browser1")
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery li")) == 2, what="the gallery")
    thumbs = driver.find_elements(By.CSS_SELECTOR, "#gallery img.thumb")
    assert len(thumbs) == 6
    _wait(driver, lambda d: all(d.execute_script(loaded, img) for img in thumbs), what="the gallery thumbnails")
    driver.find_element(By.CSS_SELECTOR, "#gallery li a").click()
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, '#viewer[data-state="ready"]'), what="the viewer")
    mask = driver.find_element(By.ID, "mask")
    driver.find_element(By.ID, "mask-opacity").send_keys(Keys.END)
    _wait(driver, lambda d: float(mask.value_of_css_property("opacity")) == 1.0, what="the overlay slider")
    _shot(driver, "15_processed_pair")

    # The calibrations the post-processing fitted, with their residual casts.
    driver.get(f"{base}/calibrations")
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "img.heatmap")) == 2, what="the calibrations")
    _wait(driver, lambda d: all(d.execute_script(loaded, img) for img in d.find_elements(By.CSS_SELECTOR, "img.heatmap")),
          what="the heat maps")
    _shot(driver, "16_calibrations")
    assert not _axe(driver), _axe(driver)

    # A tablet in portrait: every page fits its width (no sideways scrolling).
    driver.set_window_size(768, 1024)
    try:
        for name, path in (("17_tablet_capture", "/capture"), ("18_tablet_jobs", "/jobs"),
                           ("19_tablet_gallery", "/scenes/browser1")):
            driver.get(f"{base}{path}")
            _wait(driver, lambda d: d.execute_script("return document.readyState") == "complete", what=path)
            overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
            _shot(driver, name)
    finally:
        driver.set_window_size(1280, 900)
    assert not [s for s in served.tokens.values() if s in served.log.read_text()]
