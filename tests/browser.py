"""Headless Chromium for tests (Debian's ``chromium`` and ``chromium-driver``, driven
by Selenium), with the network off: only 127.0.0.1 and file:// are reachable.

    from browser import chromium          # a pytest fixture: import it into the test module
    def test_page(chromium):
        chromium.get("file:///.../page.html")
        assert not external_requests(chromium)

Everything else goes to a dead proxy (127.0.0.1:9) and host names resolve to nothing,
so a page that reaches for a CDN fails visibly instead of quietly working online.
The performance log is on: :func:`requests` lists every URL the page asked for.
The fixture skips the test when Chromium, chromedriver or Selenium are absent
(install: ``apt-get install chromium chromium-driver``; ``pip install selenium``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() \
    else shutil.which("chromedriver")

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", "--mute-audio",
         "--disable-default-apps", "--disable-extensions",
         # nothing but this machine: a dead proxy for everything else, and no DNS
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;<-loopback>",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def make_driver(profile_dir: str | Path, window=(1280, 900)):
    """A new headless Chromium with a fresh profile in ``profile_dir``; skips the
    calling test when the browser or Selenium is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/apt-packages)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (*FLAGS, f"--window-size={window[0]},{window[1]}",
                f"--user-data-dir={profile_dir}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


@pytest.fixture
def chromium():
    """A headless Chromium with the network off (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="har-chromium-") as profile:
        driver = make_driver(profile)
        try:
            yield driver
        finally:
            driver.quit()


def requests(driver) -> list[str]:
    """Every URL the browser asked for since the last call (from the performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def external_requests(urls: list[str]) -> list[str]:
    """The URLs that would leave the machine (not file:, data:, about:, 127.0.0.1)."""
    local = ("file:", "data:", "about:", "blob:", "http://127.0.0.1", "https://127.0.0.1",
             "chrome:", "devtools:")
    return [u for u in urls if not u.startswith(local)]


def console_errors(driver) -> list[str]:
    """Severe messages from the page's console (script errors, blocked loads)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
