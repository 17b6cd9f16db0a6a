"""`har predict ... --report out.html`: one self-contained page built from the same
har.predictions/1 document as --json, checked as text and in headless Chromium with
the network off (tests/browser.py). A screenshot goes to tmp_path, and to
$HAR_SCREENSHOT_DIR when set (docs/report.png is made that way)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from browser import chromium, external_requests, requests  # noqa: F401 (fixture)
from conftest import SHARED_VIDEOS, har_main, make_video

from har.render import PALETTE, segment_colors
from har.report import render_html, write_report


def _doc() -> dict:
    seg = lambda label, a, b, m: {"label": label, "start_s": a, "end_s": b,  # noqa: E731
                                  "mean_score": m, "peak_score": m, "start_clip": 0,
                                  "end_clip": 1}
    clips = [{"index": i, "start_frame": i * 16, "end_frame": i * 16 + 16, "start_s": i * 0.64,
              "end_s": i * 0.64 + 0.64,
              "top": [{"label": "juggling balls", "score": 0.6 - i * 0.05},
                      {"label": "dancing <ballet>", "score": 0.2 + i * 0.05}]}
             for i in range(6)]
    return {"schema": "har.predictions/1", "model": "r3d10-k400", "videos": [
        {"path": "ok.mp4", "fps": 25.0, "frames": 100, "duration_s": 4.0, "width": 64,
         "height": 48, "codec": "h264", "top": [{"label": "juggling balls", "score": 0.5}],
         "clips": clips, "evidence": [0], "warnings": [], "error": None,
         "segments": [seg("juggling balls", 0, 2.5, 0.5), seg("dancing <ballet>", 1.5, 4, 0.3)]},
        {"path": "bad.mp4", "fps": None, "frames": 0, "duration_s": None, "width": None,
         "height": None, "codec": None, "top": [], "clips": [], "evidence": [],
         "segments": [], "warnings": [], "error": "bad.mp4: cannot be read as a video"},
    ]}


def test_report_is_self_contained_and_escaped(tmp_path):
    doc = _doc()
    out = tmp_path / "r.html"
    write_report(doc, out)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # nothing fetched from anywhere: no src/href other than data: URIs and anchors
    assert not re.findall(r'(?:src|href)="(?!data:|#)', text)
    assert "http://" not in text and "https://" not in text
    assert "dancing &lt;ballet&gt;" in text and "<ballet>" not in text
    assert "bad.mp4: cannot be read as a video" in text
    assert text.count('<tr class="') == 2
    # the same colour per label as the annotated video and the plot
    colors = segment_colors(doc["videos"][0]["segments"])
    assert colors["juggling balls"] == PALETTE[0]
    assert 'fill="#%02x%02x%02x"' % PALETTE[1] in text
    assert render_html(doc) == text


def _predict(args):
    return har_main("predict", *args)  # in this process: (returncode, stdout, stderr)


def _inputs(tmp_path: Path) -> list[Path]:
    vids = [make_video(tmp_path / "walk.mp4", 90, size=(320, 240)),
            make_video(tmp_path / "small.mp4", 40)]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    return [*vids, broken, empty]


@pytest.mark.slow
def test_report_matches_json_and_opens_offline(tmp_path, r10_weights, chromium):  # noqa: F811
    inputs = _inputs(tmp_path)
    shared = sorted(p for p in [*SHARED_VIDEOS.glob("*.mp4"), *SHARED_VIDEOS.glob("broken/*")]
                    if p.is_file() and p.stat().st_size < 5_000_000) \
        if SHARED_VIDEOS.is_dir() else []
    inputs += shared
    report, js = tmp_path / "out.html", tmp_path / "out.json"
    r = _predict([*map(str, inputs), "--model", "r3d10-k400", "--weights", r10_weights,
                  "--backend", "torch", "--threshold", "0.001", "--no-progress",
                  "--report", str(report), "--json", str(js)])
    assert r.returncode == 3, r.stderr  # the broken inputs failed, the rest is reported
    assert "Traceback" not in r.stderr
    doc = json.loads(js.read_text())
    assert len(doc["videos"]) == len(inputs)
    failed = [v for v in doc["videos"] if v["error"]]
    assert len(failed) >= 2
    text = report.read_text(encoding="utf-8")
    assert text.count("data:image/jpeg;base64,") >= 2  # thumbnails of the generated videos
    assert 'loading="lazy"' in text

    chromium.get(report.as_uri())
    rows = chromium.find_elements("css selector", "#summary tbody tr")
    assert len(rows) == len(inputs)
    table = chromium.find_element("id", "summary").text
    for v in doc["videos"]:
        assert Path(v["path"]).name in table
    for v in failed:  # each failure shows its one-line error
        assert v["error"].splitlines()[0][:60] in table
    assert chromium.find_elements("css selector", "svg.timeline")
    assert chromium.find_elements("css selector", "svg.chart")
    imgs = chromium.find_elements("css selector", ".thumbs img")
    assert imgs and all(chromium.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in imgs[:2])
    chromium.set_window_size(1100, 1500)
    shot = tmp_path / "report.png"
    chromium.save_screenshot(str(shot))
    assert shot.stat().st_size > 5000
    if os.environ.get("HAR_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["HAR_SCREENSHOT_DIR"]) / "report.png")
    # sorting by status puts the failed inputs together at the top (ascending)
    chromium.find_element("css selector", "#summary th:nth-child(3)").click()
    first = chromium.find_elements("css selector", "#summary tbody tr")[0]
    assert first.get_attribute("class") == "done"
    chromium.find_element("css selector", "#summary th:nth-child(3)").click()
    first = chromium.find_elements("css selector", "#summary tbody tr")[0]
    assert first.get_attribute("class") == "partial" or first.get_attribute("class") == "failed"
    urls = requests(chromium)
    assert any(u.startswith("file:") for u in urls)
    assert external_requests(urls) == []  # no request left the file



def test_report_option_checks(tmp_path):
    v = make_video(tmp_path / "v.mp4", 10)
    r = _predict([str(v), "--report", "-"])
    assert r.returncode == 2 and "--report cannot go to stdout" in r.stderr
    r = _predict([str(v), "--report", str(v)])
    assert r.returncode == 2 and "Traceback" not in r.stderr
