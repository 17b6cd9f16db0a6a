"""The `har serve` page in a real browser: headless Chromium (Debian's chromium and
chromium-driver, through Selenium), the network blocked except 127.0.0.1.

A generated video is uploaded through the page's file picker; the page must show the
job done, the segments of the result on the timeline, the current clip's labels, and
seek the player when a segment is clicked. A screenshot goes to tmp_path (and to
$HAR_SCREENSHOT_DIR when set: docs/serve.png is made that way).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
webdriver = pytest.importorskip("selenium.webdriver")

from conftest import make_video  # noqa: E402
from reference_hara import hara_resnet, published_checkpoint, randomize_  # noqa: E402
from serve_helpers import Server  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


# TODO: switch to tests/browser.py (the render helper's shared driver) once it is on main.
@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/apt-packages)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--mute-audio", "--no-first-run",
                # nothing but this machine: a dead proxy for everything else, no DNS
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP reports land there
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(fn, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_page_uploads_a_video_and_shows_its_timeline(tmp_path, browser):
    from selenium.webdriver.common.by import By

    weights = tmp_path / "resnet-10-kinetics.pth"
    torch.save(published_checkpoint(randomize_(hara_resnet(10, "A"), seed=10), "resnet-10"),
               weights)
    yy, xx = np.mgrid[0:120, 0:160]

    def frame(i: int) -> np.ndarray:  # a bright disc crossing a gradient
        disc = ((xx - 20 - 1.2 * i) ** 2 + (yy - 60) ** 2 < 300)[..., None]
        bg = np.stack([xx * 1.5, yy * 2, 255 - xx * 1.5], axis=-1)
        return np.where(disc, 255, bg).astype(np.uint8)

    video = make_video(tmp_path / "walk.mp4", 100, size=(160, 120), frame_fn=frame)
    # random weights give low probabilities: threshold 0 so the top labels get segments
    server = Server(tmp_path / "data", str(weights), "--threshold", "0").start()
    try:
        browser.get(server.url + "/")
        _wait(lambda: "r3d10-k400" in browser.find_element(By.ID, "model").text, 15,
              "the model name on the page")
        picker = browser.find_element(By.ID, "file")
        browser.execute_script("arguments[0].hidden = false", picker)
        picker.send_keys(str(video))
        _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#jobs li[data-status=done]"),
              120, "the job to be done on the page")
        segs = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#timeline rect.seg"),
                     15, "segments on the timeline")
        job_id = browser.find_element(By.CSS_SELECTOR, "#jobs li").get_attribute("data-id")
        doc = httpx.get(f"{server.url}/v1/jobs/{job_id}/result", timeout=10).json()["videos"][0]
        assert doc["segments"], "threshold 0 must give segments"
        assert sorted(s.get_attribute("data-label") for s in segs) == \
            sorted(s["label"] for s in doc["segments"])
        assert browser.find_element(By.ID, "title").text == "walk.mp4"
        assert doc["top"][0]["label"] in browser.find_element(By.ID, "summary").text
        # the chart draws a line per top label
        lines = browser.find_elements(By.CSS_SELECTOR, "#chart polyline")
        assert {e.get_attribute("data-label") for e in lines} >= \
            {p["label"] for p in doc["top"][:3]}
        # the current clip's labels, and a click on a segment seeks the player there
        now = [li.text.rsplit(" ", 1)[0] for li in
               browser.find_elements(By.CSS_SELECTOR, "#nowlabels li")]
        assert now and now[0] in {p["label"] for c in doc["clips"] for p in c["top"]}
        _wait(lambda: browser.execute_script(
            "return document.getElementById('video').readyState >= 1"), 20,
            "the player to load the video")
        target = max(doc["segments"], key=lambda s: s["start_s"])
        seg = next(s for s in segs if float(s.get_attribute("data-start")) == target["start_s"])
        browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click'))", seg)
        t = _wait(lambda: browser.execute_script(
            "const v = document.getElementById('video'); "
            "return v.seeking ? 0 : v.currentTime + 1e-9"), 10, "the player to seek")
        assert abs(t - target["start_s"]) < 0.2
        clip = next(c for c in doc["clips"] if c["start_s"] <= t < c["end_s"] + 1e-6)
        _wait(lambda: browser.find_element(By.ID, "nowlabels").text.split("\n")[0]
              .startswith(clip["top"][0]["label"]), 10, "the labels of the clip at the playhead")
        browser.execute_script("arguments[0].hidden = true", picker)
        browser.set_window_size(1280, 1400)
        browser.execute_script("document.getElementById('video').currentTime = arguments[0]",
                               doc["clips"][len(doc["clips"]) // 2]["start_s"])
        time.sleep(1.0)  # the seek and the redraw after the resize
        shot = tmp_path / "serve.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("HAR_SCREENSHOT_DIR"):
            shutil.copy(shot, Path(os.environ["HAR_SCREENSHOT_DIR"]) / "serve.png")
        # no request left this machine: the page loaded only from the server
        urls = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(u.startswith(server.url) for u in urls), json.dumps(urls)
        # the page works under the server's Content-Security-Policy: nothing blocked
        logs = [e["message"] for e in browser.get_log("browser")]
        assert not [m for m in logs if "Content Security Policy" in m], logs
    finally:
        server.stop()


def test_page_says_when_the_browser_cannot_play_the_video(tmp_path, browser, r10_weights):
    """An MPEG-4 Part 2 AVI: har scores it, Chromium cannot play it; the page says so."""
    from selenium.webdriver.common.by import By

    video = make_video(tmp_path / "old.avi", 40, codec="mpeg4")
    server = Server(tmp_path / "data", r10_weights).start()
    try:
        with open(video, "rb") as fh:
            job = httpx.post(f"{server.url}/v1/jobs", files={"file": fh}, timeout=30).json()["id"]
        assert server.wait_all([job])[job]["status"] == "done"
        browser.get(server.url + "/")
        item = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, f"#jobs li[data-id='{job}']"),
                     15, "the job in the list")
        item[0].click()
        msg = _wait(lambda: "cannot play" in browser.find_element(By.ID, "message").text
                    and browser.find_element(By.ID, "message").text, 20, "the message")
        assert "old.avi" in msg and "mpeg4" in msg
    finally:
        server.stop()
